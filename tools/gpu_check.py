"""Correctness checks of the GPU training paths, for a machine with CUDA (CI has none).

Each check trains a tiny CycleGAN on a synthetic world and prints one JSON line with what it saw;
the script never stops at a failed check, so one run on a borrowed GPU reports them all:

* ``fp16``: fp16 autocast with the GradScaler: finite losses, a scale that moved, a checkpoint
  that stores the scaler and resumes to the same weights as an uninterrupted run;
* ``resume_<precision>``: 8 steps in one go against 4 + resume + 4 (largest weight difference),
  next to the difference between two uninterrupted runs (GPU kernels need not be deterministic);
* ``graphs``: ``--cuda-graphs`` really captures (a ``GraphedStep``), and its losses over the first
  steps track the eager step's from the same seed; ``resume_graphs``: a captured run resumes;
* ``channels_last``: bf16 + channels_last trains with finite losses;
* ``ddp_nccl``: ``torchrun --nproc_per_node=1`` on CUDA (NCCL) trains and saves.

Usage: ``python tools/gpu_check.py [--device cuda] [--out FILE.jsonl]``; on a CPU (``--device cpu``)
the checks that need CUDA report ``skipped``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from cyclekit.config import Config, set_field  # noqa: E402
from cyclekit.data.synthetic import make_world  # noqa: E402
from cyclekit.train.loop import Trainer  # noqa: E402
from cyclekit.train.state import load_training_state  # noqa: E402


def config(world: Path, run: Path, device: str, **overrides) -> Config:
    cfg = Config()
    values = dict(dataroot=str(world), run_dir=str(run), n_blocks=2, ngf=16, ndf=16, image_size=64,
                  load_size=72, crop_size=64, batch_size=2, max_steps=8, pool_size=4, log_every=1,
                  save_every=4, progress=False, seed=5, device=device, precision="fp32")
    values.update(overrides)
    for k, v in values.items():
        set_field(cfg, k, v)
    return cfg.validate()


def max_diff(a: dict, b: dict) -> float:
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a if a[k].is_floating_point())


def train(world, run, device, resume=False, **kw) -> Trainer:
    tr = Trainer(config(world, run, device, **kw), resume=resume)
    tr.fit()
    return tr


def check_resume(world, tmp, device, precision, **kw) -> dict:
    name = precision + "".join(f"_{k}_{v}" for k, v in kw.items())
    straight = train(world, tmp / f"straight_{name}", device, precision=precision, **kw)
    run = tmp / f"split_{name}"
    train(world, run, device, precision=precision, max_steps=4, **kw)  # saves at step 4
    state = load_training_state(run / "checkpoints" / "last.pt")
    resumed = train(world, run, device, resume=True, precision=precision, **kw)
    again = train(world, tmp / f"again_{name}", device, precision=precision, **kw)  # the control
    ref = straight.objective.nets.state_dict()
    out = {"steps": resumed.global_step, "max_weight_diff": max_diff(ref, resumed.objective.nets.state_dict()),
           "run_to_run_diff": max_diff(ref, again.objective.nets.state_dict())}
    if precision == "fp16":
        out["checkpoint_keys"] = sorted(k for k in state if "scal" in k.lower())
        out["scale_after"] = float(resumed.objective.scaler.get_scale())
    return out


def check_graphs(world, tmp, device) -> dict:
    rows = {}
    for graphs in ("false", "true"):
        tr = Trainer(config(world, tmp / f"graphs_{graphs}", device, precision="bf16", cuda_graphs=graphs,
                            max_steps=12, save_every=12))
        tr.fit()
        lines = [json.loads(x) for x in (tmp / f"graphs_{graphs}" / "metrics.jsonl").read_text().splitlines()]
        step = tr.objective.step_fn
        rows[graphs] = {"step_fn": type(step).__name__, "captured": getattr(step, "graph", None) is not None,
                        "G_total": [round(r["G_total"], 4) for r in lines if "G_total" in r]}
    a, b = rows["false"]["G_total"], rows["true"]["G_total"]
    return {"eager": rows["false"], "graphed": rows["true"],
            "largest_loss_gap": max(abs(x - y) for x, y in zip(a, b)) if a and b else None}


def check_auto(world, tmp, device) -> dict:
    """What a run with no speed flags gets here (cuda_graphs and precision left at auto)."""
    tr = Trainer(config(world, tmp / "auto", device, precision="auto", max_steps=2))
    return {"precision": str(tr.objective.amp_dtype), "step_fn": type(tr.objective.step_fn).__name__}


def check_channels_last(world, tmp, device) -> dict:
    tr = train(world, tmp / "cl", device, precision="bf16", channels_last=True)
    lines = [json.loads(x) for x in (tmp / "cl" / "metrics.jsonl").read_text().splitlines()]
    return {"steps": tr.global_step, "finite": all(torch.isfinite(torch.tensor(r["G_total"])) for r in lines
                                                   if "G_total" in r)}


def check_ddp(world, tmp, device) -> dict:
    run = tmp / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m", "cyclekit",
           "-q", "train", "--dataroot", str(world), "--run-dir", str(run), "--image-size", "64",
           "--n-blocks", "2", "--ngf", "16", "--ndf", "16", "--max-steps", "6", "--device", device,
           "--progress", "false", "--save-every", "3"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    saved = (run / "checkpoints" / "last.pt").exists()
    state = load_training_state(run / "checkpoints" / "last.pt") if saved else {}
    return {"rc": proc.returncode, "seconds": round(time.monotonic() - t0, 1), "saved": saved,
            "step": state.get("global_step"), "world_size": state.get("world_size"),
            "stderr_tail": proc.stderr[-1500:] if proc.returncode else ""}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default="", help="also append the JSON lines to this file")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cyclekit-gpucheck-"))
    world = tmp / "world"
    make_world("fruit", world, size=64, n_train=8, n_test=2, seed=1)
    cuda = args.device == "cuda"
    head = {"check": "machine", "torch": torch.__version__, "device": args.device,
            "gpu": torch.cuda.get_device_name(0) if cuda else None}
    eager = dict(cuda_graphs="false")
    checks = [("fp16", lambda: check_resume(world, tmp, args.device, "fp16"), cuda),
              ("resume_fp32", lambda: check_resume(world, tmp, args.device, "fp32", **eager), True),
              ("resume_bf16", lambda: check_resume(world, tmp, args.device, "bf16", **eager), True),
              ("graphs", lambda: check_graphs(world, tmp, args.device), cuda),
              ("resume_graphs", lambda: check_resume(world, tmp, args.device, "bf16", cuda_graphs="true"), cuda),
              ("auto", lambda: check_auto(world, tmp, args.device), True),
              ("channels_last", lambda: check_channels_last(world, tmp, args.device), True),
              ("ddp_nccl" if cuda else "ddp_gloo", lambda: check_ddp(world, tmp, args.device), True)]
    lines = [head]
    print(json.dumps(head), flush=True)
    for name, fn, runs in checks:
        t0 = time.monotonic()
        if not runs:
            row = {"check": name, "skipped": "needs CUDA"}
        else:
            try:
                row = {"check": name, **fn()}
            except Exception as exc:  # report and go on: one lease, every check
                row = {"check": name, "error": f"{type(exc).__name__}: {exc}"[:800],
                       "where": traceback.format_exc()[-1500:]}
        row["seconds"] = round(time.monotonic() - t0, 1)
        lines.append(row)
        print(json.dumps(row, default=str), flush=True)
    if args.out:
        with open(args.out, "a") as fh:
            fh.writelines(json.dumps(r, default=str) + "\n" for r in lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
