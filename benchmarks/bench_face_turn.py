"""How far faces are turned to the side (``cyclekit.faces.detect.turn``, what ``swap --max-turn``
compares), on the London photos a face model learns from and on any other photos given.

The turn is the nose's offset from the eye midpoint along the eye line, in eye distances, from the
dlib detector's five points: 0 facing the camera, about 0.25 at a quarter turn, 0.5 near profile.
Prints the London distribution (neutral and smiling photos) and one row per ``--photo``.

    OMP_NUM_THREADS=1 python benchmarks/bench_face_turn.py [--photo PATH ...]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from benchmarks.bench_detect import machine  # noqa: E402


def main() -> None:
    from cyclekit.faces.detect import turn
    from cyclekit.faces.detectors import make_detector
    from cyclekit.faces.evaluate_swap import london_photos
    from cyclekit.faces.params import MAX_TURN
    from cyclekit.io.images import load_image

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--london", default=str(ROOT / "datasets" / "london"))
    ap.add_argument("--photo", action="append", default=[], help="another photo to measure (repeatable)")
    args = ap.parse_args()
    detector = make_detector("dlib")

    def measure(path: Path):
        img = np.round(load_image(path, 3) * 255.0).astype(np.uint8)
        faces = detector.detect(img)
        return turn(faces[0]) if faces else None

    print(f"Machine: {machine()}\n")
    london = [photo.path for photo in london_photos(args.london)]  # neutral and smiling
    values = [v for v in (measure(p) for p in london) if v is not None]
    if values:
        v = np.array(values)
        print(f"London: {len(v)} of {len(london)} photos measured; turn median {np.median(v):.3f}, "
              f"95th percentile {np.percentile(v, 95):.3f}, 99th {np.percentile(v, 99):.3f}, max {v.max():.3f}\n")
    if args.photo:
        print(f"| photo | turn | swap (--max-turn {MAX_TURN:g}) |\n|---|---:|---|")
        for p in args.photo:
            value = measure(Path(p))
            verdict = "no face" if value is None else ("left unchanged" if value > MAX_TURN else "swapped")
            print(f"| {Path(p).name} | {'-' if value is None else f'{value:.2f}'} | {verdict} |")


if __name__ == "__main__":
    main()
