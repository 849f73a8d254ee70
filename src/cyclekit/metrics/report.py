"""Evaluation outputs: ``metrics.json``, ``metrics.csv``, ``per_image.csv`` and a static HTML report.

The report is a folder that opens in a browser from disk, with no server and no external URL:
``index.html`` plus ``images/``. Plots are inline SVG drawn here (a few dozen lines, no plotting
dependency to install, crisp at any zoom, and the HTML stays one small text file); see
:func:`svg_line_plot`.
"""
from __future__ import annotations

import csv
import html
import io
import json
import math
from pathlib import Path
from typing import Optional

import numpy as np

from cyclekit.config import atomic_write_text

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f")
PER_IMAGE_COLUMNS = ("direction", "name", "l1", "psnr", "ssim", "baseline_l1", "baseline_psnr", "baseline_ssim",
                     "cycle_l1", "identity_l1", "p_target")


class ImageWriter:
    """A sink for :meth:`Evaluator.evaluate`: writes the first ``limit`` images per direction as
    ``images/<direction>/<index>_<kind>.png`` and returns their relative paths."""

    def __init__(self, out_dir: Path, limit: int = 24) -> None:
        self.out_dir, self.limit = Path(out_dir), limit

    def __call__(self, direction: str, index: int, name: str, images: dict) -> Optional[dict]:
        from cyclekit.data.images import save_image

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


def features_label(result: dict) -> str:
    fe = result.get("feature_extractor")
    return fe["name"] if fe else "none"


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
    from cyclekit.metrics.report_html import render_html

    index = out_dir / "index.html"
    atomic_write_text(index, render_html(result, read_metrics_log(metrics_log)))
    return index


# --------------------------------------------------------------------------- SVG plots
def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi] (1, 2, 2.5, 5 x 10^k steps)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0]
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5 * (abs(lo) or 1), hi + 0.5 * (abs(hi) or 1)
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw)
    start, stop = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [round(k * step, 12) for k in range(start, stop + 1)]


def _fmt_tick(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e4 or abs(v) < 1e-3:
        return f"{v:.1e}"
    return f"{v:.4g}"


def svg_line_plot(series: dict[str, list[tuple[float, float]]], title: str, xlabel: str = "step",
                  width: int = 540, height: int = 260) -> str:
    """Inline SVG: one line (and dots, when few points) per series, round ticks, legend above the plot."""
    pts = [(x, y) for s in series.values() for x, y in s if y is not None and math.isfinite(y)]
    esc = html.escape
    if not pts:
        return ""
    # Legend entries laid out in rows above the plot area.
    legend, lx, ly = [], 58.0, 36.0
    for i, name in enumerate(series):
        w = 22 + 6.4 * len(name)
        if lx + w > width - 8 and lx > 58:
            lx, ly = 58.0, ly + 15
        legend.append((name, PALETTE[i % len(PALETTE)], lx, ly))
        lx += w
    ml, mr, mt, mb = 58, 14, int(ly) + 10, 40
    pw, ph = width - ml - mr, height - mt - mb
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    xt, yt = nice_ticks(min(xs), max(xs), 7), nice_ticks(min(ys), max(ys))
    x0, x1, y0, y1 = xt[0], xt[-1], yt[0], yt[-1]

    def sx(x):
        return ml + (x - x0) / ((x1 - x0) or 1) * pw

    def sy(y):
        return mt + ph - (y - y0) / ((y1 - y0) or 1) * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}">',
           f'<text x="{ml}" y="18" class="pt">{esc(title)}</text>']
    for t in yt:
        out.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" class="grid"/>'
                   f'<text x="{ml - 6}" y="{sy(t) + 4:.1f}" class="tick" text-anchor="end">{_fmt_tick(t)}</text>')
    for t in xt:
        out.append(f'<text x="{sx(t):.1f}" y="{mt + ph + 16}" class="tick" text-anchor="middle">{_fmt_tick(t)}</text>')
    out.append(f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" class="frame"/>')
    out.append(f'<text x="{ml + pw / 2:.1f}" y="{height - 6}" class="tick" text-anchor="middle">{esc(xlabel)}</text>')
    for (name, s), (_, color, lx, ly) in zip(series.items(), legend):
        good = [(x, y) for x, y in s if y is not None and math.isfinite(y)]
        if not good:
            continue
        d = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in good)
        out.append(f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="1.6"/>')
        if len(good) <= 40:
            out += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.4" fill="{color}"/>' for x, y in good]
        out.append(f'<rect x="{lx:.0f}" y="{ly - 5:.0f}" width="12" height="3" fill="{color}"/>'
                   f'<text x="{lx + 16:.0f}" y="{ly:.0f}" class="leg">{esc(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def curve_groups(log_rows: list[dict]) -> list[tuple[str, dict[str, list[tuple[float, float]]]]]:
    """Group ``metrics.jsonl`` columns into plots: generator losses, discriminator losses, learning
    rate, then one plot per validation metric family (``val/psnr_AtoB`` and ``val/psnr_BtoA`` together)."""
    train = [r for r in log_rows if not any(k.startswith("val/") for k in r)]
    val = [r for r in log_rows if any(k.startswith("val/") for k in r)]
    groups: dict[str, dict[str, list]] = {}

    def add(group: str, name: str, x, y) -> None:
        if isinstance(y, (int, float)) and not isinstance(y, bool):
            groups.setdefault(group, {}).setdefault(name, []).append((float(x), float(y)))

    for r in train:
        for k, v in r.items():
            if k in ("step", "epoch", "pairs_per_s"):
                continue
            if k == "lr":
                add("learning rate", k, r["step"], v)
            elif k.startswith(("D_", "gp")):
                add("discriminator losses", k, r["step"], v)
            else:
                add("generator losses", k, r["step"], v)
    for r in val:
        for k, v in r.items():
            if not k.startswith("val/") or k.endswith("_std") or k in ("val/best_step", "val/classifier_accuracy"):
                continue
            base = k[4:]
            for suffix in ("_AtoB", "_BtoA", "_ABA", "_BAB"):
                if base.endswith(suffix):
                    base = base[: -len(suffix)]
            add(f"validation: {base}", k[4:], r["step"], v)
    order = ["generator losses", "discriminator losses", "learning rate"] + [
        f"validation: {b}" for b in ("psnr", "ssim", "l1", "success", "fid", "kid", "cycle_l1", "identity_l1")]
    keys = [k for k in order if k in groups] + sorted(k for k in groups if k not in order)
    return [(k, groups[k]) for k in keys]
