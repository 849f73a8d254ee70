"""Paste a translated crop back into the photo (step 4 of the seed pipeline).

The crop is warped back through the inverse similarity transform and blended with a feathered
mask that is exactly zero on the crop's outer pixels, so no box edge can show and every pixel
outside the warped crop keeps its input value bit for bit. Two options:

* ``detail=True`` (default): paste the *change* the model made (``G(crop) - crop``, upsampled)
  onto the full-resolution photo instead of the upsampled model output. Where the face in the
  photo is larger than the model's crop, the photo keeps its own fine detail (the seed article's
  question on output sharpness); an identity generator leaves the photo untouched.
* ``match=True`` (default, detail mode): the change is first matched to the surroundings: its
  per-channel median over the mask's soft rim (background and the outer hair, where the blend
  ramps) is subtracted, fully at the rim and fading to nothing towards the centre. A model that
  brightens the whole crop, background included, would otherwise leave a pale halo around the
  head where the feathered rim blends that brightening over the photo; the face keeps its change.
  :func:`rim_change` measures what is left on the rim (the halo), in [0, 1] units.
* ``blend='poisson'``: OpenCV's ``seamlessClone`` (Perez et al., 2003, Poisson image editing)
  matches the pasted region's colours to its surroundings before the feathered blend.
"""
from __future__ import annotations

import logging
from typing import Optional

import numpy as np

from cyclekit.config import CHOICES
from cyclekit.errors import ConfigError, require
from cyclekit.faces.align import CropTransform

log = logging.getLogger(__name__)

MASKS = {"round": 3.0, "square": 16.0}  # superellipse exponent: 2 = circle, large = square
# --mask (CHOICES["mask"]): "head", the default, is the round mask limited to the head (face and
# hair) that cyclekit.faces.segment finds in the original crop, so the background keeps its pixels.
BLENDS = CHOICES["blend"]


def feather_mask(size: int, feather: float = 0.15, shape: str = "round") -> np.ndarray:
    """``size x size`` float32 mask: 1 inside, a smoothstep ramp ``feather * size / 2`` wide, 0 at the rim.

    ``shape='round'`` is a superellipse (a rounded square that keeps the hair and cheeks but hides
    the crop corners), ``'square'`` follows the crop edges. The outermost pixel ring is always 0.
    """
    if shape not in MASKS:
        raise ConfigError(f"--mask: {shape!r} is not one of {', '.join(MASKS)}")
    if not 0 < feather <= 1:
        raise ConfigError(f"--feather must be in (0, 1], got {feather}")
    p = MASKS[shape]
    mid = (size - 1) / 2.0
    inner = size / 2.0 - 1.0  # distance from the centre to the centre of the outermost pixels
    u = (np.arange(size, dtype=np.float64) - mid) / inner
    r = (np.abs(u)[None, :] ** p + np.abs(u)[:, None] ** p) ** (1.0 / p)
    x = np.clip((1.0 - r) / feather, 0.0, 1.0)
    m = x * x * (3.0 - 2.0 * x)  # smoothstep
    m[0, :] = m[-1, :] = m[:, 0] = m[:, -1] = 0.0
    return m.astype(np.float32)


def rim_median(delta: np.ndarray, crop_mask: np.ndarray) -> np.ndarray:
    """Per-channel median of ``delta`` (size x size x C) over the soft rim of ``crop_mask``."""
    rim = (crop_mask > 0) & (crop_mask < 0.5)
    if not rim.any():
        return np.zeros(delta.shape[2], dtype=np.float32)
    return np.median(delta[rim], axis=0).astype(np.float32)


def rim_change(before: np.ndarray, after: np.ndarray, roi: Optional[tuple[int, int, int, int]],
               mask: Optional[np.ndarray]) -> float:
    """Mean absolute change (0-1 units) where a pasted region blends into the photo (its mask
    between 0 and 0.5): a pale or dark halo around the head shows up here; 0 = none."""
    if roi is None or mask is None:
        return 0.0
    x0, y0, x1, y1 = roi
    rim = (mask > 0) & (mask < 0.5)
    if not rim.any():
        return 0.0
    diff = np.abs(np.asarray(after, np.float32)[y0:y1, x0:x1] - np.asarray(before, np.float32)[y0:y1, x0:x1])
    return float(diff[rim].mean())


def _roi_map(t: CropTransform, x0: int, y0: int) -> np.ndarray:
    """2x3 map from ROI pixels to crop pixels (for ``WARP_INVERSE_MAP``)."""
    m = t.matrix
    return np.hstack([m[:, :2], (m[:, :2] @ np.array([x0, y0], dtype=float) + m[:, 2])[:, None]])


def paste_back(
    image: np.ndarray, new_crop: np.ndarray, t: CropTransform, *, old_crop: Optional[np.ndarray] = None,
    feather: float = 0.15, shape: str = "round", blend: str = "feather", match: bool = True,
    subject: Optional[np.ndarray] = None, strength: float = 1.0,
) -> tuple[np.ndarray, Optional[tuple[int, int, int, int]], Optional[np.ndarray]]:
    """Blend ``new_crop`` (float ``size x size x 3`` in [0, 1]) into float ``image`` in place.

    With ``old_crop`` (the crop the model was given) only the difference is pasted (detail mode).
    ``subject`` (``size x size`` in [0, 1], e.g. the pasted mask of :func:`cyclekit.faces.segment.photo_head_masks`) limits
    the pasted region to it: the background around the head is not touched. ``strength`` scales
    the pasted change (below 1 a gentler swap that keeps more of the person, above 1 a stronger one).
    Returns ``(image, roi, roi_mask)``: the ROI ``(x0, y0, x1, y1)`` and the float mask over it;
    pixels where the mask is 0 were not written.
    """
    cv2 = require("cv2", "faces", "pasting faces back")
    if blend not in BLENDS:
        raise ConfigError(f"--blend: {blend!r} is not one of {', '.join(BLENDS)}")
    roi = t.bounds(image.shape, pad=2)
    if roi is None:
        return image, None, None
    x0, y0, x1, y1 = roi
    size = (x1 - x0, y1 - y0)
    m = _roi_map(t, x0, y0)
    flags = cv2.WARP_INVERSE_MAP
    crop_mask = feather_mask(t.size, feather, shape)
    if subject is not None:
        crop_mask = crop_mask * np.asarray(subject, dtype=np.float32)
    mask = cv2.warpAffine(crop_mask, m, size, flags=flags | cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    mask = np.clip(mask, 0.0, 1.0)
    live = mask > 0
    if not live.any():
        return image, None, None
    here = image[y0:y1, x0:x1]
    if old_crop is not None:  # detail mode: paste the model's change, keep the photo's own detail
        delta = np.ascontiguousarray(new_crop - old_crop, dtype=np.float32)
        if match:  # fade the rim's common change out towards the rim; the face keeps all of its own
            outer = 1.0 - feather_mask(t.size, 0.6, shape)[:, :, None]
            delta = delta - rim_median(delta, feather_mask(t.size, feather, shape)) * outer
        layer = here + cv2.warpAffine(delta, m, size, flags=flags | cv2.INTER_CUBIC,
                                      borderMode=cv2.BORDER_REPLICATE).reshape(here.shape)
    else:
        layer = cv2.warpAffine(np.ascontiguousarray(new_crop, dtype=np.float32), m, size,
                               flags=flags | cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE).reshape(here.shape)
    if strength != 1.0:
        layer = here + strength * (layer - here)
    layer = np.clip(layer, 0.0, 1.0)
    if blend == "poisson":
        layer = _poisson(here, layer, mask > 0.05)
    w = mask[:, :, None]
    out = here * (1.0 - w) + layer * w
    here[live] = out[live]  # pixels where the mask is exactly 0 are never written
    return image, roi, mask


def _poisson(dst: np.ndarray, src: np.ndarray, region: np.ndarray) -> np.ndarray:
    """``cv2.seamlessClone`` of ``src`` into ``dst`` over ``region`` (float in/out, 8-bit inside)."""
    cv2 = require("cv2", "faces", "Poisson blending")
    pad = 4  # seamlessClone fails when the mask touches the image border
    d8 = np.round(np.pad(dst, ((pad, pad), (pad, pad), (0, 0)), mode="reflect") * 255).astype(np.uint8)
    s8 = np.round(np.pad(src, ((pad, pad), (pad, pad), (0, 0)), mode="reflect") * 255).astype(np.uint8)
    m8 = np.pad(region, pad).astype(np.uint8) * 255
    ys, xs = np.nonzero(m8)
    if len(xs) == 0:
        return src
    m8[0, :] = m8[-1, :] = m8[:, 0] = m8[:, -1] = 0
    center = (int((xs.min() + xs.max() + 1) // 2), int((ys.min() + ys.max() + 1) // 2))
    try:
        out = cv2.seamlessClone(s8, d8, m8, center, cv2.NORMAL_CLONE)
    except cv2.error as exc:  # degenerate masks: fall back to the plain layer
        log.warning("Poisson blending failed (%s); using feathered blending", str(exc).splitlines()[-1])
        return src
    return out[pad:-pad, pad:-pad].astype(np.float32) / 255.0
