"""--init-from: a new run's generators start from a release; everything else starts fresh."""
import shutil

import pytest
import torch

from conftest import tiny_config
from cyclekit.errors import ConfigError
from cyclekit.release import load_generator


def _generators_equal(trainer, release) -> None:
    objective = trainer.objective
    for name, direction in (("G_AB", "AtoB"), ("G_BA", "BtoA")):
        want, _ = load_generator(release, direction)
        live = getattr(objective.nets, name).state_dict()
        shadow = objective.ema.module(name).state_dict()
        for k, v in want.state_dict().items():
            assert torch.equal(live[k], v), f"{name}.{k} not loaded"
            assert torch.equal(shadow[k], v), f"the average of {name}.{k} not loaded"


def test_generators_and_their_average_start_from_the_release(tiny_world, tiny_release, tmp_path):
    from cyclekit.train.loop import Trainer

    fresh = Trainer(tiny_config(tiny_world, tmp_path / "fresh", max_steps=2, ema_decay=0.9))
    tuned = Trainer(tiny_config(tiny_world, tmp_path / "tuned", max_steps=2, ema_decay=0.9,
                                init_from=str(tiny_release), seed=11))
    _generators_equal(tuned, tiny_release)
    # A run without --init-from starts elsewhere (the check above could not pass by chance).
    g_fresh = fresh.objective.nets.G_AB.state_dict()
    assert any(not torch.equal(v, tuned.objective.nets.G_AB.state_dict()[k]) for k, v in g_fresh.items())
    before = {k: v.clone() for k, v in tuned.objective.nets.G_AB.state_dict().items()}
    tuned.fit()  # and it trains from there
    after = tuned.objective.nets.G_AB.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert (tmp_path / "tuned" / "model" / "model.safetensors").is_file()


def test_a_generator_mismatch_is_refused_with_the_flags_to_use(tiny_world, tiny_release, tmp_path):
    from cyclekit.train.loop import Trainer

    with pytest.raises(ConfigError, match=r"ngf: 8 here, 4 in the release.*--ngf 4"):
        Trainer(tiny_config(tiny_world, tmp_path / "r", max_steps=1, ngf=8, init_from=str(tiny_release)))
    with pytest.raises(ConfigError, match=r"train with the release's: --ngf 4 --residual false$"):
        Trainer(tiny_config(tiny_world, tmp_path / "r", max_steps=1, ngf=8, residual=True, init_from=str(tiny_release)))
    # The discriminators and the crop size are the new run's own choice.
    Trainer(tiny_config(tiny_world, tmp_path / "ok", max_steps=1, ndf=8, crop_size=24, image_size=24,
                        load_size=28, init_from=str(tiny_release)))
    with pytest.raises(ConfigError, match=r"--init-from: model not found: .*nowhere"):
        Trainer(tiny_config(tiny_world, tmp_path / "x", max_steps=1, init_from=str(tmp_path / "nowhere")))


def test_resume_reads_its_checkpoint_not_the_release(tiny_world, tiny_release, tmp_path):
    from cyclekit.train.loop import Trainer

    release = tmp_path / "copy"
    shutil.copytree(tiny_release / "model", release)
    kw = dict(max_steps=2, init_from=str(release))
    Trainer(tiny_config(tiny_world, tmp_path / "run", **kw)).fit()
    shutil.rmtree(release)  # gone: a resume must not need it
    kw["max_steps"] = 4
    again = Trainer(tiny_config(tiny_world, tmp_path / "run", **kw), resume=True)
    again.fit()
    assert again.global_step == 4


def test_builtin_names_the_shipped_gender_swap_model(tiny_world, tmp_path):
    """``--init-from builtin`` with the built-in model's generator options (its recipe: the fast
    preset with 6 residual blocks) loads it; the CLI prints the options to use otherwise."""
    from cyclekit.commands.train import build_trainer
    from cyclekit.commands._config_args import load_preset
    from cyclekit.config import set_field
    from cyclekit.release import builtin_model

    cfg = load_preset("fast")
    for k, v in dict(dataroot=str(tiny_world), run_dir=str(tmp_path / "ft"), n_blocks=6, max_steps=1,
                     init_from="builtin", progress=False, crop_size=32, load_size=36, image_size=32,
                     batch_size=2, half_res_warmup="0").items():
        set_field(cfg, k, v)
    trainer = build_trainer(cfg)
    assert trainer.cfg.train.init_from == "builtin"  # the word stays in the run's config: portable
    _generators_equal(trainer, builtin_model())
    assert trainer.release_info["attribution"].startswith("DeBruine")  # CC BY 4.0 photos: carried
    set_field(cfg, "n_blocks", 2)
    set_field(cfg, "init_from", "builtin")
    with pytest.raises(ConfigError, match="--n-blocks 6"):
        build_trainer(cfg)


def test_a_fine_tuned_release_carries_the_licence_of_its_source(tiny_world, tiny_release, tmp_path):
    from cyclekit.release import release_info, update_release_info
    from cyclekit.train.loop import Trainer

    source = tmp_path / "source"
    shutil.copytree(tiny_release / "model", source)
    update_release_info(source, licence="CC BY 4.0: attribution required", attribution="Someone (2017)",
                        data="a studio set")
    run = tmp_path / "run"
    Trainer(tiny_config(tiny_world, run, max_steps=2, init_from=str(source))).fit()
    info = release_info(run)
    assert info["licence"] == "CC BY 4.0: attribution required" and info["attribution"] == "Someone (2017)"
    assert info["fine_tuned_from"] == {"data": "a studio set", "global_step": 4}
    # resumed after the source is gone: still carried, from the run's own release
    shutil.rmtree(source)
    Trainer(tiny_config(tiny_world, run, max_steps=4, init_from=str(source)), resume=True).fit()
    assert release_info(run)["attribution"] == "Someone (2017)" and release_info(run)["global_step"] == 4


def test_the_half_size_warm_up_is_off_for_a_fine_tune(tiny_world, tiny_release, tmp_path):
    """``--half-res-warmup auto`` (the fast preset, in fp32) trains a new model's layout at half size
    first; a fine-tune starts from a trained layout, so auto turns it off (a number still applies)."""
    from cyclekit.train.schedule import half_res_share

    kw = dict(max_minutes=1.0, lr_step_unit="time", half_res_warmup="auto", d_layers=1)  # 16 px halves fit
    assert half_res_share(tiny_config(tiny_world, tmp_path / "a", **kw), fp32=True) > 0
    tuned = tiny_config(tiny_world, tmp_path / "b", init_from=str(tiny_release), **kw)
    assert half_res_share(tuned, fp32=True) == 0.0
    tuned.train.half_res_warmup = "0.25"
    assert half_res_share(tuned, fp32=True) == 0.25


def test_options_without_weights_may_differ(tiny_world, tiny_release, tmp_path):
    """Dropout has no weights, and a ResNet release ignores the U-Net's levels: a fine-tune may set
    either (the check compares only what shapes the release's generator)."""
    from cyclekit.train.loop import Trainer

    tuned = Trainer(tiny_config(tiny_world, tmp_path / "r", max_steps=1, dropout=0.5, unet_levels=3, ema_decay=0.9,
                                init_from=str(tiny_release)))
    _generators_equal(tuned, tiny_release)


def test_a_resume_refuses_a_new_init_from(tiny_world, tiny_release, tmp_path, capsys):
    """``--resume RUN --init-from OTHER`` would be silently ignored (a resume reads its checkpoint):
    it is refused in one line that says so."""
    from cyclekit.cli import main

    run = tmp_path / "run"
    argv = ["train", "--dataroot", str(tiny_world), "--run-dir", str(run), "--n-blocks", "1", "--ngf", "4",
            "--ndf", "4", "--load-size", "36", "--crop-size", "32", "--max-steps", "2", "--progress", "false"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--init-from", str(tiny_release)]) == 2
    err = capsys.readouterr().err
    assert "applies only to a new run" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["train", "--resume", str(run), "--max-steps", "3", "--progress", "false"]) == 0


def test_a_resume_may_repeat_its_init_from_by_another_path(tiny_world, tiny_release, tmp_path, monkeypatch):
    from cyclekit.cli import main

    run = tmp_path / "run"
    argv = ["train", "--dataroot", str(tiny_world), "--run-dir", str(run), "--n-blocks", "1", "--ngf", "4",
            "--ndf", "4", "--load-size", "36", "--crop-size", "32", "--max-steps", "2", "--progress", "false",
            "--init-from", str(tiny_release)]
    assert main(argv) == 0
    monkeypatch.chdir(tiny_release.parent)
    assert main(["train", "--resume", str(run), "--init-from", tiny_release.name, "--max-steps", "3",
                 "--progress", "false"]) == 0
