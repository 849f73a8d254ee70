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
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh in a --run-dir that already holds a run (its checkpoint and metrics are replaced)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.add_argument("--nproc", type=int, metavar="N", help="train with N processes on this machine (one per GPU, "
                   "or N CPU processes): re-runs this command under torchrun --standalone --nproc_per_node N; "
                   "the global batch is N x --batch-size")
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
        base = load_config(run_dir / "config.json")
        started_from = base.train.init_from
        cfg = resolve_config(args, base=base)
        if not _same_source(cfg.train.init_from, started_from):  # a resume reads its checkpoint, never the release
            raise ConfigError(f"--init-from {cfg.train.init_from or '(none)'}: a resumed run continues from its own "
                              f"checkpoint in {run_dir}; --init-from applies only to a new run (drop it, or start "
                              "a new --run-dir)")
        cfg.train.init_from = started_from  # as recorded (the same release, perhaps named by another path)
        cfg.train.run_dir = str(run_dir)
    else:
        cfg = resolve_config(args)
        if not args.overwrite:
            refuse_existing_run(Path(cfg.train.run_dir))
    if args.dry_run:
        print_config(cfg)
        return 0
    import os

    if args.nproc is not None and args.nproc < 1:
        raise ConfigError(f"--nproc must be at least 1, got {args.nproc}")
    if args.nproc and args.nproc > 1 and "LOCAL_RANK" not in os.environ:
        return _launch_torchrun(args)
    main_rank = int(os.environ.get("RANK", "0")) == 0
    if not main_rank:  # under torchrun: one rank reports, the others only warn
        import logging

        root = logging.getLogger()
        root.setLevel(max(root.level, logging.WARNING))
    from cyclekit.train.loop import TrainingInterrupted

    try:
        run_dir = build_trainer(cfg, resume=bool(args.resume), main_rank=main_rank).fit()
    except TrainingInterrupted as exc:
        if main_rank:
            print(str(exc))
        return 130
    if main_rank:
        print(f"done: {run_dir} (release: {run_dir / 'model'})")
    return 0


def refuse_existing_run(run_dir) -> None:
    """A fresh run in a folder that holds one would replace its checkpoint and metrics: refuse."""
    from cyclekit.errors import ConfigError
    from cyclekit.train.rundir import METRICS_FILE
    from cyclekit.train.state import STATE_FILE

    held = [name for name in (STATE_FILE, METRICS_FILE, "model/model.safetensors") if (run_dir / name).exists()]
    if held:
        raise ConfigError(f"{run_dir} already holds a run ({', '.join(held)}); continue it with "
                          f"--resume {run_dir}, start over there with --overwrite, or choose another --run-dir")


def _same_source(given: str, recorded: str) -> bool:
    """Whether ``--init-from`` on a resume names what the run started from (the same words, or the
    same folder by another path)."""
    from pathlib import Path

    if given == recorded or not given or not recorded:
        return given == recorded
    return Path(given).expanduser().resolve() == Path(recorded).expanduser().resolve()


def build_trainer(cfg, resume: bool = False, main_rank: bool = True):
    """The Trainer ``cyclekit train`` runs: ``--init-from`` checked, the margin of ``data faces``
    crops copied into the model config (so it travels with the release), what else their ``faces.json`` records for ``swap``
    (tone, backdrop, detector) in the release's metadata and, with ``--val-every``, the validator
    as an after-step hook on rank 0. Training itself knows nothing of faces or metrics."""
    from cyclekit.faces.params import apply_dataset_face_params, dataset_release_info
    from cyclekit.metrics.validation import make_validator
    from cyclekit.train.loop import Trainer

    cfg.validate()
    apply_dataset_face_params(cfg)
    if cfg.train.init_from and not resume:  # refused before the data is read, not after
        from cyclekit.train.init_from import check_release

        check_release(cfg.model, cfg.train.init_from)
    validator = make_validator(cfg) if main_rank else None
    return Trainer(cfg, resume=resume, hooks=[validator] if validator else [],
                   release_info=dataset_release_info(cfg.data.dataroot))


def torchrun_command(args: argparse.Namespace) -> list[str]:
    """The torchrun command line that runs this same ``train`` command on ``args.nproc`` processes."""
    import sys

    from cyclekit.commands._config_args import overrides_from_args

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
           "-m", "cyclekit"]
    cmd += ["-v"] if getattr(args, "verbose", False) else []
    cmd += ["-q"] if getattr(args, "quiet", False) else []
    cmd.append("train")
    for name in ("config", "preset", "resume"):
        if getattr(args, name, None):
            cmd += [f"--{name}", str(getattr(args, name))]
    for name, value in overrides_from_args(args).items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        cmd += [f"--{name.replace('_', '-')}", repr(value) if isinstance(value, float) else str(value)]
    return cmd


def _launch_torchrun(args: argparse.Namespace) -> int:
    import logging
    import subprocess

    cmd = torchrun_command(args)
    logging.getLogger(__name__).info("launching: %s", " ".join(cmd))
    proc = subprocess.Popen(cmd)
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:  # torchrun got the same Ctrl-C and stops its workers cleanly
            continue
