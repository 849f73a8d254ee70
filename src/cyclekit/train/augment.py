"""``--diff-augment``: differentiable augmentation of what the discriminators see.

Zhao et al. 2020 ("Differentiable Augmentation for Data-Efficient GAN Training"): with a few
hundred images a discriminator memorises the training set and the generator learns to fool
that memory. Augmenting *every* image a discriminator sees, real and generated alike, in the
discriminator's update and in the generator's, keeps the discriminator honest without teaching
the generator to produce augmented images, because the augmentation is differentiable and the
generator's gradient flows through it.

Two geometric operations, neither of which changes a colour (a colour jitter would hide exactly
what a lighting or colour translation must get right):

* ``translation``: shift each image by up to 1/8 of its side, filling with 0 (mid grey);
* ``cutout``: blank a random square of half the side, which may hang over the border.

Each image of a batch draws its own shift and square from the global torch RNG, which
checkpoints save, so a resumed run replays the same augmentations.
"""
from __future__ import annotations

import torch

TRANSLATE_RATIO = 0.125  # largest shift, as a fraction of the side
CUTOUT_RATIO = 0.5  # side of the blanked square, as a fraction of the side


def _grid(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n, _, h, w = x.shape
    ys = torch.arange(h, device=x.device).view(1, h, 1).expand(n, h, w)
    xs = torch.arange(w, device=x.device).view(1, 1, w).expand(n, h, w)
    return ys, xs


def _offsets(n: int, limit: int, device: torch.device) -> torch.Tensor:
    return torch.randint(-limit, limit + 1, (n, 1, 1), device=device)


def translate(x: torch.Tensor, ratio: float = TRANSLATE_RATIO) -> torch.Tensor:
    """Each image moved by a random whole number of pixels, at most ``ratio`` of its side."""
    n, c, h, w = x.shape
    ys, xs = _grid(x)
    src_y = ys - _offsets(n, int(h * ratio + 0.5), x.device)
    src_x = xs - _offsets(n, int(w * ratio + 0.5), x.device)
    inside = (src_y >= 0) & (src_y < h) & (src_x >= 0) & (src_x < w)
    index = (src_y.clamp(0, h - 1) * w + src_x.clamp(0, w - 1)).view(n, 1, h * w).expand(n, c, h * w)
    moved = x.reshape(n, c, h * w).gather(2, index).view(n, c, h, w)
    return moved * inside.unsqueeze(1).to(x.dtype)


def cutout(x: torch.Tensor, ratio: float = CUTOUT_RATIO) -> torch.Tensor:
    """Each image with a random square of side ``ratio`` of its own set to 0."""
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ys, xs = _grid(x)
    top = torch.randint(0, h + 1 - sh % 2, (n, 1, 1), device=x.device) - sh // 2
    left = torch.randint(0, w + 1 - sw % 2, (n, 1, 1), device=x.device) - sw // 2
    hole = (ys >= top) & (ys < top + sh) & (xs >= left) & (xs < left + sw)
    return x * (~hole).unsqueeze(1).to(x.dtype)


OPS = {"translation": translate, "cutout": cutout}


def augmenter(policy: str):
    """The function applied to every discriminator input for ``--diff-augment policy``."""
    ops = [OPS[name] for name in policy.split("_") if name in OPS] if policy != "none" else []

    def apply(x: torch.Tensor) -> torch.Tensor:
        for op in ops:
            x = op(x)
        return x

    return apply
