"""Training never loses work to a user mistake: an existing run is not wiped, a bad test image
is found before the first step, a full disk says which checkpoint is intact, and temp files of
killed runs are cleaned up."""
from __future__ import annotations

import errno
import json
import shutil

import pytest

from conftest import tiny_config
from cyclekit.cli import main
from cyclekit.errors import DataError, OutputError
from cyclekit.io.files import TMP_MARK
from cyclekit.train.loop import Trainer
from cyclekit.train.state import STATE_FILE, load_training_state

TINY = ["--n-blocks", "1", "--ngf", "4", "--ndf", "4", "--load-size", "36", "--crop-size", "32",
        "--progress", "false", "--threads", "1"]


def test_an_existing_run_is_refused_without_resume_or_overwrite(tiny_world, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--dataroot", str(tiny_world), "--run-dir", str(run), "--max-steps", "3", *TINY]) == 0
    rows = (run / "metrics.jsonl").read_text().splitlines()
    assert main(["train", "--dataroot", str(tiny_world), "--run-dir", str(run), "--max-steps", "1", *TINY]) == 2
    err = capsys.readouterr().err
    assert f"--resume {run}" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert load_training_state(run / STATE_FILE)["global_step"] == 3  # untouched
    assert (run / "metrics.jsonl").read_text().splitlines() == rows
    assert main(["train", "--dataroot", str(tiny_world), "--run-dir", str(run), "--max-steps", "1",
                 "--overwrite", *TINY]) == 0
    assert load_training_state(run / STATE_FILE)["global_step"] == 1


def test_a_bad_test_image_is_found_before_the_first_step(tiny_world, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_world, data)
    (data / "testA" / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot an image")
    with pytest.raises(DataError, match="zz_broken.png"):
        Trainer(tiny_config(data, tmp_path / "run", max_steps=2))
    assert not (tmp_path / "run").exists()  # nothing was trained, nothing written
    Trainer(tiny_config(data, tmp_path / "run2", max_steps=2, on_bad_file="skip")).fit()  # skip works


def test_a_failing_validation_hook_cannot_lose_steps(tiny_world, tmp_path):
    class Broken:
        name = ""

        def after_step(self, view):
            if view.step == 3:
                raise RuntimeError("validation blew up")

    trainer = Trainer(tiny_config(tiny_world, tmp_path / "run", max_steps=6, save_every=0), hooks=[Broken()])
    with pytest.raises(RuntimeError, match="blew up"):
        trainer.fit()
    assert load_training_state(tmp_path / "run" / STATE_FILE)["global_step"] == 3


def test_full_disk_names_the_file_and_the_intact_checkpoint(tiny_world, tmp_path, monkeypatch):
    import torch

    run = tmp_path / "run"
    cfg = tiny_config(tiny_world, run, max_steps=4, save_every=2)
    real_save, calls = torch.save, [0]

    def save(obj, f, *a, **k):
        calls[0] += 1
        if calls[0] == 2:  # the second checkpoint meets a full disk half-way
            with open(f, "wb") as fh:
                fh.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(OutputError) as err:
        Trainer(cfg).fit()
    text = str(err.value)
    assert "no space left" in text and "last.pt" in text and "step 2" in text and "intact" in text
    monkeypatch.undo()
    assert load_training_state(run / STATE_FILE)["global_step"] == 2
    assert not [p for p in (run / "checkpoints").iterdir() if TMP_MARK in p.name]


def test_stale_temp_files_are_removed_on_resume(tiny_world, tmp_path):
    run = tmp_path / "run"
    Trainer(tiny_config(tiny_world, run, max_steps=2)).fit()
    stale = run / "checkpoints" / f".last.pt{TMP_MARK}999999-deadbeef.pt"  # a pid that does not run
    stale.write_bytes(b"x" * 4096)
    Trainer(tiny_config(tiny_world, run, max_steps=3), resume=True).fit()
    assert not stale.exists()
    assert json.loads((run / "model" / "config.json").read_text())["cyclekit"]["global_step"] == 3


def test_resume_survives_a_changed_face_margin(tiny_world, tmp_path):
    """face_margin describes the crops (faces.json), not the weights: re-preparing the data
    with another margin must not break --resume; changing the network still does."""
    from cyclekit.errors import ConfigError

    run = tmp_path / "run"
    Trainer(tiny_config(tiny_world, run, max_steps=2, face_margin=0.4)).fit()
    Trainer(tiny_config(tiny_world, run, max_steps=3, face_margin=0.3), resume=True).fit()
    with pytest.raises(ConfigError, match="ngf"):
        Trainer(tiny_config(tiny_world, run, max_steps=4, ngf=8), resume=True).fit()


def test_ema_and_lr_d_train_resume_exactly_and_reach_the_release(tiny_world, tmp_path):
    """--ema-decay and --lr-d change training as documented and keep exact resume."""
    import torch

    from cyclekit.release import load_generator
    from conftest import assert_same

    one = tmp_path / "one"
    t = Trainer(tiny_config(tiny_world, one, max_steps=4, ema_decay=0.9, lr_d=1e-3, save_every=2))
    assert t.objective.opt_D.param_groups[0]["lr"] == 1e-3 and t.objective.opt_G.param_groups[0]["lr"] == 2e-4
    t.fit()
    two = tmp_path / "two"
    Trainer(tiny_config(tiny_world, two, max_steps=2, ema_decay=0.9, lr_d=1e-3)).fit()
    Trainer(tiny_config(tiny_world, two, max_steps=4, ema_decay=0.9, lr_d=1e-3), resume=True).fit()
    a, b = load_training_state(one / STATE_FILE), load_training_state(two / STATE_FILE)
    assert_same(a["ema"], b["ema"])
    released, _ = load_generator(one, "AtoB")
    ema_w = a["ema"]["shadow"]["G_AB"]
    for k, v in released.state_dict().items():
        assert torch.equal(v, ema_w[k])  # the release holds the averaged generator
    assert any(not torch.equal(ema_w[k], a["nets"]["G_AB"][k]) for k in ema_w)  # which is not the live one


def test_resume_applies_a_changed_schedule_and_averages_from_the_loaded_weights(tiny_world, tmp_path):
    """Resuming with another learning-rate schedule (to train on with a decay) uses it from the
    saved position instead of silently restoring the old one; --ema-decay added on resume starts
    its average at the loaded weights, not at a fresh initialisation."""
    import torch

    run = tmp_path / "run"
    Trainer(tiny_config(tiny_world, run, max_steps=2, lr_policy="constant")).fit()
    same = Trainer(tiny_config(tiny_world, run, max_steps=3, lr_policy="constant"), resume=True)
    same.fit()
    assert same.objective.lr() == pytest.approx(2e-4)
    t = Trainer(tiny_config(tiny_world, run, max_steps=6, lr_policy="step", lr_decay_every=1, lr_gamma=0.5,
                            ema_decay=0.9), resume=True)
    t.fit()  # 3 steps per epoch: 2 epochs done
    assert t.objective.sched_G.last_epoch == 2
    assert t.objective.lr() == pytest.approx(2e-4 * 0.5 ** 2)

    state = t.objective.state_dict()  # G_AB's weights moved far from the initialisation, no average:
    state = {**state, "nets": {k: {n: v + 1.0 if k == "G_AB" and v.is_floating_point() else v
                                   for n, v in sd.items()} for k, sd in state["nets"].items()},
             "ema": None}
    t.objective.load_state_dict(state)
    for a, b in zip(t.objective.ema.module("G_AB").parameters(), t.objective.nets.G_AB.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("option", [{"diff_augment": "translation_cutout"}, {"d_spectral_norm": True},
                                    {"colour_gain": 0.3, "colour_gain_mode": "split", "colour_gain_luma": 0.1},
                                    {"pixel_shuffle": True}],
                         ids=["diff_augment", "d_spectral_norm", "split_colour_gain", "pixel_shuffle"])
def test_recipe_options_change_training_and_resume_exactly(tiny_world, tmp_path, option):
    """--diff-augment draws its shifts from the checkpointed RNG, --d-spectral-norm keeps its
    power-iteration vectors in the checkpoint, and the `fast` preset's split colour gain (a
    generator option) keeps its gains in the nets and their Adam moments: 2 + 2 resumed steps give
    the same weights as 4 in one go, and not the weights of the same run without the option."""
    import torch

    from conftest import assert_same

    Trainer(tiny_config(tiny_world, tmp_path / "one", max_steps=4, **option)).fit()
    Trainer(tiny_config(tiny_world, tmp_path / "plain", max_steps=4)).fit()
    two = tmp_path / "two"
    Trainer(tiny_config(tiny_world, two, max_steps=2, **option)).fit()
    Trainer(tiny_config(tiny_world, two, max_steps=4, **option), resume=True).fit()
    one, plain = (load_training_state(tmp_path / n / STATE_FILE)["nets"] for n in ("one", "plain"))
    assert_same(one, load_training_state(two / STATE_FILE)["nets"])
    g_one, g_plain = one["G_AB"], plain["G_AB"]
    assert any(not torch.equal(g_one[k], g_plain[k]) for k in g_plain)  # the generator learned otherwise


def test_save_minutes_spaces_out_epoch_end_checkpoints(tiny_world, tmp_path, caplog):
    """6 images, batch 2: an epoch every 3 steps. By default each epoch end saves; with
    --save-minutes only the end of the run does (and a stop or --save-every would)."""
    import logging

    saved = {}
    for minutes in (0.0, 10.0):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="cyclekit.train.loop"):
            Trainer(tiny_config(tiny_world, tmp_path / f"run{minutes}", max_steps=9, save_minutes=minutes)).fit()
        saved[minutes] = [r.getMessage().split()[4] for r in caplog.records
                          if r.getMessage().startswith("checkpoint saved at step")]
    assert saved[0.0] == ["3", "6", "9"]
    assert saved[10.0] == ["9"]


def test_resume_reads_the_checkpoint_onto_the_cpu_whatever_the_device(tiny_world, tmp_path, monkeypatch):
    """A GPU run (H200, session 33) failed to resume: the checkpoint was read onto the GPU and
    the history pools' and torch's RNG states must be CPU byte tensors. Every other part of the
    state is copied onto the training device by the load_state_dict that takes it."""
    import cyclekit.train.loop as loop

    run = tmp_path / "run"
    Trainer(tiny_config(tiny_world, run, max_steps=2)).fit()
    seen = []
    real = loop.load_training_state

    def spy(path, map_location="cpu"):
        seen.append(str(map_location))
        return real(path, map_location=map_location)

    monkeypatch.setattr(loop, "load_training_state", spy)
    tr = Trainer(tiny_config(tiny_world, run, max_steps=4), resume=True)
    tr.fit()
    assert seen == ["cpu"] and tr.global_step == 4


def test_a_stop_asked_for_while_a_resume_loads_ends_the_run_without_a_step_or_a_save(tiny_world, tmp_path, monkeypatch):
    """Ctrl-C during a resume's checkpoint load stops before the first step: nothing new to save,
    and the checkpoint it was read from stays as it was (session 33 made it wait a step and a save)."""
    import os
    import signal

    import cyclekit.train.loop as loop
    from cyclekit.train.signals import TrainingInterrupted

    run = tmp_path / "run"
    Trainer(tiny_config(tiny_world, run, max_steps=2)).fit()
    before = (run / STATE_FILE).read_bytes()
    real = loop.load_training_state

    def interrupted(path, map_location="cpu"):
        os.kill(os.getpid(), signal.SIGINT)  # the user's Ctrl-C, caught by the run's stop handler
        return real(path, map_location=map_location)

    monkeypatch.setattr(loop, "load_training_state", interrupted)
    handler = signal.getsignal(signal.SIGINT)  # the default, or SIG_IGN in a shell's background job
    tr = Trainer(tiny_config(tiny_world, run, max_steps=4), resume=True)
    with pytest.raises(TrainingInterrupted, match="stopped while resuming at step 2; its checkpoint is unchanged"):
        tr.fit()
    assert tr.global_step == 2 and (run / STATE_FILE).read_bytes() == before
    assert signal.getsignal(signal.SIGINT) is handler  # the run's handlers are put back
