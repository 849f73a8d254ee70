"""``cyclekit export MODEL --format onnx``: one self-contained ONNX file per generator (fp32/fp16/int8)."""
from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser(
        "export", help="export generators to ONNX (fp32, fp16 for GPUs, or calibrated int8)",
        description="Write one self-contained .onnx file per generator (weights embedded, dynamic batch/"
                    "height/width), check it with the ONNX checker and compare it with PyTorch in "
                    "onnxruntime. --precision int8 calibrates on real training images of the input "
                    "domain, quantises the convolutions per channel (QDQ) and keeps the layers that "
                    "hurt quality in float (measured, see --float-layers).",
    )
    p.add_argument("model", help="run directory or release folder")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="output format (ONNX only)")
    p.add_argument("--out", "-o", default="",
                   help="output .onnx file (one direction) or folder (default: MODEL's release/onnx/)")
    p.add_argument("--direction", choices=("AtoB", "BtoA", "both"), default="AtoB",
                   help="which generator(s) to export: AtoB is G_AB, BtoA is G_BA")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32",
                   help="fp16: half-precision weights and activations for GPUs (float32 I/O)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset version (default 18)")
    p.add_argument("--no-parity", action="store_true", help="skip the onnxruntime vs PyTorch comparison")
    q = p.add_argument_group("int8 quantisation")
    q.add_argument("--calib-dir", default="", help="calibration images (default: the training images of "
                   "the input domain from the model's config)")
    q.add_argument("--calib-images", type=int, default=32, help="images used for calibration (default 32)")
    q.add_argument("--eval-images", type=int, default=8, help="other images used to measure PSNR vs fp32")
    q.add_argument("--calib-size", type=int, default=0, help="side of calibration crops (default: training size)")
    q.add_argument("--calib-method", choices=("minmax", "percentile", "entropy"), default="minmax",
                   help="how activation ranges are set from the calibration images")
    q.add_argument("--float-layers", default="auto",
                   help="'auto' (measure each layer, keep the harmful ones in float until --target-psnr), "
                        "'none', or comma-separated layer names (e.g. head.conv,stem.conv)")
    q.add_argument("--target-psnr", type=float, default=35.0, help="auto: PSNR vs fp32 to reach (dB)")
    q.add_argument("--quantize-ops", default="Conv",
                   help="op types to quantise (default Conv; add ConvTranspose to quantise the upsampling too)")
    q.add_argument("--sensitivity", action="store_true",
                   help="always measure every layer's sensitivity (one trial quantisation per layer) and "
                        "store it in the .quant.json report")
    p.set_defaults(func=run)


def _out_path(args, release, direction: str) -> "Path":
    from pathlib import Path

    suffix = {"fp32": "", "fp16": ".fp16", "int8": ".int8"}[args.precision]
    name = f"G_{direction[0]}{direction[-1]}{suffix}.onnx"
    if args.out and args.out.lower().endswith(".onnx"):
        if args.direction == "both":
            from cyclekit.errors import ConfigError

            raise ConfigError("--direction both writes two files: give --out a folder, not a .onnx file")
        return Path(args.out)
    return (Path(args.out) if args.out else release / "onnx") / name


def run(args: argparse.Namespace) -> int:
    from cyclekit.release import load_generator, resolve_release
    from cyclekit.errors import ConfigError
    from cyclekit.export.onnx_export import export_generator, export_info

    if args.calib_images < 1 or args.eval_images < 0:
        raise ConfigError("--calib-images must be at least 1 and --eval-images not negative")
    release = resolve_release(args.model)
    info = export_info(release)  # domains, attribution, a face model's swap settings: into every file
    directions = ["AtoB", "BtoA"] if args.direction == "both" else [args.direction]
    for direction in directions:
        net, cfg = load_generator(release, direction, device="cpu")
        out = _out_path(args, release, direction)
        if args.precision == "int8":
            report = _export_int8(args, release, net, cfg, direction, out, info)
            print(f"{direction}: {out} ({out.stat().st_size / 1e6:.2f} MB int8, "
                  f"{report['psnr_db']:.2f} dB vs fp32 on {report['eval_images']} held-out images; "
                  f"float layers: {', '.join(report['float_layers']) or 'none'})")
            continue
        export_generator(net, cfg, out, direction, args.precision, args.opset, info=info)
        line = f"{direction}: {out} ({out.stat().st_size / 1e6:.2f} MB {args.precision})"
        if not args.no_parity:
            diff = _parity(net, out, cfg, args.precision)
            line += f"; max |onnxruntime - pytorch| = {diff}" if isinstance(diff, str) else \
                f"; max |onnxruntime - pytorch| = {diff:.2e}"
        print(line)
    return 0


def _parity(net, path, cfg, precision: str):
    from cyclekit.export.onnx_export import onnx_parity, parity_shapes
    from cyclekit.errors import CheckpointError

    try:
        return onnx_parity(net, path, parity_shapes(cfg))
    except CheckpointError as exc:  # e.g. an fp16 graph on a CPU build without fp16 kernels
        if precision == "fp16":
            return f"not checked ({exc})"
        raise


def _export_int8(args, release, net, cfg, direction, out, info):
    import json
    import tempfile
    from pathlib import Path

    from cyclekit.export.onnx_export import export_generator, read_metadata, save_onnx, set_metadata
    from cyclekit.export.quantize import (
        Int8Quantizer, auto_exclude, domain_images, layer_sensitivity, load_arrays, mean_psnr, run_model,
        split_images,
    )
    import onnx

    files = domain_images(release, direction, args.calib_dir or None)
    calib_files, eval_files = split_images(files, args.calib_images, args.eval_images)
    size = args.calib_size or cfg.image_size
    calib = load_arrays(calib_files, cfg.in_channels, size)
    evals = load_arrays(eval_files, cfg.in_channels, size) if eval_files else calib[: max(1, len(calib) // 4)]
    with tempfile.TemporaryDirectory(prefix="cyclekit-export-") as tmp:
        fp32 = export_generator(net, cfg, Path(tmp) / "fp32.onnx", direction, "fp32", args.opset, info=info)
        reference = run_model(fp32, evals)
        q = Int8Quantizer(fp32, calib, op_types=[s for s in args.quantize_ops.split(",") if s],
                          method=args.calib_method, workdir=Path(tmp))
        report: dict = {"calibration_images": len(calib), "eval_images": len(evals), "calib_size": size,
                        "calib_method": args.calib_method, "quantized_ops": q.op_types}
        sens = layer_sensitivity(q, evals, reference, progress=True) if args.sensitivity else None
        if args.float_layers == "auto":
            report.update(auto_exclude(q, evals, reference, target_db=args.target_psnr, sensitivity=sens))
        else:
            names = [] if args.float_layers == "none" else [s for s in args.float_layers.split(",") if s]
            unknown = sorted(set(names) - {n for n, _ in q.nodes})
            if unknown:
                from cyclekit.errors import ConfigError

                raise ConfigError(f"--float-layers: no layer named {', '.join(unknown)}; layers: "
                                  f"{', '.join(n for n, _ in q.nodes)}")
            path = q.quantize(Path(tmp) / "int8.onnx", exclude=names)
            report.update({"float_layers": names, "sensitivity": sens or [],
                           "psnr_db": round(mean_psnr(reference, run_model(path, evals)), 3)})
        final = q.quantize(Path(tmp) / "int8.onnx", exclude=report["float_layers"])
        model = onnx.load(str(final))
        meta = read_metadata(onnx.load(str(fp32)))
        meta["precision"] = "int8"
        meta["int8_float_layers"] = ",".join(report["float_layers"])
        set_metadata(model, meta)
        save_onnx(model, out)
    report_path = out.with_suffix(".quant.json")
    from cyclekit.io.files import atomic_write_text

    atomic_write_text(report_path, json.dumps(report, indent=2) + "\n")
    return report
