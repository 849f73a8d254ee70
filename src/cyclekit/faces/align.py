"""Face crops as similarity transforms: eye-line rotation, box widening, crop and its inverse.

Steps 2-3 of the TF2 seed article's pipeline ("extend the bounding box a little bit bigger to
match the training dataset distribution", "crop the picture with this extended bounding box").
A crop is the similarity transform ``image -> crop``::

    centre  c = centre of the detector box
    side    L = box_side * (1 + 2 * margin)          (margin from FaceParams / ModelConfig)
    angle   t = angle of the eye line (0 when the eyes are not found or align is off)
    scale   s = size / L
    crop(p) = s * R(-t) (p - c) + ((size - 1) / 2, (size - 1) / 2)

with pixel centres at integer coordinates, so the square ``[c - L/2, c + L/2]`` maps exactly onto
the ``size x size`` crop. ``cyclekit data faces`` and ``cyclekit swap`` both go through
:func:`crop_transform` and :func:`warp_crop`, so training and inference crops are made alike.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from cyclekit.errors import require
from cyclekit.faces.detect import Face
from cyclekit.faces.params import FaceParams

MAX_TILT = 45.0  # eye lines steeper than this are not trusted


@dataclass
class CropTransform:
    """A face crop: ``matrix`` maps image pixels to crop pixels (2x3, OpenCV convention)."""

    center: tuple[float, float]
    side: float
    angle: float  # degrees, the eye-line angle the crop removes
    size: int
    box: float = 0.0  # the detector box side it was made from (pixels)
    track: int = -1  # in a video, the face track it follows (keys the masks' memory), else -1

    @property
    def scale(self) -> float:
        """Crop pixels per image pixel."""
        return self.size / self.side

    @property
    def matrix(self) -> np.ndarray:
        s, t = self.scale, np.radians(self.angle)
        cos, sin = np.cos(t) * s, np.sin(t) * s
        a = np.array([[cos, sin], [-sin, cos]])
        mid = (self.size - 1) / 2.0
        shift = np.array([mid, mid]) - a @ np.asarray(self.center, dtype=float)
        return np.hstack([a, shift[:, None]])

    @property
    def inverse(self) -> np.ndarray:
        """Crop pixels -> image pixels (2x3)."""
        m = self.matrix
        a_inv = np.linalg.inv(m[:, :2])
        return np.hstack([a_inv, (-a_inv @ m[:, 2])[:, None]])

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        p = np.asarray(points, dtype=float).reshape(-1, 2)
        m = self.matrix
        return p @ m[:, :2].T + m[:, 2]

    def to_image(self, points: np.ndarray) -> np.ndarray:
        p = np.asarray(points, dtype=float).reshape(-1, 2)
        m = self.inverse
        return p @ m[:, :2].T + m[:, 2]

    def corners(self) -> np.ndarray:
        """The crop square's outer corners in image pixels (4x2)."""
        lo, hi = -0.5, self.size - 0.5
        return self.to_image(np.array([[lo, lo], [hi, lo], [hi, hi], [lo, hi]]))

    def bounds(self, shape: tuple[int, ...], pad: int = 2) -> Optional[tuple[int, int, int, int]]:
        """Integer ``(x0, y0, x1, y1)`` of the image pixels the crop covers (padded, clipped)."""
        c = self.corners()
        x0 = max(0, int(np.floor(c[:, 0].min())) - pad)
        y0 = max(0, int(np.floor(c[:, 1].min())) - pad)
        x1 = min(shape[1], int(np.ceil(c[:, 0].max())) + pad + 1)
        y1 = min(shape[0], int(np.ceil(c[:, 1].max())) + pad + 1)
        if x1 <= x0 or y1 <= y0:
            return None
        return x0, y0, x1, y1

    def to_dict(self) -> dict:
        return {"center": [float(v) for v in self.center], "side": float(self.side),
                "angle": float(self.angle), "size": int(self.size), "box": float(self.box)}


def crop_transform(face: Face, params: FaceParams) -> CropTransform:
    """The crop of ``face`` under ``params`` (the one geometry for data preparation and swap)."""
    angle = 0.0
    if params.align:
        a = face.eye_angle
        if a is not None and abs(a) <= MAX_TILT:
            angle = a
    cx, cy = face.center
    return CropTransform(center=(float(cx), float(cy)), side=face.side * (1.0 + 2.0 * params.margin),
                         angle=angle, size=params.size, box=face.side)


def warp_crop(image: np.ndarray, t: CropTransform) -> np.ndarray:
    """Resample the crop of ``t`` from ``image`` (HxWxC, uint8 or float) -> ``size x size x C``.

    When the crop shrinks the face (the usual case), the region is first reduced with area
    averaging to the crop's scale so the final rotation/resampling does not alias. Pixels
    outside the image repeat the image's own border (a portrait's background or shoulders run
    on), never a mirror image of the face; dataset crops near an edge are made the same way.
    """
    cv2 = require("cv2", "faces", "face cropping")
    img = np.asarray(image)
    squeeze = img.ndim == 2
    if squeeze:
        img = img[:, :, None]
    m = t.matrix
    if t.scale < 0.9:
        roi = t.bounds(img.shape, pad=int(np.ceil(4 / t.scale)))
        if roi is not None:
            x0, y0, x1, y1 = roi
            w, h = x1 - x0, y1 - y0
            nw, nh = max(2, round(w * t.scale)), max(2, round(h * t.scale))
            small = cv2.resize(img[y0:y1, x0:x1], (nw, nh), interpolation=cv2.INTER_AREA)
            kx, ky = nw / w, nh / h
            # small pixel (u, v) <-> image pixel ((u + 0.5) / kx - 0.5 + x0, (v + 0.5) / ky - 0.5 + y0)
            to_img = np.array([[1 / kx, 0, 0.5 / kx - 0.5 + x0], [0, 1 / ky, 0.5 / ky - 0.5 + y0]])
            m = m[:, :2] @ to_img[:, :2], m[:, :2] @ to_img[:, 2] + m[:, 2]
            m = np.hstack([m[0], m[1][:, None]])
            img = small if small.ndim == 3 else small[:, :, None]
    out = cv2.warpAffine(img, m, (t.size, t.size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    if out.ndim == 2:
        out = out[:, :, None]
    if out.dtype != np.uint8:
        out = np.clip(out, 0.0, 1.0)
    return out[:, :, 0] if squeeze else out


def face_crop(image: np.ndarray, face: Face, params: FaceParams) -> tuple[np.ndarray, CropTransform]:
    """Crop ``face`` from ``image`` exactly as ``cyclekit data faces`` and ``swap`` do."""
    t = crop_transform(face, params)
    return warp_crop(image, t), t
