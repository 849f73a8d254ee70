"""Face detection: boxes and keypoints from maintained libraries whose models ship in the wheel.

Step 1 of the TF2 seed article's production pipeline: "run face detection to find a bounding box
and keypoints for the most dominant face in the picture". Two backends behind one interface:

* :class:`HaarDetector` (default, ``pip install 'cyclekit[faces]'``): OpenCV's Viola-Jones Haar
  cascades from ``cv2.data.haarcascades`` (opencv-python-headless < 5; 5.x dropped them). The
  frontal ``alt2`` and ``default`` cascades vote together, then the image is searched again at
  +-20 degrees of in-plane rotation and finally with the profile cascade when nothing was found.
  Eye centres come from the eye cascades run on the upper half of each face box.
* :class:`MediaPipeDetector` (optional ``[mediapipe]`` extra): BlazeFace boxes with six keypoints
  (eyes, nose tip, mouth centre, ear tragions). Only mediapipe <= 0.10.21 ships the model inside
  the wheel (``mediapipe.solutions.face_detection``); 0.10.30 and later ship no model files and
  the Tasks API needs a ``.tflite`` file the user gives as ``model_path`` (never downloaded here).

Boxes are ``(x, y, w, h)`` in pixels of the image given; keypoints are ``(x, y)`` pixels.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from cyclekit.errors import ConfigError, require

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


class FaceDetector:
    """Interface: ``detect(image)`` -> faces sorted by box area, largest (the dominant face) first."""

    name = "base"

    def detect(self, image: np.ndarray) -> list[Face]:  # pragma: no cover - interface
        raise NotImplementedError


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


def _rotation(angle: float, center: tuple[float, float]) -> np.ndarray:
    import cv2

    return cv2.getRotationMatrix2D(center, angle, 1.0)


class HaarDetector(FaceDetector):
    """Viola-Jones cascades shipped with OpenCV (no download, no hand-written detector).

    Detection runs on a copy scaled to at most ``max_side`` pixels (histogram-equalised gray);
    boxes are mapped back to full resolution. A box is kept when the two frontal cascades agree
    on it with at least ``min_votes`` neighbours together (or one cascade alone has that many, or
    twice that for ``default``), which removes the textured-background false alarms: on
    skimage's brick, grass, gravel, coins, coffee, cat and retina photos nothing is found, while
    98 of the 100 LFW faces in ``skimage.data.lfw_subset()`` (upscaled 4x) are. The fallbacks
    (equalised histogram, +-20 degree rotations, profile cascade) run only when nothing was
    found and need twice the votes; they make a photo without a face cost a few seconds.
    """

    name = "haar"

    def __init__(self, max_side: int = 800, min_size: int = 20, scale_factor: float = 1.1,
                 min_votes: int = 12, rotations: Sequence[float] = (-20.0, 20.0),
                 profile: bool = True, eyes: bool = True) -> None:
        cv2 = require("cv2", "faces", "face detection")
        root = cv2.data.haarcascades
        self._cv2 = cv2
        self.max_side, self.min_size, self.scale_factor = max_side, min_size, scale_factor
        self.min_votes, self.rotations, self.profile, self.use_eyes = min_votes, tuple(rotations), profile, eyes
        self.frontal = [cv2.CascadeClassifier(root + n) for n in
                        ("haarcascade_frontalface_alt2.xml", "haarcascade_frontalface_default.xml")]
        self.profile_cascade = cv2.CascadeClassifier(root + "haarcascade_profileface.xml")
        self.eye_cascades = [cv2.CascadeClassifier(root + n) for n in
                             ("haarcascade_eye.xml", "haarcascade_eye_tree_eyeglasses.xml")]
        if any(c.empty() for c in self.frontal + self.eye_cascades + [self.profile_cascade]):
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

    def _frontal(self, gray: np.ndarray, min_votes: int) -> list[tuple[tuple, float]]:
        """Both frontal cascades; boxes they agree on are averaged, a lone box needs twice the votes."""
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
        return _nms(out)

    def _profile(self, gray: np.ndarray) -> list[tuple[tuple, float]]:
        w = gray.shape[1]
        out = [(box, float(v)) for box, v in self._run(self.profile_cascade, gray, 2 * self.min_votes)]
        for (x, y, bw, bh), v in self._run(self.profile_cascade, np.ascontiguousarray(gray[:, ::-1]), 2 * self.min_votes):
            out.append(((w - x - bw, y, bw, bh), float(v)))
        return _nms(out)

    def detect(self, image: np.ndarray) -> list[Face]:
        cv2 = self._cv2
        full = cv2.cvtColor(as_uint8_rgb(image), cv2.COLOR_RGB2GRAY)
        h, w = full.shape
        scale = min(1.0, self.max_side / max(h, w))
        small = full if scale == 1.0 else cv2.resize(full, (max(1, round(w * scale)), max(1, round(h * scale))),
                                                    interpolation=cv2.INTER_AREA)
        found = [(box, score, 0.0, "haar") for box, score in self._frontal(small, self.min_votes)]
        if not found:  # dark or low-contrast photos
            small = cv2.equalizeHist(small)
            found = [(box, score, 0.0, "haar") for box, score in self._frontal(small, self.min_votes)]
        if not found:  # tilted heads: search the image rotated about its centre
            sh, sw = small.shape
            for angle in self.rotations:
                rot = _rotation(angle, (sw / 2.0, sh / 2.0))
                rotated = cv2.warpAffine(small, rot, (sw, sh), flags=cv2.INTER_LINEAR,
                                         borderMode=cv2.BORDER_REFLECT101)
                inv = cv2.invertAffineTransform(rot)
                for (x, y, bw, bh), score in self._frontal(rotated, 2 * self.min_votes):
                    cx, cy = inv @ np.array([x + bw / 2.0, y + bh / 2.0, 1.0])
                    found.append(((cx - bw / 2.0, cy - bh / 2.0, bw, bh), score, angle, "haar-rotated"))
        if not found and self.profile:
            found = [(box, score, 0.0, "haar-profile") for box, score in self._profile(small)]
        faces = []
        for (x, y, bw, bh), score, angle, source in found:
            box = (x / scale, y / scale, bw / scale, bh / scale)
            face = Face(box=box, score=score, source=source)
            if self.use_eyes and source != "haar-profile":
                face.eyes = self._eyes(full, face, angle)
            faces.append(face)
        faces.sort(key=lambda f: f.area, reverse=True)
        return faces

    # ------------------------------------------------------------------ eyes
    def _eyes(self, gray: np.ndarray, face: Face, angle: float = 0.0) -> Optional[np.ndarray]:
        """Eye centres from the eye cascades on the upper part of the (de-rotated) face box."""
        cv2 = self._cv2
        side = face.side
        work = 96.0  # the face box is resampled so that it is this many pixels wide
        s = work / side
        cx, cy = face.center
        # image -> face patch: rotate by `angle` about the face centre, scale to `work` pixels.
        m = cv2.getRotationMatrix2D((float(cx), float(cy)), angle, s)
        m[:, 2] += np.array([work / 2.0, work / 2.0]) - np.array([cx, cy])
        patch = cv2.warpAffine(gray, m, (int(work), int(work)), flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)
        top = patch[int(0.12 * work):int(0.6 * work)]
        top = cv2.equalizeHist(top)
        cands = []
        for cascade in self.eye_cascades:
            for (x, y, ew, eh), v in self._run_eyes(cascade, top):
                cands.append((x + ew / 2.0, y + eh / 2.0 + int(0.12 * work), ew, v))
            pair = _best_eye_pair(cands, work)
            if pair is not None:
                inv = cv2.invertAffineTransform(m)
                pts = np.array([inv @ np.array([px, py, 1.0]) for px, py in pair])
                return pts
        return None

    def _run_eyes(self, cascade, top: np.ndarray):
        boxes, votes = cascade.detectMultiScale2(top, scaleFactor=1.05, minNeighbors=3, minSize=(10, 10),
                                                 maxSize=(40, 40))
        return [(tuple(float(v) for v in b), int(n)) for b, n in zip(boxes, np.ravel(votes))]


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


HAAR_EQUIVALENT = (0.92, -0.06)  # (size factor, centre shift / box height) BlazeFace -> Haar box


class MediaPipeDetector(FaceDetector):
    """BlazeFace through MediaPipe: a box and six keypoints per face.

    With ``model_path`` (a BlazeFace ``.tflite`` file from the MediaPipe model zoo) the Tasks API
    is used; without it the legacy ``mediapipe.solutions.face_detection`` whose model ships in
    mediapipe <= 0.10.21 wheels. Nothing is downloaded.
    """

    name = "mediapipe"
    KEYPOINTS = ("right_eye", "left_eye", "nose", "mouth", "right_ear", "left_ear")  # subject's sides

    def __init__(self, min_confidence: float = 0.5, full_range: bool = True, model_path: Optional[str] = None) -> None:
        self.mp = require("mediapipe", "mediapipe", "the MediaPipe face detector")
        self.model_path = model_path
        if model_path:
            from mediapipe.tasks.python import BaseOptions, vision

            options = vision.FaceDetectorOptions(base_options=BaseOptions(model_asset_path=str(model_path)),
                                                 min_detection_confidence=min_confidence)
            self._task = vision.FaceDetector.create_from_options(options)
            self._legacy = None
        else:
            solutions = getattr(self.mp, "solutions", None)
            if solutions is None or not hasattr(solutions, "face_detection"):
                raise ConfigError(
                    f"mediapipe {getattr(self.mp, '__version__', '?')} ships no face model (0.10.30+ dropped "
                    "mediapipe.solutions); give a BlazeFace .tflite file with --mediapipe-model, or install "
                    "'mediapipe<=0.10.21', or use the default --detector haar"
                )
            self._legacy = solutions.face_detection.FaceDetection(
                model_selection=1 if full_range else 0, min_detection_confidence=min_confidence)
            self._task = None

    def detect(self, image: np.ndarray) -> list[Face]:
        rgb = as_uint8_rgb(image)
        h, w = rgb.shape[:2]
        faces = []
        if self._legacy is not None:
            result = self._legacy.process(rgb)
            for det in result.detections or []:
                bb = det.location_data.relative_bounding_box
                box = (bb.xmin * w, bb.ymin * h, bb.width * w, bb.height * h)
                kps = [(k.x * w, k.y * h) for k in det.location_data.relative_keypoints]
                faces.append(self._face(box, float(det.score[0]), kps))
        else:
            result = self._task.detect(self.mp.Image(image_format=self.mp.ImageFormat.SRGB, data=rgb))
            for det in result.detections:
                bb = det.bounding_box
                box = (float(bb.origin_x), float(bb.origin_y), float(bb.width), float(bb.height))
                kps = [(k.x * w, k.y * h) for k in det.keypoints]
                faces.append(self._face(box, float(det.categories[0].score), kps))
        faces.sort(key=lambda f: f.area, reverse=True)
        return faces

    def _face(self, box, score, kps) -> Face:
        # BlazeFace boxes are ~8% larger and ~6% lower than the Haar boxes the margins refer to
        # (measured on skimage's astronaut, its flip and a 10 degree tilt with mediapipe 0.10.14);
        # map them to the Haar convention so one margin gives the same crop with either backend.
        x, y, w, h = box
        k, dy = HAAR_EQUIVALENT
        cx, cy = x + w / 2.0, y + h / 2.0 + dy * h
        box = (cx - k * w / 2.0, cy - k * h / 2.0, k * w, k * h)
        marks = {name: np.array(p, dtype=float) for name, p in zip(self.KEYPOINTS, kps)}
        eyes = None
        if "right_eye" in marks and "left_eye" in marks:
            eyes = np.array(sorted([marks["right_eye"], marks["left_eye"]], key=lambda p: p[0]))
        return Face(box=box, score=score, eyes=eyes, landmarks=marks, source="mediapipe")


DETECTORS = ("haar", "mediapipe")


def make_detector(name: str = "haar", **kwargs) -> FaceDetector:
    """Build a detector by backend name (``haar`` or ``mediapipe``)."""
    if name == "haar":
        return HaarDetector(**kwargs)
    if name == "mediapipe":
        return MediaPipeDetector(**kwargs)
    raise ConfigError(f"--detector: {name!r} is not one of {', '.join(DETECTORS)}")
