"""Resize-convolution as one transposed convolution (``cyclekit.nn.layers.ResizeConv2d``) against
the two-step nearest x2 + padded 3x3 convolution it replaces, on one CPU thread.

Two levels, each timed round after round next to its baseline (``benchmarks.common.interleaved``):
the upsampling layers of ``fast`` alone (forward + backward at its two shapes), and ``fast``'s
whole training step with every ``ResizeConv2d`` of its generators switched back to the two-step
computation (same weights, same function) against the step as shipped.

    .venv/bin/python benchmarks/bench_upsample.py --rounds 5
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from benchmarks.bench_recipes import StepRecipe, recipe_config  # noqa: E402
from benchmarks.common import interleaved, machine, ratio_stats  # noqa: E402
from cyclekit.nn.layers import ResizeConv2d  # noqa: E402


def layer_fn(n: int, c_in: int, c_out: int, side: int, precision: str, reference: bool):
    layer = ResizeConv2d(c_in, c_out, padding="reflect", bias=False)
    if reference:
        layer.forward = layer.two_step
    x = torch.randn(n, c_in, side, side, requires_grad=True)
    dtype = torch.bfloat16 if precision == "bf16" else None

    def run():
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            y = layer(x)
        y.float().square().mean().backward()
    return run


def step_fn(precision: str, reference: bool, size: int = 64, batch: int = 4):
    r = StepRecipe(recipe_config(f"fast+batch_size={batch}+precision={precision}", size), seed=0)
    if reference:
        for m in r.state.nets.modules():
            if isinstance(m, ResizeConv2d):
                m.forward = m.two_step
    g = torch.Generator().manual_seed(0)
    a, b = (torch.rand(batch, 3, size, size, generator=g) * 2 - 1 for _ in range(2))
    for _ in range(2):
        r.step(a, b, 0.1)
    return lambda: r.step(a, b, 0.1)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--precisions", default="fp32,bf16")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    m = machine(torch.device("cpu"))
    print(f"Command: `python benchmarks/bench_upsample.py {' '.join(sys.argv[1:] if argv is None else argv)}`")
    print(f"Machine: {m.get('cpu')} ({m.get('cores')} cores; native bf16: {m.get('cpu_bf16')}), "
          f"torch {m.get('torch')}, 1 thread\n")
    print("| what | precision | two-step ms | one transposed conv ms | speed-up (median, min-max) |")
    print("|---|---|---:|---:|---:|")
    cases = [("`fast` up1: 64 -> 32 channels, 16 -> 32 px, batch 4, fwd + bwd", (4, 64, 32, 16), 20),
             ("`fast` up2: 32 -> 16 channels, 32 -> 64 px, batch 4, fwd + bwd", (4, 32, 16, 32), 20),
             ("`fast`'s whole training step at 64 px, batch 4", None, 3)]
    for what, shape, n in cases:
        for prec in args.precisions.split(","):
            if shape is None:
                variants = {"ref": step_fn(prec, True), "new": step_fn(prec, False)}
            else:
                variants = {"ref": layer_fn(*shape, prec, True), "new": layer_fn(*shape, prec, False)}
            times, paired = interleaved(variants, args.rounds, n, torch.device("cpu"), baseline="ref")
            s = ratio_stats(paired["new"], times["new"])
            med = {k: 1e3 * sorted(v)[len(v) // 2] for k, v in times.items()}
            print(f"| {what} | {prec} | {med['ref']:.2f} | {med['new']:.2f} | "
                  f"**{s['median']:.2f}x** ({s['min']:.2f}-{s['max']:.2f}) |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
