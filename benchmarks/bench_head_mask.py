"""What the head mask costs per face: GrabCut on the face crop itself (``head_mask``, the code before
session 25) against GrabCut on a wider crop of the photo mapped back (``photo_head_mask``, what
``swap``, the video path and the training crops use now), on the London photos in one run, and
a swap's pair since session 26: the mask it pastes through and the one (``skull=True``) it shows
the model the head through.

The narrow side includes the crop's warp (the swap had it anyway); the wide side warps its own
wider crop. Median of ``--rounds`` passes over ``--limit`` photos, each mask once per pass.

    OMP_NUM_THREADS=1 python benchmarks/bench_head_mask.py [--limit 20] [--size 128]
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
    from cyclekit.faces.params import FaceParams
    from cyclekit.faces.segment import head_mask, photo_head_mask
    from cyclekit.io.images import load_image

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--london", default=str(ROOT / "datasets" / "london"))
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    params = FaceParams(size=args.size)
    detector = make_detector("haar")
    items = []
    for f in sorted(Path(args.london, "neutral").glob("*.jpg"))[: args.limit]:
        img = load_image(f, 3)
        faces = detector.detect(img)
        if faces:
            items.append((img, crop_transform(faces[0], params)))
    ways = {"crop + head_mask": lambda img, t: head_mask(warp_crop(img, t), params.margin),
            "photo_head_mask": lambda img, t: photo_head_mask(img, t, params.margin),
            "pasted + seen masks": lambda img, t: (photo_head_mask(img, t, params.margin),
                                                   photo_head_mask(img, t, params.margin, skull=True))}
    times: dict = {k: [] for k in ways}
    for r in range(args.rounds + 1):  # the first pass warms up
        for name, fn in ways.items():
            t0 = time.perf_counter()
            for img, t in items:
                fn(img, t)
            if r:
                times[name].append((time.perf_counter() - t0) / len(items) * 1000.0)
    narrow, wide, both = (float(np.median(times[k])) for k in ways)
    print(f"Machine: {machine()}")
    print(f"{len(items)} London faces (512 px photos), {args.size} px crops, median of {args.rounds} passes")
    print(f"crop + head_mask {narrow:.1f} ms per face, photo_head_mask {wide:.1f} ms per face: {wide / narrow:.2f}x")
    print(f"a swap's two masks (pasted, and seen with skull=True) {both:.1f} ms per face: {both / narrow:.2f}x "
          "the crop's own mask")


if __name__ == "__main__":
    main()
