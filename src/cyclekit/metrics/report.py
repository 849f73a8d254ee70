"""Evaluation outputs: ``metrics.json``, ``metrics.csv``, ``per_image.csv`` and a static HTML report.

The report is a folder that opens in a browser from disk, with no server and no external URL:
``index.html`` plus ``images/``. Plots are inline SVG drawn here (a few dozen lines, no plotting
dependency to install, crisp at any zoom, and the HTML stays one small text file); see
:func:`cyclekit.metrics.plots.svg_line_plot`.
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Optional

import numpy as np

from cyclekit.io.files import atomic_write_text
from cyclekit.metrics.report_html import features_label, render_html

PER_IMAGE_COLUMNS = ("direction", "name", "l1", "psnr", "ssim", "baseline_l1", "baseline_psnr", "baseline_ssim",
                     "cycle_l1", "identity_l1", "p_target")


class ImageWriter:
    """A sink for :meth:`Evaluator.evaluate`: writes the first ``limit`` images per direction as
    ``images/<direction>/<index>_<kind>.png`` and returns their relative paths."""

    def __init__(self, out_dir: Path, limit: int = 24) -> None:
        self.out_dir, self.limit = Path(out_dir), limit

    def __call__(self, direction: str, index: int, name: str, images: dict) -> Optional[dict]:
        from cyclekit.io.images import save_image

        if index >= self.limit:
            return None
        rel = {}
        for kind, arr in images.items():
            if arr is None:
                continue
            path = f"images/{direction}/{index:04d}_{kind}.png"
            save_image(self.out_dir / path, np.asarray(arr))
            rel[kind] = path
        return rel


def clean(obj):
    """NaN/inf -> None so the JSON is standard."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    return obj


def summary_rows(result: dict) -> list[dict]:
    """One row per metric: model value, do-nothing value, which way is better, features."""
    rows = []
    for k, v in result["metrics"].items():
        rows.append({
            "metric": k, "model": v, "do_nothing": result["baseline"].get(k),
            "better": "higher" if result["goals"].get(k, "min") == "max" else "lower",
            "features": features_label(result) if k.startswith(("fid", "kid")) else "",
        })
    return rows


def _csv(rows: list[dict], columns) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: ("" if r.get(c) is None else r.get(c)) for c in columns})
    return buf.getvalue()


def read_metrics_log(path: Optional[Path]) -> list[dict]:
    if path is None or not Path(path).is_file():
        return []
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def write_report(out_dir: Path, result: dict, metrics_log: Optional[Path] = None) -> Path:
    """Write all outputs into ``out_dir``; returns the path of ``index.html``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = clean(result)
    atomic_write_text(out_dir / "metrics.json", json.dumps(doc, indent=2) + "\n")
    atomic_write_text(out_dir / "metrics.csv", _csv(summary_rows(result), ("metric", "model", "do_nothing",
                                                                           "better", "features")))
    atomic_write_text(out_dir / "per_image.csv", _csv(result["per_image"], PER_IMAGE_COLUMNS))

    index = out_dir / "index.html"
    atomic_write_text(index, render_html(result, read_metrics_log(metrics_log)))
    return index
