"""bf16 autocast against fp32 for whole CPU training steps, per model size and thread count.

``--precision auto`` trains in bf16 on a CPU with native bf16 (AVX512-BF16 / AMX) only where the
work per pass is big enough (``cyclekit.runtime.resolve_precision``): oneDNN's bf16 path pays
fixed costs per layer (casts, weight reorders) that a small convolution earns back only in part.
This benchmark times ``cyclekit``'s ``train_step`` (``benchmarks.bench_recipes.StepRecipe``) and
single-image inference in fp32 and in bf16, each bf16 timing right next to an fp32 one
(``benchmarks.common.interleaved``), for recipes of several sizes at each thread count, with the
bf16 speed-up (fp32 time / bf16 time, median of rounds) and the precision ``auto`` picks there.

    .venv/bin/python benchmarks/bench_precision.py --threads 1,2 --rounds 4
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from benchmarks.bench_recipes import StepRecipe, recipe_config  # noqa: E402
from benchmarks.common import interleaved, machine, ratio_stats  # noqa: E402
from cyclekit.runtime import generator_macs, prepare_inference_net, resolve_precision  # noqa: E402

# (recipe as bench_recipes names it, crop size): the sizes `cyclekit train` runs on a CPU
CASES = [("fast+batch_size=1", 64), ("fast+batch_size=2", 64), ("fast", 64), ("fast+batch_size=8", 64),
         ("fast", 128), ("genderswap", 128), ("paper", 128)]


def step_fn(recipe: str, size: int, precision: str):
    cfg = recipe_config(f"{recipe}+precision={precision}+half_res_warmup=0", size)
    r = StepRecipe(cfg, seed=0)
    n = cfg.train.batch_size
    g = torch.Generator().manual_seed(0)
    a, b = (torch.rand(n, 3, size, size, generator=g) * 2 - 1 for _ in range(2))
    for _ in range(2):  # warm-up: first-call allocations and oneDNN's kernel choice
        r.step(a, b, 0.5)
    return lambda: r.step(a, b, 0.5)


def infer_fn(recipe: str, size: int, precision: str, batch: int = 1):
    """One generator's forward pass as ``cyclekit translate`` runs it (bf16 weights, NHWC)."""
    from cyclekit.nn import build_generator

    cfg = recipe_config(recipe, size)
    torch.manual_seed(0)
    net, _, channels_last = prepare_inference_net(build_generator(cfg.model).eval(), precision, torch.device("cpu"))
    x = torch.rand(batch, 3, size, size) * 2 - 1
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def run():
        with torch.inference_mode():
            net(x)
    run()
    return run


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--steps", type=int, default=4, help="steps per timing")
    p.add_argument("--cases", default="", help="comma-separated indices into CASES (default: all)")
    p.add_argument("--infer", default="fast:64,genderswap:128,paper:256",
                   help="generators timed for inference (one image), RECIPE:PX comma-separated; '' for none")
    args = p.parse_args(argv)
    cpu = torch.device("cpu")
    m = machine(cpu)
    cases = [CASES[int(i)] for i in args.cases.split(",")] if args.cases else CASES
    print(f"Command: `python benchmarks/bench_precision.py {' '.join(sys.argv[1:] if argv is None else argv)}`")
    print(f"Machine: {m.get('cpu')} ({m.get('cores')} cores; native bf16: {m.get('cpu_bf16')}), torch {m.get('torch')}\n")
    print("| recipe | px | GMAC per generator pass | threads | fp32 ms | bf16 ms | bf16 speed-up (median, min-max) | auto picks |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        for recipe, size in cases:
            cfg = recipe_config(recipe, size)
            macs = generator_macs(cfg.model, cfg.train.batch_size, size)
            variants = {"fp32": step_fn(recipe, size, "fp32"), "bf16": step_fn(recipe, size, "bf16")}
            times, paired = interleaved(variants, args.rounds, args.steps, cpu, baseline="fp32")
            s = ratio_stats(paired["bf16"], times["bf16"])
            med = {k: 1e3 * statistics.median(v) for k, v in times.items()}
            print(f"| {recipe} | {size} | {macs / 1e9:.2f} | {threads} | {med['fp32']:.1f} | {med['bf16']:.1f} | "
                  f"**{s['median']:.2f}x** ({s['min']:.2f}-{s['max']:.2f}) | {resolve_precision('auto', cpu, macs)} |",
                  flush=True)
        for item in filter(None, args.infer.split(",")):
            recipe, size = item.split(":")
            cfg = recipe_config(recipe, int(size))
            macs = generator_macs(cfg.model, 1, int(size))
            variants = {"fp32": infer_fn(recipe, int(size), "fp32"), "bf16": infer_fn(recipe, int(size), "bf16")}
            times, paired = interleaved(variants, args.rounds, 4 * args.steps, cpu, baseline="fp32")
            s = ratio_stats(paired["bf16"], times["bf16"])
            med = {k: 1e3 * statistics.median(v) for k, v in times.items()}
            print(f"| {recipe}, inference of one image | {size} | {macs / 1e9:.2f} | {threads} | {med['fp32']:.1f} | "
                  f"{med['bf16']:.1f} | **{s['median']:.2f}x** ({s['min']:.2f}-{s['max']:.2f}) | "
                  f"{resolve_precision('auto', cpu, macs)} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
