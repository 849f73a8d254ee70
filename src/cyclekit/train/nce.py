"""``--lambda-nce``: the patchwise contrastive loss of CUT (Park et al. 2020), next to or instead of
the cycle.

Cycle consistency asks that the translation can be undone; PatchNCE asks something weaker and
more local: a patch of the output must be recognisable as *the* patch of the input at the same
place, among the other patches of that image. The generator's own encoder embeds both images,
a small projection head per layer maps the features of a few hundred sampled positions to unit
vectors, and each output position's vector must pick its input counterpart out of the image's
other positions (cross-entropy over cosine similarities at temperature 0.07; the input's vectors
are the targets and get no gradient). Because nothing has to be reconstructed, the generator may
change an outline as long as every place stays recognisable: CUT's authors report FID 45.5 against
CycleGAN's 77.2 on horse -> zebra at about half the training cost.

The layers, as in CUT's ResNet generator: the input pixels, the first convolution, both
downsampling stages and the middle residual block. One head per layer and per direction; the
heads are trained by the generators' optimizer and saved in the checkpoint, never released.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cyclekit.config import ModelConfig

TEMPERATURE = 0.07  # CUT's nce_T
HEAD_DIM = 256  # CUT's netF_nc
PATCHES = 256  # positions sampled per layer and image (CUT's num_patches)


def encoder_features(G: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The ResNet generator's encoder maps that PatchNCE compares (input, stem, down1, down2, mid block)."""
    feats = [x]
    h = G.stem(x)
    feats.append(h)
    h = G.down1(h)
    feats.append(h)
    h = G.down2(h)
    feats.append(h)
    mid = len(G.blocks) // 2
    for i, block in enumerate(G.blocks):
        h = block(h)
        if i == mid:
            feats.append(h)
            break
    return feats


def feature_channels(m: ModelConfig) -> list[int]:
    """Channels of :func:`encoder_features` after the input's (``validate_config`` checked the generator)."""
    return [m.ngf, 2 * m.ngf, 4 * m.ngf, 4 * m.ngf]


class PatchNCE(nn.Module):
    """Projection heads for both directions and the loss ``PatchNCE(G, source, translation)``."""

    def __init__(self, m: ModelConfig, patches: int = PATCHES) -> None:
        super().__init__()
        deep = feature_channels(m)
        self.patches = patches

        def heads(in_channels: int) -> nn.ModuleList:
            return nn.ModuleList(nn.Sequential(nn.Linear(c, HEAD_DIM), nn.ReLU(inplace=True),
                                               nn.Linear(HEAD_DIM, HEAD_DIM)) for c in [in_channels, *deep])

        self.heads = nn.ModuleDict({"AB": heads(m.in_channels), "BA": heads(m.out_channels)})

    def forward(self, G: nn.Module, direction: str, source: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
        """Mean over layers of the per-position cross-entropy; ``direction`` is ``"AB"`` or ``"BA"``."""
        with torch.no_grad():
            keys = encoder_features(G, source)
        queries = encoder_features(G, translation)
        total = translation.new_zeros((), dtype=torch.float32)
        for head, k, q in zip(self.heads[direction], keys, queries):
            n, c, h, w = k.shape
            count = min(self.patches, h * w)
            ids = torch.randperm(h * w, device=k.device)[:count]
            k = F.normalize(head(k.flatten(2)[:, :, ids].transpose(1, 2)).float(), dim=-1).detach()
            q = F.normalize(head(q.flatten(2)[:, :, ids].transpose(1, 2)).float(), dim=-1)
            logits = torch.bmm(q, k.transpose(1, 2)) / TEMPERATURE  # (n, count, count): the diagonal is right
            target = torch.arange(count, device=k.device).expand(n, count)
            total = total + F.cross_entropy(logits.reshape(n * count, count), target.reshape(-1))
        return total / len(queries)


def attach_nce(cfg, opt_G: torch.optim.Optimizer, device: torch.device):
    """With ``--lambda-nce``: the heads, on ``device``, trained by ``opt_G`` (a new parameter group at
    its learning rate, so the schedulers made afterwards scale it too); else None."""
    if not cfg.train.lambda_nce > 0:
        return None
    nce = PatchNCE(cfg.model).to(device)
    opt_G.add_param_group({"params": list(nce.parameters())})
    return nce
