"""How far a face is from what a swap model knows: the cycle error.

A CycleGAN model comes with the generator back. On a face like its training faces the way back
returns the face the model was shown to within a few grey levels; on a face unlike them (other
cameras, other light, skin darker than most of its training people) the model paints blotches it
cannot account for, and the way back misses. :func:`cycle_error` is that miss in the worst patch
of the face (a square a quarter of the face wide: one eye, one cheek): a blotch round one eye
counts in full, where a mean over the whole face (the measure until session 34) diluted it. The
built-in model: 6-18 grey levels on the 32 held-out London photos, 20-106 on 19 faces from other
cameras (BENCHMARKS.md, session 34). A release records the largest value it expects
(``cycle_limit``, per direction, from its training people: :func:`cycle_limit_from`, with
``cycle_measure`` naming the measure), and ``cyclekit swap`` and the web page warn when a face
goes past it (:func:`unlike_training_faces`).
"""
from __future__ import annotations

import logging
import weakref
from typing import Optional, Sequence

import numpy as np

from cyclekit.errors import CheckpointError

log = logging.getLogger(__name__)
_TOLD: "weakref.WeakSet" = weakref.WeakSet()  # models already told their limit was measured another way

# The limit is this many times the 95th percentile of the training people's cycle errors. For the
# built-in model (limits 24.5 / 27.2, session 34) the held-out London people reach at most 0.78 /
# 0.77 times that percentile, the faces from other cameras that came out cleanest 0.97-1.16 (obama,
# the black-and-white `test`, obama3) and the blotched ones 1.37 and more (a blotch round Zach
# Woods' eye: 1.58); at 1.2 the blotched ones are warned and the cleanest are not.
LIMIT_FACTOR = 1.2
# The patch's side as a fraction of the detector box: 17 px in a 128 px crop with margin 0.4.
PATCH = 0.24
# What a release's cycle_limit was measured with; a limit measured otherwise is not compared.
MEASURE = "worst-patch"


def face_region(size: int, margin: float) -> np.ndarray:
    """Boolean ``size x size`` ellipse over brows, eyes, cheeks, nose, mouth and chin of an
    eye-aligned face crop whose detector box side is ``size / (1 + 2 * margin)``."""
    box, c = size / (1.0 + 2.0 * margin), (size - 1) / 2.0
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    return ((xx - c) / (0.42 * box)) ** 2 + ((yy - c) / (0.5 * box)) ** 2 <= 1.0


def patch_means(values: np.ndarray, side: int) -> np.ndarray:
    """Mean of ``values`` (H x W) over every ``side x side`` square that fits, indexed by the
    square's top-left corner: shape ``(H - side + 1, W - side + 1)``."""
    total = np.pad(np.asarray(values, np.float64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = total[side:, side:] - total[:-side, side:] - total[side:, :-side] + total[:-side, :-side]
    return sums / float(side * side)


def cycle_error(shown: np.ndarray, back: np.ndarray, margin: float) -> Optional[float]:
    """The largest mean absolute difference, in grey levels (0-255, mean of the channels), between
    the crop a model was shown and what its generator back made of the model's output, over a
    square patch (:data:`PATCH` of the face box wide) centred in :func:`face_region`. A patch at the
    region's edge takes in the hairline, ears and jaw line, where blotches are pasted too; the
    backdrop far from the face does not count. None when the model's output is not finite."""
    size = shown.shape[0]
    if shown.shape[:2] != (size, size) or back.shape != shown.shape:
        raise ValueError(f"cycle_error needs two square crops of one shape, not {shown.shape} and {back.shape}")
    side = max(3, int(round(PATCH * size / (1.0 + 2.0 * margin))) | 1)
    diff = np.abs(np.asarray(back, np.float32) - np.asarray(shown, np.float32)).mean(axis=2)
    if not np.isfinite(diff).all():
        return None
    half = side // 2
    centred = face_region(size, margin)[half:size - half, half:size - half]
    centred[centred.shape[0] // 2, centred.shape[1] // 2] = True  # a tiny crop with a wide margin: its middle
    return float(patch_means(diff, side)[centred].max() * 255.0)


def cycle_limit_from(errors: Sequence[float]) -> Optional[float]:
    """The largest cycle error a model should meet on faces like its training faces: :data:`LIMIT_FACTOR`
    times the 95th percentile of ``errors`` (its training people's), rounded to 0.1; ``None`` without any."""
    values = [float(e) for e in errors if e is not None and np.isfinite(e)]
    if not values:
        return None
    return round(LIMIT_FACTOR * float(np.percentile(values, 95)), 1)


def _grey_level(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and 0.0 < value <= 255.0


def recorded_limit(translator) -> Optional[float]:
    """The cycle-error limit the model's release records for its direction (``cycle_limit``:
    ``{"AtoB": 14.2, "BtoA": 12.0}``, grey levels, with ``cycle_measure`` equal to :data:`MEASURE`),
    or None when it records none, or one measured another way (an older release: a warning says
    that faces are not checked, once per model). Both directions are checked, so a bad value is
    refused whichever way the model is run."""
    info = getattr(translator, "info", None) or {}
    table = info.get("cycle_limit")
    if table is None:
        return None
    if not isinstance(table, dict) or not all(k in ("AtoB", "BtoA") and _grey_level(v) for k, v in table.items()):
        raise CheckpointError(f"the model's cycle_limit {table!r} is not a map of AtoB/BtoA to grey levels in "
                              "(0, 255]; fix it in the release's config.json or remove it")
    if info.get("cycle_measure") != MEASURE:  # measured another way: the mean over the face, before session 34
        if translator not in _TOLD:
            _TOLD.add(translator)
            log.warning("the model's cycle_limit was measured as the mean over the face, not in its worst patch: "
                        "no warning for faces unlike its training faces until it is measured afresh "
                        "(benchmarks/select_swap_strength.py --model RUN --write, or a new cyclekit quickstart --faces)")
        return None
    value = table.get(getattr(translator, "direction", "AtoB"))
    return None if value is None else float(value)


def unlike_training_faces(error: Optional[float], limit: Optional[float]) -> Optional[str]:
    """The warning for a face whose cycle error went past the release's limit, else None."""
    if error is None or limit is None or not error > limit:
        return None
    return (f"the face is unlike the model's training faces (cycle error {error:.1f} grey levels, {limit:g} at "
            "most on faces like them): expect blotches and a weaker swap")
