"""Speed benchmarks of issue 5, in one command, on CPU or CUDA (whichever ``--device`` resolves to).

    python benchmarks/run.py                          # everything, print a summary
    python benchmarks/run.py --write-md BENCHMARKS.md # ... and rewrite our section of it (make bench)
    python benchmarks/run.py --profile smoke          # tiny networks: checks the harness in ~1 min
    python benchmarks/run.py --only train,infer       # a subset

Every speed figure is a ratio against the official implementation's step (``official.py``)
measured in the same interleaved rounds; see ``common.py`` for the timing discipline.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import bench_data, bench_infer, bench_quality, bench_train  # noqa: E402
from benchmarks.common import machine, matmul_peak, write_section  # noqa: E402
from benchmarks.report import markdown  # noqa: E402

T, I = bench_train.Case, bench_infer.Case

# What each profile measures. CPU budget: ~15 minutes on 2 cores (ResNet-9 @ 256 fp32 ~10 s/step).
PROFILES = {
    "cpu": dict(
        train=[
            T("resnet9", 128, 1, ["default", "fp32", "fp32+channels_last", "fp32+compile", "bf16+compile"], rounds=7),
            T("resnet9", 256, 1, ["default"], rounds=3),
            T("resnet6", 128, 1, ["default"], rounds=3),
            T("unet128", 128, 1, ["default"], rounds=3),
            T("resnet9", 128, 4, ["default"], rounds=3),
            # a small model: `auto` keeps fp32 here, where bf16 would be slower
            T("unet6q", 64, 1, ["default", "bf16"], rounds=5, steps=3),
        ],
        infer=[
            I("resnet9", 256, ["default", "default, batch 8", "fp32 inference_mode", "bf16 + compile (frozen)",
                               "onnxruntime fp32"], rounds=5),
            I("resnet9", 128, ["default", "default, batch 8"], rounds=5, calls=2),
            I("resnet6", 128, ["default", "default, batch 8"], rounds=5, calls=2),
            I("unet128", 128, ["default", "default, batch 8"], rounds=5, calls=2),
        ],
        data=dict(sizes=[128, 256], workers=[0, 1, 2], e2e=[("resnet9", 128)]),
        quality=dict(precisions=["fp32", "bf16"], steps=300, size=32),
    ),
    "cuda": dict(
        train=[
            T("resnet9", 256, 1, ["default", "fp32", "fp16+scaler", "bf16", "bf16+channels_last",
                                  "bf16+cuda_graphs", "bf16+channels_last+cuda_graphs", "bf16+compile"],
              rounds=5, steps=10),
            T("resnet9", 256, 16, ["default", "bf16+channels_last", "bf16+channels_last+cuda_graphs"],
              rounds=5, steps=3),
            T("resnet9", 128, 1, ["default", "bf16+cuda_graphs"], rounds=5, steps=10),
            T("resnet6", 128, 1, ["default", "bf16+cuda_graphs"], rounds=5, steps=10),
            T("unet256", 256, 1, ["default", "bf16+cuda_graphs"], rounds=5, steps=10),
        ],
        infer=[
            I("resnet9", 256, ["default", "default, batch 8", "default, batch 64", "fp32 inference_mode",
                               "fp16", "bf16 + compile (frozen)", "onnxruntime fp32"], rounds=5, calls=20),
            I("resnet9", 128, ["default", "default, batch 64"], rounds=5, calls=20),
            I("resnet6", 128, ["default", "default, batch 64"], rounds=5, calls=20),
            I("unet256", 256, ["default", "default, batch 64"], rounds=5, calls=20),
        ],
        data=dict(sizes=[256], workers=[0, 2, 4, 8], e2e=[("resnet9", 256)]),
        quality=dict(precisions=["fp32", "bf16", "fp16"], steps=300, size=32),
    ),
    # What fits a short GPU lease (a couple of minutes): the precisions, CUDA graphs and
    # channels_last on the paper's generator, the face model's size, and batched inference.
    "cuda-quick": dict(
        train=[
            T("resnet9", 256, 1, ["default", "fp32", "fp16+scaler", "bf16", "bf16+cuda_graphs",
                                  "bf16+channels_last+cuda_graphs"], rounds=3, steps=10),
            T("resnet9", 256, 16, ["default", "bf16", "bf16+channels_last"], rounds=3, steps=3),
            T("small", 128, 1, ["default", "bf16+cuda_graphs"], rounds=3, steps=10),
        ],
        infer=[I("resnet9", 256, ["default", "fp32 inference_mode", "default, batch 64",
                                  "fp32 inference_mode, batch 64", "fp16, batch 64"], rounds=3, calls=10),
               I("small", 128, ["default", "fp32 inference_mode"], rounds=3, calls=20)],
        data=dict(sizes=[256], workers=[0, 4], e2e=[("resnet9", 256)]),
        quality=dict(precisions=["fp32", "bf16", "fp16"], steps=100, size=32),
    ),
    "smoke": dict(
        train=[T("tiny", 32, 1, ["default", "fp32", "fp32+channels_last"], rounds=2, steps=2)],
        infer=[I("tiny", 32, ["default", "default, batch 8", "fp32 inference_mode"], rounds=2, calls=2)],
        data=dict(sizes=[32], workers=[0], e2e=[("tiny", 32)]),
        quality=dict(precisions=["fp32", "bf16"], steps=4, size=32),
    ),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--profile", default="", help="cpu | cuda | cuda-quick | smoke (default: the device's)")
    p.add_argument("--only", default="train,infer,data,quality", help="comma-separated parts to run")
    p.add_argument("--write-md", help="rewrite the issue-5 section of this markdown file")
    p.add_argument("--json", help="also write the raw results here")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = PyTorch's default)")
    p.add_argument("--from-json", help="measure nothing: render the markdown of an earlier --json file")
    args = p.parse_args(argv)
    if args.from_json:
        text = markdown(json.loads(Path(args.from_json).read_text()))
        print(text)
        if args.write_md:
            write_section(Path(args.write_md), text)
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else "cpu" if args.device == "auto" else args.device)
    profile = PROFILES[args.profile or device.type]
    parts = set(args.only.split(","))
    tmp = Path(tempfile.mkdtemp(prefix="cyclekit-bench-"))

    def progress(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    t_start = time.perf_counter()
    shown = list(argv if argv is not None else sys.argv[1:])
    if "--json" in shown:  # where the raw numbers went is not part of the reproducing command
        i = shown.index("--json")
        del shown[i:i + 2]
    results: dict = {"machine": machine(device), "profile": args.profile or device.type,
                     "command": "python benchmarks/run.py " + " ".join(shown)}
    from cyclekit.runtime import ensure_compile_cache

    cache = ensure_compile_cache()
    results["compile_cache"] = "warm" if any(cache.iterdir()) else "cold"  # before our first compile
    peaks = {"fp32": matmul_peak(device, torch.float32), "bf16": matmul_peak(device, torch.bfloat16)}
    if device.type == "cuda":
        peaks["fp16"] = matmul_peak(device, torch.float16)
    results["peaks"] = peaks
    progress("matmul peaks: " + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in peaks.items()))
    from cyclekit.runtime import resolve_precision

    results["auto_precision"] = resolve_precision("auto", device)
    if "train" in parts:
        results["train"] = [bench_train.run_case(c, device, tmp, peaks, progress) for c in profile["train"]]
    if "infer" in parts:
        results["infer"] = [bench_infer.run_case(c, device, tmp, progress) for c in profile["infer"]]
    if "data" in parts:
        d = profile["data"]
        results["data"] = bench_data.run(d["sizes"], d["workers"], device, d["e2e"], progress, tmp)
    if "quality" in parts:
        q = profile["quality"]
        results["quality"] = bench_quality.run(q["precisions"], q["steps"], q["size"], str(device), tmp, progress)
    results["machine_end"] = machine(device)
    results["minutes"] = (time.perf_counter() - t_start) / 60
    progress(f"done in {results['minutes']:.1f} min")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    text = markdown(results)
    print(text)
    if args.write_md:
        write_section(Path(args.write_md), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
