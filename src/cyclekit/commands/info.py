"""``cyclekit info``: parameters and multiply-accumulates of a model's networks."""
from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("info", help="print parameters and MACs of a model's generators")
    p.add_argument("model", help="run directory, release folder or exported .onnx file")
    p.add_argument("--size", type=int, default=0, help="input side for MACs (default: the training size)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cyclekit.release import load_generator, resolve_release
    from cyclekit.nn import count_macs, count_parameters

    if str(args.model).lower().endswith(".onnx"):
        from cyclekit.export.onnx_export import onnx_cost

        size = args.size or 256
        c = onnx_cost(args.model, size)
        print(f"{args.model}: {c['precision']} params={c['params']:,} MACs@{size}px={c['macs'] / 1e9:.3f} G "
              f"file={c['size_mb']:.2f} MB")
        return 0
    release = resolve_release(args.model)
    for direction in ("AtoB", "BtoA"):
        net, cfg = load_generator(release, direction)
        size = args.size or cfg.image_size
        macs = count_macs(net, (1, cfg.in_channels, size, size))
        print(
            f"G_{direction[0]}{direction[-1]}: {cfg.generator} ngf={cfg.ngf} blocks={cfg.n_blocks} "
            f"params={count_parameters(net):,} MACs@{size}px={macs / 1e9:.3f} G"
        )
    size_mb = (release / "model.safetensors").stat().st_size / 1e6
    print(f"release: {release} ({size_mb:.1f} MB for both generators)")
    return 0
