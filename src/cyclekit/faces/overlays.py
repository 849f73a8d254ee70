"""RGBA overlays (eyeliner, beard, hair, glasses) anchored at face keypoints.

Step 5 of the TF2 seed article's pipeline: "overlay some hair, eyeliner, and beards on top of the
new face picture based on the keypoints". An overlay is a user-supplied RGBA image placed with
its centre at an anchor, scaled to ``scale`` eye distances wide, shifted by ``(dx, dy)`` eye
distances along the face's own axes and rotated with the eye line.

Anchors: ``eyes`` (between the eyes), ``left_eye``/``right_eye`` (image left/right), ``nose``,
``mouth``, ``chin``, ``forehead``, ``face`` (box centre). With the MediaPipe backend the eyes,
nose and mouth are measured keypoints; with the Haar backend only the eyes are measured and the
other anchors are placed at average face proportions along the eye line (logged once), and a
face without detected eyes gets its eyes estimated from the box.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from cyclekit.errors import ConfigError, require
from cyclekit.faces.align import CropTransform
from cyclekit.faces.detect import Face

log = logging.getLogger(__name__)

# Average positions below the eye midpoint, in eye distances (frontal faces).
PROPORTIONS = {"forehead": -0.65, "eyes": 0.0, "nose": 0.6, "mouth": 1.05, "chin": 1.5}
ANCHORS = ("eyes", "left_eye", "right_eye", "nose", "mouth", "chin", "forehead", "face")
_MEASURED = {"nose": "nose", "mouth": "mouth"}
_warned: set[str] = set()


@dataclass
class Overlay:
    """An RGBA image (float HxWx4 in [0, 1]) and where it goes on each face."""

    image: np.ndarray
    anchor: str = "eyes"
    scale: float = 2.0  # overlay width in eye distances
    dx: float = 0.0  # shift along the eye line, in eye distances
    dy: float = 0.0  # shift down the face, in eye distances
    name: str = "overlay"

    def __post_init__(self) -> None:
        if self.anchor not in ANCHORS:
            raise ConfigError(f"overlay {self.name}: anchor {self.anchor!r} is not one of {', '.join(ANCHORS)}")
        if self.scale <= 0:
            raise ConfigError(f"overlay {self.name}: scale must be positive, got {self.scale}")
        if self.image.ndim != 3 or self.image.shape[2] != 4:
            raise ConfigError(f"overlay {self.name}: needs an RGBA image (HxWx4)")


def load_overlay(spec: str) -> Overlay:
    """Parse ``FILE[@ANCHOR][,scale=S][,dx=X][,dy=Y]`` and load FILE as RGBA.

    Example: ``beard.png@chin,scale=2.4,dy=-0.2``. Files without alpha get an opaque one.
    """
    from cyclekit.io.images import load_image

    path, _, rest = spec.partition("@")
    parts = [p for p in rest.split(",") if p] if rest else []
    kwargs: dict = {}
    if parts and "=" not in parts[0]:
        kwargs["anchor"] = parts.pop(0)
    for p in parts:
        key, eq, value = p.partition("=")
        if not eq or key not in ("scale", "dx", "dy"):
            raise ConfigError(f"--overlay {spec!r}: expected FILE[@ANCHOR][,scale=S][,dx=X][,dy=Y], got {p!r}")
        try:
            kwargs[key] = float(value)
        except ValueError:
            raise ConfigError(f"--overlay {spec!r}: {key}={value!r} is not a number") from None
    return Overlay(image=load_image(Path(path), 4), name=Path(path).name, **kwargs)


def face_frame(face: Optional[Face], t: CropTransform) -> tuple[np.ndarray, np.ndarray, float, dict]:
    """``(eye_left, eye_right, eye_distance, measured landmarks)`` of a face in image pixels."""
    if face is not None and face.eyes is not None:
        left, right = np.asarray(face.eyes, dtype=float)
    else:
        # Haar box proportions: the eyes sit ~0.14 box above the box centre, ~0.46 box apart.
        # In crop coordinates the face is upright; place them there and map back to the image.
        box = (face.side if face is not None else t.box) * t.scale
        mid = (t.size - 1) / 2.0
        half, up = 0.23 * box, 0.14 * box
        left, right = t.to_image(np.array([[mid - half, mid - up], [mid + half, mid - up]]))
    d = float(np.hypot(*(right - left)))
    marks = dict(face.landmarks) if face is not None else {}
    return left, right, d, marks


def anchor_point(anchor: str, face: Optional[Face], t: CropTransform) -> tuple[np.ndarray, float, float]:
    """``(point, eye distance, angle in degrees)`` for ``anchor`` on this face."""
    left, right, d, marks = face_frame(face, t)
    angle = float(np.degrees(np.arctan2(right[1] - left[1], right[0] - left[0])))
    along = (right - left) / max(d, 1e-6)
    down = np.array([-along[1], along[0]])
    mid = (left + right) / 2.0
    if anchor == "left_eye":
        return left, d, angle
    if anchor == "right_eye":
        return right, d, angle
    if anchor == "face":
        return (face.center if face is not None else np.asarray(t.center)), d, angle
    if anchor in _MEASURED and _MEASURED[anchor] in marks:
        return np.asarray(marks[_MEASURED[anchor]], dtype=float), d, angle
    if anchor != "eyes" and anchor not in _warned:
        _warned.add(anchor)
        log.info("overlay anchor %r placed at average face proportions (the detector gives no such keypoint)",
                 anchor)
    return mid + PROPORTIONS[anchor] * d * down, d, angle


def apply_overlays(image: np.ndarray, face: Optional[Face], t: CropTransform,
                   overlays: Sequence[Overlay]) -> np.ndarray:
    """Alpha-composite every overlay onto float ``image`` in place; returns the HxW touched mask."""
    cv2 = require("cv2", "faces", "overlays")
    touched = np.zeros(image.shape[:2], dtype=bool)
    for ov in overlays:
        point, d, angle = anchor_point(ov.anchor, face, t)
        rgba = ov.image.astype(np.float32)
        premult = np.concatenate([rgba[:, :, :3] * rgba[:, :, 3:], rgba[:, :, 3:]], axis=2)
        width = ov.scale * d  # target width in image pixels
        k0 = width / premult.shape[1]
        if k0 < 1:  # shrink first with area averaging, then only rotate
            nw = max(2, round(premult.shape[1] * k0))
            nh = max(2, round(premult.shape[0] * k0))
            premult = cv2.resize(premult, (nw, nh), interpolation=cv2.INTER_AREA)
        premult = np.pad(premult, ((1, 1), (1, 1), (0, 0)))  # transparent rim: no hard edge
        oh, ow = premult.shape[0] - 2, premult.shape[1] - 2
        k = width / ow
        rad = np.radians(angle)
        along, down = np.array([np.cos(rad), np.sin(rad)]), np.array([-np.sin(rad), np.cos(rad)])
        centre = point + d * (ov.dx * along + ov.dy * down)
        a = k * np.array([[np.cos(rad), -np.sin(rad)], [np.sin(rad), np.cos(rad)]])
        # padded overlay pixel q -> image: a @ (q - 1 - overlay centre) + centre
        shift = centre - a @ np.array([(ow - 1) / 2.0 + 1.0, (oh - 1) / 2.0 + 1.0])
        corners = np.array([[0, 0], [ow + 1, 0], [ow + 1, oh + 1], [0, oh + 1]], dtype=float) @ a.T + shift
        x0 = max(0, int(np.floor(corners[:, 0].min())) - 1)
        y0 = max(0, int(np.floor(corners[:, 1].min())) - 1)
        x1 = min(image.shape[1], int(np.ceil(corners[:, 0].max())) + 2)
        y1 = min(image.shape[0], int(np.ceil(corners[:, 1].max())) + 2)
        if x1 <= x0 or y1 <= y0:
            continue
        m = np.hstack([a, (shift - np.array([x0, y0]))[:, None]])
        warped = cv2.warpAffine(np.ascontiguousarray(premult), m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        alpha = np.clip(warped[:, :, 3:], 0.0, 1.0)
        live = alpha[:, :, 0] > 0
        region = image[y0:y1, x0:x1]
        out = region * (1.0 - alpha) + np.clip(warped[:, :, :3], 0.0, 1.0)
        region[live] = np.clip(out[live], 0.0, 1.0)
        touched[y0:y1, x0:x1] |= live
    return touched


def load_overlays(specs: Sequence[Union[str, Overlay]]) -> list[Overlay]:
    return [s if isinstance(s, Overlay) else load_overlay(s) for s in specs]
