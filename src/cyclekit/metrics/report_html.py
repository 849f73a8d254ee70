"""The HTML page of an evaluation report (no external URL, no script: opens from disk)."""
from __future__ import annotations

import math
from html import escape

from cyclekit.metrics.plots import curve_groups, svg_line_plot

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1f24;background:#f6f7f9;margin:0}
main{max-width:1180px;margin:0 auto;padding:20px 28px 60px;background:#fff;min-height:100vh}
h1{font-size:24px;margin:4px 0 6px}h2{font-size:18px;margin:28px 0 10px;border-bottom:1px solid #e3e6ea;padding-bottom:4px}
.meta{color:#57606a;margin:0 0 12px;word-break:break-all}
.banner{padding:8px 12px;border-radius:6px;margin:6px 0;border:1px solid}
.ok{background:#eef8f0;border-color:#9fd3ad}.warn{background:#fff8e5;border-color:#e8c66a}
.bad{background:#fdecec;border-color:#e39b9b}
table{border-collapse:collapse;margin:6px 0 4px}
th,td{padding:5px 10px;border-bottom:1px solid #e6e8eb;text-align:right;vertical-align:middle;white-space:nowrap}
td.l{white-space:normal}
th{background:#f0f2f4;font-weight:600}td.l,th.l{text-align:left}
tr:nth-child(even) td{background:#fafbfc}
td.win{background:#e3f4e6 !important}td.lose{background:#fbe4e4 !important}
.sub{color:#57606a;font-size:12px}.hint{color:#57606a;font-size:12.5px;margin:4px 0}
.plots{display:flex;flex-wrap:wrap;gap:10px}.plots svg{background:#fff;border:1px solid #e3e6ea;border-radius:6px}
svg .pt{font-size:13px;font-weight:600;fill:#1b1f24}svg .tick{font-size:10.5px;fill:#57606a}
svg .leg{font-size:11px;fill:#1b1f24}svg .grid{stroke:#eceef1}svg .frame{fill:none;stroke:#c9ced4}
img.px{width:96px;height:96px;object-fit:contain;image-rendering:pixelated;display:block;background:#eee}
td.img{padding:3px}
"""

SUMMARY = [  # (base key, label, format)
    ("l1", "L1 to truth", "{:.4f}"), ("psnr", "PSNR to truth (dB)", "{:.2f}"), ("ssim", "SSIM to truth", "{:.3f}"),
    ("success", "translation success (classifier)", "pct"), ("fid", "FID", "{:.2f}"), ("kid", "KID &times; 10&sup3;", "kid"),
    ("cycle_l1", "cycle-consistency L1", "{:.4f}"), ("identity_l1", "identity drift L1", "{:.4f}"),
]



def features_label(result: dict) -> str:
    fe = result.get("feature_extractor")
    return fe["name"] if fe else "none"

def _fmt(v, fmt: str, std=None) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "&ndash;"
    if fmt == "pct":
        return f"{100 * v:.1f}%"
    if fmt == "kid":
        s = f"{1000 * v:.2f}"
        shown = std is not None and std > 1e-12  # 0 when every subset is the whole set
        return s + (f" <span class='sub'>&plusmn; {1000 * std:.2f}</span>" if shown else "")
    return fmt.format(v)


def _cell(result: dict, key: str, fmt: str, baseline: bool = False) -> str:
    table = result["baseline" if baseline else "metrics"]
    v = table.get(key)
    std = table.get(f"{key}_std") if fmt == "kid" else None
    cls = ""
    if not baseline and v is not None and result["baseline"].get(key) is not None:
        b = result["baseline"][key]
        if all(isinstance(x, float) and math.isfinite(x) for x in (v, b)) and v != b:
            better = v > b if result["goals"].get(key) == "max" else v < b
            cls = " class='win'" if better else " class='lose'"
    return f"<td{cls}>{_fmt(v, fmt, std)}</td>"


def _summary_table(result: dict) -> str:
    head = ("<tr><th class='l'>metric</th><th>better</th><th>A&rarr;B model</th><th>A&rarr;B do-nothing</th>"
            "<th>B&rarr;A model</th><th>B&rarr;A do-nothing</th><th>mean model</th><th>mean do-nothing</th></tr>")
    rows = [head]
    m = result["metrics"]
    feats = escape(features_label(result))
    for base, label, fmt in SUMMARY:
        if base == "cycle_l1":
            keys = ("cycle_l1_ABA", "cycle_l1_BAB")
        elif base == "identity_l1":
            keys = ("identity_l1_AtoB", "identity_l1_BtoA")
        else:
            keys = (f"{base}_AtoB", f"{base}_BtoA")
        if not any(k in m for k in keys + (base,)):
            continue
        goal = "&uarr;" if result["goals"].get(base, result["goals"].get(keys[0])) == "max" else "&darr;"
        name = label
        if base in ("fid", "kid"):
            name += f"<br><span class='sub'>{feats}</span>"
        if base == "cycle_l1":
            name += "<br><span class='sub'>A&rarr;B&rarr;A, B&rarr;A&rarr;B</span>"
        if base == "identity_l1":
            name += "<br><span class='sub'>|G_AB(b)&minus;b|, |G_BA(a)&minus;a|</span>"
        cells = []
        for k in keys + (base,):
            cells.append(_cell(result, k, fmt))
            cells.append(_cell(result, k, fmt, baseline=True) if k in result["baseline"] else "<td>&ndash;</td>")
        rows.append(f"<tr><td class='l'>{name}</td><td>{goal}</td>{''.join(cells)}</tr>")
    return "<table>" + "".join(rows) + "</table>"


def _banners(result: dict) -> str:
    out = []
    fe = result.get("feature_extractor")
    if fe is None:
        out.append("<div class='banner warn'>FID/KID: not computed.</div>")
    else:
        cls = "ok" if fe["name"].startswith("inception") else "warn"
        src = f" <span class='sub'>weights: {escape(str(fe['weights']))}</span>" if fe.get("weights") else ""
        kid = result.get("kid") or {}
        ks = f" &middot; KID over {kid.get('subsets')} subsets of {kid.get('subset_size')} images" if kid else ""
        why = [n for n in result.get("notes", []) if n.startswith("FID/KID")]
        why_html = f"<br><span class='sub'>{escape(why[0])}</span>" if why and cls == "warn" else ""
        out.append(f"<div class='banner {cls}'>FID/KID features: <b>{escape(fe['name'])}</b> "
                   f"({fe['dim']}-d){ks}{src}{why_html}</div>")
    c = result.get("classifier")
    if c is None:
        out.append("<div class='banner warn'>Domain classifier: not trained (no trainA/ trainB/), "
                   "so no translation success rate.</div>")
    else:
        cls = "ok" if c["trustworthy"] else "bad"
        acc = _fmt(c["heldout_accuracy"], "pct")
        out.append(
            f"<div class='banner {cls}'>Domain classifier (A vs B, {c['size']} px, {c['steps']} steps, "
            f"{c['train_images']} training images): held-out accuracy <b>{acc}</b> on {c['heldout_images']} "
            f"images (A {_fmt(c['heldout_accuracy_A'], 'pct')}, B {_fmt(c['heldout_accuracy_B'], 'pct')}); "
            f"on the real test images {_fmt(c.get('test_accuracy'), 'pct')}. {escape(c['verdict'])}</div>")
    for n in result.get("notes", []):
        if n.startswith("FID/KID") and fe is not None:
            continue  # shown in the features banner
        out.append(f"<div class='banner warn'>{escape(n)}</div>")
    return "".join(out)


def _per_image(result: dict, direction: str) -> str:
    rows = [r for r in result["per_image"] if r["direction"] == direction]
    shown = [r for r in rows if r.get("images")]
    if not rows:
        return ""
    src, dst = direction[0], direction[-1]
    has_truth = any("psnr" in r for r in rows)
    has_p = any("p_target" in r for r in rows)
    cols = ["input", "translation", "reconstruction"] + (["truth"] if has_truth else [])
    head = "<tr><th class='l'>image</th>" + "".join(f"<th class='l'>{c}</th>" for c in cols)
    head += ("<th>L1</th><th>PSNR</th><th>SSIM</th>" if has_truth else "") + "<th>cycle L1</th>"
    head += f"<th>P({dst})</th>" if has_p else ""
    out = [f"<h2>Per image: {src} &rarr; {dst}</h2>",
           f"<p class='hint'>Showing {len(shown)} of {len(rows)} test images (all of them are in per_image.csv). "
           f"Reconstruction = {src}&rarr;{dst}&rarr;{src}.</p><table>", head + "</tr>"]
    for r in shown:
        imgs = "".join(
            f"<td class='img'><img class='px' src='{escape(r['images'][c])}' alt='{c}'></td>"
            if c in r["images"] else "<td>&ndash;</td>" for c in cols)
        nums = ""
        if has_truth:
            nums += "".join(f"<td>{_fmt(r.get(k), f)}</td>" for k, f in (("l1", "{:.4f}"), ("psnr", "{:.2f}"),
                                                                          ("ssim", "{:.3f}")))
        nums += f"<td>{_fmt(r.get('cycle_l1'), '{:.4f}')}</td>"
        nums += f"<td>{_fmt(r.get('p_target'), '{:.2f}')}</td>" if has_p else ""
        out.append(f"<tr><td class='l'>{escape(r['name'])}</td>{imgs}{nums}</tr>")
    out.append("</table>")
    return "".join(out)


def render_html(result: dict, log_rows: list[dict]) -> str:
    model = result.get("model", "")
    meta = result.get("model_meta") or {}
    step = f" (step {meta['global_step']})" if "global_step" in meta else ""
    im = result["images"]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        f"<title>cyclekit eval: {escape(str(model))}</title><style>{CSS}</style></head><body><main>",
        "<h1>CycleGAN evaluation</h1>",
        f"<p class='meta'>model <b>{escape(str(model))}</b>{step} &middot; data {escape(result['data'])}<br>"
        f"test images: A {im['A']} ({im['A_with_truth']} with truth), B {im['B']} ({im['B_with_truth']} with truth)"
        f" &middot; size {escape(str(result['image_size']))} &middot; seed {result['seed']} &middot; "
        f"{escape(result['created'])} &middot; cyclekit {escape(result['cyclekit_version'])}</p>",
        _banners(result),
        "<h2>Summary</h2>", _summary_table(result),
        "<p class='hint'>Each model value is shaded green when it beats the do-nothing baseline (output = input) and "
        "red when it does not. Translation success: share of translated A images the classifier calls B "
        "(and B images called A). FID/KID: translations against real test images of the target domain; the "
        "do-nothing column compares the source images with them.</p>",
    ]
    groups = curve_groups(log_rows)
    if groups:
        parts.append("<h2>Training curves</h2><div class='plots'>")
        parts += [svg_line_plot(series, title) for title, series in groups]
        parts.append("</div><p class='hint'>From the run's metrics.jsonl.</p>")
    parts += [_per_image(result, "AtoB"), _per_image(result, "BtoA"), "</main></body></html>\n"]
    return "\n".join(p for p in parts if p)
