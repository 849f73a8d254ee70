"""Deployment benchmark (issue 7): size, CPU speed and quality of exported generators.

Measures, on a synthetic world with ground truth, for the full ResNet-9 generator, the teacher
and the distilled compact student: ONNX file sizes (fp32 / fp16 / int8), onnxruntime CPU latency
at 256x256 (all models timed interleaved in the same run, round-robin, so machine load hits
them alike; median, 10th-90th percentile and the ratio to the full fp32 generator), PSNR of
every variant against its own fp32 output and against the ground truth, MACs and parameters.

    python benchmarks/deploy_bench.py --teacher RUN --student RUN [--full RUN] \\
        --world-dir DIR --write-md BENCHMARKS.md

``--full`` is the trained ResNet-9 (ngf 64) whose int8 quality is reported; without it the
teacher is used when it is a ResNet-9 ngf 64, else an untrained ResNet-9 is timed (speed only).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SECTION = "## Deployment (issue 7)"


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = re.search(r"Model name:\s*(.+)", out).group(1).strip()
        cpus = re.search(r"^CPU\(s\):\s*(\d+)", out, re.M).group(1)
    except Exception:  # noqa: BLE001 - lscpu missing: best effort
        model, cpus = platform.processor() or "unknown CPU", str(os.cpu_count())
    return f"{model}, {cpus} CPU(s)"


def psnr01(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 100.0 if mse <= 1e-12 else 10 * np.log10(1.0 / mse)


def test_set(world: Path, n: int):
    from cyclekit.data.datasets import list_test_pairs
    from cyclekit.io.images import load_image

    pairs = [(p, g) for p, g in list_test_pairs(world, "A") if g is not None][:n]
    xs = [load_image(p, 3) for p, _ in pairs]
    gts = [load_image(g, 3) for _, g in pairs]
    return xs, gts


def run_all(session, xs):
    name = session.get_inputs()[0].name
    outs = []
    for x in xs:
        y = session.run(None, {name: (x.transpose(2, 0, 1)[None] * 2 - 1).astype(np.float32)})[0][0]
        outs.append(np.clip((y.transpose(1, 2, 0) + 1) / 2, 0, 1))
    return outs


def export_variants(name: str, release: Path, out: Path, calib_dir: Path, calib_size: int, sensitivity: bool,
                    untrained_cfg=None) -> dict:
    """fp32, fp16 and int8 files of one generator; returns {variant: path} and the int8 report."""
    from cyclekit.release import load_generator
    from cyclekit.export.onnx_export import export_generator, onnx_parity, parity_shapes
    from cyclekit.export.quantize import (
        Int8Quantizer, auto_exclude, layer_sensitivity, load_arrays, run_model, split_images,
    )
    from cyclekit.io.images import list_images

    if untrained_cfg is not None:
        from cyclekit.nn import build_generator, init_weights

        net, cfg = init_weights(build_generator(untrained_cfg)).eval(), untrained_cfg
    else:
        net, cfg = load_generator(release, "AtoB")
    files = {"fp32": out / f"{name}.onnx", "fp16": out / f"{name}.fp16.onnx", "int8": out / f"{name}.int8.onnx"}
    t = time.time()
    export_generator(net, cfg, files["fp32"])
    info = {"export_s": round(time.time() - t, 1), "parity_fp32": onnx_parity(net, files["fp32"], parity_shapes(cfg))}
    export_generator(net, cfg, files["fp16"], precision="fp16")
    calib_files, eval_files = split_images(list_images(calib_dir), 32, 8)
    calib, evals = load_arrays(calib_files, 3, calib_size), load_arrays(eval_files, 3, calib_size)
    with tempfile.TemporaryDirectory() as tmp:
        q = Int8Quantizer(files["fp32"], calib, workdir=Path(tmp))
        ref = run_model(files["fp32"], evals)
        sens = layer_sensitivity(q, evals, ref) if sensitivity else None
        rep = auto_exclude(q, evals, ref, target_db=35.0, sensitivity=sens)
        q.quantize(files["int8"], exclude=rep["float_layers"])
        if sensitivity:  # the naive recipes, for comparison: everything int8 incl. ConvTranspose
            q2 = Int8Quantizer(files["fp32"], calib, op_types=("Conv", "ConvTranspose"), workdir=Path(tmp))
            naive = q2.quantize(Path(tmp) / "naive.onnx")
            rep["all_conv_and_convtranspose_int8_db"] = round(float(np.mean(
                [psnr01((a + 1) / 2, (b + 1) / 2) for a, b in zip(ref, run_model(naive, evals))])), 2)
            files["int8_naive"] = out / f"{name}.int8_naive.onnx"
            files["int8_naive"].write_bytes(naive.read_bytes())
    info["int8"] = rep
    return {"files": files, "cfg": cfg, "net": net, **info}


def time_interleaved(sessions: dict, x: np.ndarray, repeats: int) -> dict:
    for s in sessions.values():  # warm-up
        s.run(None, {s.get_inputs()[0].name: x})
    times = {k: [] for k in sessions}
    for _ in range(repeats):
        for k, s in sessions.items():
            t = time.perf_counter()
            s.run(None, {s.get_inputs()[0].name: x})
            times[k].append(time.perf_counter() - t)
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", help="trained ResNet teacher (run dir or release)")
    ap.add_argument("--student", help="distilled mobile_resnet (run dir or release)")
    ap.add_argument("--render-only", default="", help="re-write the markdown from a results.json (with "
                    "--write-md and optionally --recipe), measuring nothing")
    ap.add_argument("--full", default="", help="trained ResNet-9 ngf 64 for the int8 quality figure")
    ap.add_argument("--world-dir", help="synthetic world at the benchmark size (testA_gt)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--n-test", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calib-size", type=int, default=128)
    ap.add_argument("--workdir", default="/tmp/deploy-bench")
    ap.add_argument("--write-md", default="")
    ap.add_argument("--recipe", default="", help="markdown file describing how the models were trained "
                    "(embedded in the BENCHMARKS.md section)")
    args = ap.parse_args()
    if args.render_only:
        r = json.loads(Path(args.render_only).read_text(encoding="utf-8"))
        if args.recipe:
            r["recipe"] = Path(args.recipe).read_text(encoding="utf-8").strip()
        write_markdown(Path(args.write_md), r)
        return 0
    if not (args.teacher and args.student and args.world_dir):
        ap.error("--teacher, --student and --world-dir are required")

    import logging

    logging.basicConfig(level=logging.WARNING)
    from cyclekit.release import load_generator, resolve_release
    from cyclekit.config import ModelConfig
    from cyclekit.export.onnx_export import onnx_cost
    from cyclekit.infer.onnx_backend import make_session
    from cyclekit.nn import count_macs, count_parameters

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    world = Path(args.world_dir)
    load_before = os.getloadavg()[0]
    t_start = time.time()
    teacher_rel = resolve_release(args.teacher)
    _, tcfg = load_generator(teacher_rel, "AtoB")
    full_is_teacher = not args.full and tcfg.generator == "resnet" and tcfg.n_blocks == 9 and tcfg.ngf == 64
    models = {}
    models["student"] = export_variants("student", resolve_release(args.student), work, world / "trainA",
                                        args.calib_size, sensitivity=True)
    models["teacher"] = export_variants("teacher", teacher_rel, work, world / "trainA", args.calib_size,
                                        sensitivity=True)
    if args.full:
        models["full"] = export_variants("full", resolve_release(args.full), work, world / "trainA",
                                         args.calib_size, sensitivity=True)
    elif full_is_teacher:
        models["full"] = models["teacher"]
    else:  # speed reference only
        models["full"] = export_variants("full_untrained", None, work, world / "trainA", args.calib_size, False,
                                         untrained_cfg=ModelConfig(n_blocks=9, ngf=64))
        models["full"]["untrained"] = True

    # ---- quality at the benchmark size (fp32 reference of each model; ground truth)
    xs, gts = test_set(world, args.n_test)
    identity_db = float(np.mean([psnr01(x, g) for x, g in zip(xs, gts)]))
    rows = []
    sessions = {}
    for mname, m in models.items():
        if mname == "full" and (full_is_teacher and not args.full):
            continue
        ref = None
        for variant in ("fp32", "int8", "int8_naive", "fp16"):
            path = m["files"].get(variant)
            if path is None:
                continue
            sess = make_session(path, "cpu", threads=args.threads)
            row = {"model": mname, "variant": variant, "file_mb": round(path.stat().st_size / 1e6, 3)}
            if variant != "fp16":  # fp16 is for GPUs; on CPU it is only sized
                outs = run_all(sess, xs)
                if variant == "fp32":
                    ref = outs
                row["psnr_vs_fp32"] = round(float(np.mean([psnr01(a, b) for a, b in zip(outs, ref)])), 2)
                row["psnr_vs_gt"] = None if m.get("untrained") else round(
                    float(np.mean([psnr01(a, g) for a, g in zip(outs, gts)])), 2)
                sessions[f"{mname}:{variant}"] = sess
            rows.append(row)

    # ---- speed, interleaved
    x = (np.random.default_rng(0).random((1, 3, args.size, args.size)) * 2 - 1).astype(np.float32)
    order = ["full:fp32"] + [k for k in sessions if k != "full:fp32"]
    if "full:fp32" not in sessions:  # the teacher is the full generator
        order = ["teacher:fp32"] + [k for k in sessions if k != "teacher:fp32"]
    times = time_interleaved({k: sessions[k] for k in order}, x, args.repeats)
    base = np.array(times[order[0]])
    speed = {}
    for k, v in times.items():
        v = np.array(v)
        speed[k] = {"median_ms": round(1000 * float(np.median(v)), 1),
                    "min_ms": round(1000 * float(np.min(v)), 1),
                    "p10_ms": round(1000 * float(np.percentile(v, 10)), 1),
                    "p90_ms": round(1000 * float(np.percentile(v, 90)), 1),
                    "img_per_s": round(1.0 / float(np.median(v)), 2),
                    "speedup_vs_full_fp32": round(float(np.median(base / v)), 2)}
    for row in rows:
        row.update(speed.get(f"{row['model']}:{row['variant']}", {}))
    cost = {}
    for mname, m in models.items():
        shape = (1, 3, args.size, args.size)
        cost[mname] = {"generator": m["cfg"].generator, "ngf": m["cfg"].ngf, "n_blocks": m["cfg"].n_blocks,
                       "params": count_parameters(m["net"]), "gmacs": round(count_macs(m["net"], shape) / 1e9, 3),
                       "onnx_gmacs": round(onnx_cost(m["files"]["fp32"], args.size)["macs"] / 1e9, 3),
                       "parity_fp32": m["parity_fp32"], "int8": m["int8"]}
    result = {"machine": machine(), "command": " ".join([sys.executable.split("/")[-1]] + sys.argv),
              "size": args.size, "threads": args.threads, "n_test": len(xs), "identity_psnr_vs_gt": round(identity_db, 2),
              "load_avg_before": round(load_before, 2), "load_avg_after": round(os.getloadavg()[0], 2),
              "wall_s": round(time.time() - t_start, 1), "rows": rows, "cost": cost,
              "full_untrained": bool(models["full"].get("untrained")), "calib_size": args.calib_size,
              "recipe": Path(args.recipe).read_text(encoding="utf-8").strip() if args.recipe else ""}
    (work / "results.json").write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps({k: result[k] for k in ("machine", "rows")}, indent=1, default=str))
    if args.write_md:
        write_markdown(Path(args.write_md), result)
    return 0


def write_markdown(path: Path, r: dict) -> None:
    """Replace (or append) this benchmark's section of BENCHMARKS.md; other sections are untouched."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    body = render(r, SECTION)
    pattern = re.compile(re.escape(SECTION) + r".*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: body, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + body
    path.write_text(text, encoding="utf-8")


def summary(r: dict) -> list[str]:
    """The issue's targets, each with the number measured in this run."""
    get = {(x["model"], x["variant"]): x for x in r["rows"]}
    c = r["cost"]
    out = ["Against the targets (all at 256x256):", ""]
    s, t, f = get.get(("student", "fp32")), get.get(("teacher", "fp32")), get.get(("full", "int8"))
    if s and t and "student" in c and "full" in c:
        out.append(f"- compact student: {c['full']['gmacs'] / c['student']['gmacs']:.1f}x fewer MACs than ResNet-9 "
                   f"({c['student']['gmacs']:.2f} G vs {c['full']['gmacs']:.2f} G; target >= 15x); files "
                   f"{s['file_mb']:.2f} MB fp32, {get[('student', 'fp16')]['file_mb']:.2f} MB fp16, "
                   f"{get[('student', 'int8')]['file_mb']:.2f} MB int8 (targets <= 4 MB fp16, <= 2 MB int8); "
                   f"PSNR vs truth {s['psnr_vs_gt']:.2f} dB vs the teacher's {t['psnr_vs_gt']:.2f} dB "
                   f"({s['psnr_vs_gt'] - t['psnr_vs_gt']:+.2f} dB; target >= -1 dB); {s['img_per_s']:.1f} images/s "
                   f"median ({1000 / s['min_ms']:.0f} at best) in fp32 through onnxruntime on {r['threads']} threads, "
                   f"{s['speedup_vs_full_fp32']:.1f}x the full generator in the same run (target >= 25 images/s).")
    if f:
        naive = get.get(("full", "int8_naive"))
        out.append(f"- int8 of the full ResNet-9: {f['psnr_vs_fp32']:.2f} dB vs its fp32 output (target >= 35), "
                   f"{f['speedup_vs_full_fp32']:.2f}x faster than fp32, {f['file_mb']:.1f} MB instead of "
                   f"{get[('full', 'fp32')]['file_mb']:.1f} MB" + (
                       f"; the naive recipe (every Conv and ConvTranspose in int8) gives {naive['psnr_vs_fp32']:.2f} dB"
                       if naive else "") + ".")
    return out + [""]


def render(r: dict, header: str) -> str:
    rows, cost = r["rows"], r["cost"]
    base = "full" if any(x["model"] == "full" for x in rows) else "teacher"
    lines = [header, "",
             f"Machine: {r['machine']}; onnxruntime CPU provider, {r['threads']} intra-op threads, batch 1, "
             f"{r['size']}x{r['size']} input. Load average {r['load_avg_before']} before / "
             f"{r['load_avg_after']} after (other jobs shared the machine: absolute times are pessimistic, the "
             "ratios are measured interleaved in the same run and are the robust figure).", "",
             "```", r["command"], "```", ""]
    lines += [r["recipe"], ""] if r.get("recipe") else []
    lines += summary(r) + [
             "| generator | params | MACs @256 | fp32 ONNX parity (max abs) | int8 float layers |",
             "|---|---|---|---|---|"]
    for name, c in cost.items():
        arch = f"{c['generator']} ngf {c['ngf']}, {c['n_blocks']} blocks"
        fl = ", ".join(c["int8"]["float_layers"]) or "none"
        lines.append(f"| {name}: {arch} | {c['params']:,} | {c['gmacs']:.2f} G | {c['parity_fp32']:.1e} | {fl} |")
    lines += ["", f"Quality on {r['n_test']} test images at {r['size']} px (ground truth from the synthetic world; "
              f"doing nothing scores {r['identity_psnr_vs_gt']:.2f} dB) and speed (median of {base} fp32 / median "
              "of the row, per round):", "",
              "| model | variant | file MB | PSNR vs own fp32 | PSNR vs truth | median ms | p10-p90 ms | min ms | img/s (median) | speed-up vs full fp32 |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for x in rows:
        fmt = lambda k, f="{}": "-" if x.get(k) is None else f.format(x[k])  # noqa: E731
        lines.append(f"| {x['model']} | {x['variant']} | {x['file_mb']:.2f} | {fmt('psnr_vs_fp32', '{:.2f}')} | "
                     f"{fmt('psnr_vs_gt', '{:.2f}')} | {fmt('median_ms')} | {fmt('p10_ms')}-{fmt('p90_ms')} | {fmt('min_ms')} | "
                     f"{fmt('img_per_s')} | {fmt('speedup_vs_full_fp32', '{:.2f}x')} |")
    lines += ["", "int8 recipe: static QDQ, per-channel int8 weights, uint8 activations calibrated (MinMax) on "
              f"32 training images of the input domain at {r['calib_size']} px, Conv only (instance norm, pads, "
              "ReLU, adds, tanh and the ConvTranspose upsampling stay float), then the most harmful layers kept "
              "in float until 35 dB vs fp32 on 8 held-out images. 'int8_naive' quantises every Conv and "
              "ConvTranspose. Per-layer sensitivity (PSNR vs fp32 with only that layer in int8, worst first):", ""]
    for name, c in cost.items():
        sens = c["int8"].get("sensitivity") or []
        if sens:
            worst = ", ".join(f"{s['layer']} {s['psnr_db']:.1f}" for s in sens[:6])
            lines.append(f"- {name}: {worst} dB; trials: " + ", ".join(
                f"{len(t['float_layers'])} float -> {t['psnr_db']:.1f} dB" for t in c["int8"]["trials"]))
    return "\n".join(lines) + "\n\n"


if __name__ == "__main__":
    sys.exit(main())
