"""Multi-process training under torchrun, on CPU with gloo: 2 ranks of a tiny CycleGAN.

Each launch runs WORKER (below) on 2 ranks; every rank dumps its final state outside the run
directory, and records its all-reduce calls and any write it made into the run directory
(through a Python audit hook), so the test can compare ranks with each other and with a
single-process run.
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from cyclekit.train.state import load_training_state
from cyclekit.train.loop import Trainer

from conftest import assert_same, tiny_config

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")

WORKER = textwrap.dedent(
    '''
    import json, os, signal, sys
    from datetime import timedelta

    spec = json.loads(sys.argv[1])
    sys.path.insert(0, spec["tests"])
    import torch
    import torch.distributed as dist
    from conftest import assert_same, tiny_config
    from cyclekit.train.hooks import Callback
    from cyclekit.train.loop import Trainer, TrainingInterrupted

    rank = int(os.environ["RANK"])
    run_dir = os.path.realpath(spec["run"])
    writes = []
    WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def under_run(path):
        try:
            return os.path.realpath(os.fsdecode(path)).startswith(run_dir)
        except TypeError:  # a file descriptor
            return False

    def audit(event, args):
        if event == "open":
            path, mode, flags = args
            writing = any(c in mode for c in "wax+") if mode else bool(flags & WRITE_FLAGS)
            if writing and under_run(path):
                writes.append(f"open {path} {mode}")
        elif event.startswith(("os.", "shutil.")) and event not in ("os.listdir", "os.scandir", "os.walk"):
            if any(under_run(a) for a in args if isinstance(a, (str, bytes, os.PathLike))):
                writes.append(f"{event} {args[0]}")

    sys.addaudithook(audit)
    calls, per_step = [], []
    _all_reduce = dist.all_reduce

    def counting_all_reduce(tensor, *a, **k):
        calls.append(int(tensor.numel()))
        return _all_reduce(tensor, *a, **k)

    dist.all_reduce = counting_all_reduce

    def hook(view):
        step = view.step
        per_step.append(list(calls))
        calls.clear()
        if rank == spec.get("kill_rank") and step == spec.get("kill_at"):
            os.kill(os.getpid(), signal.SIGKILL)  # a crashed rank: no cleanup at all
        if rank == spec.get("term_rank") and step == spec.get("term_at"):
            os.kill(os.getpid(), signal.SIGTERM)  # asks this rank (only) to stop and save

    def bn_check():
        """GlooSyncBatchNorm on half a batch per rank == BatchNorm2d on the whole batch."""
        from cyclekit.train.parallel.syncbn import GlooSyncBatchNorm
        g = torch.Generator().manual_seed(0)
        x, gy = torch.randn(4, 3, 5, 5, generator=g), torch.randn(4, 3, 5, 5, generator=g)
        w, b = torch.randn(3, generator=g), torch.randn(3, generator=g)
        ref, bn = torch.nn.BatchNorm2d(3), GlooSyncBatchNorm(3)
        for m in (ref, bn):
            m.weight.data.copy_(w)
            m.bias.data.copy_(b)
        xr = x.clone().requires_grad_()
        (ref(xr) * gy).sum().backward()
        part = slice(2 * rank, 2 * rank + 2)
        xs = x[part].clone().requires_grad_()
        ys = bn(xs)
        (ys * gy[part]).sum().backward()
        gw, gb = bn.weight.grad.clone(), bn.bias.grad.clone()
        _all_reduce(gw), _all_reduce(gb)  # parameter gradients: local, summed later by GradSync
        ok = lambda a, b: bool(torch.allclose(a, b, atol=1e-5))
        full = torch.nn.functional.batch_norm(x, None, None, w, b, training=True)
        return {"y": ok(ys, full[part]),
                "grad_x": ok(xs.grad, xr.grad[part]), "grad_w": ok(gw, ref.weight.grad),
                "grad_b": ok(gb, ref.bias.grad), "running_mean": ok(bn.running_mean, ref.running_mean),
                "running_var": ok(bn.running_var, ref.running_var)}

    result = {}
    if spec.get("bn_check"):  # our own process group: the trainer must reuse it and leave it alone
        dist.init_process_group("gloo", timeout=timedelta(minutes=1))
        result["bn"] = bn_check()
        calls.clear()
    cfg = tiny_config(spec["world"], spec["run"], **spec["cfg"])
    trainer = Trainer(cfg, resume=spec.get("resume", False), hooks=[Callback(hook)])
    try:
        trainer.fit()
    except TrainingInterrupted:
        result["interrupted"] = True
    if dist.is_initialized():
        dist.destroy_process_group()
    obj = trainer.objective
    torch.save({"nets": obj.nets.state_dict(), "opt_G": obj.opt_G.state_dict(),
                "opt_D": obj.opt_D.state_dict(), "mine": trainer.rank_state(),
                "nce": obj.nce.state_dict() if obj.nce is not None else None,
                "global_step": trainer.global_step, "epoch": trainer.epoch,
                "samples_in_epoch": trainer.samples_in_epoch}, os.path.join(spec["out"], f"rank{rank}.pt"))
    result.update(writes=writes, all_reduce=per_step)
    with open(os.path.join(spec["out"], f"rank{rank}.json"), "w") as fh:
        json.dump(result, fh)
    '''
)


def torchrun(tmp_path, name, world, run, cfg, timeout=180, **extra):
    """Run WORKER on 2 ranks; returns (process, seconds, per-rank dumps, per-rank json)."""
    worker = tmp_path / "ddp_worker.py"
    worker.write_text(WORKER)
    out = tmp_path / f"out_{name}"
    out.mkdir()
    spec = dict(tests=str(Path(__file__).parent), world=str(world), run=str(run), out=str(out),
                cfg=dict(dist_timeout=1, **cfg), **extra)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(worker), json.dumps(spec)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    took = time.monotonic() - start
    dumps = [torch.load(out / f"rank{r}.pt") if (out / f"rank{r}.pt").exists() else None for r in (0, 1)]
    info = [json.loads((out / f"rank{r}.json").read_text()) if (out / f"rank{r}.json").exists() else None
            for r in (0, 1)]
    return proc, took, dumps, info


def n_params(*modules):
    return sum(p.numel() for m in modules for p in m.parameters())


def test_two_ranks_stay_identical_and_match_one_process_of_the_global_batch(tiny_world, tmp_path):
    run = tmp_path / "ddp"
    cfg = dict(batch_size=1, max_steps=4, save_every=2, pool_size=10, log_every=2)
    proc, _, dumps, info = torchrun(tmp_path, "a", tiny_world, run, cfg, bn_check=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = dumps
    # 1. the ranks are bit-identical: weights, batch-norm buffers and both optimizers
    for key in ("nets", "opt_G", "opt_D"):
        assert_same(r0[key], r1[key], key)
    assert r0["global_step"] == 4 and r0["epoch"] == 1 and r0["samples_in_epoch"] == 2  # 6 images, 2 per step
    # 2. exactly one gradient all-reduce for the generators and one for the discriminators per
    #    iteration, then one of the 2 stop flags; the logged losses add one small reduction at
    #    log steps only
    ref = Trainer(tiny_config(tiny_world, tmp_path / "single", batch_size=2, max_steps=4, save_every=2,
                              pool_size=10, log_every=2))
    nets = ref.objective.nets
    n_g, n_d = n_params(nets.G_AB, nets.G_BA), n_params(nets.D_A, nets.D_B)
    n_losses = 9
    for rank in (0, 1):
        steps = info[rank]["all_reduce"]
        assert len(steps) == 4
        for i, calls in enumerate(steps, start=1):
            assert calls == [n_g, n_d, 2] + ([n_losses] if i % 2 == 0 else []), (rank, i, calls)
    # 3. rank 0 alone writes the run directory (the audit hook saw rank 0 write, so it works)
    assert info[1]["writes"] == []
    assert any("last.pt" in w for w in info[0]["writes"]) and any("metrics.jsonl" in w for w in info[0]["writes"])
    assert all(info[0]["bn"].values()) and all(info[1]["bn"].values()), info[0]["bn"]
    # 4. 2 ranks x batch 1 == 1 process x batch 2 on the same images (same pairs, same crops).
    #    Conv weights and their Adam moments match to float precision. (Biases right before an
    #    instance norm have a true gradient of zero; Adam normalises their float noise into
    #    +-lr steps, so they are not compared.)
    ref.fit()
    single = nets.state_dict()
    for k, v in r0["nets"].items():
        if v.dim() > 1:
            assert torch.allclose(v, single[k], atol=1e-6), k
    ref_opt = ref.objective.opt_G.state_dict()["state"]
    for i, st in r0["opt_G"]["state"].items():
        if st["exp_avg"].dim() > 1:
            scale = ref_opt[i]["exp_avg"].abs().max()
            assert (st["exp_avg"] - ref_opt[i]["exp_avg"]).abs().max() <= 1e-4 * scale + 1e-7
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    ref_rows = [json.loads(line) for line in (tmp_path / "single" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4]
    for a, b in zip(rows, ref_rows):  # the logged losses are those of the global batch
        assert a["G_total"] == pytest.approx(b["G_total"], rel=1e-4) and a["D_A"] == pytest.approx(b["D_A"], rel=1e-4)
    # 5. the 2-rank checkpoint resumes in one process (global batch 2 -> 1): the step count goes on
    #    and the epoch still covers the 6 images once (2 done by the ranks + 4 here).
    state = load_training_state(run / "checkpoints" / "last.pt")
    assert state["world_size"] == 2 and len(state["other_ranks"]) == 1 and state["samples_in_epoch"] == 2
    one = Trainer(tiny_config(tiny_world, run, batch_size=1, max_steps=8, save_every=2, pool_size=10,
                              log_every=2), resume=True)
    one.fit()
    assert one.global_step == 8 and one.epoch == 2 and one.samples_in_epoch == 0
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [2, 4, 6, 8]


def test_the_fast_recipes_model_options_train_identically_on_two_ranks(tiny_world, tmp_path):
    """The `fast` preset's colour gain (split) and spectrally normalised discriminators, on the
    pixel-shuffle generator (`--pixel-shuffle`), under DDP:
    the gains are plain parameters (all-reduced with the generators) and the power-iteration vectors
    depend on the weights only, so both ranks hold the same nets, optimizers and buffers."""
    cfg = dict(batch_size=1, max_steps=2, save_every=2, pool_size=2, colour_gain=0.3, colour_gain_mode="split",
               colour_gain_luma=0.1, d_spectral_norm=True, pixel_shuffle=True)
    proc, _, dumps, _ = torchrun(tmp_path, "fast", tiny_world, tmp_path / "run", cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = dumps
    for key in ("nets", "opt_G", "opt_D"):
        assert_same(r0[key], r1[key], key)
    assert r0["global_step"] == 2 and any("luma_gain" in k for k in r0["nets"])


def test_patch_nce_heads_train_identically_on_two_ranks(tiny_world, tmp_path):
    """--lambda-nce: the heads start from rank 0's weights and are all-reduced with the generators
    (each rank samples its own patch positions), so both ranks hold the same heads and Adam state."""
    cfg = dict(batch_size=1, max_steps=2, save_every=2, pool_size=2, lambda_nce=1.0, lambda_cycle=0.0)
    proc, _, dumps, _ = torchrun(tmp_path, "nce", tiny_world, tmp_path / "run", cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = dumps
    for key in ("nets", "opt_G", "opt_D", "nce"):
        assert_same(r0[key], r1[key], key)
    assert r0["global_step"] == 2 and len(r0["opt_G"]["param_groups"]) == 2


def test_stop_kill_and_resume_across_world_sizes(tiny_world, tmp_path):
    """1 rank -> 2 ranks -> (a rank killed) -> 2 ranks exactly -> 1 rank, with synchronised batch norm."""
    run = tmp_path / "run"
    cfg = dict(batch_size=1, norm="batch", d_norm="batch", dropout=0.2, pool_size=2, save_every=1,
               log_every=1)
    Trainer(tiny_config(tiny_world, run, max_steps=1, **cfg)).fit()  # 1 process: 1 of 6 images done

    # A SIGTERM to rank 1 only: both ranks agree to stop after the next iteration and save.
    proc, _, dumps, info = torchrun(tmp_path, "term", tiny_world, run, {**cfg, "max_steps": 20},
                                    resume=True, term_rank=1, term_at=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert info[0].get("interrupted") and info[1].get("interrupted")
    assert dumps[0]["global_step"] == dumps[1]["global_step"] == 3
    assert_same(dumps[0]["nets"], dumps[1]["nets"], "nets")  # batch-norm running stats included
    state = load_training_state(run / "checkpoints" / "last.pt")
    # step 3 (images 4-5 of 6) finished epoch 1 (5 + 2 > 6: the last image is dropped, as drop_last
    # does): the stop's checkpoint holds the finished epoch
    assert state["global_step"] == 3 and state["world_size"] == 2
    assert state["epoch"] == 1 and state["samples_in_epoch"] == 0
    assert_same(state["other_ranks"][0]["pool_A"], dumps[1]["mine"]["pool_A"], "rank 1 pool")
    assert info[1]["writes"] == []
    backup = tmp_path / "run_b"
    shutil.copytree(run, backup)

    # Reference: steps 4..7 uninterrupted on 2 ranks: epoch 2 is steps 4-6, step 7 starts epoch 3.
    proc, _, ref, _ = torchrun(tmp_path, "ref", tiny_world, run, {**cfg, "max_steps": 7}, resume=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ref[0]["global_step"] == 7 and ref[0]["epoch"] == 2 and ref[0]["samples_in_epoch"] == 2

    # Rank 1 dies after step 5, before that step's checkpoint: rank 0 must exit, not hang.
    proc, took, _, _ = torchrun(tmp_path, "kill", tiny_world, backup, {**cfg, "max_steps": 7}, resume=True,
                                kill_rank=1, kill_at=5)
    assert proc.returncode != 0 and took < 120
    assert "rank 0: lost contact with another rank" in proc.stderr
    assert "the last checkpoint (step 4) is intact" in proc.stderr
    assert load_training_state(backup / "checkpoints" / "last.pt")["global_step"] == 4
    assert not list((backup / "checkpoints").glob(".*tmp*"))

    # Resuming on the same 2 ranks is exact: every rank gets back its own pools and RNG streams.
    proc, _, resumed, _ = torchrun(tmp_path, "resumed", tiny_world, backup, {**cfg, "max_steps": 7}, resume=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in (0, 1):
        for key in ("nets", "opt_G", "opt_D", "mine", "global_step", "samples_in_epoch"):
            assert_same(resumed[rank][key], ref[rank][key], f"rank {rank} {key}")

    # And the 2-rank checkpoint with batch norm continues in one process.
    one = Trainer(tiny_config(tiny_world, backup, max_steps=9, **cfg), resume=True)
    one.fit()
    assert one.global_step == 9 and one.samples_in_epoch == 2 + 2


def test_nproc_builds_the_torchrun_command(tmp_path):
    from cyclekit.cli import build_parser
    from cyclekit.commands.train import torchrun_command

    args = build_parser().parse_args(["-q", "train", "--nproc", "3", "--dataroot", str(tmp_path), "--lr", "0.0004",
                                      "--flip", "false", "--batch-size", "2"])
    cmd = torchrun_command(args)
    assert cmd[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=3", "-m"]
    rest = cmd[6:]
    assert rest[:3] == ["cyclekit", "-q", "train"] and "--nproc" not in rest
    flags = dict(zip(rest[3::2], rest[4::2]))
    assert flags == {"--dataroot": str(tmp_path), "--lr": "0.0004", "--flip": "false", "--batch-size": "2"}
    reparsed = build_parser().parse_args(rest[1:])
    assert reparsed.cfg_lr == 0.0004 and reparsed.cfg_flip is False and reparsed.nproc is None


def test_resume_with_another_global_batch_keeps_the_epoch_position_and_retimes_the_schedule(tiny_world, tmp_path):
    """What a world-size change does to the position and a per-iteration schedule, in one process
    (a batch-size change is the same arithmetic: the global batch goes from 2 to 1)."""
    kw = dict(n_epochs=1, n_epochs_decay=1, lr_step_unit="step", lr=1e-3)
    Trainer(tiny_config(tiny_world, tmp_path / "r", batch_size=2, max_steps=2, **kw)).fit()  # 4 of 6 images
    t = Trainer(tiny_config(tiny_world, tmp_path / "r", batch_size=1, max_steps=4, **kw), resume=True)
    t.load_state_dict(load_training_state(tmp_path / "r" / "checkpoints" / "last.pt"))
    # 6 iterations per epoch now; image 4 of epoch 1 is iteration 4: still at the full rate
    assert t.samples_in_epoch == 4 and t.step_in_epoch == 4 and t.steps_per_epoch == 6
    assert t.objective.opt_G.param_groups[0]["lr"] == pytest.approx(1e-3)
    t.fit()  # 2 more images end epoch 1: the decay starts with epoch 2 (iteration 6 of 12), factor 6/7
    assert t.epoch == 1 and t.samples_in_epoch == 0 and t.global_step == 4
    assert t.objective.opt_G.param_groups[0]["lr"] == pytest.approx(1e-3 * 6 / 7)


def test_stop_signals_after_a_lost_peer_are_ignored_until_the_process_exits(monkeypatch):
    """torchrun SIGTERMs the surviving ranks when one dies: that must not cut off their message.
    (Only under torchrun's agent, which sets TORCHELASTIC_RUN_ID; elsewhere nothing changes.)"""
    import signal

    from cyclekit.train.signals import StopSignals

    before, before_int = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    try:
        plain = StopSignals()
        with plain.installed():
            os.kill(os.getpid(), signal.SIGTERM)  # the first signal only asks for a stop
            time.sleep(0.05)
            assert plain.requested
        assert signal.getsignal(signal.SIGTERM) == before  # put back after a normal exit

        outside = StopSignals()
        monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
        with outside.installed():
            outside.ignore_from_now()
        assert signal.getsignal(signal.SIGTERM) == before  # no launcher, no change

        monkeypatch.setenv("TORCHELASTIC_RUN_ID", "test")
        lost = StopSignals()
        with lost.installed():
            lost.ignore_from_now()
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)  # a second one would raise KeyboardInterrupt if handled
            time.sleep(0.05)
            assert not lost.requested
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN  # and still ignored afterwards
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
    finally:
        signal.signal(signal.SIGTERM, before)
        signal.signal(signal.SIGINT, before_int)
