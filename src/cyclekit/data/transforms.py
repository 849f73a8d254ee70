"""The official CycleGAN preprocessing modes, on float ``HxWxC`` arrays in ``[0, 1]``.

Resizing is bicubic with Pillow's filter (the one the official PyTorch code uses, antialiased
when shrinking) but done per channel in Pillow's 32-bit float mode ``F``, so 16-bit data keeps its
precision and any channel count works; the small bicubic overshoot is clipped back to ``[0, 1]``.

All randomness comes from the ``rng`` argument (crop position, then flip), so a caller that seeds
it from ``(seed, epoch, index)`` gets exactly reproducible samples.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np

from cyclekit.config import DataConfig
from cyclekit.errors import DataError


def resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bicubic resize of an ``HxWxC`` float32 array to ``height x width`` (float precision)."""
    from PIL import Image

    h, w, c = img.shape
    if (w, h) == (width, height):
        return img
    out = np.empty((height, width, c), dtype=np.float32)
    for k in range(c):
        ch = Image.fromarray(np.ascontiguousarray(img[:, :, k], dtype=np.float32))
        out[:, :, k] = np.asarray(ch.resize((width, height), Image.Resampling.BICUBIC))
    return np.clip(out, 0.0, 1.0, out=out)


def crop(img: np.ndarray, top: int, left: int, size: int) -> np.ndarray:
    return img[top : top + size, left : left + size]


def _crop_params(h: int, w: int, size: int, rng: np.random.Generator, train: bool):
    if train:
        return int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return (h - size) // 2, (w - size) // 2


def scale_width_size(w: int, h: int, load_size: int, crop_size: int) -> tuple[int, int]:
    """Official ``__scale_width``: width -> load_size, keep aspect, height at least crop_size."""
    if w == load_size and h >= crop_size:
        return w, h
    return load_size, int(max(load_size * h / w, crop_size))


def preprocess(
    img: np.ndarray,
    cfg: DataConfig,
    rng: np.random.Generator,
    train: bool,
    path: Optional[Union[str, Path]] = None,
) -> np.ndarray:
    """Apply ``cfg.preprocess`` (+ a random horizontal flip when ``cfg.flip`` and ``train``).

    * ``resize_and_crop``: resize to ``load_size`` square, crop ``crop_size`` (random when
      training, centred otherwise);
    * ``crop``: crop ``crop_size`` without resizing (the image must be at least that big);
    * ``scale_width``: width to ``load_size``, keeping the aspect ratio;
    * ``scale_width_and_crop``: the same, then crop ``crop_size``;
    * ``none``: unchanged (see :func:`pad_to_multiple` for networks that need a multiple of 4).

    ``path`` only names the file in error messages.
    """
    mode = cfg.preprocess
    h, w = img.shape[:2]
    size = cfg.crop_size
    name = str(path) if path is not None else "image"
    if mode == "resize_and_crop":
        if cfg.load_size < size:
            raise DataError(f"--load-size ({cfg.load_size}) must be at least --crop-size ({size})")
        img = resize(img, cfg.load_size, cfg.load_size)
        img = crop(img, *_crop_params(cfg.load_size, cfg.load_size, size, rng, train), size)
    elif mode == "crop":
        if h < size or w < size:
            raise DataError(
                f"{name}: image is {w}x{h}, smaller than --crop-size {size}; use "
                f"--preprocess resize_and_crop (resizes first) or a smaller --crop-size"
            )
        img = crop(img, *_crop_params(h, w, size, rng, train), size)
    elif mode in ("scale_width", "scale_width_and_crop"):
        nw, nh = scale_width_size(w, h, cfg.load_size, size)
        img = resize(img, nw, nh)
        if mode == "scale_width_and_crop":
            if nw < size:
                raise DataError(f"--load-size ({cfg.load_size}) must be at least --crop-size ({size})")
            img = crop(img, *_crop_params(nh, nw, size, rng, train), size)
    elif mode != "none":
        raise DataError(f"unknown --preprocess {mode!r}")
    if cfg.flip and train and rng.random() < 0.5:
        img = img[:, ::-1]
    return np.ascontiguousarray(img, dtype=np.float32)


def output_size(h: int, w: int, cfg: DataConfig) -> tuple[int, int]:
    """The ``(height, width)`` :func:`preprocess` produces for an ``h x w`` input."""
    if cfg.preprocess in ("resize_and_crop", "crop", "scale_width_and_crop"):
        return cfg.crop_size, cfg.crop_size
    if cfg.preprocess == "scale_width":
        nw, nh = scale_width_size(w, h, cfg.load_size, cfg.crop_size)
        return nh, nw
    return h, w


# ---------------------------------------------------------------------- padding
def pad_to_multiple(x, m: int):
    """Pad the bottom/right of an image to a multiple of ``m`` by reflection.

    ``x`` is a NumPy ``HxW``/``HxWxC`` array or a torch tensor ``(..., H, W)``. Returns
    ``(padded, (h, w))``; :func:`crop_back` with that size undoes it. Edge replication is used
    where the image is too small to reflect.
    """
    if m < 1:
        raise ValueError(f"multiple must be at least 1, got {m}")
    if isinstance(x, np.ndarray):
        h, w = x.shape[:2]
        ph, pw = (-h) % m, (-w) % m
        if ph == 0 and pw == 0:
            return x, (h, w)
        pad = [(0, ph), (0, pw)] + [(0, 0)] * (x.ndim - 2)
        mode = "reflect" if ph < h and pw < w else "edge"
        return np.pad(x, pad, mode=mode), (h, w)
    import torch.nn.functional as F

    h, w = int(x.shape[-2]), int(x.shape[-1])
    ph, pw = (-h) % m, (-w) % m
    if ph == 0 and pw == 0:
        return x, (h, w)
    mode = "reflect" if ph < h and pw < w else "replicate"
    squeeze = x.dim() < 3
    y = x[None] if squeeze else x  # reflect/replicate need a leading channel dimension
    y = F.pad(y, (0, pw, 0, ph), mode=mode)
    return (y[0] if squeeze else y), (h, w)


def crop_back(x, size: tuple[int, int]):
    """Undo :func:`pad_to_multiple`: keep the top-left ``size = (h, w)``."""
    h, w = size
    if isinstance(x, np.ndarray):
        return x[:h, :w]
    return x[..., :h, :w]
