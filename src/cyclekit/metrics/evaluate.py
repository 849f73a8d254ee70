"""The evaluation pipeline behind ``cyclekit eval``, ``--val-every`` and the quickstart.

For a pair of generators and a data folder (``testA/``, ``testB/``, optionally ``testA_gt/``,
``testB_gt/`` holding the true translation of each test image, and ``trainA/``, ``trainB/`` for
the domain classifier) it measures, in both directions:

* **paired** (where ground truth exists): L1, PSNR, SSIM of the translation against the truth;
* **cycle consistency**: L1 between ``a`` and ``G_BA(G_AB(a))`` (and ``b``, ``G_AB(G_BA(b))``),
  the paper's eq. 2 measured on test images;
* **identity drift**: L1 between ``b`` and ``G_AB(b)`` (and ``a``, ``G_BA(a)``): how much a
  generator changes an image already in its target domain (the paper's identity loss, sec. 5.2);
* **translation success**: the share of translations the domain classifier puts in the target
  domain (:mod:`cyclekit.metrics.classifier`), with its held-out accuracy;
* **FID / KID** of the translations against real test images of the target domain, with the
  feature extractor's name next to the numbers (:mod:`cyclekit.metrics.fid`).

Every metric of the model has a *do-nothing* counterpart (output = input) under ``baseline``, so
a report always says whether the model beats leaving the image alone. Translations are rounded
to 8 bits before scoring, as a saved PNG would be. Naming: ``AtoB`` is ``G_AB`` (paper G),
``BtoA`` is ``G_BA`` (paper F); ``cycle_l1_ABA`` is A->B->A.
"""
from __future__ import annotations

import datetime
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import torch

from cyclekit.errors import ConfigError, DataError

log = logging.getLogger(__name__)

Generator = Callable[[torch.Tensor], torch.Tensor]  # [N,C,H,W] in [-1,1] -> [N,C',H,W]
BASES = ("l1", "psnr", "ssim", "success", "fid", "kid")
HIGHER_IS_BETTER = ("psnr", "ssim", "success", "classifier_accuracy")


def metric_goal(name: str) -> str:
    """``max`` or ``min``: which way is better for a metric name like ``psnr_AtoB`` or ``kid``."""
    base = name.split("/")[-1]
    return "max" if any(base == h or base.startswith(h + "_") for h in HIGHER_IS_BETTER) else "min"


@dataclass
class EvalOptions:
    seed: int = 0  # classifier initialisation/split and KID subsets
    batch_size: int = 8
    size: int = -1  # test images resized to size x size: -1 = the model's image_size, 0 = as they are
    max_images: int = 0  # test images per domain (0 = all; the first N in sorted order)
    features: str = "auto"  # FID/KID features: auto | inception | classifier | none
    fid_weights: str = ""  # path to pt_inception-2015-12-05-6726825d.pth
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    classifier: bool = True
    classifier_steps: int = 300
    classifier_size: int = 64
    classifier_max_images: int = 1000
    device: str = "cpu"
    report_images: int = 24  # per direction, shown in the HTML report
    skip_bad: bool = False  # skip unreadable test images with a warning

    def validate(self) -> "EvalOptions":
        for name in ("batch_size", "kid_subsets", "kid_subset_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.max_images < 0 or self.classifier_steps < 0 or self.report_images < 0:
            raise ConfigError("--max-images, --classifier-steps and --report-images must not be negative")
        if self.size < -1:
            raise ConfigError(f"--size must be -1 (the model's size), 0 (as they are) or a side in pixels, got {self.size}")
        if not 16 <= self.classifier_size <= 256:
            raise ConfigError(f"--classifier-size must be between 16 and 256, got {self.classifier_size}")
        return self


@dataclass
class TestItem:
    name: str
    image: torch.Tensor  # CHW in [-1, 1]
    truth: Optional[torch.Tensor]  # the true translation, CHW in [-1, 1]


def load_test_items(dataroot: Union[str, Path], domain: str, channels: int, channels_truth: int,
                    size: int = 0, max_images: int = 0, skip_bad: bool = False) -> list[TestItem]:
    """``test{domain}`` images (and ``test{domain}_gt`` truths), resized to ``size`` when > 0.
    ``skip_bad`` skips an unreadable image (or truth) with a warning instead of stopping."""
    from cyclekit.data.datasets import list_test_pairs
    from cyclekit.io.images import load_image, to_tensor
    from cyclekit.data.transforms import resize

    def load(path: Path, c: int, hw: Optional[tuple[int, int]]) -> np.ndarray:
        img = load_image(path, c)
        if hw is not None and img.shape[:2] != hw:
            img = resize(img, hw[1], hw[0])
        return img

    root = Path(dataroot)
    pairs = list_test_pairs(root, domain)
    if max_images:
        pairs = pairs[:max_images]
    items = []
    for p, g in pairs:
        try:
            img = load(p, channels, (size, size) if size > 0 else None)
            truth = load(g, channels_truth, img.shape[:2]) if g is not None else None  # truth at the input's size
        except DataError as exc:
            if not skip_bad:
                raise DataError(f"{exc} (or pass --skip-bad to leave it out)") from None
            log.warning("skipping %s", exc)
            continue
        items.append(TestItem(str(p.relative_to(root / f"test{domain}")), to_tensor(img),
                              to_tensor(truth) if truth is not None else None))
    return items


def _groups(items: list, batch_size: int):
    """Consecutive batches of same-sized images, each as a list of (index, item)."""
    by_shape: dict = {}
    for i, it in enumerate(items):
        by_shape.setdefault(tuple(it.image.shape), []).append((i, it))
    for group in by_shape.values():
        for k in range(0, len(group), batch_size):
            yield group[k:k + batch_size]


def _stack(items: list[TestItem]) -> list[torch.Tensor]:
    return [torch.stack([it.image for _, it in g]) for g in _groups(items, 64)]


def _mean(values) -> float:
    v = [x for x in values if x is not None and np.isfinite(x)]
    return float(np.mean(v)) if v else float("nan")


class Evaluator:
    """Everything that does not depend on the model, prepared once: test images, the domain
    classifier, the feature extractor, the real images' features. :meth:`evaluate` then scores
    any pair of generators (a release, live training networks, or a test oracle)."""

    def __init__(self, dataroot: Union[str, Path], channels_a: int, channels_b: int,
                 opts: Optional[EvalOptions] = None, image_size: int = 0,
                 train_dirs: Optional[tuple[Path, Path]] = None) -> None:
        from cyclekit.metrics.fid import pick_extractor

        self.opts = opts = (opts or EvalOptions()).validate()
        self.root = Path(dataroot)
        self.channels = {"A": channels_a, "B": channels_b}
        size = opts.size if opts.size >= 0 else image_size
        self.size = size
        self.test = {
            "A": load_test_items(self.root, "A", channels_a, channels_b, size, opts.max_images, opts.skip_bad),
            "B": load_test_items(self.root, "B", channels_b, channels_a, size, opts.max_images, opts.skip_bad),
        }
        self.notes: list[str] = []
        self.classifier = self._train_classifier(train_dirs) if opts.classifier else None
        self.extractor, note = pick_extractor(opts.features, opts.fid_weights or None, self.classifier,
                                              opts.device)
        if note:
            self.notes.append(note)
        self.real: dict[str, dict] = {}
        for d in "AB":
            xs = _stack(self.test[d])
            self.real[d] = {
                "feats": np.concatenate([self.extractor(x) for x in xs]) if self.extractor else None,
                "prob_B": np.concatenate([self.classifier.prob_B(x) for x in xs]) if self.classifier else None,
            }

    def _train_classifier(self, train_dirs):
        from cyclekit.metrics.classifier import train_domain_classifier

        dirs = train_dirs or (self.root / "trainA", self.root / "trainB")
        if not all(Path(d).is_dir() for d in dirs):
            self.notes.append(f"no domain classifier: {dirs[0]} and {dirs[1]} are needed to train it, "
                              "so there is no success rate")
            return None
        o = self.opts
        c = max(self.channels.values())
        return train_domain_classifier(dirs[0], dirs[1], c, size=o.classifier_size, steps=o.classifier_steps,
                                       max_images=o.classifier_max_images, seed=o.seed, device=o.device)

    # ------------------------------------------------------------------ scoring
    def _direction(self, src: str, fwd: Generator, back: Generator, sink) -> tuple[list, dict]:
        from cyclekit.io.images import to_image
        from cyclekit.metrics.fid import quantize
        from cyclekit.metrics.paired import l1, paired_metrics

        dst = "B" if src == "A" else "A"
        direction = f"{src}to{dst}"
        same_channels = self.channels[src] == self.channels[dst]
        rows: list[dict] = [None] * len(self.test[src])  # type: ignore[list-item]
        feats, probs = [], np.zeros(len(self.test[src]))
        for group in _groups(self.test[src], self.opts.batch_size):
            x = torch.stack([it.image for _, it in group])
            with torch.inference_mode():
                fake = quantize(fwd(x).float().cpu())
                rec = quantize(back(fake).float().cpu())
                idt = quantize(back(x).float().cpu()) if same_channels else None
            if self.extractor is not None:
                feats.append(self.extractor(fake))
            p = self.classifier.prob_B(fake) if self.classifier is not None else None
            for k, (i, item) in enumerate(group):
                inp, out, back_img = to_image(x[k]), to_image(fake[k]), to_image(rec[k])
                row: dict = {"direction": direction, "name": item.name, "cycle_l1": l1(back_img, inp)}
                if idt is not None:
                    row["identity_l1"] = l1(to_image(idt[k]), inp)  # |G_dst->src(x) - x|
                truth = to_image(item.truth) if item.truth is not None else None
                if truth is not None:
                    row.update(paired_metrics(out, truth))
                    if same_channels:
                        row.update({f"baseline_{k2}": v for k2, v in paired_metrics(inp, truth).items()})
                if p is not None:
                    probs[i] = p[k] if dst == "B" else 1.0 - p[k]
                    row["p_target"] = float(probs[i])
                if sink is not None:
                    row["images"] = sink(direction, i, item.name, {
                        "input": inp, "translation": out, "reconstruction": back_img, "truth": truth})
                rows[i] = row
        return rows, {"feats": np.concatenate(feats) if feats else None, "p_target": probs}

    def evaluate(self, G_AB: Generator, G_BA: Generator, sink=None) -> dict:
        """Score ``G_AB``/``G_BA`` (callables on [N,C,H,W] in [-1,1]); returns the result dict."""
        from cyclekit import __version__
        from cyclekit.metrics.fid import fid_from_features, kid

        t0 = time.perf_counter()
        o = self.opts
        metrics: dict[str, float] = {}
        baseline: dict[str, float] = {}
        per_image: list[dict] = []
        kid_size = None
        for src, dst, fwd, back in (("A", "B", G_AB, G_BA), ("B", "A", G_BA, G_AB)):
            d = f"{src}to{dst}"
            rows, extra = self._direction(src, fwd, back, sink)
            per_image += rows
            with_truth = [r for r in rows if "psnr" in r]
            if with_truth:
                for k in ("l1", "psnr", "ssim"):
                    metrics[f"{k}_{d}"] = _mean(r[k] for r in with_truth)
                    if f"baseline_{k}" in with_truth[0]:
                        baseline[f"{k}_{d}"] = _mean(r[f"baseline_{k}"] for r in with_truth)
            metrics[f"cycle_l1_{src}{dst}{src}"] = _mean(r["cycle_l1"] for r in rows)
            if "identity_l1" in rows[0]:
                metrics[f"identity_l1_{dst}to{src}"] = _mean(r["identity_l1"] for r in rows)
            if self.classifier is not None:
                metrics[f"success_{d}"] = float((extra["p_target"] > 0.5).mean())
                real_p = self.real[src]["prob_B"]
                baseline[f"success_{d}"] = float(((real_p > 0.5) if dst == "B" else (real_p <= 0.5)).mean())
            real_src, real_dst = self.real[src]["feats"], self.real[dst]["feats"]
            if extra["feats"] is not None and min(len(extra["feats"]), len(real_dst)) >= 2:
                metrics[f"fid_{d}"] = fid_from_features(extra["feats"], real_dst)
                baseline[f"fid_{d}"] = fid_from_features(real_src, real_dst)
                metrics[f"kid_{d}"], metrics[f"kid_{d}_std"], kid_size = kid(
                    extra["feats"], real_dst, o.kid_subsets, o.kid_subset_size, o.seed)
                baseline[f"kid_{d}"], baseline[f"kid_{d}_std"], _ = kid(
                    real_src, real_dst, o.kid_subsets, o.kid_subset_size, o.seed)
        for table in (metrics, baseline):
            for base in BASES:
                vals = [table[f"{base}_{d}"] for d in ("AtoB", "BtoA") if f"{base}_{d}" in table]
                if vals:
                    table[base] = _mean(vals)
        if "cycle_l1_ABA" in metrics:
            metrics["cycle_l1"] = _mean([metrics["cycle_l1_ABA"], metrics["cycle_l1_BAB"]])
        idt = [metrics[k] for k in ("identity_l1_AtoB", "identity_l1_BtoA") if k in metrics]
        if idt:
            metrics["identity_l1"] = _mean(idt)
        clf = None
        if self.classifier is not None:
            clf = self.classifier.info.to_dict()
            pa, pb = self.real["A"]["prob_B"], self.real["B"]["prob_B"]
            clf["test_accuracy"] = float(((pa <= 0.5).sum() + (pb > 0.5).sum()) / (len(pa) + len(pb)))
            metrics["classifier_accuracy"] = clf["heldout_accuracy"]
        ext = self.extractor
        return {
            "cyclekit_version": __version__,
            "created": datetime.datetime.now().isoformat(timespec="seconds"),
            "data": str(self.root), "seed": o.seed, "image_size": self.size or "native",
            "feature_extractor": {"name": ext.name, "dim": ext.dim, "weights": getattr(ext, "weights", None)}
            if ext is not None else None,
            "kid": {"subsets": o.kid_subsets, "subset_size": kid_size} if kid_size else None,
            "classifier": clf,
            "images": {d: len(self.test[d]) for d in "AB"}
            | {f"{d}_with_truth": sum(it.truth is not None for it in self.test[d]) for d in "AB"},
            "metrics": metrics, "baseline": baseline,
            "goals": {k: metric_goal(k) for k in metrics if not k.endswith("_std")},
            "notes": list(self.notes), "per_image": per_image,
            "seconds": round(time.perf_counter() - t0, 2),
        }


# --------------------------------------------------------------------------- a release
def find_metrics_log(model: Union[str, Path]) -> Optional[Path]:
    """The training log of a release: ``RUN/metrics.jsonl`` for ``RUN``, ``RUN/model``, ``RUN/best``."""
    from cyclekit.release import resolve_release

    release = resolve_release(model)
    for cand in (release / "metrics.jsonl", release.parent / "metrics.jsonl"):
        if cand.is_file():
            return cand
    return None


def evaluate_model(model: Union[str, Path], data: Union[str, Path], out: Optional[Union[str, Path]] = None,
                   opts: Optional[EvalOptions] = None) -> dict:
    """Evaluate a release (run dir, release folder or ``model.safetensors``) on ``data``; write
    ``metrics.json``, ``metrics.csv``, ``per_image.csv`` and ``index.html`` to ``out`` when given."""
    from cyclekit.release import load_release_config, resolve_release
    from cyclekit.infer.translator import load_translator

    opts = (opts or EvalOptions()).validate()
    data = Path(data)
    if not data.is_dir():
        raise DataError(f"--data {data} is not a folder; expected DATA/testA/ and DATA/testB/ "
                        "(plus trainA/ trainB/ for the classifier, testA_gt/ testB_gt/ for paired metrics)")
    release = resolve_release(model)
    cfg = load_release_config(release)
    t_ab = load_translator(release, "AtoB", device=opts.device)
    t_ba = load_translator(release, "BtoA", device=opts.device)
    evaluator = Evaluator(data, cfg.model.in_channels, cfg.model.out_channels, opts, image_size=cfg.model.image_size)
    sink = None
    if out is not None:
        from cyclekit.metrics.report import ImageWriter

        sink = ImageWriter(Path(out), opts.report_images)
    result = evaluator.evaluate(t_ab, t_ba, sink=sink)
    result["model"] = str(release)
    meta = _release_meta(release)
    if meta:
        result["model_meta"] = meta
    if out is not None:
        from cyclekit.metrics.report import write_report

        write_report(Path(out), result, find_metrics_log(release))
    return result


def _release_meta(release: Path) -> dict:
    import json

    try:
        return json.loads((release / "config.json").read_text(encoding="utf-8")).get("cyclekit", {})
    except (OSError, ValueError):
        return {}


def quickstart_results(result: dict) -> list[dict]:
    """The quickstart's per-direction table (model vs do-nothing PSNR/SSIM/L1) from a result."""
    out = []
    for d in ("AtoB", "BtoA"):
        if f"psnr_{d}" not in result["metrics"]:
            continue
        src = d[0]
        out.append({
            "direction": d, "images": result["images"][f"{src}_with_truth"],
            "model": {k: round(result["metrics"][f"{k}_{d}"], 4) for k in ("psnr", "ssim", "l1")},
            "baseline_identity": {k: round(result["baseline"].get(f"{k}_{d}", float("nan")), 4)
                                  for k in ("psnr", "ssim", "l1")},
        })
    return out
