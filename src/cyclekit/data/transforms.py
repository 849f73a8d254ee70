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
    * ``none``: unchanged.

    ``scale_width`` and ``none`` keep each image's own shape, so, as the official code does, its
    sides are then rounded to multiples of 4 (what the ResNet generators need).

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
    if mode in ("scale_width", "none"):  # the official __make_power_2(base=4)
        h, w = img.shape[:2]
        rh, rw = max(4, int(round(h / 4) * 4)), max(4, int(round(w / 4) * 4))
        if (rh, rw) != (h, w):
            img = resize(img, rw, rh)
    if cfg.flip and train and rng.random() < 0.5:
        img = img[:, ::-1]
    return np.ascontiguousarray(img, dtype=np.float32)
