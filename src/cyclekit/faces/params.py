"""Face-crop parameters shared by ``cyclekit data faces`` and ``cyclekit swap``.

The TF2 seed article's pipeline widens the detected box "a little bit bigger to match the training
dataset distribution": a swap crop is only in-distribution when it is made exactly like the
training crops. So the geometry lives in one place (:class:`FaceParams`), is written next to the
prepared data as ``faces.json``, and its margin travels with the trained model as
``ModelConfig.face_margin`` (the trainer copies it in, see :func:`apply_dataset_face_params`).

This module imports nothing heavy (no cv2, no torch) so the trainer can use it freely.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from cyclekit.config import DIRECTIONS
from cyclekit.errors import ConfigError, DataError

log = logging.getLogger(__name__)

FACES_JSON = "faces.json"
# Each side of the detected box is pushed out by margin x box size: the crop side is
# box * (1 + 2 * margin). 0.4 keeps the hair and chin, which carry much of the gender signal.
DEFAULT_MARGIN = 0.4
# --max-turn: faces (in a video, face tracks) turned further to the side than this (faces.detect.turn, in eye
# distances, from dlib's points) are left unchanged. The London photos the built-in model learnt
# from reach 0.11; at 0.37 and 0.51 (a head turned well to the side, a near profile; BENCHMARKS.md,
# session 26) it painted grey blotches and stripes into the face.
MAX_TURN = 0.25


def check_max_turn(value: float) -> float:
    """``value`` if it is a usable ``--max-turn`` (0 = no limit, or more), else a ConfigError."""
    if not value >= 0:  # also refuses NaN
        raise ConfigError(f"--max-turn must be 0 (no limit) or more, got {value}")
    return value


@dataclass
class FaceParams:
    """How a face crop is made from a detection. Same values for data preparation and swap.

    margin: each side of the detector's box is widened by ``margin * box_side``
        (crop side = ``box_side * (1 + 2 * margin)``), centred on the box centre.
    align: rotate the crop so that the eye line is horizontal when both eyes are found.
    size: the crop is resampled to ``size x size`` pixels (the model's image size).
    detector: the backend whose boxes the margin refers to (boxes differ between backends).
    min_face: faces whose box is smaller than this (pixels) are reported as too small and skipped.
    """

    margin: float = DEFAULT_MARGIN
    align: bool = True
    size: int = 128
    detector: str = "auto"  # dlib when installed (the faces extra), else OpenCV's Haar cascades
    min_face: int = 40

    def validate(self) -> "FaceParams":
        if not 0 < self.margin <= 3:
            raise ConfigError(
                f"--margin must be in (0, 3] (fraction of the face box added on each side), got {self.margin}"
            )
        if self.size < 8:
            raise ConfigError(f"--size must be at least 8 pixels, got {self.size}")
        if self.min_face < 1:
            raise ConfigError(f"--min-face must be at least 1 pixel, got {self.min_face}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = FACES_JSON) -> "FaceParams":
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: v for k, v in d.items() if k in names}).validate()
        except (TypeError, ConfigError) as exc:
            raise DataError(f"{source}: invalid face parameters ({exc})") from None


def write_faces_json(folder: Union[str, Path], params: FaceParams, extra: Optional[dict] = None) -> Path:
    """Write ``folder/faces.json`` atomically: the crop geometry plus provenance (``extra``)."""
    from cyclekit.io.files import atomic_write_text

    doc = {**params.to_dict(), **(extra or {})}
    path = Path(folder) / FACES_JSON
    atomic_write_text(path, json.dumps(doc, indent=2) + "\n")
    return path


def _faces_doc(folder: Union[str, Path]) -> Optional[dict]:
    path = Path(folder) / FACES_JSON
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}; re-run `cyclekit data faces` or delete it") from None
    if not isinstance(doc, dict):
        raise DataError(f"{path}: expected a JSON object")
    return doc


def read_faces_json(folder: Union[str, Path]) -> Optional[FaceParams]:
    """The :class:`FaceParams` stored in ``folder/faces.json``, or None when there is none."""
    doc = _faces_doc(folder)
    return None if doc is None else FaceParams.from_dict(doc, source=str(Path(folder) / FACES_JSON))


def is_rgb(value: Any) -> bool:
    """``[r, g, b]`` with numbers in 0-255 (booleans are not numbers here)."""
    return (isinstance(value, list) and len(value) == 3
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 255 for v in value))


def is_tone_table(value: Any) -> bool:
    """``{"AtoB": [r, g, b], "BtoA": [r, g, b]}`` (either key may be missing)."""
    return isinstance(value, dict) and set(value) <= set(DIRECTIONS) and all(is_rgb(v) for v in value.values())


def dataset_release_info(folder: Union[str, Path]) -> dict[str, Any]:
    """What a model trained on ``folder``'s face crops tells ``swap`` through its release: the
    backdrop the crops were put on (``face_backdrop``) and their skin colour per direction
    (``face_tone``, :mod:`cyclekit.faces.tone`), both used by the swap, and the detector that made
    them (``face_detector``, recorded only), as far as ``folder/faces.json`` records them; {}
    without one. A malformed value is refused here, before training, naming the file."""
    doc = _faces_doc(folder) if folder and Path(folder).is_dir() else None
    if doc is None:
        return {}
    path = Path(folder) / FACES_JSON
    info = {"face_backdrop": doc.get("backdrop"), "face_tone": doc.get("tone") or None,
            "face_detector": doc.get("detector")}
    checks = {"face_backdrop": ("backdrop", is_rgb, "[r, g, b] in 0-255"),
              "face_tone": ("tone", is_tone_table, '{"AtoB": [r, g, b], "BtoA": [r, g, b]} in 0-255'),
              "face_detector": ("detector", lambda v: isinstance(v, str), "a detector name")}
    for key, (field, ok, want) in checks.items():
        if info[key] is not None and not ok(info[key]):
            raise DataError(f"{path}: {field} {info[key]!r} is not {want}; fix or remove it, or re-run "
                            "`cyclekit data faces`")
    return {k: v for k, v in info.items() if v is not None}


def apply_dataset_face_params(cfg) -> Optional[FaceParams]:
    """Copy the crop margin of a ``data faces`` dataset into ``cfg.model.face_margin``.

    Called by ``cyclekit train`` (:func:`cyclekit.commands.train.build_trainer`): when ``cfg.data.dataroot`` holds ``faces.json``, the released model
    records the margin its training crops were made with, and ``swap`` reuses it. An explicit,
    different non-zero ``face_margin`` wins, with a warning.
    """
    root = getattr(cfg.data, "dataroot", "")
    if not root or not Path(root).is_dir():
        return None
    params = read_faces_json(root)
    if params is None:
        return None
    current = cfg.model.face_margin
    if current and abs(current - params.margin) > 1e-9:
        log.warning(
            "face_margin %.3f differs from the %.3f the data in %s was cropped with; keeping %.3f",
            current, params.margin, root, current,
        )
        return params
    cfg.model.face_margin = params.margin
    if cfg.model.image_size != params.size:
        log.warning("model image_size %d differs from the face crop size %d in %s/%s",
                    cfg.model.image_size, params.size, root, FACES_JSON)
    log.info("face crops from %s: margin %.3f recorded in the model config", root, params.margin)
    return params
