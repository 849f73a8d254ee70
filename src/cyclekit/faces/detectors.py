"""Choosing a face detector by name (``--detector``): the backends live in :mod:`.detect_dlib`,
:mod:`.detect_haar` and :mod:`.detect_mediapipe`, the shared search in :mod:`.detect`."""
from __future__ import annotations

import logging

from cyclekit.config import CHOICES
from cyclekit.errors import ConfigError, MissingDependencyError
from cyclekit.faces.detect import FaceDetector
from cyclekit.faces.detect_dlib import DlibDetector
from cyclekit.faces.detect_haar import HaarDetector
from cyclekit.faces.detect_mediapipe import MediaPipeDetector

log = logging.getLogger(__name__)

DETECTORS = CHOICES["detector"]
_fallback_noted = False


def make_detector(name: str = "auto", **kwargs) -> FaceDetector:
    """Build a detector by backend name: ``auto`` (dlib when installed, else Haar), ``dlib``, ``haar``, ``mediapipe``."""
    global _fallback_noted
    if name == "auto":
        try:
            return DlibDetector(**kwargs)
        except MissingDependencyError as exc:
            if not _fallback_noted:
                _fallback_noted = True
                log.info("face detector: OpenCV Haar cascades (%s)", str(exc).split(";")[0])
            name = "haar"
    backends = {"haar": HaarDetector, "dlib": DlibDetector, "mediapipe": MediaPipeDetector}
    if name in backends:
        return backends[name](**kwargs)
    raise ConfigError(f"--detector: {name!r} is not one of {', '.join(DETECTORS)}")
