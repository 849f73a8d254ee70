"""Losses, history pool, schedules, the update step, and exact resume."""
import json
import subprocess
import sys
import textwrap

import pytest
import torch

from cyclekit.train.state import load_training_state
from cyclekit.config import TrainConfig
from cyclekit.losses import GANLoss, gradient_penalty
from cyclekit.train.pool import ImagePool
from cyclekit.train.schedule import LRFactor, make_scheduler
from cyclekit.train.loop import Trainer

from conftest import assert_same, tiny_config


def test_gan_losses():
    ones, zeros = torch.ones(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)
    ls = GANLoss("lsgan")
    assert ls(ones, True).item() == 0 and ls(zeros, True).item() == 1 and ls(ones, False).item() == 1
    bce = GANLoss("vanilla")
    assert bce(torch.full((1, 1, 2, 2), 20.0), True).item() < 1e-6
    assert abs(bce(zeros, False).item() - 0.6931) < 1e-3
    w = GANLoss("wgangp")
    assert w(ones * 3, True).item() == -3 and w(ones * 3, False).item() == 3


def test_gradient_penalty_is_zero_for_unit_gradient_critic():
    class Critic(torch.nn.Module):  # D(x) = sum(x * v) with |v| = 1: gradient norm exactly 1
        def __init__(self, n):
            super().__init__()
            v = torch.randn(n)
            self.v = v / v.norm()

        def forward(self, x):
            return (x.flatten(1) * self.v).sum(1)

    real, fake = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    assert gradient_penalty(Critic(32), real, fake).item() < 1e-10

    class Steep(torch.nn.Module):
        def forward(self, x):
            return 3 * x.flatten(1).sum(1)  # gradient norm 3 * sqrt(32)

    expected = (3 * 32**0.5 - 1) ** 2
    assert abs(gradient_penalty(Steep(), real, fake).item() - expected) < 1e-3


def test_pool_returns_new_images_until_full_then_mixes():
    pool = ImagePool(size=4, seed=0)
    first = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first), first)
    seen_old = False
    for i in range(20):
        batch = torch.full((1, 1, 1, 1), 100.0 + i)
        out = pool.query(batch)
        assert out.shape == batch.shape
        seen_old |= out.item() != batch.item()
    assert seen_old and len(pool) == 4
    assert torch.equal(ImagePool(0).query(first), first)


def test_pool_state_round_trip_continues_identically():
    a = ImagePool(3, seed=5)
    for i in range(5):
        a.query(torch.full((2, 1, 2, 2), float(i)))
    b = ImagePool(3, seed=99)
    b.load_state_dict(a.state_dict())
    for i in range(10):
        x = torch.full((2, 1, 2, 2), 50.0 + i)
        assert torch.equal(a.query(x), b.query(x))


def test_linear_schedule_matches_the_paper():
    f = LRFactor("linear", n_const=100, n_decay=100, every=1, gamma=0.1)
    assert f(0) == 1.0 and f(99) == 1.0
    assert f(100) == pytest.approx(1 - 1 / 101) and f(199) == pytest.approx(1 / 101)
    assert all(f(t) > f(t + 1) for t in range(100, 199))
    cos = LRFactor("cosine", 10, 10, 1, 0.1)
    assert cos(0) == 1 and cos(10) == pytest.approx(0.5) and cos(20) == pytest.approx(0.0, abs=1e-12)
    step = LRFactor("step", 0, 0, every=5, gamma=0.5)
    assert step(4) == 1 and step(5) == 0.5 and step(10) == 0.25


def test_per_step_schedule_scales_with_iterations_per_epoch():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=1.0)
    sched = make_scheduler(opt, TrainConfig(n_epochs=2, n_epochs_decay=2, lr_step_unit="step"), steps_per_epoch=10)
    lrs = []
    for _ in range(40):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[19] == 1.0 and lrs[20] < 1.0 and lrs[39] == pytest.approx(1 / 21)


def test_train_step_changes_weights_and_logs_every_term(tiny_world, tmp_path):
    cfg = tiny_config(tiny_world, tmp_path / "run", max_steps=3, dropout=0.2)
    t = Trainer(cfg)
    before = {k: v.clone() for k, v in t.objective.nets.state_dict().items()}
    t.fit()
    after = t.objective.nets.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any(k.startswith("G_AB") for k in changed) and any(k.startswith("D_B") for k in changed)
    rows = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    for key in ("G_AB_adv", "G_BA_adv", "cycle_A", "cycle_B", "idt_A", "idt_B", "D_A", "D_B", "lr", "pairs_per_s"):
        assert key in rows[0]
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()


@pytest.mark.parametrize("gan_loss", ["vanilla", "wgangp"])
def test_other_gan_losses_train(tiny_world, tmp_path, gan_loss):
    t = Trainer(tiny_config(tiny_world, tmp_path / "run", max_steps=2, gan_loss=gan_loss, lambda_identity=0))
    t.fit()
    rows = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(r["G_total"])) for r in rows)
    assert ("gp" in rows[0]) == (gan_loss == "wgangp")
    assert rows[0]["idt_A"] == 0


def test_epoch_end_writes_samples(tiny_world, tmp_path):
    # 6 images, batch 2: 3 iterations per epoch; 4 steps cross one epoch boundary.
    Trainer(tiny_config(tiny_world, tmp_path / "run", max_steps=4)).fit()
    assert (tmp_path / "run" / "samples" / "epoch_0001.png").is_file()


def test_resume_in_process_is_exact(tiny_world, tmp_path):
    """N steps in one go == k steps, a new Trainer, resume to N (across an epoch boundary)."""
    kw = dict(dropout=0.3, batch_size=2)
    one = Trainer(tiny_config(tiny_world, tmp_path / "one", max_steps=8, **kw))
    one.fit()
    Trainer(tiny_config(tiny_world, tmp_path / "two", max_steps=4, **kw)).fit()
    two = Trainer(tiny_config(tiny_world, tmp_path / "two", max_steps=8, **kw), resume=True)
    two.fit()
    a, b = one.state_dict(), two.state_dict()
    for s in (a, b):  # the run config and the wall time trained are not part of the maths
        s.pop("config"), s.pop("seconds_trained")
    assert_same(a, b)
    steps = [json.loads(l)["step"] for l in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    from conftest import assert_same, tiny_config
    from cyclekit.train.hooks import Callback
    from cyclekit.train.loop import Trainer

    def kill(view):
        if view.step == {kill_at}:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no final save

    cfg = tiny_config({world!r}, {run!r}, max_steps={n}, save_every=3, dropout=0.3)
    Trainer(cfg, hooks=[Callback(kill)]).fit()
    """
)


def test_kill_then_resume_from_cli_gives_identical_weights(tiny_world, tmp_path):
    n, kill_at = 10, 7
    ref = Trainer(tiny_config(tiny_world, tmp_path / "ref", max_steps=n, save_every=3, dropout=0.3))
    ref.fit()
    run = tmp_path / "killed"
    script = KILLER.format(tests=str(__import__("pathlib").Path(__file__).parent), kill_at=kill_at,
                           world=str(tiny_world), run=str(run), n=n)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr
    assert load_training_state(run / "checkpoints" / "last.pt")["global_step"] == 6
    assert not list((run / "checkpoints").glob(".*tmp*"))
    proc = subprocess.run([sys.executable, "-m", "cyclekit", "-q", "train", "--resume", str(run)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    a = load_training_state(run / "checkpoints" / "last.pt")
    b = ref.state_dict()
    assert a["global_step"] == b["global_step"] == n
    assert_same(a["nets"], b["nets"], "nets")
    assert_same(a["opt_G"], b["opt_G"], "opt_G")
    assert_same(a["pool_B"], b["pool_B"], "pool_B")
    steps = [json.loads(l)["step"] for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, n + 1))


def test_resume_refuses_changed_model(tiny_world, tmp_path):
    from cyclekit.errors import ConfigError

    Trainer(tiny_config(tiny_world, tmp_path / "r", max_steps=1)).fit()
    with pytest.raises(ConfigError, match="model options differ"):
        Trainer(tiny_config(tiny_world, tmp_path / "r", max_steps=2, ngf=8), resume=True).fit()


class _Clock:
    """A fake ``time`` module for the loop: monotonic() advances one second per call."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        self.now += 1.0
        return self.now

    def perf_counter(self) -> float:
        return self.now


def test_time_budget_schedule_spends_the_budget_and_ends_near_zero(tiny_world, tmp_path, monkeypatch):
    import cyclekit.train.loop as loop

    monkeypatch.setattr(loop, "time", _Clock())
    # 3 iterations per epoch and 2 epochs: the epoch schedule would stop after 6 steps
    cfg = tiny_config(tiny_world, tmp_path / "run", n_epochs=1, n_epochs_decay=1, lr=1e-3,
                      lr_step_unit="time", max_minutes=1.0)
    t = Trainer(cfg)
    t.fit()
    rows = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in rows]
    assert t.global_step > 12  # ran on past the epochs, to the deadline
    assert lrs[0] == pytest.approx(1e-3) and lrs[len(lrs) // 3] == pytest.approx(1e-3)  # constant half
    assert all(a >= b for a, b in zip(lrs, lrs[1:])) and lrs[-1] < 1e-4  # then decays to ~0
    state = load_training_state(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["seconds_trained"] >= 60.0


def test_time_budget_counts_earlier_processes_on_resume(tiny_world, tmp_path, monkeypatch):
    import cyclekit.train.loop as loop

    monkeypatch.setattr(loop, "time", _Clock())
    kw = dict(lr=1e-3, lr_step_unit="time", max_minutes=1.0)
    Trainer(tiny_config(tiny_world, tmp_path / "run", max_steps=4, **kw)).fit()
    spent = load_training_state(tmp_path / "run" / "checkpoints" / "last.pt")["seconds_trained"]
    second = Trainer(tiny_config(tiny_world, tmp_path / "run", **kw), resume=True)
    second.fit()
    assert second.seconds_before == spent and 0 < spent < 60
    assert second.seconds_trained() >= 60.0  # the whole run, not this process, got the minute
    rows = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["lr"] < 1e-4


def test_time_budget_schedule_needs_max_minutes(tiny_world, tmp_path):
    from cyclekit.errors import ConfigError

    with pytest.raises(ConfigError, match="--max-minutes"):
        tiny_config(tiny_world, tmp_path / "run", lr_step_unit="time")


def _spy_sizes(trainer) -> list[int]:
    sizes, inner = [], trainer.objective.step_fn

    def spy(state, a, b, cfg):
        assert a.shape == b.shape
        sizes.append(a.shape[-1])
        return inner(state, a, b, cfg)

    trainer.objective.step_fn = spy
    return sizes


def test_half_res_warmup_trains_the_first_share_at_half_size_and_resumes_there(tiny_world, tmp_path, monkeypatch):
    """--half-res-warmup 0.5: the first half of the time budget sees 2x2-averaged 16 px batches,
    the rest the 32 px crops; the history pools hold only full-size fakes after the switch; a run
    resumed during the warm-up goes on at half size and switches at the same point."""
    import cyclekit.train.loop as loop

    monkeypatch.setattr(loop, "time", _Clock())
    kw = dict(lr=1e-3, lr_step_unit="time", max_minutes=1.0, half_res_warmup=0.5, image_size=64, load_size=72,
              crop_size=64, d_layers=3)
    t = Trainer(tiny_config(tiny_world, tmp_path / "run", **kw))
    sizes = _spy_sizes(t)
    t.fit()
    switch = sizes.index(64)
    assert switch > 2 and set(sizes[:switch]) == {32} and set(sizes[switch:]) == {64}
    assert 0.3 < switch / len(sizes) < 0.7
    assert t.objective.pool_A.images and all(x.shape[-1] == 64 for x in t.objective.pool_A.images)

    # interrupted during the warm-up, then resumed
    Trainer(tiny_config(tiny_world, tmp_path / "r2", max_steps=3, **kw)).fit()
    second = Trainer(tiny_config(tiny_world, tmp_path / "r2", **kw), resume=True)
    resumed = _spy_sizes(second)
    second.fit()
    assert resumed[0] == 32 and resumed[-1] == 64
    assert resumed.index(64) == pytest.approx(switch - 3, abs=2)


def test_half_res_warmup_needs_a_time_budget_and_even_crops(tiny_world, tmp_path):
    from cyclekit.errors import ConfigError

    with pytest.raises(ConfigError, match="--lr-step-unit time"):
        tiny_config(tiny_world, tmp_path / "run", half_res_warmup=0.4)
    with pytest.raises(ConfigError, match="even --crop-size"):
        tiny_config(tiny_world, tmp_path / "run", half_res_warmup=0.4, lr_step_unit="time", max_minutes=1.0,
                    crop_size=31, image_size=32)
    with pytest.raises(ConfigError, match="in \\[0, 1\\)"):
        tiny_config(tiny_world, tmp_path / "run", half_res_warmup=1.0, lr_step_unit="time", max_minutes=1.0)
    with pytest.raises(ConfigError, match="16 px crops"):  # the tiny 3-layer PatchGAN needs 32 px
        Trainer(tiny_config(tiny_world, tmp_path / "run", half_res_warmup=0.4, lr_step_unit="time", max_minutes=1.0))


def test_half_res_warmup_auto_is_on_in_fp32_only_and_steps_aside_where_it_cannot_apply(tiny_world, tmp_path):
    """auto: the first quarter of a time budget at half size when the run trains in fp32, none under
    bf16 autocast (whose steps learn the shapes anyway), and off without a word of error where the
    run has no time budget or crops too small to halve; a number that cannot apply is an error."""
    from cyclekit.errors import ConfigError
    from cyclekit.train.schedule import AUTO_HALF_RES

    big = dict(image_size=64, load_size=72, crop_size=64, d_layers=3, half_res_warmup="auto")
    timed = dict(lr_step_unit="time", max_minutes=1.0)
    assert Trainer(tiny_config(tiny_world, tmp_path / "a", **big, **timed)).objective.half_share == AUTO_HALF_RES
    bf16 = Trainer(tiny_config(tiny_world, tmp_path / "b", **big, **timed, precision="bf16")).objective
    assert bf16.half_share == 0.0 and bf16.amp_dtype == torch.bfloat16
    assert Trainer(tiny_config(tiny_world, tmp_path / "c", **big)).objective.half_share == 0.0  # epochs
    small = Trainer(tiny_config(tiny_world, tmp_path / "d", half_res_warmup="auto", **timed)).objective
    assert small.half_share == 0.0  # 16 px halves: too small for the PatchGAN, so auto stays off
    with pytest.raises(ConfigError, match="auto or a number"):
        tiny_config(tiny_world, tmp_path / "e", half_res_warmup="half", **timed)
