"""``cyclekit quickstart --faces``: a gender swap on real photos, trained and judged in one command.

1. Read the Face Research Lab London Set (CC BY 4.0), hold out whole people (half women, half
   men; nobody is in both splits) and crop the training people's faces the way ``cyclekit swap``
   crops them (Haar detector, margin 0.4, eye-line aligned).
2. Train the ``genderswap`` preset (ResNet-6 ngf 16 without long skips, resize-conv upsampling)
   for at most ``--max-minutes``.
3. Swap every held-out photo to the other gender with the ``swap`` pipeline (detail mode, and the
   model output itself for comparison) and score the swaps with the independent judge on
   eye-aligned chips, identity measures inside the face, and the do-nothing baseline.
4. Print the figures; write ``report.json`` and ``grid.png`` (original | swap, held-out people).

This module joins training, faces and metrics, so it lives in ``commands/``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

log = logging.getLogger(__name__)

DEFAULT_OUT = "runs/quickstart-faces"
# Where the London set is looked for when --london is not given (first match wins).
# The set ships with the repository (datasets/london, CC BY 4.0, see its README and NOTICE):
# found from the working directory or, for an editable install, beside the source tree.
LONDON_CANDIDATES = ("datasets/london", str(Path(__file__).resolve().parents[3] / "datasets" / "london"))


@dataclass
class FacesQuickstartOptions:
    out: str = DEFAULT_OUT
    london: str = ""
    size: int = 64
    steps: int = 4000
    max_minutes: float = 15.0
    held_out: int = 16
    seed: int = 0
    threads: int = 0
    progress: bool = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``--faces`` flag and its options on the ``quickstart`` parser."""
    p.add_argument("--faces", action="store_true",
                   help="instead of the synthetic world: train a male <-> female swap on real photos (the London "
                        "set, CC BY 4.0) and judge it on held-out people. With --faces the defaults are "
                        f"--out {DEFAULT_OUT} --size 64 --steps 4000 --max-minutes 15")
    p.add_argument("--london", default="", help="--faces: folder of the London set (default: datasets/london, "
                   "shipped with the repository)")
    p.add_argument("--held-out", type=int, default=16, help="--faces: people held out for the test (default 16)")
    p.add_argument("--threads", type=int, default=0, help="--faces: torch CPU threads (0 = PyTorch's default)")
    # The synthetic quickstart's defaults, to tell "not given" from "given" for the shared flags.
    p.set_defaults(_synthetic_defaults={k: p.get_default(k) for k in ("out", "size", "steps", "max_minutes")})


def options_from_args(args: argparse.Namespace) -> FacesQuickstartOptions:
    base, opts = getattr(args, "_synthetic_defaults", {}), FacesQuickstartOptions()
    for key in ("out", "size", "steps", "max_minutes"):
        value = getattr(args, key, None)
        if value is not None and value != base.get(key):
            setattr(opts, key, value)
    opts.london, opts.held_out, opts.seed = args.london, args.held_out, args.seed
    opts.threads, opts.progress = args.threads, not getattr(args, "quiet", False)
    return opts


def find_london(path: str) -> Path:
    from cyclekit.errors import DataError

    for c in ([path] if path else list(LONDON_CANDIDATES)):
        if Path(c).is_dir():
            return Path(c)
    raise DataError("the London face set was not found (looked in " + ", ".join(LONDON_CANDIDATES) + "); pass "
                    "--london FOLDER (neutral/, smiling/ and london_info.csv, from "
                    "https://doi.org/10.6084/m9.figshare.5047666.v5)")


def faces_config(opts: FacesQuickstartOptions, dataroot: Path, run_dir: Path, steps_per_epoch: int):
    """The ``genderswap`` preset at ``opts.size`` px for at most ``opts.steps`` steps."""
    from cyclekit.commands._config_args import load_preset

    cfg = load_preset("genderswap")
    m, d, t = cfg.model, cfg.data, cfg.train
    m.image_size = opts.size
    d.dataroot, d.load_size, d.crop_size = str(dataroot), opts.size + max(opts.size // 16, 2), opts.size
    # Under a wall-time cap the number of steps depends on the machine, so a decay planned over
    # --steps may never start: the preset holds the learning rate constant.
    epochs = max(2, -(-opts.steps // max(steps_per_epoch, 1)))
    t.n_epochs, t.n_epochs_decay, t.lr_policy = epochs, 0, "constant"
    t.run_dir, t.seed, t.max_steps, t.max_minutes = str(run_dir), opts.seed, opts.steps, opts.max_minutes
    t.threads, t.progress, t.log_every, t.sample_every_epochs = opts.threads, opts.progress, 25, 0
    return cfg.validate()


def _embedder():
    """dlib's face-recognition network when the ``identity`` extra is installed, else None."""
    from cyclekit.errors import UserError

    try:
        from cyclekit.faces.identity import FaceEmbedder

        return FaceEmbedder()
    except (ImportError, UserError, OSError, RuntimeError) as exc:
        log.info("face embeddings unavailable (%s); pixel identity measures only", exc)
        return None


def run_faces_quickstart(opts: FacesQuickstartOptions, log_fn: Callable[[str], None] = print) -> dict:
    import numpy as np

    from cyclekit.faces.detectors import make_detector
    from cyclekit.faces.evaluate_swap import (LONDON_ATTRIBUTION, detect_faces, evaluate_swaps, london_photos,
                                              split_by_person, swap_grid, write_training_crops)
    from cyclekit.faces.judge import GenderJudge
    from cyclekit.faces.params import FaceParams
    from cyclekit.infer.translator import load_translator
    from cyclekit.io.files import atomic_write_text
    from cyclekit.io.images import save_image
    from cyclekit.train.loop import Trainer

    out = Path(opts.out)
    dataroot, run_dir = out / "data", out / "run"
    t0 = time.perf_counter()
    london = find_london(opts.london)
    photos = london_photos(london)
    train, test = split_by_person(photos, opts.held_out, opts.seed)
    log_fn(f"[1/4] {len(photos)} photos of {len({p.person for p in photos})} people in {london}: "
           f"{len({p.person for p in test})} people ({len(test)} photos) held out; detecting faces")
    faces = detect_faces(photos, make_detector("haar"), log_fn if opts.progress else None)
    params = FaceParams(size=opts.size)
    counts = write_training_crops(train, faces, dataroot, params)
    log_fn(f"      training crops: {counts.get('trainA', 0)} male, {counts.get('trainB', 0)} female "
           f"({opts.size} px) in {dataroot}")
    cfg = faces_config(opts, dataroot, run_dir, max(counts.values(), default=1))
    log_fn(f"[2/4] training {opts.steps} steps (at most {opts.max_minutes:g} min) into {run_dir}")
    t_train = time.perf_counter()
    trainer = Trainer(cfg)
    trainer.fit()
    train_min = (time.perf_counter() - t_train) / 60
    log_fn(f"[3/4] swapping the {len(test)} held-out photos both ways and judging them")
    translators = {"male": load_translator(run_dir, "AtoB", device="cpu"),
                   "female": load_translator(run_dir, "BtoA", device="cpu")}
    judge, embedder = GenderJudge(), _embedder()
    modes = {}
    for name, detail in (("detail", True), ("model_output", False)):
        modes[name] = evaluate_swaps(test, faces, translators, judge=judge, embedder=embedder, detail=detail,
                                     params=params)
    log_fn("[4/4] writing the grid and the report")
    grid = swap_grid(test, faces, modes["detail"]["swapped"], params)
    grid_path = save_image(out / "grid.png", grid.astype(np.float32) / 255.0)
    report = {
        "london": str(london), "attribution": LONDON_ATTRIBUTION, "size": opts.size, "steps": trainer.global_step,
        "train_minutes": round(train_min, 2), "minutes": round((time.perf_counter() - t0) / 60, 2),
        "threads": opts.threads or __import__("torch").get_num_threads(), "cpus": os.cpu_count(),
        "held_out_people": sorted({p.person for p in test}), "train_people": len({p.person for p in train}),
        "model": str(run_dir / "model"), "grid": str(grid_path), "options": asdict(opts),
        "modes": {k: {"directions": v["directions"], "photos": v["photos"]} for k, v in modes.items()},
    }
    atomic_write_text(out / "report.json", json.dumps(report, indent=2) + "\n")
    return report


def _pct(v: Optional[float]) -> str:
    return "  n/a" if v is None else f"{v:5.0%}"


def format_faces_report(report: dict) -> str:
    lines = [f"gender-swap quickstart: {report['size']} px, {report['steps']} steps, trained in "
             f"{report['train_minutes']} min ({report['minutes']} min in all, {report['threads']} thread(s)); "
             f"{len(report['held_out_people'])} held-out people, none seen in training"]
    lines.append(f"{'direction':<16}{'mode':<14}{'photos':>7}{'swap ok':>9}{'do-nothing':>12}{'judge acc':>11}"
                 f"{'PSNR dB':>9}{'SSIM':>7}{'same person':>13}{'rim change':>12}")
    for mode, res in report["modes"].items():
        for direction, d in res["directions"].items():
            same = d.get("same_person_rate")
            lines.append(f"{direction:<16}{mode:<14}{d['photos']:>7}{_pct(d['swap_success']):>9}"
                         f"{_pct(d['do_nothing_success']):>12}{_pct(d['judge_accuracy_untouched']):>11}"
                         f"{d['psnr_face']:>9.2f}{d['ssim_face']:>7.3f}{_pct(same) if same is not None else '  n/a':>13}"
                         f"{d.get('rim_change') or 0.0:>12.2f}")
    lines.append("swap ok: share of swapped faces the independent judge (dlib's CC0 gender net, eye-aligned chips) "
                 "assigns to the target gender; do-nothing: the same for the untouched photo; judge acc: the "
                 "judge on the untouched photos; PSNR/SSIM: swapped vs original inside the face; rim change: "
                 "mean change in grey levels (0-255) where the pasted face blends into the photo (a halo)")
    lines.append(f"grid: {report['grid']}   model: {report['model']}   (photos: {report['attribution']})")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    opts = options_from_args(args)
    report = run_faces_quickstart(opts)
    print(format_faces_report(report))
    print(f"report: {opts.out}/report.json")
    return 0
