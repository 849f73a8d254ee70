"""A gender-swap model on the London Set's held-out people: the numbers its model card quotes.

Swaps the held-out people's photos (the quickstart's split: 16 people, 8 women and 8 men, 32
photos, nobody seen in training) both ways with the ``swap`` pipeline and scores them with the
independent judge (swap success), the identity measures, the fine texture on chin and jaw
before -> after (stubble, grey levels: ``cyclekit.faces.identity.lower_face_texture``), and the
change on the blend rim (the halo, in grey levels) and of the studio backdrop inside the pasted
region (grey levels), in these paste modes: ``detail`` (the default: head mask, rim matching,
backdrop guard, tone shift), the same without the tone shift (:mod:`cyclekit.faces.tone`), the
same without the backdrop guard, ``detail`` with the whole round crop mask,
the same without rim matching (the halo before either fix), and ``model_output``, all at
the strength the model recommends per direction; ``--strength 0.8,1.2`` adds detail-mode rows at
those strengths. Prints a markdown table and writes ``grid.png`` (original | swap, detail mode)
and ``report.json`` to ``--out``.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_faces_model.py [--model RUN_OR_RELEASE] [--detector auto]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from benchmarks.bench_detect import machine  # noqa: E402


def main() -> None:
    from cyclekit.faces.detectors import make_detector
    from cyclekit.faces.evaluate_swap import builtin_model, detect_faces, evaluate_swaps, london_photos, \
        split_by_person, swap_grid, swap_translators
    from cyclekit.faces.judge import GenderJudge
    from cyclekit.faces.pipeline import face_params_for, recommended_strength
    from cyclekit.io.images import save_image
    from cyclekit.release import release_domains

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="", help="a run folder or release (default: the built-in model)")
    ap.add_argument("--london", default=str(ROOT / "datasets" / "london"))
    ap.add_argument("--held-out", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--detector", default="haar", help="haar (what the quickstart crops with) | auto | dlib")
    ap.add_argument("--out", default="runs/bench_faces_model")
    ap.add_argument("--no-identity", action="store_true", help="skip dlib's face-recognition network")
    ap.add_argument("--quick", action="store_true", help="the default paste mode only")
    ap.add_argument("--strength", default="", help="comma-separated --strength values (detail mode) to add as rows")
    args = ap.parse_args()
    model = Path(args.model) if args.model else builtin_model()
    domains = release_domains(model / "model" if (model / "model").is_dir() else model)
    if domains != ("male", "female"):
        sys.exit(f"{model}: expected domains male -> female, got {domains}")
    photos = london_photos(args.london)
    _, test = split_by_person(photos, args.held_out, args.seed)
    t0 = time.perf_counter()
    faces = detect_faces(test, make_detector(args.detector))
    translators = swap_translators(model)
    params = face_params_for(translators["male"])
    embedder = None
    if not args.no_identity:
        try:
            from cyclekit.faces.identity import FaceEmbedder

            embedder = FaceEmbedder()
        except Exception as exc:  # the identity extra is optional
            print(f"(no face embeddings: {exc})", file=sys.stderr)
    judge = GenderJudge()
    modes = {"detail": dict(detail=True), "detail, no tone shift": dict(detail=True, tone=False),
             "detail, no backdrop guard": dict(detail=True, guard=False),
             "detail, round mask": dict(detail=True, mask="round"),
             "detail, round mask, no rim matching": dict(detail=True, mask="round", match=False),
             "model_output": dict(detail=False)}
    if args.quick:
        modes = {"detail": modes["detail"]}
    for s in (float(v) for v in args.strength.split(",") if v.strip()):
        modes[f"detail, strength {s:g}"] = dict(detail=True, strength=s)
    results = {name: evaluate_swaps(test, faces, translators, judge=judge, embedder=embedder, params=params, **kw)
               for name, kw in modes.items()}
    out = Path(args.out)
    save_image(out / "grid.png", swap_grid(test, faces, results["detail"]["swapped"], params).astype(np.float32) / 255)
    report = {name: {"directions": r["directions"], "photos": r["photos"]} for name, r in results.items()}
    (out / "report.json").write_text(json.dumps({"model": str(model), "size": params.size, "modes": report}, indent=2))
    print(f"Machine: {machine()}\n")
    print(f"Model `{model}` ({params.size} px crops, margin {params.margin}), {args.detector} detector, "
          f"{len({p.person for p in test})} held-out London people ({len(test)} photos), "
          f"{time.perf_counter() - t0:.0f} s; the modes without a strength paste at the model's recommended one "
          f"(male->female {recommended_strength(translators['male']):g}, "
          f"female->male {recommended_strength(translators['female']):g})\n")
    print("| mode | direction | swap success | do-nothing | judge on untouched | PSNR in face | SSIM in face "
          "| same person | own original rank-1 | chin texture | rim change | backdrop change | backdrop paint |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")

    def pct(v):
        return "n/a" if v is None else f"{100 * v:.0f}%"

    def num(v):
        return "n/a" if v is None else f"{v:.2f}"

    for name, r in results.items():
        for direction, d in r["directions"].items():
            print(f"| {name} | {direction} | {pct(d['swap_success'])} | {pct(d['do_nothing_success'])} "
                  f"| {pct(d['judge_accuracy_untouched'])} | {d['psnr_face']:.2f} dB | {d['ssim_face']:.3f} "
                  f"| {pct(d.get('same_person_rate'))} | {pct(d.get('own_original_rank1'))} "
                  f"| {num(d['chin_texture_before'])} -> {num(d['chin_texture'])} | {num(d['rim_change'])} | {num(d['backdrop_change'])} "
                  f"| {num(d.get('backdrop_paint'))}{'' if d.get('backdrop_paint') is None else '%'} |")
    print(f"\ngrid: {out / 'grid.png'}; report: {out / 'report.json'}")


if __name__ == "__main__":
    main()
