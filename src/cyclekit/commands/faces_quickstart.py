"""``cyclekit quickstart --faces``: a gender swap on real photos, trained and judged in one command.

1. Read the Face Research Lab London Set (CC BY 4.0), hold out whole people (half women, half
   men; nobody is in both splits) and crop the training people's faces the way ``cyclekit swap``
   crops them (Haar detector, margin 0.4, eye-line aligned).
2. Train the recommended ``fast`` recipe for ``--max-minutes`` (its learning rate decays to zero
   at the deadline, however many steps the machine manages).
3. Choose the paste strength per direction on 40 *training* people (:mod:`cyclekit.faces.strength`)
   and record it in the release, where ``cyclekit swap`` reads it.
4. Swap every held-out photo to the other gender with the ``swap`` pipeline (detail mode, and the
   model output itself for comparison) and score the swaps with the independent judge on
   eye-aligned chips, identity measures inside the face, and the do-nothing baseline.
5. Print the figures; write ``report.json`` and ``grid.png`` (original | swap, held-out people).

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
    steps: int = 0  # an optional cap on the iterations (0 = train for max_minutes)
    max_minutes: float = 15.0
    held_out: int = 16
    select_people: int = 40  # training people the paste strength is chosen on
    seed: int = 0
    threads: int = 0
    even_tone: bool = False  # train on crops moved to one skin colour (faces/tone.py)
    progress: bool = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``--faces`` flag and its options on the ``quickstart`` parser."""
    p.add_argument("--faces", action="store_true",
                   help="instead of the synthetic world: train a male <-> female swap on real photos (the London "
                        "set, CC BY 4.0) and judge it on held-out people. With --faces the defaults are "
                        f"--out {DEFAULT_OUT} --size 64 --max-minutes 15")
    p.add_argument("--london", default="", help="--faces: folder of the London set (default: datasets/london, "
                   "shipped with the repository)")
    p.add_argument("--held-out", type=int, default=16, help="--faces: people held out for the test (default 16)")
    p.add_argument("--threads", type=int, default=0, help="--faces: torch CPU threads (0 = PyTorch's default)")
    p.add_argument("--even-tone", action="store_true",
                   help="--faces: move every training crop to one skin colour (the mean over all training crops), "
                        "so the model does not learn skin brightness as a mark of gender")
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
    opts.even_tone = getattr(args, "even_tone", False)
    return opts


def find_london(path: str) -> Path:
    from cyclekit.errors import DataError

    for c in ([path] if path else list(LONDON_CANDIDATES)):
        if Path(c).is_dir():
            return Path(c)
    raise DataError("the London face set was not found (looked in " + ", ".join(LONDON_CANDIDATES) + "); pass "
                    "--london FOLDER (neutral/, smiling/ and london_info.csv, from "
                    "https://doi.org/10.6084/m9.figshare.5047666.v5)")


def faces_config(opts: FacesQuickstartOptions, dataroot: Path, run_dir: Path):
    """The recommended ``fast`` recipe at ``opts.size`` px for ``opts.max_minutes``.

    Measured on these crops (README, "Gender swap on real photos"): the ``genderswap`` preset's
    ResNet-6 flips more faces at strength 1 but smears them and loses the person; ``fast`` keeps
    the person (its colour gain carries the input through) and, with the paste strength chosen
    on training people, flips as many. The learning rate follows the time budget, so the run ends
    settled however many steps this machine manages; ``--precision auto`` decides bf16 or fp32.
    """
    from cyclekit.commands._config_args import load_preset

    cfg = load_preset("fast")
    m, d, t = cfg.model, cfg.data, cfg.train
    # The session-18 `fast` (4 residual blocks, one image per step, no half-size warm-up) with
    # mirror flips, since a face mirrors. Today's `fast` (2 blocks, batches of 4, the warm-up)
    # swapped these faces far more gently: the strength rule had to take 1.6, and the faces came
    # out blotchy (BENCHMARKS.md, "The session-11 `fast` on real faces", session 22).
    m.n_blocks, t.batch_size, d.flip, t.half_res_warmup = 4, 1, True, "0"
    m.image_size = opts.size
    d.dataroot, d.load_size, d.crop_size = str(dataroot), opts.size + max(opts.size // 8, 2), opts.size
    t.run_dir, t.seed, t.max_steps, t.max_minutes = str(run_dir), opts.seed, opts.steps, opts.max_minutes
    t.lr_step_unit, t.precision = "time", "auto"
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
                                              sample_people, split_by_person, swap_grid, swap_translators,
                                              write_training_crops)
    from cyclekit.faces.judge import GenderJudge
    from cyclekit.faces.params import FaceParams, apply_dataset_face_params, dataset_release_info
    from cyclekit.faces.strength import choose_strength, cycle_fields, describe_choice, strength_table
    from cyclekit.io.files import atomic_write_text
    from cyclekit.io.images import save_image
    from cyclekit.release import update_release_info
    from cyclekit.train.loop import Trainer

    out = Path(opts.out)
    dataroot, run_dir = out / "data", out / "run"
    t0 = time.perf_counter()
    london = find_london(opts.london)
    photos = london_photos(london)
    train, test = split_by_person(photos, opts.held_out, opts.seed)
    log_fn(f"[1/5] {len(photos)} photos of {len({p.person for p in photos})} people in {london}: "
           f"{len({p.person for p in test})} people ({len(test)} photos) held out; detecting faces")
    params = FaceParams(size=opts.size, detector="haar")  # faces.json and the release record the detector
    faces = detect_faces(photos, make_detector(params.detector), log_fn if opts.progress else None)
    counts = write_training_crops(train, faces, dataroot, params, even_tone=opts.even_tone)
    log_fn(f"      training crops: {counts.get('trainA', 0)} male, {counts.get('trainB', 0)} female "
           f"({opts.size} px) in {dataroot}")
    cfg = faces_config(opts, dataroot, run_dir)
    cap = f", at most {opts.steps} steps" if opts.steps else ""
    log_fn(f"[2/5] training the fast recipe for {opts.max_minutes:g} min{cap} into {run_dir}")
    t_train = time.perf_counter()
    apply_dataset_face_params(cfg)  # the crops' margin into the model config, as `cyclekit train` does
    # and their backdrop and skin colour into the release: swaps show the model each head on and at them
    trainer = Trainer(cfg, release_info=dataset_release_info(dataroot))
    trainer.fit()
    train_min = (time.perf_counter() - t_train) / 60

    def translators():  # reloaded after the strength is recorded: swap reads it from the release
        return swap_translators(run_dir)

    judge, embedder = GenderJudge(), _embedder()
    chooser = sample_people(train, opts.select_people, "select-strength")
    n_choose = len({p.person for p in chooser})
    log_fn(f"[3/5] choosing the paste strength on {n_choose} training people ({len(chooser)} photos)")
    if n_choose < 10:
        log.warning("the paste strength is chosen on only %d training people: the choice is rough (hold out fewer "
                    "people with --held-out)", n_choose)
    table = strength_table(chooser, faces, translators(), judge=judge, embedder=embedder, params=params)
    chosen = choose_strength(table)
    update_release_info(run_dir, swap_strength=chosen, swap_strength_chosen=describe_choice(table, chosen, n_choose),
                        **cycle_fields(table))  # cyclekit swap warns past it (faces/cycle.py)
    log_fn(f"      strength {_strength(chosen, 'AtoB')} male->female, {_strength(chosen, 'BtoA')} female->male "
           "(recorded in the release; cyclekit swap --strength overrides it)")
    log_fn(f"[4/5] swapping the {len(test)} held-out photos both ways and judging them")
    trs, modes = translators(), {}
    for name, detail in (("detail", True), ("model_output", False)):
        modes[name] = evaluate_swaps(test, faces, trs, judge=judge, embedder=embedder, detail=detail, params=params)
    log_fn("[5/5] writing the grid and the report")
    grid = swap_grid(test, faces, modes["detail"]["swapped"], params)
    grid_path = save_image(out / "grid.png", grid.astype(np.float32) / 255.0)
    report = {
        "london": str(london), "attribution": LONDON_ATTRIBUTION, "size": opts.size, "steps": trainer.global_step,
        "train_minutes": round(train_min, 2), "minutes": round((time.perf_counter() - t0) / 60, 2),
        "threads": opts.threads or __import__("torch").get_num_threads(), "cpus": os.cpu_count(),
        "held_out_people": sorted({p.person for p in test}), "train_people": len({p.person for p in train}),
        "model": str(run_dir / "model"), "grid": str(grid_path), "options": asdict(opts),
        "swap_strength": chosen, "strength_choice": {"people": n_choose, "rows": table},
        "modes": {k: {"directions": v["directions"], "photos": v["photos"]} for k, v in modes.items()},
    }
    atomic_write_text(out / "report.json", json.dumps(report, indent=2) + "\n")
    return report


def _strength(chosen: dict, direction: str) -> str:
    return f"{chosen[direction]:g}" if direction in chosen else "1 (not chosen: no judged photos)"


def _pct(v: Optional[float]) -> str:
    return "  n/a" if v is None else f"{v:5.0%}"


def format_faces_report(report: dict) -> str:
    lines = [f"gender-swap quickstart: {report['size']} px, {report['steps']} steps, trained in "
             f"{report['train_minutes']} min ({report['minutes']} min in all, {report['threads']} thread(s)); "
             f"{len(report['held_out_people'])} held-out people, none seen in training"]
    if "swap_strength" in report:
        st = report["swap_strength"]
        lines.append(f"paste strength, chosen on {report['strength_choice']['people']} training people: "
                     f"male->female {_strength(st, 'AtoB')}, female->male {_strength(st, 'BtoA')}")
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
