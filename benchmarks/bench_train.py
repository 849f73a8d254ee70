"""Training-step throughput and peak memory: the official step against our trainer's step.

The candidate is the step ``cyclekit train`` runs: a real :class:`cyclekit.train.loop.Trainer`
built from a config (on a small synthetic world of the right size), whose ``step_fn`` is called
on a fixed batch. The baseline is :class:`benchmarks.official.OfficialCycleGAN` with the same
weights. FLOPs of one step are counted on the baseline with ``torch.utils.flop_counter``.
"""
from __future__ import annotations

import dataclasses
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import interleaved, peak_memory_mb, ratio_stats, sync  # noqa: E402
from benchmarks.official import OfficialCycleGAN  # noqa: E402

log = logging.getLogger("bench.train")

# The networks of the official presets (ModelConfig overrides).
NETWORKS = {
    "resnet9": dict(generator="resnet", n_blocks=9, ngf=64),
    "resnet6": dict(generator="resnet", n_blocks=6, ngf=64),
    "unet128": dict(generator="unet", unet_levels=7, ngf=64),
    "unet256": dict(generator="unet", unet_levels=8, ngf=64),
    "tiny": dict(generator="resnet", n_blocks=1, ngf=8, ndf=8),
    "quick": dict(generator="resnet", n_blocks=6, ngf=32, ndf=32),  # `cyclekit quickstart` (64 px)
    "small": dict(generator="resnet", n_blocks=6, ngf=16, ndf=16),  # the quality check's (32 px)
    "small32": dict(generator="resnet", n_blocks=6, ngf=32, ndf=32),
    "unet6q": dict(generator="unet", unet_levels=6, ngf=32, ndf=32),  # the quickstart's (64 px)
}
LABELS = {"resnet9": "ResNet-9", "resnet6": "ResNet-6", "unet128": "U-Net-128 (7 levels)",
          "unet256": "U-Net-256 (8 levels)", "tiny": "tiny ResNet-1 ngf 8", "quick": "quickstart ResNet-6 ngf 32",
          "small": "ResNet-6 ngf 16", "small32": "ResNet-6 ngf 32", "unet6q": "quickstart U-Net-6 ngf 32"}

# Candidate variants: TrainConfig overrides on top of the defaults (the defaults = `cyclekit train`).
VARIANTS = {
    "default": {},
    "fp32": dict(precision="fp32", cuda_graphs="false"),
    "fp32+channels_last": dict(precision="fp32", channels_last=True, cuda_graphs="false"),
    "fp32+compile": dict(precision="fp32", compile=True, cuda_graphs="false"),
    "bf16": dict(precision="bf16", cuda_graphs="false"),
    "bf16+channels_last": dict(precision="bf16", channels_last=True, cuda_graphs="false"),
    "bf16+compile": dict(precision="bf16", compile=True, cuda_graphs="false"),
    "fp16+scaler": dict(precision="fp16", cuda_graphs="false"),
    "bf16+cuda_graphs": dict(precision="bf16", cuda_graphs="true"),
    "bf16+channels_last+cuda_graphs": dict(precision="bf16", channels_last=True, cuda_graphs="true"),
}


@dataclasses.dataclass
class Case:
    net: str
    size: int
    batch: int
    variants: list[str]
    rounds: int = 5
    steps: int = 1  # steps per variant per round

    @property
    def label(self) -> str:
        return f"{LABELS[self.net]} @ {self.size}, batch {self.batch}"


def make_config(net: str, size: int, batch: int, dataroot: Path, run_dir: Path, device: str, **train):
    from cyclekit.config import Config, set_field

    cfg = Config()
    values = dict(NETWORKS[net], image_size=size, crop_size=size, load_size=size, dataroot=str(dataroot),
                  run_dir=str(run_dir), batch_size=batch, progress=False, device=device, seed=0,
                  log_every=10**6, sample_every_epochs=0)
    values.update(train)
    for k, v in values.items():
        set_field(cfg, k, v)
    return cfg.validate()


def world(root: Path, size: int, n: int) -> Path:
    from cyclekit.data.synthetic import make_world

    return make_world("fruit", root / f"fruit{size}_{n}", size=size, n_train=n, n_test=1, seed=0)


def build_candidate(case: Case, variant: str, dataroot: Path, device: str, base: OfficialCycleGAN):
    """A Trainer for ``variant`` with the baseline's weights, and its step on a fixed batch."""
    from cyclekit.train.loop import Trainer

    cfg = make_config(case.net, case.size, case.batch, dataroot, Path(tempfile.mkdtemp()), device,
                      **VARIANTS[variant])
    tr = Trainer(cfg).objective
    for name, sd in base.state_dict().items():
        getattr(tr.nets, name).load_state_dict(sd)
    return tr


def batch_for(case: Case, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(case.batch, 3, case.size, case.size, generator=g) * 2 - 1
    b = torch.rand(case.batch, 3, case.size, case.size, generator=g) * 2 - 1
    return a.to(device), b.to(device)


def count_step_flops(base: OfficialCycleGAN, a: torch.Tensor, b: torch.Tensor) -> int:
    """FLOPs of one official step (convolutions forward and backward, counted by PyTorch)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        base.step(a, b)
    return int(counter.get_total_flops())


def run_case(case: Case, device: torch.device, tmp: Path, peaks: dict[str, float],
             progress: Callable[[str], None]) -> dict:
    dev = str(device)
    base = OfficialCycleGAN(make_config(case.net, case.size, case.batch, tmp, tmp / "run", dev).model,
                            make_config(case.net, case.size, case.batch, tmp, tmp / "run", dev).train, device)
    a, b = batch_for(case, device)
    root = world(tmp, case.size, max(case.batch, 2))
    t0 = time.perf_counter()
    flops = count_step_flops(base, a, b)  # also the baseline's warm-up step
    first = {"official": time.perf_counter() - t0}
    steps: dict[str, Callable[[], object]] = {"official": lambda: base.step(a, b)}
    trainers = {}
    for v in case.variants:
        tr = build_candidate(case, v, root, dev, base)
        trainers[v] = tr
        if tr.cfg.train.channels_last:
            xa, xb = (x.contiguous(memory_format=torch.channels_last) for x in (a, b))
        else:
            xa, xb = a, b
        steps[v] = (lambda tr=tr, xa=xa, xb=xb: tr.step_fn(tr.step_state, xa, xb, tr.cfg.train))
        t0 = time.perf_counter()
        warm = 5 if type(tr.step_fn).__name__ == "GraphedStep" else 1  # CUDA graphs: 3 eager warm-up steps, then capture
        for _ in range(warm):
            steps[v]()
        sync(device)
        first[v] = time.perf_counter() - t0
        progress(f"{case.label}: {v} ready (first step(s) {first[v]:.1f}s)")
    times, paired = interleaved(steps, case.rounds, case.steps, device,
                                progress=lambda m: progress(f"{case.label}: {m}"))
    rows = {}
    for name, ts in times.items():
        sec = statistics.median(ts)
        tr = trainers.get(name)
        amp = tr.amp_dtype if tr is not None else None
        peak = peaks.get("bf16" if amp is torch.bfloat16 else "fp16" if amp is torch.float16 else "fp32")
        rows[name] = {
            "s_per_step": sec, "pairs_per_s": case.batch / sec, "first_s": first[name],
            "ratio": ratio_stats(paired.get(name, ts), ts), "tflops": flops / sec / 1e12,
            "peak_share": (flops / sec) / peak if peak else None,
            "resolved": _describe(tr) if tr is not None else "fp32 eager NCHW, Adam (for-each loop)",
        }
    for name, fn in steps.items():  # peak memory: one more step each, alone
        rows[name]["peak_mb"] = peak_memory_mb(fn, device)
    return {"case": dataclasses.asdict(case), "label": case.label, "flops_per_step": flops, "rows": rows}


def _describe(tr) -> str:
    t = tr.cfg.train
    prec = {None: "fp32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast + GradScaler"}[tr.amp_dtype]
    bits = [prec, "channels_last" if t.channels_last else "NCHW"]
    if t.compile:
        bits.append("compiled")
    if type(tr.step_fn).__name__ == "GraphedStep":
        bits.append("CUDA graph")
    opt = tr.opt_G.param_groups[0]
    bits.append("fused Adam" if opt.get("fused") else "foreach Adam" if opt.get("foreach") else "Adam")
    return ", ".join(bits)


def parity(net: str = "tiny", size: int = 32, batch: int = 1, steps: int = 3, variant: str = "fp32",
           device: str = "cpu", tmp: Optional[Path] = None) -> list[tuple[dict, dict]]:
    """Losses of the official step and of our trainer's step for the first ``steps`` steps."""
    tmp = Path(tmp or tempfile.mkdtemp())
    case = Case(net, size, batch, [variant])
    cfg = make_config(net, size, batch, tmp, tmp / "run", device)
    base = OfficialCycleGAN(cfg.model, cfg.train, device)
    tr = build_candidate(case, variant, world(tmp, size, max(batch, 2)), device, base)
    out = []
    for s in range(steps):
        a, b = batch_for(case, torch.device(device), seed=s)
        if tr.cfg.train.channels_last:
            a2, b2 = (x.contiguous(memory_format=torch.channels_last) for x in (a, b))
        else:
            a2, b2 = a, b
        base.step(a, b)
        ours = tr.step_fn(tr.step_state, a2, b2, tr.cfg.train)
        out.append((base.losses(), {k: float(v) for k, v in ours.items()}))
    return out
