"""Images per second of a recipe's training step by batch size and precision, on one CPU thread.

Why batches: at 64 px the recommended recipe's networks are small, so a step on one image is
mostly per-layer overhead; larger batches, and bf16 on a CPU that has it natively, train on more
images per CPU second (BENCHMARKS.md, "Timings behind code choices"). Each variant is the step
``benchmarks/bench_recipes.py`` trains with (``cyclekit.train.step.train_step`` plus the weight
average), timed next to the baseline (fp32, one image per step) in the same run, round after round
(``benchmarks.common.interleaved``), so load from other processes hits both sides of a ratio alike.

    .venv/bin/python benchmarks/bench_batch.py --recipe fast --batches 1,4,8 --rounds 5

``--recipe`` takes several recipes, comma-separated (``fast+n_blocks=4+pixel_shuffle=false,fast``):
every one at every batch size and precision, all against the first recipe's first variant.
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


def step_fn(recipe: str, batch: int, precision: str, size: int):
    """One training step of ``recipe`` on a fixed random batch, in ``precision``."""
    r = StepRecipe(recipe_config(f"{recipe}+batch_size={batch}+precision={precision}", size), seed=0)
    g = torch.Generator().manual_seed(batch)
    a, b = (torch.rand(batch, 3, size, size, generator=g) * 2 - 1 for _ in range(2))
    for _ in range(2):  # warm-up: first-call allocations and oneDNN primitive creation
        r.step(a, b, 0.1)
    return lambda: r.step(a, b, 0.1)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default="fast")
    p.add_argument("--batches", default="1,4,8")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=8, help="steps per timing")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    batches = [int(x) for x in args.batches.split(",")]
    variants, per_call = {}, {}
    recipes = args.recipe.split(",")
    for recipe in recipes:
        for b in batches:
            for prec in args.precisions.split(","):
                name = f"batch {b}, {prec}" if len(recipes) == 1 else f"`{recipe}`, batch {b}, {prec}"
                variants[name], per_call[name] = step_fn(recipe, b, prec, args.size), b
    base = next(iter(variants))  # the first batch in the first precision (fp32, batch 1 by default)
    times, paired = interleaved(variants, args.rounds, args.steps, torch.device("cpu"), baseline=base)
    m = machine(torch.device("cpu"))
    print(f"Command: `python benchmarks/bench_batch.py {' '.join(sys.argv[1:] if argv is None else argv)}`")
    print(f"Machine: {m.get('cpu')} ({m.get('cores')} cores; native bf16: {m.get('cpu_bf16')}), "
          f"torch {m.get('torch')}, 1 thread; recipe {', '.join(f'`{r}`' for r in recipes)} at {args.size} px\n")
    print(f"| variant | ms per step | images per s | images per s vs {base} (median, min-max) |")
    print("|---|---:|---:|---:|")
    for name, ts in times.items():
        t = sorted(ts)[len(ts) // 2]
        n = per_call[name]
        if name == base:
            cell = "1.00x"
        else:  # per-image speed-up against the baseline timed next to it
            s = ratio_stats([x / per_call[base] for x in paired[name]], [x / n for x in ts])
            cell = f"**{s['median']:.2f}x** ({s['min']:.2f}-{s['max']:.2f})"
        print(f"| {name} | {1000 * t:.0f} | {n / t:.1f} | {cell} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
