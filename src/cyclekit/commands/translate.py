"""``cyclekit translate``: apply a trained generator to images, folders or globs."""
from __future__ import annotations

import argparse

from cyclekit.config import CHOICES, DIRECTIONS
from cyclekit.commands._config_args import INFER_PRECISION_HELP


def register(sub) -> None:
    p = sub.add_parser("translate", help="translate images, folders or globs with a trained model")
    p.add_argument("inputs", nargs="+", help="image files, folders (recursive) or quoted globs")
    p.add_argument("--model", "-m", required=True,
                   help="run directory or release folder (or an .onnx file with --backend onnxruntime)")
    p.add_argument("--out", "-o", required=True, help="output folder (PNG files, same relative names), or a file name "
                        "for one input (out.jpg)")
    p.add_argument("--direction", choices=DIRECTIONS, default="AtoB",
                   help="AtoB applies G_AB (domain A -> B), BtoA applies G_BA")
    p.add_argument("--batch-size", type=int, default=4,
                   help="images of the same size translated together (memory grows with it, not with "
                        "the number of inputs)")
    p.add_argument("--device", choices=CHOICES["device"], default="auto",
                   help="auto: the GPU when CUDA is available, else the CPU")
    p.add_argument("--precision", choices=CHOICES["precision"], default="auto",
                   help=INFER_PRECISION_HELP)
    p.add_argument("--backend", choices=CHOICES["backend"], default="torch",
                   help="onnxruntime runs a release (exported on the fly) or an exported .onnx file "
                        "(fp32/fp16/int8) with the CPU or CUDA provider")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the generator (frozen weights): about 2x faster per image after a "
                        "one-off compile (cached on disk); worth it for large folders")
    p.add_argument("--suffix", default="", help="added to each output file name before .png")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images with a warning")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cyclekit.errors import ConfigError
    from cyclekit.infer.stream import plan_outputs, expand_inputs, translate_paths
    from cyclekit.infer.translator import load_translator
    from cyclekit.release import direction_label, resolve_release

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    if not str(args.model).lower().endswith(".onnx"):
        resolve_release(args.model)  # a missing model is named first
    plan_outputs(expand_inputs(args.inputs), args.out, args.suffix)  # refuse a bad plan before loading the model
    translator = load_translator(args.model, args.direction, args.device, args.precision,
                                 backend=args.backend, compile=args.compile)
    done = translate_paths(
        translator, args.inputs, args.out, batch_size=args.batch_size, suffix=args.suffix,
        progress=not args.quiet, on_bad_file="skip" if args.skip_bad else "error",
    )
    skipped = f", skipped {len(done.skipped)} unreadable" if done.skipped else ""
    label = direction_label(args.model, translator.direction, translator.info)
    print(f"translated {len(done)} image(s) {label} into {args.out}{skipped}")
    return 0
