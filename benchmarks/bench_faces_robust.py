"""A gender-swap model on held-out London photos changed the way other cameras and rooms differ.

The London Set is one studio: grey backdrop, white shirts, even light, a sharp 512 px camera.
Photos from elsewhere differ in light, exposure, background and sharpness. This benchmark takes
the 16 held-out people (32 photos, nobody seen in training), changes every photo in one way at a
time, detects the faces afresh, swaps them both ways with the ``swap`` pipeline (detail mode, the
model's recommended strength) and scores them with the independent judge:

* ``as shot``: the photos unchanged (the model card's figures);
* ``warm light``: a tungsten-like cast (red x1.12, blue x0.82);
* ``underexposed``: gamma 1.6 (mid-tones about 30% darker);
* ``overexposed``: gamma 0.6 (mid-tones about 30% brighter, like a face under a flash or a
  studio light much stronger than London's);
* ``painted wall``: the studio backdrop replaced by one plain colour of low saturation, a random
  mid-tone per photo (the backdrop is found row by row from the colour at the photo's left and
  right edges);
* ``busy backdrop``: the same with a smooth, strongly saturated random colour field (a stress test);
* ``soft``: downscaled to 200 px and back up (a small or blurry source).

Prints a markdown table (swap success, the judge's accuracy on the changed but unswapped photos,
SSIM in the face, faces found) and writes a grid per condition to ``--out``. ``--no-tone`` swaps
without the tone shift (:mod:`cyclekit.faces.tone`).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_faces_robust.py [--model RUN_OR_RELEASE]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from benchmarks.bench_detect import machine  # noqa: E402


def busy_backdrop(img: np.ndarray, seed: int, muted: bool = False) -> np.ndarray:
    """Replace the studio backdrop (pixels within 20 grey levels of their row's edge colour, in
    regions that touch the top or a side) with a smooth random colour field (strongly saturated, a
    stress test), or with ``muted`` one plain mid-tone colour of low saturation (a painted wall)."""
    import cv2

    rng = np.random.default_rng(seed)
    f = img.astype(np.float32)
    edge = np.concatenate([f[:, :24], f[:, -24:]], axis=1)
    row = np.median(edge, axis=1)[:, None, :]  # (H, 1, 3): the backdrop's colour on each row
    near = (np.abs(f - row).max(axis=2) < 20).astype(np.uint8)
    n, labels = cv2.connectedComponents(near)
    h, w = near.shape
    border = set(np.unique(labels[0])) | set(np.unique(labels[:, 0])) | set(np.unique(labels[:, w - 1]))
    back = np.isin(labels, [k for k in border if k != 0] or [-1]).astype(np.float32)
    back = cv2.GaussianBlur(back, (0, 0), 1.5)[..., None]
    if muted:
        field = np.full((h, w, 3), 0.6 * rng.uniform(60, 200) + 0.4 * rng.uniform(60, 200, 3), np.float32)
    else:
        field = cv2.resize(rng.uniform(30, 225, (5, 5, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(f * (1 - back) + np.clip(field, 0, 255) * back, 0, 255).astype(np.uint8)


def _soft(img: np.ndarray, seed: int) -> np.ndarray:
    import cv2

    small = cv2.resize(img, (200, 200 * img.shape[0] // img.shape[1]), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, img.shape[1::-1], interpolation=cv2.INTER_CUBIC)


CONDITIONS = {
    "as shot": lambda im, s: im,
    "warm light": lambda im, s: np.clip(im * np.array([1.12, 1.0, 0.82]), 0, 255).astype(np.uint8),
    "underexposed": lambda im, s: (255.0 * (im / 255.0) ** 1.6).astype(np.uint8),
    "overexposed": lambda im, s: (255.0 * (im / 255.0) ** 0.6).astype(np.uint8),
    "painted wall": lambda im, s: busy_backdrop(im, s, muted=True),
    "busy backdrop": busy_backdrop,
    "soft": _soft,
}


@dataclasses.dataclass
class ChangedPhoto:
    """A London photo seen through one condition (the fields evaluate_swaps reads)."""

    person: str
    gender: str
    path: Path
    eyes: object
    image: np.ndarray

    @property
    def name(self) -> str:
        return self.path.stem

    def load(self) -> np.ndarray:
        return self.image


def main() -> None:
    from cyclekit.faces.detectors import make_detector
    from cyclekit.faces.evaluate_swap import builtin_model, detect_faces, evaluate_swaps, london_photos, \
        split_by_person, swap_grid, swap_translators
    from cyclekit.faces.judge import GenderJudge
    from cyclekit.faces.pipeline import face_params_for
    from cyclekit.io.images import save_image

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="", help="a run folder or release (default: the built-in model)")
    ap.add_argument("--london", default=str(ROOT / "datasets" / "london"))
    ap.add_argument("--held-out", type=int, default=16)
    ap.add_argument("--detector", default="haar")
    ap.add_argument("--no-tone", action="store_true", help="swap without the tone shift")
    ap.add_argument("--out", default="runs/bench_faces_robust")
    args = ap.parse_args()
    model = Path(args.model) if args.model else builtin_model()
    translators = swap_translators(model)
    params, judge, detector = face_params_for(translators["male"]), GenderJudge(), make_detector(args.detector)
    _, test = split_by_person(london_photos(args.london), args.held_out, 0)
    out, t0, results = Path(args.out), time.perf_counter(), {}
    for name, change in CONDITIONS.items():
        photos = [ChangedPhoto(p.person, p.gender, p.path, p.eyes, change(p.load(), k)) for k, p in enumerate(test)]
        faces = detect_faces(photos, detector)
        r = evaluate_swaps(photos, faces, translators, judge=judge, params=params, tone=not args.no_tone)
        results[name] = r["directions"]
        save_image(out / f"grid_{name.replace(' ', '_')}.png",
                   swap_grid(photos, faces, r["swapped"], params, n=4).astype(np.float32) / 255)
    (out / "report.json").write_text(json.dumps({"model": str(model), "conditions": results}, indent=2))
    print(f"Machine: {machine()}\n")
    print(f"Model `{model}`, {args.detector} detector, {len({p.person for p in test})} held-out London people "
          f"({len(test)} photos), tone shift {'off' if args.no_tone else 'on'}, {time.perf_counter() - t0:.0f} s\n")
    print("| condition | swap success m->f / f->m | judge on the changed photos | SSIM in face | faces swapped |")
    print("|---|---:|---:|---:|---:|")
    for name, d in results.items():
        m, f = d["male->female"], d["female->male"]
        print(f"| {name} | {100 * m['swap_success']:.0f}% / {100 * f['swap_success']:.0f}% "
              f"| {100 * m['judge_accuracy_untouched']:.0f}% / {100 * f['judge_accuracy_untouched']:.0f}% "
              f"| {m['ssim_face']:.3f} / {f['ssim_face']:.3f} | {m['photos'] + f['photos']} of {len(test)} |")
    print(f"\ngrids and report: {out}")


if __name__ == "__main__":
    main()
