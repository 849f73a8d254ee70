"""A gender-swap model on photos from outside the London studio, at several paste strengths.

The London Set is one studio, one camera and one light; the built-in model's figures come from it.
This swaps other labelled photos to the other gender with the ``swap`` pipeline (the default detail
mode, dlib detector as ``cyclekit swap`` uses) at each ``--strength`` and prints the independent
judge's P(male) before and after, with SSIM inside the face. The judge reads a 32 px chip cut from
the eyes, and on a borderline swap a few pixels of eye position flip its verdict, so each P(male)
is given twice: on the chip from the detector's eyes and on the one from Haar's (``-`` where Haar
finds no face). The column before last is the skin's brightness (luma of cheeks, nose and mouth) and its
change at strength 1. With no ``--photo`` it uses the one such face this repository can reach without a download:
scikit-image's ``astronaut`` (Eileen Collins, NASA, public domain). Writes ``strip.png``
(original, then one swap per strength) per photo to ``--out``. ``--no-tone`` swaps without the
tone shift (:mod:`cyclekit.faces.tone`). Then come the face's turn to the side
(:func:`cyclekit.faces.detect.turn`) and the cycle error at strength 1 (:mod:`cyclekit.faces.cycle`:
how far the generator back misses the face; ``cyclekit swap`` warns past the release's ``cycle_limit``).
A face turned further than ``--max-turn`` is left unchanged,
as ``cyclekit swap`` leaves it (``--max-turn 0`` judges the model on every face).
``--box-scale 0.95,1,1.05`` adds a row per photo at
strength 1 with the detector's box scaled by each factor about its centre: how much the swap
hangs on the crop. ``--raw`` adds a last column: P(male) with the model's own output pasted
(``cyclekit swap --no-detail`` at the model's strength) instead of its change on the photo, which tells a model
that did not change the face enough from a paste that lost its change.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_faces_wild.py [--model M] [--photo PATH:female ...]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from benchmarks.bench_detect import machine  # noqa: E402


def labelled_photos(specs: list[str]) -> list[tuple[str, np.ndarray, str]]:
    """``(name, uint8 RGB image, gender)`` for each ``PATH:male|female`` (default, or ``astronaut``: the astronaut)."""
    from cyclekit.io.images import load_image

    out = []
    for spec in specs or ["astronaut:female"]:
        path, _, gender = spec.rpartition(":")
        if gender not in ("male", "female") or not path:
            sys.exit(f"--photo {spec!r}: write PATH:male or PATH:female")
        if path == "astronaut":  # the shipped default: --photo astronaut:female adds it to your own
            import skimage.data

            out.append(("astronaut", skimage.data.astronaut(), gender))
            continue
        img = np.round(load_image(path, 3) * 255.0).astype(np.uint8)
        out.append((Path(path).stem, img, gender))
    return out


def fmt_turn(face) -> str:
    """The face's turn to the side (:func:`cyclekit.faces.detect.turn`), or ``-`` without a nose point."""
    from cyclekit.faces.detect import turn

    value = turn(face)
    return "-" if value is None else f"{value:.2f}"


def skin_luma(image: np.ndarray, eyes) -> float:
    """Mean brightness (0-255 luma) of cheeks, nose and mouth: a box from the eyes down."""
    from cyclekit.io.images import LUMA

    (lx, ly), (rx, ry) = eyes
    d = float(np.hypot(rx - lx, ry - ly))
    cx, cy = (lx + rx) / 2.0, (ly + ry) / 2.0 + 0.6 * d
    box = image[int(cy - 0.5 * d):int(cy + 0.5 * d), int(cx - 0.6 * d):int(cx + 0.6 * d)]
    return float((box.reshape(-1, 3).astype(np.float64) @ LUMA).mean())


def main() -> None:
    from cyclekit.faces.detectors import make_detector
    from cyclekit.faces.evaluate_swap import swap_translators
    from cyclekit.faces.identity import pixel_identity
    from cyclekit.faces.judge import GenderJudge, face_chip
    from cyclekit.faces.pipeline import side_by_side, swap_image
    from cyclekit.io.images import save_image

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="", help="a run folder or release (default: the built-in model)")
    ap.add_argument("--photo", action="append", default=[], help="PATH:male or PATH:female (repeatable)")
    ap.add_argument("--strength", default="1,1.15,1.3,1.6", help="comma-separated paste strengths")
    ap.add_argument("--detector", default="auto")
    ap.add_argument("--no-tone", action="store_true", help="swap without the tone shift")
    ap.add_argument("--max-turn", type=float, default=None,
                    help="faces turned further are left unchanged, as cyclekit swap does (default: its 0.25; "
                         "0 = swap every face, to judge the model itself)")
    ap.add_argument("--box-scale", default="", help="comma-separated factors for the detector's box (strength 1)")
    ap.add_argument("--out", default="runs/bench_faces_wild")
    ap.add_argument("--raw", action="store_true", help="add P(male) with the model's own output pasted")
    args = ap.parse_args()
    strengths = [float(s) for s in args.strength.split(",")]
    turn = {} if args.max_turn is None else {"max_turn": args.max_turn}
    translators = swap_translators(args.model or None)
    detector, second, judge = make_detector(args.detector), make_detector("haar"), GenderJudge()
    out = Path(args.out)
    print(f"Machine: {machine()}\n")
    print(f"Tone shift {'off' if args.no_tone else 'on'}; P(male) on the chip from the {detector.name} detector's "
          "eyes / Haar's eyes\n")
    print("| photo | direction | P(male) untouched | " + " | ".join(f"P(male) at {s:g}" for s in strengths)
          + " | SSIM in face at " + ", ".join(f"{s:g}" for s in strengths) + " | skin luma, change at 1 | turn |"
          + " cycle error |"
          + (" P(male), model's output pasted |" if args.raw else ""))
    print("|---|---|---:|" + "---:|" * len(strengths) + "---|---:|---:|---:|" + ("---:|" if args.raw else ""))
    for name, img, gender in labelled_photos(args.photo):
        faces = detector.detect(img)
        if not faces:
            print(f"| {name} | no face found | | " + " | " * len(strengths))
            continue
        eyes = faces[0].eyes
        others = second.detect(img)
        chips = [eyes] + ([others[0].eyes] if others else [])

        def p_male(image) -> str:
            return " / ".join(f"{float(p):.2f}" for p in judge.predict([face_chip(image, e) for e in chips])) \
                + ("" if others else " / -")

        target = "female" if gender == "male" else "male"
        swaps = [swap_image(img, translators[gender], faces=faces[:1], strength=s, tone=not args.no_tone, **turn)[0]
                 for s in strengths]
        ssim = [pixel_identity(img, s, eyes)["ssim"] for s in swaps]
        # at strength 1, with the generator back: the cycle error cyclekit swap warns on (faces/cycle.py)
        at_1, info = swap_image(img, translators[gender], faces=faces[:1], strength=1.0, tone=not args.no_tone,
                                back=translators[target], **turn)
        cycle = next((f"{r.cycle_error:.1f}" for r in info.faces if r.cycle_error is not None), "-")
        raw = ""
        if args.raw:  # the model's own output pasted: did the model change the face, or the paste lose it?
            own = swap_image(img, translators[gender], faces=faces[:1], detail=False, tone=not args.no_tone, **turn)[0]
            raw = f" {p_male(own)} |"
        print(f"| {name} | {gender}->{target} | {p_male(img)} | " + " | ".join(p_male(s) for s in swaps)
              + " | " + ", ".join(f"{v:.3f}" for v in ssim)
              + f" | {skin_luma(img, eyes):.0f}, {skin_luma(at_1, eyes) - skin_luma(img, eyes):+.1f} | {fmt_turn(faces[0])} |"
              + f" {cycle} |"
              + raw)
        strip = img
        for s in swaps:
            strip = side_by_side(strip, s)
        save_image(out / f"{name}_strip.png", strip.astype(np.float32) / 255.0)
        for k in [float(v) for v in args.box_scale.split(",") if v]:
            x, y, w, h = faces[0].box
            face = dataclasses.replace(faces[0], box=(x + w / 2 - k * w / 2, y + h / 2 - k * h / 2, k * w, k * h))
            swapped = swap_image(img, translators[gender], faces=[face], strength=1.0, tone=not args.no_tone, **turn)[0]
            print(f"| {name}, box x{k:g} | {gender}->{target} | {p_male(img)} | {p_male(swapped)} |")
    print(f"\nstrips: {out}/*_strip.png; swap success needs P(male) < 0.5 for female targets, > 0.5 for male ones")


if __name__ == "__main__":
    main()
