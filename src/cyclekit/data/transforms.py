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
    if train and cfg.augment != "none":
        img = augment(img, rng, colour=cfg.augment != "geometry", geometry=cfg.augment != "colour")
    return np.ascontiguousarray(img, dtype=np.float32)


# --augment: how far one training image may be changed. Each is drawn uniformly per image (the
# colour factors' logarithms, so darker and brighter are equally likely).
COLOUR_RANGE = {"gamma": 1.25, "brightness": 1.25, "contrast": 1.25, "saturation": 1.3, "white_balance": 1.1}
ROTATE_DEG, ZOOM, SHIFT = 10.0, 1.1, 0.05  # SHIFT: a fraction of the side
LOW_RES_P, LOW_RES_MIN = 0.3, 0.4  # share of images shrunk and enlarged again, and the smallest factor


def augment(img: np.ndarray, rng: np.random.Generator, geometry: bool = False, colour: bool = True) -> np.ndarray:
    """``img`` (float ``HxWxC`` in [0, 1]) as another camera, light or framing could have shown it.

    With ``colour`` (1 or 3 channels): gamma, brightness, contrast about the mean, saturation about
    each pixel's grey and, for RGB, a white-balance gain per channel. With ``geometry``: a rotation
    of up to :data:`ROTATE_DEG` degrees, a zoom of up to :data:`ZOOM` and a shift of up to
    :data:`SHIFT` of the side (edges repeated, never mirrored: a mirrored border would show the
    model a second chin or ear), and for :data:`LOW_RES_P` of the images a lower resolution (shrunk
    to 40-80% and enlarged back). A model trained on one studio's photos then does not take that
    studio's light, camera or framing for part of what a domain looks like. ``--augment geometry``
    leaves the colours alone: for a model whose users' photos are colour-matched to its training
    faces anyway (the face swap's tone shift, :mod:`cyclekit.faces.tone`).
    """
    def factor(limit: float) -> float:
        return float(np.exp(rng.uniform(-np.log(limit), np.log(limit))))

    out = np.clip(img, 0.0, 1.0).astype(np.float32)
    if colour:
        r = COLOUR_RANGE
        out = out ** factor(r["gamma"])
        out = out * factor(r["brightness"])
        if out.shape[2] == 3:
            out = out * np.array([factor(r["white_balance"]) for _ in range(3)], np.float32)
            grey = out.mean(axis=2, keepdims=True)
            out = grey + (out - grey) * factor(r["saturation"])
        out = out.mean() + (out - out.mean()) * factor(r["contrast"])
        out = np.clip(out, 0.0, 1.0).astype(np.float32)
    if not geometry:
        return out
    out = _affine(out, np.deg2rad(rng.uniform(-ROTATE_DEG, ROTATE_DEG)), factor(ZOOM),
                  rng.uniform(-SHIFT, SHIFT, size=2))
    if rng.random() < LOW_RES_P:
        h, w = out.shape[:2]
        k = rng.uniform(LOW_RES_MIN, 0.8)
        out = resize(resize(out, max(4, round(w * k)), max(4, round(h * k))), w, h)
    return out


def _affine(img: np.ndarray, angle: float, zoom: float, shift: np.ndarray) -> np.ndarray:
    """``img`` rotated by ``angle`` (radians) and zoomed by ``zoom`` about its centre, then moved by
    ``shift`` (fractions of the side); bilinear, the edge pixels repeated outside."""
    import torch
    import torch.nn.functional as F

    h, w = img.shape[:2]
    cos, sin = np.cos(angle) / zoom, np.sin(angle) / zoom  # output -> input, in [-1, 1] coordinates
    # a rotation in pixels, written in coordinates normalised per side (a non-square image stays unsheared)
    theta = torch.tensor([[[cos, -sin * h / w, -2 * shift[0]], [sin * w / h, cos, -2 * shift[1]]]],
                         dtype=torch.float32)
    x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None]
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[0].numpy().transpose(1, 2, 0).clip(0.0, 1.0)
