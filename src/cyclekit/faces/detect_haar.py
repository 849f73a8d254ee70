"""OpenCV's Viola-Jones Haar cascades: the zero-download face detector (``--detector haar``).

The cascades ship in opencv-python-headless < 5 (``cv2.data.haarcascades``; 5.x dropped them).
The search around one pass (downscale, padded retry, rotations) is :meth:`FaceDetector.find`.
"""
from __future__ import annotations

import logging
from typing import Optional, Sequence

import numpy as np

from cyclekit.errors import ConfigError, require
from cyclekit.faces.detect import Face, FaceDetector, _iou

log = logging.getLogger(__name__)


class HaarDetector(FaceDetector):
    """Viola-Jones cascades shipped with OpenCV (no download, no hand-written detector).

    One pass runs the ``alt2`` and ``default`` frontal cascades on the gray image; a box is kept
    when the two agree on it with at least ``min_votes`` neighbours together (or one cascade alone
    has that many, twice that for ``default``), which removes textured-background false alarms
    (skimage's brick, grass, gravel, coins, coffee, cat and retina photos give nothing). Rotated
    passes need twice the votes. When a pass finds nothing but a cascade saw a weak box, the
    histogram-equalised image is tried (dark or low-contrast photos). Eye centres come from the
    eye cascades on the upper part of each box; a box without a believable eye pair is refused.
    """

    name = "haar"
    rotate_on_hint_only = False  # a 30 degree tilt leaves no weak box at all

    def __init__(self, max_side: int = 640, min_size: int = 20, scale_factor: float = 1.1, min_votes: int = 12,
                 rotations: Sequence[float] = (-20.0, 20.0), eyes: bool = True, max_passes: int = 4,
                 pad: float = 0.5) -> None:
        super().__init__(max_side=max_side, max_passes=max_passes, pad=pad)
        self._init_kwargs = dict(max_side=max_side, min_size=min_size, scale_factor=scale_factor,
                                 min_votes=min_votes, rotations=tuple(rotations), eyes=eyes, max_passes=max_passes,
                                 pad=pad)
        cv2 = require("cv2", "faces", "face detection")
        root = cv2.data.haarcascades
        self._cv2 = cv2
        self.min_size, self.scale_factor, self.min_votes = min_size, scale_factor, min_votes
        self.rotations, self.use_eyes = tuple(rotations), eyes
        self.frontal = [cv2.CascadeClassifier(root + n) for n in
                        ("haarcascade_frontalface_alt2.xml", "haarcascade_frontalface_default.xml")]
        self.eye_cascades = [cv2.CascadeClassifier(root + n) for n in
                             ("haarcascade_eye.xml", "haarcascade_eye_tree_eyeglasses.xml")]
        if any(c.empty() for c in self.frontal + self.eye_cascades):
            raise ConfigError(
                f"OpenCV's Haar cascades are missing from {root}; install opencv-python-headless<5 "
                "(OpenCV 5 dropped them)"
            )

    # ------------------------------------------------------------------ boxes
    def _run(self, cascade, gray: np.ndarray, min_neighbors: int) -> list[tuple[tuple, int]]:
        boxes, votes = cascade.detectMultiScale2(
            gray, scaleFactor=self.scale_factor, minNeighbors=min_neighbors,
            minSize=(self.min_size, self.min_size),
        )
        return [(tuple(float(v) for v in b), int(n)) for b, n in zip(boxes, np.ravel(votes))]

    def _frontal(self, gray: np.ndarray, min_votes: int) -> tuple[list[tuple[tuple, float]], bool]:
        """Both frontal cascades; boxes they agree on are averaged, a lone box needs more votes."""
        a = self._run(self.frontal[0], gray, 3)
        b = self._run(self.frontal[1], gray, 3)
        out, used = [], set()
        for box_a, va in a:
            match = max(range(len(b)), key=lambda j: _iou(box_a, b[j][0]), default=None)
            if match is not None and match not in used and _iou(box_a, b[match][0]) > 0.4:
                used.add(match)
                box_b, vb = b[match]
                if va + vb >= min_votes:
                    out.append((tuple((np.array(box_a) + np.array(box_b)) / 2.0), float(va + vb)))
            elif va >= min_votes:
                out.append((box_a, float(va)))
        out += [(box_b, float(vb)) for j, (box_b, vb) in enumerate(b) if j not in used and vb >= 2 * min_votes]
        weak = bool(a or b)  # any box at the cascades' lowest vote count
        return _nms(out), weak

    def _pass(self, rgb: np.ndarray, strict: bool) -> tuple[list[Face], bool]:
        cv2 = self._cv2
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        votes = self.min_votes * (2 if strict else 1)
        found, weak = self._frontal(gray, votes)
        if not found and weak:  # dark or low-contrast photos
            found, _ = self._frontal(cv2.equalizeHist(gray), votes)
        faces = []
        for box, score in found:
            face = Face(box=box, score=score, source="haar")
            if self.use_eyes:
                face.eyes = self._eyes(gray, face)
            faces.append(face)
        return faces, weak

    # ------------------------------------------------------------------ eyes
    def _eyes(self, gray: np.ndarray, face: Face) -> Optional[np.ndarray]:
        """Eye centres from the eye cascades on the upper part of the face box."""
        cv2 = self._cv2
        work = 96.0  # the face box is resampled so that it is this many pixels wide
        s = work / face.side
        cx, cy = face.center
        m = np.array([[s, 0.0, work / 2.0 - s * cx], [0.0, s, work / 2.0 - s * cy]])
        patch = cv2.warpAffine(gray, m, (int(work), int(work)), flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)
        top = cv2.equalizeHist(patch[int(0.12 * work):int(0.6 * work)])
        cands = []
        for cascade in self.eye_cascades:
            boxes, votes = cascade.detectMultiScale2(top, scaleFactor=1.05, minNeighbors=3, minSize=(10, 10),
                                                     maxSize=(40, 40))
            for (x, y, ew, eh), v in zip(boxes, np.ravel(votes)):
                cands.append((x + ew / 2.0, y + eh / 2.0 + int(0.12 * work), float(ew), int(v)))
            pair = _best_eye_pair(cands, work)
            if pair is not None:
                inv = cv2.invertAffineTransform(m)
                return np.array([inv @ np.array([px, py, 1.0]) for px, py in pair])
        return None


def _best_eye_pair(cands: list, work: float) -> Optional[list]:
    """The most plausible (left, right) pair: one eye per half, similar size, nearly level."""
    best, best_cost = None, np.inf
    for i, (x1, y1, s1, v1) in enumerate(cands):
        for x2, y2, s2, v2 in cands[i + 1:]:
            (lx, ly, ls), (rx, ry, rs) = sorted([(x1, y1, s1), (x2, y2, s2)])
            dx, dy = rx - lx, ry - ly
            if not (0.25 * work <= dx <= 0.7 * work) or abs(dy) > 0.45 * dx:
                continue
            if lx > 0.55 * work or rx < 0.45 * work or max(ls, rs) > 1.8 * min(ls, rs):
                continue
            # symmetric about the box centre, level, and well supported by the cascade
            cost = abs((lx + rx) / 2.0 - work / 2.0) / work + abs(dy) / dx - 0.01 * (v1 + v2)
            if cost < best_cost:
                best, best_cost = [(lx, ly), (rx, ry)], cost
    return best


def _nms(boxes: list[tuple[tuple, float]], thresh: float = 0.3) -> list[tuple[tuple, float]]:
    keep: list[tuple[tuple, float]] = []
    for box, score in sorted(boxes, key=lambda t: t[1], reverse=True):
        if all(_iou(box, k[0]) <= thresh for k in keep):
            # also drop boxes that lie mostly inside a kept box (a face inside a face)
            if all(_inside(box, k[0]) < 0.7 for k in keep):
                keep.append((box, score))
    return keep


def _inside(a: Sequence[float], b: Sequence[float]) -> float:
    """Fraction of box ``a`` covered by box ``b``."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    return ix * iy / (aw * ah + 1e-9)
