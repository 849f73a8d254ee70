"""Issue 5: the fast paths keep the mathematics of the official step, and fall back safely."""
from __future__ import annotations

import copy
import logging
import math
import os

import pytest
import torch
from torch import nn

from cyclekit import runtime
from cyclekit.errors import ConfigError
from cyclekit.train import fast
from cyclekit.train.optim import make_optimizers

from conftest import tiny_config

# `benchmarks` (the official step's transcription) is imported as a package from the repository
# root, which `python -m pytest` puts on sys.path.


def _max_rel(pairs) -> float:
    return max(abs(b[k] - o[k]) / max(abs(b[k]), 1e-8) for b, o in pairs for k in b)


@pytest.mark.parametrize("variant", ["fp32", "fp32+channels_last"])
def test_fp32_fast_paths_match_official_step(variant, tmp_path):
    """Fused Adam, set_to_none, (channels_last) and the trainer's step give the official
    step's losses on the first three steps to 1e-4 relative (same weights, same batches)."""
    from benchmarks.bench_train import parity

    pairs = parity(net="tiny", size=32, batch=1, steps=3, variant=variant, tmp=tmp_path)
    assert all(set(b) == set(o) for b, o in pairs)
    assert _max_rel(pairs) < 1e-4, pairs


@pytest.mark.skipif(os.environ.get("CYCLEKIT_TEST_COMPILE") != "1",
                    reason="torch.compile takes 30-90 s on 2 cores; set CYCLEKIT_TEST_COMPILE=1")
def test_fp32_compile_matches_official_step(tmp_path):
    from benchmarks.bench_train import parity

    assert _max_rel(parity(net="tiny", size=32, steps=3, variant="fp32+compile", tmp=tmp_path)) < 1e-4


def _spied_parity(variant: str, tmp_path) -> tuple[list, set]:
    """bench_train.parity's comparison, plus the dtypes of the generator's convolution outputs."""
    from benchmarks.bench_train import Case, batch_for, build_candidate, make_config, world
    from benchmarks.official import OfficialCycleGAN

    case = Case("tiny", 32, 1, [variant])
    cfg = make_config("tiny", 32, 1, tmp_path, tmp_path / "run", "cpu")
    base = OfficialCycleGAN(cfg.model, cfg.train, "cpu")
    ours = build_candidate(case, variant, world(tmp_path, 32, 2), "cpu", base)
    seen: set = set()
    for m in ours.nets.G_AB.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(lambda mod, inp, out: seen.add(out.dtype))
    pairs = []
    for s in range(3):
        a, b = batch_for(case, torch.device("cpu"), seed=s)
        base.step(a, b)
        got = ours.step_fn(ours.step_state, a, b, ours.cfg.train)
        pairs.append((base.losses(), {k: float(v) for k, v in got.items()}))
    return pairs, seen


def test_bf16_path_runs_and_stays_close(tmp_path):
    pairs, seen = _spied_parity("bf16", tmp_path / "bf16")
    assert all(math.isfinite(v) for _, o in pairs for v in o.values())
    assert _max_rel(pairs) < 0.1  # bf16 has 8 bits of mantissa; the losses agree to a few %
    assert seen == {torch.bfloat16}  # the convolutions really ran in bf16
    _, seen32 = _spied_parity("fp32", tmp_path / "fp32")
    assert seen32 == {torch.float32}  # ... and the spy tells the two apart


def test_instance_norm_guard_fixes_channels_last_gradients():
    """PyTorch's CPU instance_norm backward is wrong at batch 1 with a channels_last incoming
    gradient; with the guard the channels_last network's input gradient equals the NCHW one."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.InstanceNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 4, 3, padding=1)).double()
    x = torch.randn(1, 3, 12, 12, dtype=torch.float64)
    x_ref = x.clone().requires_grad_(True)
    net(x_ref).square().sum().backward()
    cl = copy.deepcopy(net).to(memory_format=torch.channels_last)
    assert fast.guard_instance_norm(cl) == 1 and fast.guard_instance_norm(cl) == 0  # idempotent
    x_cl = x.clone().contiguous(memory_format=torch.channels_last).requires_grad_(True)
    cl(x_cl).square().sum().backward()
    torch.testing.assert_close(x_cl.grad, x_ref.grad)


# ---------------------------------------------------------------------- compile fallback
def test_compile_falls_back_when_torch_compile_raises(monkeypatch, caplog):
    def broken(*a, **k):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    monkeypatch.setattr(runtime, "_warned_compile", False)
    net = nn.Conv2d(3, 4, 3)
    x = torch.randn(1, 3, 8, 8)
    with caplog.at_level(logging.WARNING, logger="cyclekit.runtime"):
        wrapped = runtime.CompiledModule(net, name="G_AB")
    assert wrapped.failed and "G_AB" in caplog.text and "no compiler here" in caplog.text
    torch.testing.assert_close(wrapped(x), net(x))


def test_compile_falls_back_at_first_call_and_warns_once(monkeypatch, caplog, tmp_path):
    calls = []

    def lazy_failure(module, **kwargs):
        def run(*args, **kw):
            calls.append(1)
            raise RuntimeError("InductorError: C++ compile error")
        return run

    monkeypatch.setattr(torch, "compile", lazy_failure)
    monkeypatch.setattr(runtime, "_warned_compile", False)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "cache"))
    nets = nn.Module()
    for name in ("G_AB", "G_BA", "D_A", "D_B"):
        setattr(nets, name, nn.Conv2d(3, 3, 1))
    view = runtime.compile_nets(nets)
    x = torch.randn(2, 3, 4, 4)
    with caplog.at_level(logging.WARNING, logger="cyclekit.runtime"):
        outs = [getattr(view, n)(x) for n in ("G_AB", "G_BA", "D_A", "D_B")]
        again = view.G_AB(x)
    for n, out in zip(("G_AB", "G_BA", "D_A", "D_B"), outs):
        torch.testing.assert_close(out, getattr(nets, n)(x))
    torch.testing.assert_close(again, nets.G_AB(x))
    assert len(calls) == 4  # each tried once, never again after failing
    assert caplog.text.count("torch.compile failed") == 1  # one warning, not four
    assert (tmp_path / "cache").is_dir()
    # The views share the parameters: nothing to copy back, checkpoints keep plain keys.
    assert view.G_AB._orig_mod is nets.G_AB
    assert {id(p) for p in view.parameters()} == {id(p) for p in nets.parameters()}


def test_compile_wrapper_reraises_real_errors(monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda module, **kw: module)
    wrapped = runtime.CompiledModule(nn.Conv2d(3, 4, 3))
    with pytest.raises(RuntimeError):
        wrapped(torch.randn(1, 5, 8, 8))  # wrong channels: eager fails too, so it is raised
    assert not wrapped.failed


# ---------------------------------------------------------------------- precision choice
def test_auto_precision_resolves_as_designed(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.delenv("CYCLEKIT_CPU_BF16", raising=False)
    # Detection, on made-up CPUs: bf16 only with AVX512-BF16 or AMX *and* oneDNN bf16 kernels.
    for avx512_bf16, amx, onednn, want in ((False, False, True, "fp32"), (True, False, True, "bf16"),
                                           (False, True, True, "bf16"), (True, True, False, "fp32")):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v, raising=False)
        monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda v=onednn: v)
        assert runtime.resolve_precision("auto", cpu) == want, (avx512_bf16, amx, onednn)
    monkeypatch.setenv("CYCLEKIT_CPU_BF16", "0")
    assert runtime.resolve_precision("auto", cpu) == "fp32" and runtime.precision_dtype("auto", cpu) is None
    monkeypatch.setenv("CYCLEKIT_CPU_BF16", "1")
    assert runtime.resolve_precision("auto", cpu) == "bf16"
    # ... unless the model is too small for bf16 to pay (measured break-even ~0.15 GMAC)
    from cyclekit.config import ModelConfig

    big = runtime.generator_macs(ModelConfig(n_blocks=9, ngf=64, image_size=128))
    tiny = runtime.generator_macs(ModelConfig(n_blocks=6, ngf=16, image_size=32))
    assert 12e9 < big < 13e9 and tiny < runtime.CPU_BF16_MIN_MACS  # ResNet-9 @ 128: 12.39 GMAC
    assert runtime.resolve_precision("auto", cpu, big) == "bf16" and runtime.resolve_precision("auto", cpu, tiny) == "fp32"
    assert runtime.resolve_precision("bf16", cpu, tiny) == "bf16"  # an explicit choice is kept
    assert runtime.inference_plan("auto", cpu) == (torch.bfloat16, True)
    assert runtime.inference_plan("fp32", cpu) == (None, False)
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        runtime.resolve_precision("fp16", cpu)
    with pytest.raises(ConfigError):
        runtime.resolve_precision("int4", cpu)
    # CUDA: bf16 from Ampere (8.x) on, fp16 with a gradient scaler before.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for capability, want in (((8, 0), "bf16"), ((9, 0), "bf16"), ((7, 5), "fp16")):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None, c=capability: c)
        assert runtime.resolve_precision("auto", torch.device("cuda")) == want
        # Inference on a GPU with TF32: fp32 NCHW (bf16 was slower one image at a time on an H200);
        # older GPUs keep fp16 NHWC; an explicit choice is kept.
        plan = runtime.inference_plan("auto", torch.device("cuda"))
        assert plan == ((None, False) if want == "bf16" else (torch.float16, True)), capability
        assert runtime.inference_plan("bf16", torch.device("cuda")) == (torch.bfloat16, True)


def test_trainer_defaults_use_fast_paths(tiny_world, tmp_path):
    """The trainer resolves `auto`, builds fused Adams, and keeps them fused after a resume
    from a checkpoint whose optimizer was not fused."""
    from cyclekit.train.loop import Trainer

    cfg = tiny_config(tiny_world, tmp_path / "run", precision="auto", max_steps=1)
    trainer = Trainer(cfg)
    tr = trainer.objective
    assert tr.amp_dtype is None  # a 32 px model with ngf 4: too small for bf16 to pay on any CPU
    assert runtime.generator_macs(cfg.model, cfg.train.batch_size) < runtime.CPU_BF16_MIN_MACS
    assert all(g["fused"] for g in tr.opt_G.param_groups + tr.opt_D.param_groups)
    plain = torch.optim.Adam(tr.opt_G.param_groups[0]["params"], lr=1e-3)
    for p in plain.param_groups[0]["params"]:
        p.grad = torch.zeros_like(p)
    plain.step()
    tr.opt_G.load_state_dict(plain.state_dict())
    g = tr.opt_G.param_groups[0]
    assert g["fused"] and g["lr"] == 1e-3 and isinstance(g["lr"], float)
    trainer.fit()
    assert (tmp_path / "run" / "model" / "model.safetensors").exists()


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")
def test_cuda_graph_optimizers_take_lr_tensors_updated_in_place(tiny_world, tmp_path):
    from cyclekit.train.schedule import make_scheduler
    from cyclekit.nn.cyclegan import CycleGANNets

    cfg = tiny_config(tiny_world, tmp_path / "run", lr_policy="linear", n_epochs=1, n_epochs_decay=2)
    nets = CycleGANNets(cfg.model)
    opt_G, _ = make_optimizers(nets, cfg.train, torch.device("cpu"), cuda_graphs=True)
    lr = opt_G.param_groups[0]["lr"]
    assert torch.is_tensor(lr) and opt_G.param_groups[0]["capturable"]
    sched = make_scheduler(opt_G, cfg.train, steps_per_epoch=3)
    sched.step()
    sched.step()
    assert opt_G.param_groups[0]["lr"] is lr  # the captured graph reads this very tensor
    assert float(lr) < cfg.train.lr


def test_graphed_step_without_capture_equals_eager_step(tiny_world, tmp_path):
    """The CUDA-graph step's plumbing (static inputs, device-side history pools drawing the same
    random choices) run eagerly on CPU gives the plain step's losses and pool contents."""
    from cyclekit.train.loop import Trainer
    from cyclekit.train.parallel.graphs import GraphedStep

    cfg = tiny_config(tiny_world, tmp_path / "a", precision="fp32", pool_size=2, batch_size=2)
    plain, graphed = Trainer(cfg).objective, Trainer(copy.deepcopy(cfg)).objective
    graphed.nets.load_state_dict(plain.nets.state_dict())
    step = GraphedStep(graphed.step_state, warmup=1, capture=False)
    g = torch.Generator().manual_seed(0)
    for _ in range(6):  # pool of 2 and batches of 2: fills, then swaps (or not) at random
        a, b = (torch.rand(2, 3, 32, 32, generator=g) * 2 - 1 for _ in range(2))
        want = plain.step_fn(plain.step_state, a, b, cfg.train)
        got = step(graphed.step_state, a, b, cfg.train)
        for k in want:
            torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-6)
    for pa, pb in ((plain.pool_A, graphed.pool_A), (plain.pool_B, graphed.pool_B)):
        sa, sb = pa.state_dict(), pb.state_dict()
        torch.testing.assert_close(sb["images"], sa["images"], rtol=1e-5, atol=1e-6)
        assert torch.equal(sa["rng"], sb["rng"])
    with pytest.raises(ValueError, match="StepState it was built for"):
        step(plain.step_state, a, b, cfg.train)  # a graph replays its own tensors only


def test_cuda_graphs_auto_captures_wherever_it_can_and_quietly(caplog):
    """The default (auto) on a GPU: captured for one process in bf16 or fp32 with fixed shapes
    (3x-5.7x the eager step on an H200); off, without a warning, where it cannot be."""
    from cyclekit.config import TrainConfig
    from cyclekit.train.parallel.graphs import use_cuda_graphs

    t, cuda, bf16 = TrainConfig(), torch.device("cuda"), torch.bfloat16
    assert t.cuda_graphs == "auto"
    with caplog.at_level(logging.WARNING, logger="cyclekit.train.parallel.graphs"):
        assert use_cuda_graphs(t, cuda, bf16, 1) and use_cuda_graphs(t, cuda, None, 1)
        assert not use_cuda_graphs(t, cuda, torch.float16, 1)  # the scaler's inf check syncs
        assert not use_cuda_graphs(t, cuda, bf16, 2)
        assert not use_cuda_graphs(t, cuda, bf16, 1, half_res=True)
        assert not use_cuda_graphs(t, cuda, bf16, 1, preprocess="none")
        assert not use_cuda_graphs(t, torch.device("cpu"), None, 1)
        assert not use_cuda_graphs(t, cuda, bf16, 1, distributed=True)  # torchrun, one rank: not measured
        t.compile = True
        assert not use_cuda_graphs(t, cuda, bf16, 1)  # compiled networks in a graph: not measured
        t.compile = False
    assert caplog.text == ""
    t.cuda_graphs = "false"
    assert not use_cuda_graphs(t, cuda, bf16, 1)
    t.cuda_graphs = "true"
    with caplog.at_level(logging.WARNING, logger="cyclekit.train.parallel.graphs"):
        assert not use_cuda_graphs(t, cuda, bf16, 1, preprocess="scale_width")
    assert "images of varying size" in caplog.text


def test_cuda_graphs_refused_with_reason_on_cpu(tiny_world, tmp_path, caplog):
    from cyclekit.train.loop import Trainer
    from cyclekit.train.step import train_step

    with caplog.at_level(logging.WARNING, logger="cyclekit.train.parallel.graphs"):
        tr = Trainer(tiny_config(tiny_world, tmp_path / "run", cuda_graphs=True)).objective
    assert tr.step_fn is train_step and "CUDA graphs off: no CUDA device" in caplog.text
    # the one decision also kept the optimizers plain (not capturable, float learning rates)
    assert not any(g.get("capturable") for g in tr.opt_G.param_groups)
    assert isinstance(tr.opt_G.param_groups[0]["lr"], float)


def test_translator_bf16_is_nhwc_bf16_weights_and_close_to_fp32(tiny_release, monkeypatch):
    from cyclekit.infer.translator import load_translator

    monkeypatch.setenv("CYCLEKIT_CPU_BF16", "1")  # the path this CPU family takes
    auto = load_translator(tiny_release, "AtoB", device="cpu", precision="auto")
    assert auto.net.compute_dtype is torch.float32  # the tiny test model is below the bf16 break-even
    fast_tr = load_translator(tiny_release, "AtoB", device="cpu", precision="bf16")
    ref = load_translator(tiny_release, "AtoB", device="cpu", precision="fp32")
    assert fast_tr.net.compute_dtype is torch.bfloat16 and fast_tr.channels_last and ref.dtype is None
    assert next(fast_tr.net.parameters()).dtype is torch.bfloat16  # bf16 weights, no per-call casts
    assert ref.net.compute_dtype is torch.float32
    x = torch.rand(3, 3, 36, 40) * 2 - 1
    y, y_ref = fast_tr(x), ref(x)
    assert y.dtype == torch.float32 and y.shape == y_ref.shape == x.shape
    mse = float(((y - y_ref) ** 2).mean()) / 4
    assert 10 * math.log10(1 / mse) > 35  # the bound for bf16 inference


def test_interleaved_timing_pairs_every_variant_with_a_baseline():
    from benchmarks.common import interleaved, ratio_stats

    seen = []
    fns = {k: (lambda k=k: seen.append(k)) for k in ("official", "a", "b")}
    times, paired = interleaved(fns, rounds=3, n=1, device=torch.device("cpu"))
    assert seen == ["official", "a", "official", "b",  # round 1: baseline first, a then b
                    "b", "official", "a", "official",  # round 2: rotated, baseline second
                    "official", "a", "official", "b"]
    assert len(times["a"]) == 3 and len(paired["a"]) == 3 and len(times["official"]) == 6
    s = ratio_stats([2.0, 2.0, 4.0], [1.0, 2.0, 1.0])
    assert s == {"median": 2.0, "min": 1.0, "max": 4.0}


def test_default_threads_warn_when_other_jobs_keep_cores_busy(monkeypatch, caplog):
    """torch's default (one thread per core) stalls when another process holds a core: say so,
    with the --threads to pass; an explicit --threads, an idle machine or one thread say nothing."""
    import logging
    import os

    import torch

    from cyclekit import runtime

    assert 0 <= runtime.busy_cores(0.05) <= (os.cpu_count() or 1)
    before = torch.get_num_threads()
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(runtime.torch, "get_num_threads", lambda: 2)
    try:
        with caplog.at_level(logging.WARNING, logger="cyclekit.runtime"):
            monkeypatch.setattr(runtime, "busy_cores", lambda window=0.2: 1)
            runtime.set_threads(0)
            assert "pass --threads 1" in caplog.text
            caplog.clear()
            monkeypatch.setattr(runtime, "busy_cores", lambda window=0.2: 0)
            runtime.set_threads(0)
            assert caplog.text == ""
            monkeypatch.setattr(runtime, "busy_cores", lambda window=0.2: 1)
            runtime.set_threads(1)
            assert caplog.text == ""
            monkeypatch.setattr(runtime.os, "cpu_count", lambda: 4)  # a spare core for each thread
            runtime.set_threads(0)
            assert caplog.text == ""
            monkeypatch.setattr(runtime.os, "cpu_count", lambda: 2)
            monkeypatch.setattr(runtime.torch, "get_num_threads", lambda: 1)
            runtime.set_threads(0)
            assert caplog.text == ""
    finally:
        monkeypatch.undo()
        torch.set_num_threads(before)


@pytest.mark.parametrize("d_norm", ["instance", "batch"])
def test_discriminator_judges_real_and_fake_in_one_pass_only_where_that_changes_nothing(d_norm):
    """The discriminator update scores real and pooled fake images in one doubled batch when the
    discriminator normalises each image on its own (same loss as two passes, one forward call);
    with batch norm the two batches keep their own statistics (two calls), as in the paper."""
    from cyclekit.config import ModelConfig
    from cyclekit.losses import GANLoss
    from cyclekit.nn.discriminators import build_discriminator
    from cyclekit.train.step import _real_fake_loss

    torch.manual_seed(0)
    D = build_discriminator(ModelConfig(ndf=8, d_norm=d_norm, image_size=32), 3)
    calls = []
    D.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    real, fake = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32) - 0.5
    gan = GANLoss("lsgan")
    one = _real_fake_loss(gan, D, real, fake)
    two = gan(D(real), True) + gan(D(fake), False)
    if d_norm == "instance":
        assert calls[0] == 4 and len(calls) == 3  # one pass on both batches, then the two reference passes
        torch.testing.assert_close(one, two, rtol=1e-5, atol=1e-6)
    else:
        assert calls == [2, 2, 2, 2]


def test_graphed_step_drops_pooled_fakes_of_another_size():
    """A resume with a new crop size (or after a half-size warm-up) brings pooled fakes of the
    old size: the plain pool ignores them, and so must the graphed step's device pool."""
    from cyclekit.train.parallel.graphs import DevicePool
    from cyclekit.train.pool import ImagePool

    pool = ImagePool(size=4, seed=0)
    pool.images = [torch.zeros(1, 3, 32, 32) for _ in range(3)]
    dev = DevicePool(pool, torch.zeros(2, 3, 16, 16))
    assert pool.images == [] and dev.storage.shape == (4, 3, 16, 16)
    same = ImagePool(size=4, seed=0)
    same.images = [torch.full((1, 3, 16, 16), float(i)) for i in range(3)]
    DevicePool(same, torch.zeros(2, 3, 16, 16))
    assert [float(x.mean()) for x in same.images] == [0.0, 1.0, 2.0]  # same size: kept
