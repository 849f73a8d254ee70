"""BlazeFace through MediaPipe (optional ``[mediapipe]`` extra, ``--detector mediapipe``).

Only mediapipe <= 0.10.21 ships the model inside the wheel (``mediapipe.solutions.face_detection``);
0.10.30 and later ship no model files and the Tasks API needs a ``.tflite`` file the user gives as
``model_path`` (never downloaded here).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from cyclekit.errors import ConfigError, require
from cyclekit.faces.detect import Face, FaceDetector

HAAR_EQUIVALENT = (0.92, -0.06)  # (size factor, centre shift / box height) BlazeFace -> Haar box


class MediaPipeDetector(FaceDetector):
    """BlazeFace boxes with six keypoints (eyes, nose tip, mouth centre, ear tragions)."""

    name = "mediapipe"
    KEYPOINTS = ("right_eye", "left_eye", "nose", "mouth", "right_ear", "left_ear")  # subject's sides

    def __init__(self, min_confidence: float = 0.5, full_range: bool = True, model_path: Optional[str] = None,
                 max_side: int = 640, max_passes: int = 4, pad: float = 0.5) -> None:
        super().__init__(max_side=max_side, max_passes=max_passes, pad=pad)
        self._init_kwargs = dict(min_confidence=min_confidence, full_range=full_range, model_path=model_path,
                                 max_side=max_side, max_passes=max_passes, pad=pad)
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
                    "'mediapipe<=0.10.21', or use --detector dlib or haar"
                )
            self._legacy = solutions.face_detection.FaceDetection(
                model_selection=1 if full_range else 0, min_detection_confidence=min_confidence)
            self._task = None

    def _pass(self, rgb: np.ndarray, strict: bool) -> tuple[list[Face], bool]:
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
        return faces, False

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
