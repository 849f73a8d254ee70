"""What a swap's head masks cost per face, against what the model itself costs, in one run.

Since session 27 both masks of a face (the one a swap pastes through and the one the model is shown
the person through) come from one run of the person segmenter (:mod:`cyclekit.faces.person`,
MediaPipe's selfie segmentation at 256 px on a crop widened to 0.8 per side), mapped back into the
face crop (``cyclekit.faces.segment.photo_head_masks``). The baseline is the built-in gender-swap
model run on the same face's crop (``translate_crops``, one face at a time, as ``swap`` does).
Median of ``--rounds`` passes over ``--limit`` London photos.

    OMP_NUM_THREADS=1 python benchmarks/bench_head_mask.py [--limit 20]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from benchmarks.bench_detect import machine  # noqa: E402


def main() -> None:
    from cyclekit.faces.align import crop_transform, warp_crop
    from cyclekit.faces.detectors import make_detector
    from cyclekit.faces.evaluate_swap import swap_translators
    from cyclekit.faces.pipeline import face_params_for, translate_crops
    from cyclekit.faces.segment import photo_head_masks
    from cyclekit.io.images import load_image

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--london", default=str(ROOT / "datasets" / "london"))
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    model = swap_translators(None)["male"]
    params = face_params_for(model)
    detector = make_detector("haar")
    items = []
    for f in sorted(Path(args.london, "neutral").glob("*.jpg"))[: args.limit]:
        img = load_image(f, 3)
        faces = detector.detect(img)
        if faces:
            items.append((img, crop_transform(faces[0], params)))
    ways = {"masks": lambda img, t: photo_head_masks(img, t, params.margin),
            "model": lambda img, t: translate_crops(model, [warp_crop(img, t)])}
    times: dict = {k: [] for k in ways}
    for r in range(args.rounds + 1):  # the first pass warms up
        for name, fn in ways.items():
            t0 = time.perf_counter()
            for img, t in items:
                fn(img, t)
            if r:
                times[name].append((time.perf_counter() - t0) / len(items) * 1000.0)
    masks, net = (float(np.median(times[k])) for k in ways)
    print(f"Machine: {machine()}")
    print(f"{len(items)} London faces (512 px photos), {params.size} px crops, median of {args.rounds} passes")
    print(f"a swap's two head masks {masks:.1f} ms per face; the built-in model on the crop {net:.1f} ms: "
          f"{masks / net:.2f}x the model")


if __name__ == "__main__":
    main()
