"""The gender-swap quickstart's plumbing on the committed London fixture photos (CC BY 4.0; see
tests/fixtures/london/README.md): a by-person split, training crops, a few training steps, the
swap-and-judge evaluation, the grid and the report. Seconds, not the real 15-minute run."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cv2")
pytest.importorskip("onnxruntime")

from cyclekit.faces.evaluate_swap import DOMAINS, london_photos, sample_people, split_by_person  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "london"


def test_fixture_photos_have_gender_and_eyes():
    photos = london_photos(FIXTURE)
    assert len(photos) == 9
    assert {p.gender for p in photos} == set(DOMAINS)
    assert all(p.eyes is not None and p.eyes.shape == (2, 2) for p in photos)
    assert {p.person for p in photos if p.gender == "female"} == {"001", "002", "003"}


def test_split_is_by_person_balanced_and_seeded():
    photos = london_photos(FIXTURE)
    train, test = split_by_person(photos, n_test_people=2, seed=0)
    held = {p.person for p in test}
    assert len(held) == 2 and not held & {p.person for p in train}
    assert {p.gender for p in test} == set(DOMAINS)  # one woman, one man
    assert len(train) + len(test) == len(photos)
    again = split_by_person(photos, n_test_people=2, seed=0)[1]
    assert [p.path for p in again] == [p.path for p in test]
    with pytest.raises(Exception, match="cannot hold out"):
        split_by_person(photos, n_test_people=6)
    # the people to choose a checkpoint or strength on: half men, half women, from the training side only
    picked = sample_people(train, 2, "select")
    assert {p.gender for p in picked} == set(DOMAINS) and len({p.person for p in picked}) == 2
    assert not {p.person for p in picked} & held and picked == sample_people(train, 2, "select")


def test_quickstart_faces_end_to_end(tmp_path, capsys):
    from cyclekit.cli import main

    out = tmp_path / "qs"
    rc = main(["quickstart", "--faces", "--london", str(FIXTURE), "--out", str(out), "--size", "32",
               "--steps", "2", "--held-out", "2", "--threads", "1"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "gender-swap quickstart" in printed and "male->female" in printed and "female->male" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["steps"] == 2 and report["size"] == 32 and len(report["held_out_people"]) == 2
    train_people = {f.stem.split("_")[0] for d in ("trainA", "trainB") for f in (out / "data" / d).iterdir()}
    assert not train_people & set(report["held_out_people"])
    faces_json = json.loads((out / "data" / "faces.json").read_text())
    assert faces_json["domains"] == ["male", "female"]
    for mode in ("detail", "model_output"):
        dirs = report["modes"][mode]["directions"]
        assert set(dirs) == {"male->female", "female->male"}
        for direction, d in dirs.items():
            assert d["photos"] >= 1
            assert 0.0 <= d["swap_success"] <= 1.0
            # sure swaps: the judge gives the target gender at least SURE (what the strength is chosen by)
            from cyclekit.faces.judge import SURE, swap_success

            g = direction.split("->")[0]
            after = [r["p_male_after"] for r in report["modes"][mode]["photos"] if r["gender"] == g and "swapped" in r]
            assert d["sure_success"] == pytest.approx(swap_success(after, g, sure=SURE))
            assert d["sure_success"] <= d["swap_success"] == pytest.approx(swap_success(after, g))
            # the untouched photo scored as a swap is the judge's error rate
            assert d["do_nothing_success"] == pytest.approx(1.0 - d["judge_accuracy_untouched"])
            assert d["psnr_face"] > 5 and 0 < d["ssim_face"] <= 1
            # halo measures in grey levels (the head mask's effect on them: tests/test_portrait.py);
            # the fixture photos have a studio backdrop, so the backdrop measure must exist
            assert 0.0 <= d["rim_change"] <= 255.0
            assert d["backdrop_change"] is not None and 0.0 <= d["backdrop_change"] <= 255.0
            # stubble on chin and jaw before and after (identity.lower_face_texture), a real photo's
            assert 0.5 < d["chin_texture_before"] < 30.0 and 0.0 <= d["chin_texture"] < 30.0
    assert "rim change" in printed
    from PIL import Image

    grid = np.asarray(Image.open(out / "grid.png"))
    assert grid.ndim == 3 and grid.shape[0] >= 160
    from cyclekit.release import release_domains

    assert release_domains(out / "run" / "model") == ("male", "female")
    # the paste strength was chosen on training people and recorded where `cyclekit swap` reads it
    from cyclekit.faces.strength import STRENGTHS
    from cyclekit.release import release_info

    info = release_info(out / "run" / "model")
    assert set(info["swap_strength"]) == {"AtoB", "BtoA"} and set(info["swap_strength"].values()) <= set(STRENGTHS)
    assert info["swap_strength"] == report["swap_strength"] and "training people" in info["swap_strength_chosen"]
    assert len(report["strength_choice"]["rows"]) == 2 * len(STRENGTHS)
    assert "paste strength, chosen on" in printed
    # the cycle-error limits cyclekit swap warns by, with the measure they were taken with
    from cyclekit.faces.cycle import MEASURE

    assert info["cycle_measure"] == MEASURE and set(info["cycle_limit"]) == {"AtoB", "BtoA"}
    # the studio backdrop of the training crops (the fixture photos' light grey) is recorded too
    r, g, b = info["face_backdrop"]
    assert min(r, g, b) > 150 and max(r, g, b) - min(r, g, b) < 30
    # and so are the training faces' skin colour (what swaps move each face to) and the crops' detector
    faces_json = json.loads((out / "data" / "faces.json").read_text())
    assert info["face_tone"] == faces_json["tone"] and set(info["face_tone"]) == {"AtoB", "BtoA"}
    assert all(len(c) == 3 for c in info["face_tone"].values())
    assert info["face_detector"] == faces_json["detector"] == "haar"
    from cyclekit.release import load_release_config

    assert load_release_config(out / "run" / "model").model.face_margin == pytest.approx(faces_json["margin"])


def test_shared_flags_keep_faces_defaults_unless_given():
    from cyclekit.commands import quickstart
    from cyclekit.commands.faces_quickstart import DEFAULT_OUT, options_from_args

    parser = argparse.ArgumentParser()
    quickstart.register(parser.add_subparsers())
    opts = options_from_args(parser.parse_args(["quickstart", "--faces"]))
    assert (opts.out, opts.size, opts.steps, opts.max_minutes) == (DEFAULT_OUT, 64, 0, 15.0)
    opts = options_from_args(parser.parse_args(["quickstart", "--faces", "--size", "96", "--max-minutes", "3"]))
    assert (opts.size, opts.max_minutes) == (96, 3.0)


def test_faces_quickstart_trains_the_recipe_its_figures_were_measured_with(tmp_path):
    """The README's faces figures come from `fast` at one image per step with 4 residual blocks and
    mirror flips; the faces quickstart keeps that until the batch-4, 2-block, flip-free `fast` is
    measured on faces, and takes everything else (losses, learning rate, average) from the preset."""
    from cyclekit.commands._config_args import load_preset
    from cyclekit.commands.faces_quickstart import FacesQuickstartOptions, faces_config

    cfg = faces_config(FacesQuickstartOptions(), tmp_path / "data", tmp_path / "run")
    fast = load_preset("fast")
    assert (cfg.model.n_blocks, cfg.train.batch_size, cfg.data.flip, cfg.train.half_res_warmup) == (4, 1, True, "0")
    assert (cfg.model.colour_gain_mode, cfg.model.d_spectral_norm, cfg.train.lr, cfg.train.ema_decay) == (
        fast.model.colour_gain_mode, fast.model.d_spectral_norm, fast.train.lr, fast.train.ema_decay)


def test_builtin_model_is_the_swap_default(tmp_path, capsys):
    from cyclekit.cli import main
    from cyclekit.faces.evaluate_swap import builtin_model
    from cyclekit.release import release_domains

    model = builtin_model()
    assert (model / "model.safetensors").stat().st_size < 5 * 1024 * 1024
    assert release_domains(model) == ("male", "female")
    from cyclekit.release import load_release_config

    assert load_release_config(model).model.image_size >= 128  # the floor for the built-in crops
    assert main(["swap", str(FIXTURE / "004_03.jpg"), "--out", str(tmp_path)]) == 0
    assert "swapped faces in 1 of 1 file(s) (AtoB (male -> female)," in capsys.readouterr().out
    # the release's recommended strengths (README model card) are what swap uses by default
    assert main(["swap", str(FIXTURE / "004_03.jpg"), "--out", str(tmp_path / "f"), "--direction", "BtoA"]) == 0
    text = capsys.readouterr().out
    from cyclekit.release import release_info

    recommended = release_info(model)["swap_strength"]["BtoA"]
    assert "(BtoA (female -> male)," in text and f"strength {recommended:g})" in text
    assert main(["swap", str(FIXTURE / "004_03.jpg"), "--out", str(tmp_path / "g"), "--direction", "BtoA",
                 "--strength", "0.7"]) == 0
    assert "strength 0.7)" in capsys.readouterr().out
    assert (tmp_path / "004_03.png").is_file()


def test_even_tone_crops_share_one_skin_colour_recorded_for_both_directions(tmp_path):
    """--even-tone: every training crop is moved to the men's and women's mean skin colour (before the
    backdrop, as a swap does), and that one colour is the release's face_tone both ways."""
    from cyclekit.faces.detectors import make_detector
    from cyclekit.faces.evaluate_swap import detect_faces, write_training_crops
    from cyclekit.faces.params import FaceParams
    from cyclekit.faces.tone import skin_colour
    from cyclekit.io.images import load_image

    photos = london_photos(FIXTURE)
    params = FaceParams(size=64, detector="haar")
    faces = detect_faces(photos, make_detector("haar"))
    skins = {}
    for even in (False, True):
        out = tmp_path / f"even{even}"
        write_training_crops(photos, faces, out, params, even_tone=even)
        doc = json.loads((out / "faces.json").read_text())
        skins[even] = {d: np.array([skin_colour(load_image(f, 3), params.margin) * 255
                                    for f in sorted((out / f"train{d}").iterdir())]) for d in "AB"}
        tone = doc["tone"]
        if even:
            assert tone["AtoB"] == tone["BtoA"]
            every = np.concatenate([skins[False]["A"], skins[False]["B"]])
            assert np.abs(np.array(tone["AtoB"]) - every.mean(axis=0)).max() <= 1.5
            for d in "AB":  # each crop's skin within a level or two of the one tone (8-bit files)
                assert np.abs(skins[True][d] - tone["AtoB"]).max() <= 2.5
            assert doc["backdrop"] is not None
        else:
            assert tone["AtoB"] != tone["BtoA"]
            assert np.abs(skins[False]["A"].mean(axis=0) - tone["AtoB"]).max() <= 1.5
    # the men's and women's crops differed in tone before, and the move changed them
    assert np.abs(skins[False]["A"].mean(axis=0) - skins[False]["B"].mean(axis=0)).max() > 3


def test_faces_only_flags_without_faces_are_refused(capsys):
    from cyclekit.cli import main

    assert main(["quickstart", "--even-tone", "--out", "unused"]) == 2
    err = capsys.readouterr().err
    assert "--even-tone" in err and "--faces" in err and "Traceback" not in err
