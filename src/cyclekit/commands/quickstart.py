"""``cyclekit quickstart``: synthetic world -> train -> translate -> scored against the truth."""
from __future__ import annotations

import argparse

from cyclekit.commands import faces_quickstart


def register(sub) -> None:
    p = sub.add_parser(
        "quickstart", help="train a small model on a synthetic world and score it against ground truth",
        description="Makes a synthetic world, trains a small CycleGAN on it (minutes on a laptop CPU), "
        "translates the test set and prints PSNR/SSIM against the true translations next to the "
        "do-nothing baseline.",
    )
    p.add_argument("--out", default="runs/quickstart", help="output folder (default: runs/quickstart)")
    p.add_argument("--world", default="fruit", help="synthetic world (default: fruit)")
    p.add_argument("--size", type=int, default=64, help="image size in pixels (default: 64)")
    p.add_argument("--steps", type=int, default=0,
                   help="stop after this many iterations (default: 0 = train for --max-minutes)")
    p.add_argument("--max-minutes", type=float, default=8.0,
                   help="the training budget: the learning rate decays to zero at its end (default: 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the world, the weights and the data order")
    faces_quickstart.add_arguments(p)  # --faces: gender swap on real photos
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.faces:
        return faces_quickstart.run(args)
    faces_only = [flag for flag, given in (("--london", args.london), ("--held-out", args.held_out != 16),
                                          ("--even-tone", args.even_tone), ("--threads", args.threads)) if given]
    if faces_only:
        from cyclekit.errors import ConfigError

        raise ConfigError(f"{', '.join(faces_only)} only apply with --faces (the gender-swap quickstart); "
                          "add --faces or leave them out")
    from cyclekit.commands.synthetic_quickstart import QuickstartOptions, format_report, run_quickstart

    opts = QuickstartOptions(
        out=args.out, world=args.world, size=args.size, steps=args.steps,
        max_minutes=args.max_minutes, seed=args.seed, progress=not args.quiet,
    )
    report = run_quickstart(opts)
    print(format_report(report))
    print(f"report: {opts.out}/report.json")
    return 0
