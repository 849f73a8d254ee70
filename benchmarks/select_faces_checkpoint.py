"""Pick a gender-swap checkpoint without looking at the held-out people.

GAN training oscillates: the judge's swap success moves by tens of points between epochs. Given
snapshot folders of one run (releases copied at epoch ends), this swaps photos of *training*
people (``--people`` of them, half women, half men, chosen by seed from the training split) both
ways and prints each snapshot's swap success; the built-in model is the snapshot with the best
worse direction. The held-out people stay untouched for the model card's figures
(``bench_faces_model.py``).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/select_faces_checkpoint.py runs/faces128_snap/s*
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    from cyclekit.faces.detectors import make_detector
    from cyclekit.faces.evaluate_swap import detect_faces, evaluate_swaps, london_photos, sample_people, \
        split_by_person, swap_translators
    from cyclekit.faces.judge import GenderJudge

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("snapshots", nargs="+")
    ap.add_argument("--london", default=str(ROOT / "datasets" / "london"))
    ap.add_argument("--people", type=int, default=16)
    args = ap.parse_args()
    train, _ = split_by_person(london_photos(args.london), 16, 0)
    photos = sample_people(train, args.people, "select-checkpoint")
    chosen = {p.person for p in photos}
    faces = detect_faces(photos, make_detector("haar"))
    judge = GenderJudge()
    print(f"{len(photos)} photos of {len(chosen)} training people\n\n| snapshot | male->female | female->male | worse |")
    print("|---|---:|---:|---:|")
    best = None
    for snap in sorted(args.snapshots, key=lambda s: int("".join(c for c in Path(s).name if c.isdigit()) or 0)):
        trs = swap_translators(snap)
        d = evaluate_swaps(photos, faces, trs, judge=judge)["directions"]
        mf, fm = d["male->female"]["swap_success"], d["female->male"]["swap_success"]
        print(f"| {Path(snap).name} | {100 * mf:.0f}% | {100 * fm:.0f}% | {100 * min(mf, fm):.0f}% |", flush=True)
        if best is None or min(mf, fm) > best[0]:
            best = (min(mf, fm), snap)
    print(f"\nbest: {best[1]} ({100 * best[0]:.0f}% in the worse direction)")


if __name__ == "__main__":
    main()
