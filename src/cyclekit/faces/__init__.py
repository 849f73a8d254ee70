"""Face swap on top of the CycleGAN core: detect, align, crop, translate, paste back, overlay.

``from cyclekit.faces import swap_image`` is the Python API (used by the web demo); the
submodules import OpenCV lazily so importing this package stays light (the trainer reads
``faces.json`` through :mod:`cyclekit.faces.params` without needing OpenCV).
"""
from __future__ import annotations

from cyclekit.faces.params import DEFAULT_MARGIN, FACES_JSON, FaceParams, read_faces_json, write_faces_json

_LAZY = {
    "swap_image": "cyclekit.faces.pipeline", "swap_path": "cyclekit.faces.batch",
    "face_params_for": "cyclekit.faces.pipeline", "SwapInfo": "cyclekit.faces.pipeline",
    "swap_video": "cyclekit.faces.video", "probe_video": "cyclekit.faces.video",
    "Face": "cyclekit.faces.detect", "FaceDetector": "cyclekit.faces.detect",
    "HaarDetector": "cyclekit.faces.detect_haar", "MediaPipeDetector": "cyclekit.faces.detect_mediapipe",
    "DlibDetector": "cyclekit.faces.detect_dlib", "make_detector": "cyclekit.faces.detectors", "CropTransform": "cyclekit.faces.align",
    "crop_transform": "cyclekit.faces.align", "face_crop": "cyclekit.faces.align",
    "Overlay": "cyclekit.faces.overlays", "load_overlay": "cyclekit.faces.overlays",
    "prepare_celeba": "cyclekit.faces.prepare", "prepare_folders": "cyclekit.faces.prepare",
}

__all__ = ["DEFAULT_MARGIN", "FACES_JSON", "FaceParams", "read_faces_json", "write_faces_json", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cyclekit.faces' has no attribute {name!r}")
