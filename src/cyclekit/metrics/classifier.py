"""A small domain classifier (A vs B) that the evaluation trains itself, on the training folders.

It answers the question paired metrics cannot on real data: *did the translation land in the
other domain?* The translation success rate is the share of translated A images it classifies
as B (and of translated B images as A); for a gender swap that is the number that says the swap
worked. Its held-out accuracy (on a split of trainA/trainB it never trained on) is always
reported: a classifier that cannot tell real A from real B says nothing about translations.

Training is deterministic for a given seed and cheap on a CPU: images are centre-cropped to a
square and resized to ``size`` px (32-64), the network is four stride-2 convolutions and a
linear head (~100k parameters), a few hundred Adam steps on balanced batches with flips and
small shifts. The global torch RNG is left untouched (``fork_rng``), so it can run in the
middle of a training run without changing what the run does next.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cyclekit.errors import DataError

log = logging.getLogger(__name__)

TRUST_THRESHOLD = 0.9  # held-out accuracy below this: success rates are flagged as unreliable
# Standardised features are scaled so that their mean square is 0.25, about that of Inception's
# pool3 features: the regime the cubic KID kernel (x.y/d + 1)^3 was designed for. Unscaled, a few
# artefact-ridden translations with large activations dominate the kernel and KID.
FEATURE_SCALE = 0.5


class DomainCNN(nn.Module):
    """``[N,C,s,s]`` in [-1,1] -> one logit per image (positive: domain B)."""

    def __init__(self, in_channels: int, width: int = 16) -> None:
        super().__init__()
        w = width
        self.conv1 = nn.Conv2d(in_channels, w, 4, stride=2, padding=1)  # s/2
        self.conv2 = nn.Conv2d(w, 2 * w, 4, stride=2, padding=1)  # s/4
        self.conv3 = nn.Conv2d(2 * w, 4 * w, 4, stride=2, padding=1)  # s/8
        self.conv4 = nn.Conv2d(4 * w, 8 * w, 4, stride=2, padding=1)  # s/16
        self.head = nn.Linear(8 * w, 1)
        self.feature_dim = 8 * w

        self.pooled_dim = 14 * w

    def _maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            x = F.leaky_relu(conv(x), 0.2)
            maps.append(x)
        return maps

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self._maps(x)[-1].mean(dim=(2, 3))  # global average pool -> [N, 8w]

    def pooled_features(self, x: torch.Tensor) -> torch.Tensor:
        """Global average pools of conv2..conv4 -> [N, 14w]: colour and texture statistics at three
        scales besides the domain decision itself (the FID/KID fallback features)."""
        return torch.cat([m.mean(dim=(2, 3)) for m in self._maps(x)[1:]], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(1)


@dataclass
class ClassifierInfo:
    heldout_accuracy: float
    heldout_accuracy_A: float
    heldout_accuracy_B: float
    heldout_images: int
    train_images: int
    steps: int
    size: int
    seconds: float
    trustworthy: bool
    verdict: str

    def to_dict(self) -> dict:
        return asdict(self)


def prepare(x: torch.Tensor, size: int, channels: int) -> torch.Tensor:
    """Centre-crop to a square, resize to ``size`` (antialiased) and match ``channels``."""
    h, w = x.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    x = x[..., top:top + s, left:left + s].float()
    if s != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=s > size)
    c = x.shape[1]
    if c < channels:
        fill = x[:, :1] if c == 1 else torch.ones_like(x[:, :1])  # gray replicated / opaque alpha
        x = torch.cat([x] + [fill] * (channels - c), dim=1)
    elif c > channels:
        x = x[:, :channels]
    return x


def load_folder(files: Sequence[Path], channels: int, size: int) -> torch.Tensor:
    """Load image files into one ``[N, channels, size, size]`` tensor in [-1, 1]."""
    from cyclekit.io.images import load_image, to_tensor

    out = []
    for f in files:
        t = to_tensor(load_image(f, channels)).unsqueeze(0)
        out.append(prepare(t, size, channels))
    return torch.cat(out)


class DomainClassifier:
    """A trained :class:`DomainCNN` with its input preparation and its held-out report."""

    def __init__(self, net: DomainCNN, size: int, channels: int, info: ClassifierInfo, device="cpu") -> None:
        self.net, self.size, self.channels, self.info = net.eval(), size, channels, info
        self.device = torch.device(device)
        self.feature_dim = net.pooled_dim
        # Feature standardisation (set by the trainer from the training images): raw activations
        # have arbitrary scale, which the cubic KID kernel would blow up.
        self.feat_mean = np.zeros(self.feature_dim)
        self.feat_std = np.ones(self.feature_dim)

    def _batches(self, x: torch.Tensor, bs: int = 64):
        for i in range(0, x.shape[0], bs):
            yield prepare(x[i:i + bs], self.size, self.channels).to(self.device)

    @torch.inference_mode()
    def prob_B(self, x: torch.Tensor) -> np.ndarray:
        """Probability that each image of ``[N,C,H,W]`` (in [-1,1], any size) is from domain B."""
        out = [torch.sigmoid(self.net(b)).double().cpu().numpy() for b in self._batches(x)]
        return np.concatenate(out) if out else np.zeros(0)

    @torch.inference_mode()
    def raw_features(self, x: torch.Tensor) -> np.ndarray:
        out = [self.net.pooled_features(b).double().cpu().numpy() for b in self._batches(x)]
        return np.concatenate(out) if out else np.zeros((0, self.feature_dim))

    def features(self, x: torch.Tensor) -> np.ndarray:
        """Multi-scale pooled features (:meth:`DomainCNN.pooled_features`), standardised with the
        training images' mean and std, then scaled by :data:`FEATURE_SCALE`."""
        return (self.raw_features(x) - self.feat_mean) / self.feat_std * FEATURE_SCALE


def _split(n: int, frac: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, held-out) index split; at least one image on each side when n >= 2."""
    perm = rng.permutation(n)
    k = 0 if n < 2 else min(n - 1, max(1, int(round(n * frac))))
    return np.sort(perm[k:]), np.sort(perm[:k])


def _augment(x: torch.Tensor, rng: np.random.Generator, shift: int) -> torch.Tensor:
    """Random horizontal flips and shifts of up to ``shift`` px (reflect padding)."""
    flip = torch.from_numpy(rng.random(x.shape[0]) < 0.5)
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if shift:
        s = x.shape[-1]
        padded = F.pad(x, (shift,) * 4, mode="reflect")
        dy, dx = rng.integers(0, 2 * shift + 1, size=2)
        x = padded[..., dy:dy + s, dx:dx + s]
    return x


def verdict(acc: float, n_heldout: int) -> tuple[bool, str]:
    if n_heldout < 10:
        return False, (f"only {n_heldout} held-out images: the accuracy is too uncertain to trust "
                       "the success rates; add training images")
    if acc >= TRUST_THRESHOLD:
        return True, f"reliable (at least {TRUST_THRESHOLD:.0%} held-out accuracy)"
    return False, (f"UNRELIABLE (held-out accuracy {acc:.1%} < {TRUST_THRESHOLD:.0%}): it cannot tell the "
                   "domains apart well, so the success rates mean little")


def train_domain_classifier(
    dir_a: Union[str, Path], dir_b: Union[str, Path], channels: int, size: int = 64, steps: int = 300,
    batch_size: int = 32, heldout: float = 0.2, max_images: int = 1000, seed: int = 0, width: int = 16,
    lr: float = 1e-3, device: Union[str, torch.device] = "cpu",
) -> DomainClassifier:
    """Train a :class:`DomainCNN` on ``dir_a`` (label 0) vs ``dir_b`` (label 1) and measure it on a
    held-out ``heldout`` fraction of each folder. Deterministic for a given ``seed``."""
    from cyclekit.io.images import list_images

    if size < 16:
        raise DataError(f"classifier size must be at least 16 px, got {size}")
    t0 = time.perf_counter()
    rng = np.random.default_rng([seed, 7919])
    data, held = [], []
    for label, folder in ((0, dir_a), (1, dir_b)):
        files = list_images(folder)
        if max_images and len(files) > max_images:
            files = [files[i] for i in np.sort(rng.choice(len(files), max_images, replace=False))]
        x = load_folder(files, channels, size)
        tr, ho = _split(len(files), heldout, rng)
        data.append(x[torch.from_numpy(tr)])
        held.append(x[torch.from_numpy(ho)] if len(ho) else x[:0])
    dev = torch.device(device)
    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG stream untouched
        torch.manual_seed(seed)
        net = DomainCNN(channels, width).to(dev)
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        half = max(1, batch_size // 2)
        shift = max(1, size // 16)
        net.train()
        for _ in range(steps):
            ia = rng.integers(0, data[0].shape[0], half)
            ib = rng.integers(0, data[1].shape[0], half)
            x = torch.cat([data[0][torch.from_numpy(ia)], data[1][torch.from_numpy(ib)]])
            x = _augment(x, rng, shift).to(dev)
            y = torch.cat([torch.zeros(half), torch.ones(half)]).to(dev)
            loss = F.binary_cross_entropy_with_logits(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    clf = DomainClassifier(net, size, channels, info=None, device=dev)  # type: ignore[arg-type]
    train_feats = clf.raw_features(torch.cat(data))
    clf.feat_mean, clf.feat_std = train_feats.mean(0), train_feats.std(0) + 1e-6
    n_held = held[0].shape[0] + held[1].shape[0]
    if n_held:
        acc_a = float((clf.prob_B(held[0]) < 0.5).mean()) if held[0].shape[0] else float("nan")
        acc_b = float((clf.prob_B(held[1]) >= 0.5).mean()) if held[1].shape[0] else float("nan")
        correct = (clf.prob_B(held[0]) < 0.5).sum() + (clf.prob_B(held[1]) >= 0.5).sum()
        acc = float(correct / n_held)
    else:  # a single image per domain: nothing to hold out
        acc = acc_a = acc_b = float("nan")
    ok, text = verdict(acc, n_held)
    clf.info = ClassifierInfo(
        heldout_accuracy=acc, heldout_accuracy_A=acc_a, heldout_accuracy_B=acc_b, heldout_images=n_held,
        train_images=data[0].shape[0] + data[1].shape[0], steps=steps, size=size,
        seconds=round(time.perf_counter() - t0, 2), trustworthy=ok, verdict=text,
    )
    log.info("domain classifier: held-out accuracy %.3f on %d images (%s)", acc, n_held, text)
    return clf
