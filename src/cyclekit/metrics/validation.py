"""Validation during training: ``--val-every N`` runs the evaluation on a held-out slice of the
test set, logs it to ``metrics.jsonl`` (and TensorBoard) as ``val/<metric>`` columns, and keeps
the best generators by ``--val-metric`` in ``run_dir/best/`` (a release, beside ``run_dir/model/``,
with ``val.json`` holding the metrics that made it best).

It never changes what training does next: the generators go to eval mode and back, the domain
classifier trains inside ``torch.random.fork_rng`` and every other random choice (KID subsets,
classifier batches) comes from its own seeded NumPy generator, so a run with validation gives the
same weights as one without, and ``--resume`` continues exactly (the best value and its step are
part of the training state).
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Optional

from cyclekit.config import Config, generator_config_for
from cyclekit.io.files import atomic_write_text
from cyclekit.errors import ConfigError

log = logging.getLogger(__name__)

BEST_DIR = "best"
VAL_OPTIONS: dict[str, Any] = {"kid_subsets": 50}  # EvalOptions for validation beyond seed/size/images
_PAIRED = ("psnr", "ssim", "l1")


def _base(metric: str) -> str:
    for suffix in ("_AtoB", "_BtoA"):
        if metric.endswith(suffix):
            return metric[: -len(suffix)]
    return metric


class Validator:
    """An after-step hook of the training loop (:mod:`cyclekit.train.hooks`) for ``--val-every`` > 0:
    give it to rank 0's Trainer; its state is saved in the checkpoint under ``"validation"``."""

    name = "validation"

    def __init__(self, cfg: Config) -> None:
        t, d = cfg.train, cfg.data
        self.cfg, self.every = cfg, t.val_every
        self.metric: Optional[str] = None if t.val_metric == "auto" else t.val_metric
        self.best_value: Optional[float] = None
        self.best_step: Optional[int] = None
        self._evaluator = None
        root = Path(d.dataroot) if d.dataroot and not d.dataroot.lower().endswith(".npz") else None
        if root is None or not (root / "testA").is_dir() or not (root / "testB").is_dir():
            raise ConfigError(
                "--val-every needs a held-out test set: DATAROOT/testA/ and DATAROOT/testB/ (with "
                "testA_gt/ testB_gt/ for paired metrics); set --dataroot to such a folder or --val-every 0"
            )
        self.root = root
        if self.metric and _base(self.metric) in _PAIRED:
            m = self.metric
            need = ["testA_gt"] if m.endswith("_AtoB") else ["testB_gt"] if m.endswith("_BtoA") else ["testA_gt", "testB_gt"]
            if not any((root / n).is_dir() for n in need):
                raise ConfigError(f"--val-metric {m} needs ground truth in {root / need[0]}; choose kid, fid, "
                                  "success or cycle_l1 for data without ground truth")

    # ------------------------------------------------------------------ state (in the training state)
    def state_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "best_value": self.best_value, "best_step": self.best_step}

    def load_state_dict(self, state: Optional[dict[str, Any]]) -> None:
        if not state:
            return
        if state.get("metric") and self.metric and state["metric"] != self.metric:
            log.warning("--val-metric changed from %s to %s: the best checkpoint starts afresh",
                        state["metric"], self.metric)
            return
        self.metric = state.get("metric") or self.metric
        self.best_value, self.best_step = state.get("best_value"), state.get("best_step")
        self._adopt_written_best()

    def _adopt_written_best(self) -> None:
        """best/ is written at each improving validation, checkpoints only every so often
        (--save-every, epoch ends, --save-minutes): after a crash best/ can be newer than the
        checkpoint's record of it, and a worse model must not replace it on resume."""
        try:
            meta = json.loads((Path(self.cfg.train.run_dir) / BEST_DIR / "val.json").read_text())["best"]
            value, step = float(meta["val_value"]), int(meta["global_step"])
        except (OSError, ValueError, KeyError, TypeError):
            return
        if meta.get("val_metric") == self.metric and self.beats_best(value):
            self.best_value, self.best_step = value, step

    def beats_best(self, value: float) -> bool:
        """Whether ``value`` of the validation metric is better than the best so far."""
        from cyclekit.metrics.evaluate import metric_goal  # heavy (torch): imported when used

        if not math.isfinite(value):
            return False
        better = metric_goal(self.metric) == "max"
        return self.best_value is None or (value > self.best_value if better else value < self.best_value)

    # ------------------------------------------------------------------ running
    def evaluator(self, device):
        if self._evaluator is None:
            from cyclekit.data.datasets import resolve_domain_dirs
            from cyclekit.metrics.evaluate import EvalOptions, Evaluator

            t, m = self.cfg.train, self.cfg.model
            opts = EvalOptions(**{"seed": t.seed, "max_images": t.val_images, "size": m.image_size,
                                  "device": str(device), "report_images": 0, **VAL_OPTIONS})
            self._evaluator = Evaluator(self.root, m.in_channels, m.out_channels, opts, image_size=m.image_size,
                                        train_dirs=resolve_domain_dirs(self.cfg.data, "train"))
            for note in self._evaluator.notes:
                log.info("validation: %s", note)
        return self._evaluator

    def after_step(self, view) -> Optional[dict]:
        """``view``: a :class:`cyclekit.train.hooks.StepView` (generators, device, step, epoch, log)."""
        if self.every and view.step % self.every == 0:
            return self.run(view)
        return None

    def run(self, view) -> dict:
        """Evaluate the live generators, log a ``val/`` row, update ``best/`` when it improved."""
        from cyclekit.infer.translator import Translator

        gens = tuple(view.generators)
        modes = [g.training for g in gens]
        evaluator = self.evaluator(view.device)
        try:
            for g in gens:
                g.eval()
            t_ab = Translator(gens[0], generator_config_for(self.cfg.model, "AtoB"), view.device)
            t_ba = Translator(gens[1], generator_config_for(self.cfg.model, "BtoA"), view.device)
            result = evaluator.evaluate(t_ab, t_ba)
        finally:
            for g, mode in zip(gens, modes):
                g.train(mode)
        metrics = result["metrics"]
        if self.metric is None:  # auto
            self.metric = next((k for k in ("psnr", "kid", "success", "cycle_l1") if k in metrics), "cycle_l1")
        row: dict[str, Any] = {"step": view.step, "epoch": view.epoch + 1}
        row.update({f"val/{k}": round(v, 6) for k, v in metrics.items() if math.isfinite(v)})
        fe = result["feature_extractor"]
        row["val/features"] = fe["name"] if fe else "none"
        value = metrics.get(self.metric)
        if value is None:
            raise ConfigError(f"--val-metric {self.metric} was not measured (measured: {', '.join(metrics)})")
        if self.beats_best(value):
            self.best_value, self.best_step = float(value), view.step
            self._save_best(view, gens, result)
        row["val/best_step"] = self.best_step
        view.log(row)
        log.info("validation at step %d: %s = %.4f (best %.4f at step %s)", view.step, self.metric,
                 value, self.best_value if self.best_value is not None else float("nan"), self.best_step)
        return row

    def _save_best(self, view, gens, result: dict) -> None:
        from cyclekit.release import save_release
        from cyclekit.metrics.report import clean

        out = Path(self.cfg.train.run_dir) / BEST_DIR
        meta = {"epoch": view.epoch, "global_step": view.step, "val_metric": self.metric,
                "val_value": self.best_value}
        save_release(out, self.cfg, gens[0], gens[1], meta=meta)
        doc = {k: v for k, v in result.items() if k != "per_image"} | {"best": meta}
        atomic_write_text(out / "val.json", json.dumps(clean(doc), indent=2) + "\n")


def make_validator(cfg: Config) -> Optional[Validator]:
    """A Validator when ``--val-every`` is set, else None."""
    return Validator(cfg) if cfg.train.val_every > 0 else None
