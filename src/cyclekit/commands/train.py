"""``cyclekit train``: train a CycleGAN, or resume one exactly with ``--resume RUN_DIR``."""
from __future__ import annotations

import argparse

from cyclekit.commands._config_args import add_config_arguments, list_presets, print_config, resolve_config


def register(sub) -> None:
    p = sub.add_parser(
        "train", help="train a CycleGAN on two folders of images (or resume a run)",
        description="Train on DATAROOT/trainA + trainB (or --dir-a/--dir-b, or a .npz). Every config "
        "field is a flag; --config FILE or --preset NAME gives the base, flags override it.",
    )
    p.add_argument("--config", help="JSON/YAML config file (e.g. a run's config.json)")
    p.add_argument("--preset", help="a built-in preset: " + ", ".join(list_presets()))
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run exactly from its last checkpoint")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    add_config_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cyclekit.config import load_config
    from cyclekit.errors import ConfigError

    if args.resume:
        if args.config or args.preset:
            raise ConfigError("--resume reads the run's own config.json; do not combine it with --config/--preset")
        run_dir = Path(args.resume)
        if not (run_dir / "config.json").is_file():
            raise ConfigError(f"{run_dir} is not a run directory (no config.json); give the folder a run wrote")
        cfg = resolve_config(args, base=load_config(run_dir / "config.json"))
        cfg.train.run_dir = str(run_dir)
    else:
        cfg = resolve_config(args)
    if args.dry_run:
        print_config(cfg)
        return 0
    from cyclekit.train.trainer import Trainer, TrainingInterrupted

    try:
        run_dir = Trainer(cfg, resume=bool(args.resume)).fit()
    except TrainingInterrupted as exc:
        print(str(exc))
        return 130
    print(f"done: {run_dir} (release: {run_dir / 'model'})")
    return 0
