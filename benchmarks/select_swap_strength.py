"""Pick the paste strength of a gender-swap model per direction without looking at the held-out people.

``cyclekit swap --strength s`` pastes ``s`` times the model's change: below 1 the swap is gentler
and the person is easier to recognise, above 1 it is stronger. This swaps photos of *training*
people (``--people`` of them, half women, half men, chosen by seed from the quickstart's training
split) both ways at each strength and prints the judge's swap success and dlib's same-person rate,
so the recommended strength can be set from people who are not in the model card's figures
(``bench_faces_model.py``, the held-out people).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/select_swap_strength.py --model RUN [--strength 1,1.3] [--write]

``--write`` records the choice (:func:`cyclekit.faces.strength.choose_strength`) in the release.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    from cyclekit.faces.detectors import make_detector
    from cyclekit.faces.evaluate_swap import builtin_model, detect_faces, london_photos, \
        sample_people, split_by_person, swap_translators
    from cyclekit.errors import UserError
    from cyclekit.faces.identity import FaceEmbedder
    from cyclekit.faces.judge import SURE, GenderJudge
    from cyclekit.faces.strength import STRENGTHS, choose_strength, cycle_fields, cycle_limits, describe_choice, strength_table

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="", help="a run folder or release (default: the built-in model)")
    ap.add_argument("--london", default=str(ROOT / "datasets" / "london"))
    ap.add_argument("--people", type=int, default=40)
    ap.add_argument("--strength", default="", help="comma-separated strengths (default: the quickstart's, "
                    + ",".join(f"{s:g}" for s in STRENGTHS) + ")")
    ap.add_argument("--out", default="", help="also write the table as JSON here")
    ap.add_argument("--write", action="store_true", help="record the chosen strengths in the model's release "
                    "(swap_strength, which cyclekit swap uses by default)")
    args = ap.parse_args()
    model = Path(args.model) if args.model else builtin_model()
    train, _ = split_by_person(london_photos(args.london), 16, 0)
    photos = sample_people(train, args.people, "select-strength")
    faces = detect_faces(photos, make_detector("haar"))
    try:
        embedder = FaceEmbedder()
    except (ImportError, OSError, RuntimeError, UserError) as exc:  # the identity extra is optional
        print(f"no face embeddings ({exc}): the choice uses swap success alone")
        embedder = None
    judge = GenderJudge()
    trs = swap_translators(model)
    people = {p.person for p in photos}
    print(f"{model}: {len(photos)} photos of {len(people)} training people "
          "(none of the held-out 16)\n")
    strengths = [float(v) for v in args.strength.split(",")] if args.strength else STRENGTHS
    rows = strength_table(photos, faces, trs, strengths, judge=judge, embedder=embedder)
    print(f"| strength | direction | swap success | sure (P >= {SURE:g}) | same person | PSNR in face |")
    print("|---:|---|---:|---:|---:|---:|")
    for r in rows:
        pct = {k: "n/a" if r[k] is None else f"{100 * r[k]:.0f}%"
               for k in ("swap_success", "sure_success", "same_person_rate")}
        psnr = "n/a" if r["psnr_face"] is None else f"{r['psnr_face']:.2f} dB"
        print(f"| {r['strength']:g} | {r['direction']} | {pct['swap_success']} | {pct['sure_success']} | "
              f"{pct['same_person_rate']} | {psnr} |")
    chosen = choose_strength(rows)
    print(f"\nchosen (cyclekit.faces.strength.choose_strength): {chosen}\n{describe_choice(rows, chosen, len(people))}")
    print(f"cycle-error limit (cyclekit.faces.cycle): {cycle_limits(rows)}")
    if args.write:
        from cyclekit.release import update_release_info

        where = update_release_info(model, swap_strength=chosen,
                                    swap_strength_chosen=describe_choice(rows, chosen, len(people)),
                                    **cycle_fields(rows))
        print(f"recorded in {where}/config.json")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
