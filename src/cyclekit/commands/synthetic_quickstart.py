"""The quickstart: prove on this machine, in minutes, that training learns.

1. Write a synthetic world whose test images have a true translation (``fruit`` by default).
2. Train a small CycleGAN on its unpaired train split.
3. Evaluate with the same code as ``cyclekit eval`` (:mod:`cyclekit.metrics.evaluate`): PSNR,
   SSIM, L1 against the truth next to the do-nothing baseline (output = input), cycle and
   identity errors, the domain classifier's success rate and FID/KID; the HTML report goes to
   ``OUT/eval/index.html``.
4. Write ``report.json`` and a ``results.png`` grid (input | translation | truth).
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
import numpy as np

from cyclekit.config import Config
from cyclekit.io.files import atomic_write_text

log = logging.getLogger(__name__)


@dataclass
class QuickstartOptions:
    out: str = "runs/quickstart"
    world: str = "fruit"
    size: int = 64
    n_train: int = 200
    n_test: int = 40
    steps: int = 0  # an optional cap on the iterations (0 = train for max_minutes)
    max_minutes: float = 8.0
    seed: int = 0
    threads: int = 0
    progress: bool = True


def quickstart_config(opts: QuickstartOptions, dataroot: Path, run_dir: Path) -> Config:
    """The recommended recipe (the ``fast`` preset) at ``opts.size`` px for ``opts.max_minutes``.

    The learning rate follows the time budget (``--lr-step-unit time``): full rate for the first
    half of the minutes, then a linear decay to zero at the deadline, so the run ends at a settled
    model however many steps this machine manages. Why this recipe: BENCHMARKS.md, "Translation
    quality per recipe" (it beats the official step at the same CPU time on every world there).
    """
    from cyclekit.commands._config_args import load_preset

    cfg = load_preset("fast")
    m, d, t = cfg.model, cfg.data, cfg.train
    m.image_size = opts.size
    d.dataroot = str(dataroot)
    d.preprocess, d.load_size, d.crop_size = "resize_and_crop", opts.size + opts.size // 8, opts.size
    t.run_dir, t.seed = str(run_dir), opts.seed
    t.lr_step_unit, t.max_minutes, t.max_steps, t.log_every = "time", opts.max_minutes, opts.steps, 25
    t.threads, t.progress = opts.threads, opts.progress
    return cfg.validate()  # the preset's fp32 (BENCHMARKS.md: it learns more per CPU second than bf16)


def translate_test_set(model_dir: Path, dataroot: Path, out_dir: Path, direction: str, device: str = "cpu") -> None:
    """Translate test{A,B} into out_dir/<direction>/ (the images of the results grid)."""
    from cyclekit.infer.translator import load_translator
    from cyclekit.infer.stream import translate_paths

    src = "testA" if direction == "AtoB" else "testB"
    translate_paths(load_translator(model_dir, direction, device=device), [dataroot / src], out_dir / direction,
                    batch_size=8)


def results_grid(dataroot: Path, out_dir: Path, n: int = 6) -> Path:
    """Rows of testA | translated | truth, then testB | translated | truth."""
    from cyclekit.io.images import list_images, load_image, save_image

    rows = []
    for direction, src, gt in (("AtoB", "testA", "testA_gt"), ("BtoA", "testB", "testB_gt")):
        for f in list_images(dataroot / src)[:n]:
            trip = [load_image(f, 3), load_image(out_dir / direction / f.with_suffix(".png").name, 3),
                    load_image(dataroot / gt / f.name, 3)]
            rows.append(np.concatenate(trip, axis=1))
    grid = np.concatenate(rows, axis=0)
    path = out_dir / "results.png"
    save_image(path, grid)
    return path


def run_quickstart(opts: QuickstartOptions, log_fn=print) -> dict:
    from cyclekit.data.synthetic import make_world
    from cyclekit.train.loop import Trainer

    out = Path(opts.out)
    dataroot, run_dir = out / "data", out / "run"
    t0 = time.perf_counter()
    log_fn(f"[1/3] writing the '{opts.world}' world at {opts.size}px to {dataroot}")
    make_world(opts.world, dataroot, size=opts.size, n_train=opts.n_train, n_test=opts.n_test, seed=opts.seed)
    cfg = quickstart_config(opts, dataroot, run_dir)
    cap = f", at most {opts.steps} steps" if opts.steps else ""
    log_fn(f"[2/3] training for {opts.max_minutes:g} min{cap} into {run_dir}")
    trainer = Trainer(cfg)
    trainer.fit()
    train_s = time.perf_counter() - t0
    log_fn("[3/3] evaluating on the test set: ground truth, domain classifier, FID/KID (cyclekit eval)")
    from cyclekit.metrics.evaluate import EvalOptions, evaluate_model, quickstart_results

    device = str(trainer.device)
    for d in ("AtoB", "BtoA"):
        translate_test_set(run_dir, dataroot, out / "translated", d, device)
    grid = results_grid(dataroot, out / "translated")
    ev = evaluate_model(run_dir, dataroot, out / "eval", EvalOptions(seed=opts.seed, device=device))
    results = quickstart_results(ev)
    m, clf, fe = ev["metrics"], ev["classifier"] or {}, ev["feature_extractor"]
    report = {
        "world": opts.world, "size": opts.size, "steps": trainer.global_step,
        "minutes": round((time.perf_counter() - t0) / 60, 2), "train_minutes": round(train_s / 60, 2),
        "model": str(run_dir / "model"), "grid": str(grid), "results": results,
        "eval": {
            "report": str(out / "eval" / "index.html"), "success": m.get("success"), "fid": m.get("fid"),
            "kid": m.get("kid"), "features": fe["name"] if fe else None,
            "classifier_accuracy": clf.get("heldout_accuracy"), "cycle_l1": m.get("cycle_l1"),
        },
    }
    for r in results:
        r["psnr_gain_db"] = round(r["model"]["psnr"] - r["baseline_identity"]["psnr"], 3)
    atomic_write_text(out / "report.json", json.dumps(report, indent=2) + "\n")
    return report


def format_report(report: dict) -> str:
    lines = [f"quickstart: world '{report['world']}' at {report['size']}px, {report['steps']} steps, "
             f"{report['minutes']} min"]
    lines.append(f"{'direction':<10}{'':>10}{'PSNR dB':>10}{'SSIM':>8}{'L1':>8}")
    for r in report["results"]:
        for name, key in (("model", "model"), ("do-nothing", "baseline_identity")):
            m = r[key]
            lines.append(f"{r['direction'] if key == 'model' else '':<10}{name:>10}"
                         f"{m['psnr']:>10.2f}{m['ssim']:>8.3f}{m['l1']:>8.4f}")
        lines.append(f"{'':<10}{'gain':>10}{r['psnr_gain_db']:>+10.2f}")
    ev = report.get("eval")
    if ev and ev.get("success") is not None:
        lines.append(f"translation success {ev['success']:.0%} (domain classifier, held-out accuracy "
                     f"{ev['classifier_accuracy']:.0%})")
    if ev and ev.get("fid") is not None:
        lines.append(f"FID {ev['fid']:.2f}  KID {ev['kid']:.4f}  [{ev['features']}]")
    if ev:
        lines.append(f"full report: {ev['report']}")
    lines.append(f"grid: {report['grid']}   model: {report['model']}")
    return "\n".join(lines)

