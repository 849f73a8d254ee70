"""Choosing a face model's paste strength (cyclekit.faces.strength) and recording it in the release."""
from __future__ import annotations

import json

import pytest


def _rows(direction, table):
    return [{"strength": s, "direction": direction, "photos": 20, "swap_success": ok, "same_person_rate": same,
             "psnr_face": 20.0} for s, ok, same in table]


def test_the_gentlest_strength_that_flips_enough_and_keeps_the_person_wins():
    from cyclekit.faces.strength import choose_strength

    rows = _rows("male->female", [(1.0, 0.60, 1.0), (1.15, 0.85, 1.0), (1.3, 0.92, 0.95), (1.45, 1.0, 0.9)])
    rows += _rows("female->male", [(1.0, 0.95, 0.70), (1.15, 1.0, 0.80), (1.3, 1.0, 0.50)])
    # women -> men: 1.0 flips enough but loses the person (70% < 75%), so 1.15
    assert choose_strength(rows) == {"AtoB": 1.3, "BtoA": 1.15}
    assert choose_strength(rows, target=0.5, min_same=0.0) == {"AtoB": 1.0, "BtoA": 1.0}


def test_the_choice_counts_the_swaps_the_judge_is_sure_of():
    """Past one half is not enough on training people: the choice waits for P(target) >= SURE."""
    from cyclekit.faces.strength import choose_strength, describe_choice

    rows = _rows("male->female", [(1.0, 0.72, 1.0), (1.15, 0.95, 1.0), (1.3, 0.95, 1.0)])
    for r, sure in zip(rows, (0.65, 0.88, 0.95)):
        r["sure_success"] = sure
    assert choose_strength(rows) == {"AtoB": 1.3}  # 95% swapped at 1.15, but sure of only 88%
    text = describe_choice(rows, choose_strength(rows), people=40)
    assert "male->female 1.3 (sure 95%, swap success 95%, same person 100%)" in text
    assert "at which the judge was sure (P >= 0.8) of 90% of the swaps" in text
    # no strength reaches the mark: the surest wins, and on a tie of sure swaps the more swapped
    for r, sure in zip(rows, (0.65, 0.85, 0.85)):
        r["sure_success"] = sure
    assert choose_strength(rows) == {"AtoB": 1.15}
    rows[1]["swap_success"] = 0.9
    assert choose_strength(rows) == {"AtoB": 1.3}


def test_without_a_strength_that_reaches_the_target_the_most_successful_kept_one_wins():
    from cyclekit.faces.strength import choose_strength

    rows = _rows("male->female", [(1.0, 0.5, 1.0), (1.3, 0.7, 0.9), (1.6, 0.7, 0.8), (2.0, 0.9, 0.2)])
    rows += _rows("female->male", [(1.0, 0.2, 0.6), (1.3, 0.9, 0.3)])  # nothing keeps the person: the gentlest
    assert choose_strength(rows) == {"AtoB": 1.3, "BtoA": 1.0}
    # no face embeddings (the identity extra is optional): success alone decides
    no_ident = [{**r, "same_person_rate": None} for r in rows]
    assert choose_strength(no_ident) == {"AtoB": 2.0, "BtoA": 1.3}
    # a direction with no judged photo is left out rather than guessed
    empty = [{**r, "swap_success": None} if r["direction"] == "female->male" else r for r in no_ident]
    assert choose_strength(empty) == {"AtoB": 2.0}


def test_describe_choice_names_the_people_and_the_figures():
    from cyclekit.faces.strength import choose_strength, describe_choice

    rows = _rows("male->female", [(1.0, 0.6, None), (1.3, 0.95, None)]) + _rows("female->male", [(1.0, 1.0, 0.9)])
    text = describe_choice(rows, choose_strength(rows), people=40)
    assert "40 training people" in text and "male->female 1.3 (swap success 95%)" in text
    assert "whose swap success reached 90%" in text  # rows from before sure_success: said as it was chosen
    assert "female->male 1 (swap success 100%, same person 90%)" in text and "fallback" not in text
    # a fallback says so, and a direction without judged photos is named, not reported as 1
    weak = _rows("male->female", [(1.0, 0.5, 1.0), (1.3, 0.7, 0.9)])
    text = describe_choice(weak, choose_strength(weak), people=4)
    assert "male->female 1.3 (swap success 70%, same person 90%, fallback: none reached" in text
    assert "female->male not chosen" in text


def test_update_release_info_adds_fields_keeps_the_rest_and_swap_reads_it(tmp_path):
    from cyclekit.config import Config
    from cyclekit.faces.pipeline import recommended_strength
    from cyclekit.infer.translator import load_translator
    from cyclekit.nn import build_generator
    from cyclekit.release import release_info, save_release, update_release_info

    cfg = Config()
    cfg.model.ngf, cfg.model.n_blocks, cfg.model.image_size = 4, 1, 32
    rel = save_release(tmp_path / "model", cfg, build_generator(cfg.model), build_generator(cfg.model), meta={"domains": ["male", "female"], "global_step": 7})
    weights = (rel / "model.safetensors").read_bytes()
    update_release_info(tmp_path, swap_strength={"AtoB": 1.3, "BtoA": 1.15}, swap_strength_chosen="on 40 people")
    info = release_info(rel)
    assert info["domains"] == ["male", "female"] and info["global_step"] == 7
    assert info["swap_strength"] == {"AtoB": 1.3, "BtoA": 1.15}
    assert (rel / "model.safetensors").read_bytes() == weights
    assert json.loads((rel / "config.json").read_text())["model"]["ngf"] == 4
    assert recommended_strength(load_translator(rel, "BtoA", device="cpu")) == pytest.approx(1.15)
    assert recommended_strength(load_translator(rel, "AtoB", device="cpu")) == pytest.approx(1.3)
