"""Data-loader throughput (it must never be the bottleneck) and the end-to-end training rate.

Loader: the training dataset exactly as the trainer builds it (decode, resize to ``load_size``,
random crop, flip, to [-1, 1]) on the synthetic fruit world, through a ``DataLoader`` created
per epoch as the trainer does, for several worker counts; pairs/s over two epochs, worker
start-up included. End to end: ``Trainer.fit()`` with the default configuration for a few steps,
its own logged ``pairs_per_s`` (loading, the step and logging together), after the first steps.
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_train import make_config  # noqa: E402


def loader_rate(size: int, workers: int, device: torch.device, tmp: Path, n: int = 32, epochs: int = 2) -> float:
    from torch.utils.data import DataLoader

    from cyclekit.data.datasets import EpochSampler, UnpairedDataset
    from cyclekit.data.synthetic import make_world

    root = make_world("fruit", tmp / f"fruit_data{size}", size=size, n_train=n, n_test=1, seed=2)
    cfg = make_config("resnet9", size, 1, root, tmp / "run", str(device))
    cfg.data.load_size = size + size // 8 + (size // 8) // 4  # 256 -> 286, 128 -> 148, as official
    cfg.data.num_workers = workers
    ds = UnpairedDataset.from_config(cfg.data, cfg.model, seed=0, phase="train")
    pairs = 0
    t0 = time.perf_counter()
    for epoch in range(epochs):
        ds.set_epoch(epoch)
        loader = DataLoader(ds, batch_size=1, sampler=EpochSampler(ds, epoch), drop_last=True,
                            num_workers=workers, pin_memory=device.type == "cuda")
        for batch in loader:
            batch["A"].to(device, non_blocking=True)
            batch["B"].to(device, non_blocking=True)
            pairs += 1
    return pairs / (time.perf_counter() - t0)


def end_to_end(net: str, size: int, device: torch.device, tmp: Path, steps: int = 7) -> dict:
    """``Trainer.fit()`` with the default config: pairs/s it logs over steps 4..7 (steady state)."""
    from cyclekit.data.synthetic import make_world
    from cyclekit.train.loop import Trainer

    root = make_world("fruit", tmp / f"fruit_e2e{size}", size=size, n_train=16, n_test=1, seed=3)
    cfg = make_config(net, size, 1, root, tmp / f"e2e_{net}_{size}", str(device), max_steps=steps,
                      log_every=3, save_every=0)
    cfg.data.load_size = size + size // 8
    tr = Trainer(cfg)
    t0 = time.perf_counter()
    run = tr.fit()
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if l.strip()]
    steady = [r["pairs_per_s"] for r in rows if r["step"] > 3]
    return {"pairs_per_s": steady[-1] if steady else rows[-1]["pairs_per_s"], "steps": steps,
            "seconds": time.perf_counter() - t0, "precision": str(tr.objective.amp_dtype or "fp32"),
            "num_workers": cfg.data.num_workers}


def run(sizes: list[int], workers: list[int], device: torch.device, e2e: list[tuple[str, int]],
        progress: Callable[[str], None], tmp: Path | None = None) -> dict:
    tmp = Path(tmp or tempfile.mkdtemp())
    out: dict = {"loader": {}, "e2e": {}}
    for size in sizes:
        for w in workers:
            rate = loader_rate(size, w, device, tmp)
            out["loader"][f"{size}/{w}"] = {"size": size, "workers": w, "pairs_per_s": rate}
            progress(f"loader @ {size}, {w} worker(s): {rate:.1f} pairs/s")
    for net, size in e2e:
        r = end_to_end(net, size, device, tmp)
        out["e2e"][f"{net}@{size}"] = {"net": net, "size": size, **r}
        progress(f"end to end {net} @ {size}: {r['pairs_per_s']:.3f} pairs/s ({r['precision']})")
    return out
