"""The evaluation pipeline: ranking, reproducibility, the ``eval`` CLI and ``--val-every``."""
from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
import torch

from conftest import tiny_config

FAST = dict(classifier_steps=40, classifier_size=32, kid_subsets=20, features="classifier")


@pytest.fixture(autouse=True)
def _one_thread():
    """Small convolutions: one thread is as fast as two, and immune to a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _no_fid_weights(tmp_path, monkeypatch):
    """Never pick up real Inception weights from this machine's cache: tests stay hermetic."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv("CYCLEKIT_FID_WEIGHTS", raising=False)


@pytest.fixture(scope="module")
def small_world(tmp_path_factory):
    """The fruit world at 32 px with enough training images (40 per domain) for the classifier to
    generalise; the 6-image tiny world is too small for it to be trusted (and the report says so)."""
    from cyclekit.data.synthetic import make_world

    return make_world("fruit", tmp_path_factory.mktemp("small_world"), size=32, n_train=40, n_test=8, seed=1)


def _key(x: torch.Tensor) -> bytes:
    return torch.round((x.clamp(-1, 1) + 1) * 127.5).to(torch.uint8).numpy().tobytes()


def _oracles(world):
    """Perfect generators for the synthetic world: each maps a test image to its true translation
    (and a true translation back to its source, so cycles close); other images pass unchanged."""
    from cyclekit.data.datasets import list_test_pairs
    from cyclekit.io.images import load_image, to_tensor

    tables = {"AtoB": {}, "BtoA": {}}
    for d, fwd, back in (("A", "AtoB", "BtoA"), ("B", "BtoA", "AtoB")):
        for src, gt in list_test_pairs(world, d):
            x, y = to_tensor(load_image(src, 3)), to_tensor(load_image(gt, 3))
            tables[fwd][_key(x)] = y
            tables[back][_key(y)] = x

    def make(table):
        return lambda batch: torch.stack([table.get(_key(x), x) for x in batch])

    return make(tables["AtoB"]), make(tables["BtoA"])


def _identity(batch):
    return batch.clone()


def _evaluator(world, **kw):
    from cyclekit.metrics.evaluate import EvalOptions, Evaluator

    return Evaluator(world, 3, 3, EvalOptions(**{**FAST, **kw}), image_size=32)


def test_perfect_model_ranks_above_do_nothing(small_world):
    ev = _evaluator(small_world)
    perfect = ev.evaluate(*_oracles(small_world))
    nothing = ev.evaluate(_identity, _identity)
    p, n = perfect["metrics"], nothing["metrics"]
    assert p["psnr_AtoB"] == 100.0 and p["ssim_BtoA"] == pytest.approx(1.0) and p["l1"] == 0.0
    assert p["cycle_l1"] == 0.0 and p["identity_l1"] == 0.0
    # The do-nothing model scores exactly the do-nothing baseline.
    for k in ("psnr_AtoB", "l1_BtoA", "ssim", "fid_AtoB", "kid_BtoA", "success_AtoB"):
        assert n[k] == pytest.approx(nothing["baseline"][k]), k
    for k in ("psnr", "ssim", "success"):
        assert p[k] > n[k], k
    for k in ("l1", "fid", "kid", "fid_AtoB", "fid_BtoA"):
        assert p[k] < n[k], k
    assert perfect["feature_extractor"]["name"].startswith("domain-classifier features (NOT comparable")
    assert p["success"] == 1.0 and n["success"] == 0.0
    assert len(perfect["per_image"]) == 16 and {r["direction"] for r in perfect["per_image"]} == {"AtoB", "BtoA"}
    assert perfect["classifier"]["heldout_images"] == 16 and perfect["classifier"]["heldout_accuracy"] >= 0.9


def test_same_seed_same_numbers(small_world):
    a = _evaluator(small_world, seed=5, kid_subset_size=4, classifier_steps=20).evaluate(_identity, _identity)
    b = _evaluator(small_world, seed=5, kid_subset_size=4, classifier_steps=20).evaluate(_identity, _identity)
    for k in ("fid_AtoB", "fid_BtoA", "kid_AtoB", "kid_BtoA", "kid_AtoB_std", "success", "classifier_accuracy"):
        assert a["metrics"][k] == b["metrics"][k], k
    assert a["kid"] == {"subsets": 20, "subset_size": 4}
    assert a["metrics"]["kid_AtoB_std"] > 0  # subsets of 4 out of 8 images differ


def test_auto_features_fall_back_to_the_classifier_with_a_note(tiny_world):
    ev = _evaluator(tiny_world, features="auto", classifier_steps=5)
    assert any("not found" in n and "NOT comparable" in n for n in ev.notes)
    assert ev.extractor.name == "domain-classifier features (NOT comparable to published FID)"


def test_eval_cli_writes_json_csv_html(tiny_release, tiny_world, tmp_path, capsys):
    from cyclekit.cli import main

    def run(out):
        rc = main(["eval", str(tiny_release), "--data", str(tiny_world), "--out", str(out), "--seed", "3",
                   "--classifier-steps", "30", "--classifier-size", "32", "--kid-subsets", "10",
                   "--kid-subset-size", "2", "--device", "cpu"])
        assert rc == 0
        return json.loads((out / "metrics.json").read_text())

    first = run(tmp_path / "e1")
    printed = capsys.readouterr().out
    assert "not found" in printed and "NOT comparable to published FID" in printed
    assert "held-out accuracy" in printed
    out = tmp_path / "e1"
    for name in ("metrics.json", "metrics.csv", "per_image.csv", "index.html"):
        assert (out / name).is_file(), name
    m = first["metrics"]
    for k in ("psnr_AtoB", "ssim_BtoA", "l1", "cycle_l1_ABA", "identity_l1_AtoB", "success_AtoB", "fid_BtoA",
              "kid_AtoB", "classifier_accuracy"):
        assert k in m and np.isfinite(m[k]), k
    assert int(first["model_meta"]["global_step"]) == 4
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    fid_row = next(r for r in rows if r["metric"] == "fid_AtoB")
    assert fid_row["features"] == "domain-classifier features (NOT comparable to published FID)"
    assert fid_row["better"] == "lower" and float(fid_row["do_nothing"]) >= 0
    per_image = list(csv.DictReader((out / "per_image.csv").open()))
    assert len(per_image) == 6 and per_image[0]["psnr"]
    page = (out / "index.html").read_text()
    assert "NOT comparable to published FID" in page and "held-out accuracy" in page
    assert "<svg" in page  # loss curves from the run's metrics.jsonl
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", page)  # nothing fetched from the network
    for src in re.findall(r"src='([^']+)'", page):
        assert (out / src).is_file(), src
    # Reproducible: a second run with the same seed gives the same FID/KID.
    second = run(tmp_path / "e2")
    for k in ("fid_AtoB", "fid_BtoA", "kid_AtoB", "kid_BtoA", "success"):
        assert first["metrics"][k] == second["metrics"][k], k


def test_eval_cli_errors_are_one_line(tiny_release, tmp_path, capsys):
    from cyclekit.cli import main

    assert main(["eval", str(tiny_release), "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["eval", str(tmp_path), "--data", str(tmp_path)]) == 2


def _weights(run_dir):
    from safetensors.torch import load_file

    return load_file(str(run_dir / "model" / "model.safetensors"))


def test_val_every_logs_keeps_best_and_does_not_change_training(tiny_world, tmp_path, monkeypatch):
    from cyclekit.train.state import load_training_state
    from cyclekit.metrics import validation
    from cyclekit.train.loop import Trainer

    monkeypatch.setattr(validation, "VAL_OPTIONS", {"classifier_steps": 20, "classifier_size": 32,
                                                    "kid_subsets": 5})
    plain = Trainer(tiny_config(tiny_world, tmp_path / "plain", max_steps=4)).fit()
    cfg = tiny_config(tiny_world, tmp_path / "val", max_steps=4, val_every=2, val_images=3, val_metric="psnr")
    run = Trainer(cfg, hooks=[validation.make_validator(cfg)]).fit()
    # Validation consumed no training randomness: the weights are bit-identical.
    wa, wb = _weights(plain), _weights(run)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in rows if "val/psnr_AtoB" in r]
    assert [r["step"] for r in val] == [2, 4]
    assert val[0]["val/features"].startswith("domain-classifier")
    assert {"val/kid", "val/success", "val/cycle_l1", "val/classifier_accuracy"} <= set(val[0])
    best = json.loads((run / "best" / "config.json").read_text())["cyclekit"]
    assert (run / "best" / "model.safetensors").is_file() and (run / "best" / "val.json").is_file()
    psnrs = {r["step"]: r["val/psnr"] for r in val}
    best_step = max(psnrs, key=lambda s: (psnrs[s], -s))
    assert best["val_metric"] == "psnr" and int(best["global_step"]) == best_step
    assert val[-1]["val/best_step"] == best_step
    state = load_training_state(run / "checkpoints" / "last.pt")
    assert state["validation"]["best_step"] == best_step
    assert state["validation"]["best_value"] == pytest.approx(psnrs[best_step], abs=1e-5)
    # Stopped at step 2 and resumed: same weights, same validation rows, same best.
    half = tiny_config(tiny_world, tmp_path / "resumed", max_steps=2, val_every=2, val_images=3, val_metric="psnr")
    Trainer(half, hooks=[validation.make_validator(half)]).fit()
    full = tiny_config(tiny_world, tmp_path / "resumed", max_steps=4, val_every=2, val_images=3, val_metric="psnr")
    validator = validation.make_validator(full)
    Trainer(full, resume=True, hooks=[validator]).fit()
    assert validator.best_step == best_step
    wc = _weights(tmp_path / "resumed")
    assert all(torch.equal(wa[k], wc[k]) for k in wa)
    rows_c = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert [r for r in rows_c if "val/psnr" in r] == val


def test_val_every_needs_a_test_set(tmp_path, tiny_world):
    from cyclekit.errors import ConfigError
    from cyclekit.metrics.validation import make_validator

    cfg = tiny_config("", tmp_path / "r", max_steps=2, val_every=1, dir_a=str(tiny_world / "trainA"),
                      dir_b=str(tiny_world / "trainB"))
    with pytest.raises(ConfigError, match="--val-every needs a held-out test set"):
        make_validator(cfg)
    with pytest.raises(ConfigError, match="not one of"):
        tiny_config(tiny_world, tmp_path / "r", val_metric="bogus")


def test_resume_keeps_a_best_release_newer_than_the_checkpoint(tiny_world, tmp_path):
    """best/ is written at each improving validation, the checkpoint only every so often: after a
    crash the checkpoint's best value can be stale, and a worse model must not replace best/."""
    from cyclekit.metrics import validation

    cfg = tiny_config(tiny_world, tmp_path / "run", max_steps=4, val_every=2, val_images=3, val_metric="psnr")
    best = tmp_path / "run" / "best"
    best.mkdir(parents=True)
    (best / "val.json").write_text(json.dumps({"best": {"val_metric": "psnr", "val_value": 21.5,
                                                        "global_step": 6}}))
    v = validation.make_validator(cfg)
    v.load_state_dict({"metric": "psnr", "best_value": 19.0, "best_step": 4})  # the checkpoint's, older
    assert (v.best_value, v.best_step) == (21.5, 6)
    v = validation.make_validator(cfg)
    v.load_state_dict({"metric": "psnr", "best_value": 23.0, "best_step": 8})  # already better: kept
    assert (v.best_value, v.best_step) == (23.0, 8)
    (best / "val.json").write_text("{not json")
    v = validation.make_validator(cfg)
    v.load_state_dict({"metric": "psnr", "best_value": 19.0, "best_step": 4})
    assert (v.best_value, v.best_step) == (19.0, 4)
