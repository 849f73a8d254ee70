"""Choose a gender-swap model's paste strength on *training* people, never on the held-out ones.

``cyclekit swap --strength s`` pastes ``s`` times the model's change (see
:func:`cyclekit.faces.pipeline.swap_image`). A model whose colour gain keeps much of its input
(the ``fast`` recipe) swaps gently at 1; a stronger paste flips more faces for the judge but,
pushed too far, the person is no longer recognisable. :func:`strength_table` measures both at a
few strengths on photos of people the model was trained on; :func:`choose_strength` picks, per
direction, the gentlest strength at which the judge is *sure* of most of the swaps (P(target) at
least :data:`~cyclekit.faces.judge.SURE`, not just past one half) while the person stays
recognisable. The margin is for the faces the model never saw: they land nearer the line. Two
faces-quickstart models showed it (BENCHMARKS.md, session 31): their training men were 95%
swapped at 1.15, the held-out men 69% and 75%; the sure share picks 1.3, where 88% and 81% are.
The choice is written into the release (``swap_strength``), where ``cyclekit swap`` reads it.
It belongs to those weights: training on (``--resume``) writes a new release without it, so
choose again (``benchmarks/select_swap_strength.py --model RUN --write``).

This is the faces layer: it uses inference, never training.
"""
from __future__ import annotations

from typing import Optional, Sequence

from cyclekit.faces.cycle import MEASURE
from cyclekit.faces.evaluate_swap import Photo, evaluate_swaps
from cyclekit.faces.judge import SURE
from cyclekit.faces.params import FaceParams

STRENGTHS = (1.0, 1.15, 1.3, 1.45, 1.6)  # candidates: the model's own swap and up to 1.6x its change
TARGET_SUCCESS = 0.9  # share of training photos the judge must be sure are swapped (P(target) >= SURE)
MIN_SAME_PERSON = 0.75  # share still recognised as the same person (when face embeddings are available)
# evaluate_swaps' direction names -> the release's generator directions (domain A male, B female)
DIRECTIONS = {"male->female": "AtoB", "female->male": "BtoA"}


def strength_table(photos: Sequence[Photo], faces: dict, translators: dict, strengths: Sequence[float] = STRENGTHS,
                   *, judge=None, embedder=None, params: Optional[FaceParams] = None) -> list[dict]:
    """Swap ``photos`` both ways at each strength; one row per (strength, direction) with the
    judge's swap success (sure and past one half), the same-person rate (None without
    ``embedder``) and PSNR in the face."""
    rows = []
    for s in strengths:
        res = evaluate_swaps(photos, faces, translators, judge=judge, embedder=embedder, params=params, strength=s)
        for name, d in res["directions"].items():
            rows.append({"strength": float(s), "direction": name, "photos": d["photos"],
                         "swap_success": d["swap_success"], "sure_success": d.get("sure_success"),
                         "same_person_rate": d.get("same_person_rate"),
                         "psnr_face": d["psnr_face"], "cycle_limit": d.get("cycle_limit")})
    return rows


def cycle_limits(rows: Sequence[dict]) -> dict[str, float]:
    """Per release direction, the cycle-error limit its training people set (:mod:`cyclekit.faces.cycle`;
    the same at every strength: it is measured on the model's output before the paste)."""
    return {DIRECTIONS[r["direction"]]: r["cycle_limit"] for r in rows
            if r["direction"] in DIRECTIONS and r.get("cycle_limit") is not None}


def cycle_fields(rows: Sequence[dict]) -> dict:
    """The release fields ``cyclekit swap`` warns by: :func:`cycle_limits` and the measure they were taken with."""
    return {"cycle_limit": cycle_limits(rows), "cycle_measure": MEASURE}


def choose_strength(rows: Sequence[dict], target: float = TARGET_SUCCESS,
                    min_same: float = MIN_SAME_PERSON) -> dict[str, float]:
    """``{"AtoB": s, "BtoA": s}`` from :func:`strength_table` rows.

    Per direction, among the strengths that keep the person (same-person rate at least
    ``min_same``; every strength when it was not measured): the gentlest whose sure swap success
    reaches ``target``, else the one with the most sure swaps (then the most swaps, then the
    gentler). When no strength keeps the person, the gentlest measured. A direction without
    measured photos is left out. Rows without ``sure_success`` (tables made before it was
    recorded) count their swap success instead.
    """
    chosen = {}
    for name, direction in DIRECTIONS.items():
        rs = sorted((r for r in rows if r["direction"] == name and r.get("swap_success") is not None),
                    key=lambda r: r["strength"])
        if not rs:
            continue
        kept = [r for r in rs if r.get("same_person_rate") is None or r["same_person_rate"] >= min_same] or rs[:1]
        good = [r for r in kept if _sure(r) >= target]
        best = good[0] if good else max(kept, key=lambda r: (_sure(r), r["swap_success"], -r["strength"]))
        chosen[direction] = best["strength"]
    return chosen


def describe_choice(rows: Sequence[dict], chosen: dict[str, float], people: int, target: float = TARGET_SUCCESS,
                    min_same: float = MIN_SAME_PERSON) -> str:
    """One sentence for the release's ``swap_strength_chosen``: how and on whom it was chosen,
    and per direction whether the rule was met or :func:`choose_strength` fell back."""
    parts = []
    for name, direction in DIRECTIONS.items():
        if direction not in chosen:
            parts.append(f"{name} not chosen (no judged photos)")
            continue
        r = next(r for r in rows if r["direction"] == name and r["strength"] == chosen[direction])
        kept = r["same_person_rate"] is None or r["same_person_rate"] >= min_same
        how = ("" if _sure(r) >= target and kept else
               ", fallback: no strength kept the person" if not kept else
               ", fallback: none reached the target, the one with the most sure swaps")
        same = "" if r["same_person_rate"] is None else f", same person {r['same_person_rate']:.0%}"
        sure = "" if r.get("sure_success") is None else f"sure {r['sure_success']:.0%}, "
        parts.append(f"{name} {chosen[direction]:g} ({sure}swap success {r['swap_success']:.0%}{same}{how})")
    tried = ", ".join(f"{s:g}" for s in sorted({r["strength"] for r in rows}))
    counted = (f"at which the judge was sure (P >= {SURE:g}) of {target:.0%} of the swaps"
               if any(r.get("sure_success") is not None for r in rows) else f"whose swap success reached {target:.0%}")
    return (f"on {people} training people, none held out (cyclekit.faces.strength): the gentlest of {tried} "
            f"{counted} with {min_same:.0%} still recognised: " + "; ".join(parts))


def _sure(row: dict) -> float:
    """The row's sure swap success; rows measured before it was recorded fall back on swap success."""
    sure = row.get("sure_success")
    return row["swap_success"] if sure is None else sure
