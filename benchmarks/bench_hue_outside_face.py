"""How much colour off the skin's hue a face swap pastes outside the middle of the face.

Runs another face benchmark (``bench_faces_model.py``, ``bench_faces_wild.py``) with a hook on
the paste (:func:`cyclekit.faces.tone.keep_natural_hue`) and prints, over all its crops, the
colour part of the pasted change (its length in RGB, averaged over
:func:`~cyclekit.faces.tone.outside_weight`, in grey levels) and the part of it off the skin's
hue: the green, teal or magenta casts. ``--off`` measures the paste without the rule (as
``cyclekit swap --any-hue``). BENCHMARKS.md, session 32:

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_hue_outside_face.py [--off] \\
        benchmarks/bench_faces_model.py --quick --no-identity
"""
from __future__ import annotations

import atexit
import runpy
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import cyclekit.faces.pipeline as pipeline  # noqa: E402
from cyclekit.faces import tone  # noqa: E402
from cyclekit.io.images import LUMA  # noqa: E402

OFF = "--off" in sys.argv[1:2]
colour_sizes, off_hue = [], []


def measured(crop, new, margin, strength=1.0):
    out = np.asarray(new, np.float32) if OFF else tone.keep_natural_hue(crop, new, margin, strength)
    weight = tone.outside_weight(crop.shape[0], margin)
    change = out - crop
    colour = change - (change @ LUMA)[:, :, None]
    skin = tone.skin_colour(crop, margin)
    axis = skin - float(skin @ LUMA)
    axis = axis / max(float(np.linalg.norm(axis)), 1e-6)
    off = colour - (colour @ axis)[:, :, None] * axis
    for values, part in ((colour_sizes, colour), (off_hue, off)):
        values.append(float((np.linalg.norm(part, axis=2) * weight).sum() / weight.sum() * 255.0))
    return out


def report() -> None:
    if colour_sizes:
        print(f"{'without' if OFF else 'with'} keep_natural_hue, {len(colour_sizes)} crops: colour change outside the "
              f"middle of the face {np.mean(colour_sizes):.2f} grey levels (max {np.max(colour_sizes):.2f}); off the "
              f"skin's hue {np.mean(off_hue):.2f} (max {np.max(off_hue):.2f})")


if __name__ == "__main__":
    args = sys.argv[2:] if OFF else sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    pipeline.keep_natural_hue = measured  # every swap pastes through the hook, with the rule or without
    atexit.register(report)
    sys.argv = args
    runpy.run_path(args[0], run_name="__main__")
