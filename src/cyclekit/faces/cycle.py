"""How far a face is from what a swap model knows: the cycle error.

A CycleGAN model comes with the generator back. On a face like its training faces the way back
returns the face the model was shown to within a few grey levels (the built-in model: 3.6-7.2 on
the 32 held-out London photos); on a face unlike them (other cameras, other light) the model paints
blotches it cannot account for and the way back misses by 11-37 (19 faces from other cameras,
BENCHMARKS.md, session 29). :func:`cycle_error` is that miss; a release records the largest
value it expects (``cycle_limit``, per direction, from its training people:
:func:`cycle_limit_from`), and ``cyclekit swap`` and the web page warn when a face goes past it
(:func:`unlike_training_faces`).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from cyclekit.errors import CheckpointError

# The limit is this many times the 95th percentile of the training people's cycle errors. For the
# built-in model the training people reach at most 1.04 / 1.07 times their 95th percentile and the
# held-out London people 0.8 / 0.42; at 1.5 Biden's blotched face (1.9) is warned, at 2 it was not.
LIMIT_FACTOR = 1.5


def face_region(size: int, margin: float) -> np.ndarray:
    """Boolean ``size x size`` ellipse over brows, eyes, cheeks, nose, mouth and chin of an
    eye-aligned face crop whose detector box side is ``size / (1 + 2 * margin)``."""
    box, c = size / (1.0 + 2.0 * margin), (size - 1) / 2.0
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    return ((xx - c) / (0.42 * box)) ** 2 + ((yy - c) / (0.5 * box)) ** 2 <= 1.0


def cycle_error(shown: np.ndarray, back: np.ndarray, margin: float) -> float:
    """Mean absolute difference, in grey levels (0-255, mean of the channels), between the crop a
    model was shown and what its generator back made of the model's output, over :func:`face_region`."""
    region = face_region(shown.shape[0], margin)
    diff = np.abs(np.asarray(back, np.float32) - np.asarray(shown, np.float32)).mean(axis=2)
    return float(diff[region].mean() * 255.0)


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
    ``{"AtoB": 14.2, "BtoA": 12.0}``, grey levels), or None when it records none. Both directions
    are checked, so a bad value is refused whichever way the model is run."""
    table = (getattr(translator, "info", None) or {}).get("cycle_limit")
    if table is None:
        return None
    if not isinstance(table, dict) or not all(k in ("AtoB", "BtoA") and _grey_level(v) for k, v in table.items()):
        raise CheckpointError(f"the model's cycle_limit {table!r} is not a map of AtoB/BtoA to grey levels in "
                              "(0, 255]; fix it in the release's config.json or remove it")
    value = table.get(getattr(translator, "direction", "AtoB"))
    return None if value is None else float(value)


def unlike_training_faces(error: Optional[float], limit: Optional[float]) -> Optional[str]:
    """The warning for a face whose cycle error went past the release's limit, else None."""
    if error is None or limit is None or error <= limit:
        return None
    return (f"the face is unlike the model's training faces (cycle error {error:.1f} grey levels, {limit:g} at "
            "most on faces like them): expect blotches and a weaker swap")
