"""Inline SVG line plots for the HTML report: no plotting dependency, crisp at any zoom."""
from __future__ import annotations

import html
import math

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f")

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
