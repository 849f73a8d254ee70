"""Do the mixed-precision paths learn as well as fp32? Same world, same seed, same steps.

Each precision trains a small CycleGAN with the real trainer (``Trainer.fit``) on the synthetic
fruit world (colour swap, with the true translation of every test image on disk) for a fixed
number of steps; we then translate the test images in fp32 and report the PSNR against the
ground truth, averaged over both directions. Every precision trains with the same seeds (two by
default) and is judged by its mean; the two fp32 seeds show how much PSNR moves between fp32
runs anyway. The requirement: the mean within 0.5 dB of fp32's.
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_train import make_config  # noqa: E402


def test_psnr(run_dir: Path, dataroot: Path) -> float:
    """Mean PSNR (dB) of fp32 translations of testA/testB against testA_gt/testB_gt."""
    from cyclekit.data.datasets import list_test_pairs
    from cyclekit.io.images import load_image
    from cyclekit.metrics.paired import psnr
    from cyclekit.infer.translator import load_translator, translate_array

    scores = []
    for domain, direction in (("A", "AtoB"), ("B", "BtoA")):
        tr = load_translator(run_dir, direction, device="cpu", precision="fp32")
        for src, gt in list_test_pairs(dataroot, domain):
            if gt is None:
                continue
            out = translate_array(tr, load_image(src, 3))
            scores.append(psnr(out, load_image(gt, 3)))
    return statistics.mean(scores)


def run(precisions: list[str], steps: int, size: int = 64, device: str = "cpu", tmp: Path | None = None,
        progress=print, seeds: tuple[int, ...] = (0, 1)) -> dict:
    from cyclekit.data.synthetic import make_world
    from cyclekit.train.loop import Trainer

    tmp = Path(tmp or tempfile.mkdtemp())
    root = make_world("fruit", tmp / f"fruit_q{size}", size=size, n_train=40, n_test=8, seed=5)
    runs: dict[str, dict] = {}
    for seed in seeds:
        for precision in precisions:
            cfg = make_config("resnet6", size, 1, root, tmp / f"q_{precision}_{seed}", device,
                              precision=precision, seed=seed, max_steps=steps, log_every=max(steps // 4, 1))
            cfg.model.ngf, cfg.model.ndf = 16, 16
            cfg.data.load_size, cfg.data.crop_size = size + size // 8, size
            t0 = time.perf_counter()
            trainer = Trainer(cfg)
            trainer.fit()
            dt = time.perf_counter() - t0
            resolved = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[trainer.objective.amp_dtype]
            row = runs.setdefault(precision, {"resolved": resolved, "psnr_seeds": [], "seconds": 0.0})
            row["psnr_seeds"].append(test_psnr(trainer.run_dir, root))
            row["seconds"] += dt
            progress(f"quality: {precision} ({resolved}) seed {seed}: {row['psnr_seeds'][-1]:.2f} dB after "
                     f"{steps} steps, {dt:.0f}s")
    for row in runs.values():
        row["psnr"] = statistics.mean(row["psnr_seeds"])
    ref = runs["fp32"]["psnr"]
    for row in runs.values():
        row["delta_db"] = row["psnr"] - ref
    spread = max(runs["fp32"]["psnr_seeds"]) - min(runs["fp32"]["psnr_seeds"])
    return {"steps": steps, "size": size, "world": "fruit", "net": "ResNet-6, ngf 16, ndf 16", "seeds": list(seeds),
            "fp32_seed_spread_db": spread, "rows": runs}
