"""The issue-5 section of BENCHMARKS.md, written from the results of ``run.py``."""
from __future__ import annotations

from benchmarks.common import SECTION, fmt_ratio


def _mb(x) -> str:
    return "n/a" if x is None else f"{x:,.0f}"


def _targets(res: dict) -> list[tuple[str, str, str, bool | None]]:
    """(target, required, measured, met) for the issue's same-run targets found in ``res``."""
    out = []
    dev = res["machine"]["device"]
    for case in res.get("train", []):
        c = case["case"]
        row = case["rows"].get("default")
        if row is None:
            continue
        if dev == "cpu" and c["net"] == "resnet9" and c["size"] == 128 and c["batch"] == 1:
            m = row["ratio"]["median"]
            out.append(("CPU training, ResNet-9 @ 128, batch 1", ">= 1.7x (aim 2x)", fmt_ratio(row["ratio"]), m >= 1.7))
        if dev.startswith("cuda") and c["net"] == "resnet9" and c["size"] == 256 and c["batch"] == 1:
            best = max((r for k, r in case["rows"].items() if k != "official"), key=lambda r: r["ratio"]["median"])
            out.append(("GPU training, ResNet-9 @ 256, batch 1 (best variant)", ">= 4x", fmt_ratio(best["ratio"]),
                        best["ratio"]["median"] >= 4))
        if dev.startswith("cuda") and c["net"] == "resnet9" and c["size"] == 256 and c["batch"] == 16:
            share = max((r["peak_share"] or 0) for k, r in case["rows"].items() if k != "official")
            out.append(("GPU training @ 256, batch 16: share of bf16 matmul peak", "report", f"{share:.0%}", None))
    for case in res.get("infer", []):
        c = case["case"]
        if c["net"] != "resnet9" or c["size"] != 256:
            continue
        row = case["rows"].get("default")
        if row is None or "ratio" not in row:
            continue
        if dev == "cpu":
            ok = row["ratio"]["median"] >= 2.5 and row["psnr_vs_fp32"] >= 35
            out.append(("CPU inference, ResNet-9 @ 256 (default path, batch 1)", ">= 2.5x, >= 35 dB vs fp32",
                        f"{fmt_ratio(row['ratio'])}, {row['psnr_vs_fp32']:.1f} dB", ok))
        else:
            best = max((r.get("images_per_s", 0) for r in case["rows"].values()))
            out.append(("GPU inference, ResNet-9 @ 256", ">= 1,500 images/s", f"{best:,.0f} images/s", best >= 1500))
    q = res.get("quality")
    if q:
        worst = max(abs(r["delta_db"]) for r in q["rows"].values())
        out.append((f"mixed precision quality after {q['steps']} steps", "within 0.5 dB of fp32", f"{worst:.2f} dB",
                    worst <= 0.5))
    return out


def markdown(res: dict) -> str:
    m, m2 = res["machine"], res.get("machine_end", res["machine"])
    peaks = res["peaks"]
    L = [SECTION, ""]
    L.append(f"Command: `{res['command'].strip()}` (what `make bench` runs; the same command uses CUDA when a "
             "GPU is present). Every speed-up is measured against `benchmarks/official.py`, a transcription of the "
             "official `optimize_parameters` (fp32, eager, NCHW, same networks, losses, update order and Adams), "
             "timed back to back with it in every round (order rotated each round, baseline first or second in "
             "turn): **median** and (min-max) of the per-round ratios.")
    L.append("")
    load = m.get("load_avg")
    load2 = m2.get("load_avg")
    L.append(f"Machine: {m.get('cpu', '?')}, {m.get('cores')} cores ({m.get('threads')} torch threads), native bf16: "
             f"{m.get('cpu_bf16', '?')}; {m.get('gpu', 'no GPU')}; torch {m['torch']}, Python {m['python']}. "
             f"Load average (1, 5, 15 min) at start {tuple(round(x, 2) for x in load) if load else '?'}, at end "
             f"{tuple(round(x, 2) for x in load2) if load2 else '?'}; {res.get('minutes', 0):.1f} minutes in all. "
             f"Measured matmul peaks in the same run: " + ", ".join(f"{k} {v / 1e9:,.0f} GFLOP/s" for k, v in peaks.items())
             + f". `--precision auto` resolves to **{res.get('auto_precision')}** here.")
    L.append("")
    targets = _targets(res)
    if targets:
        L += ["| target | required | measured | met |", "|---|---|---|---|"]
        for name, req, got, ok in targets:
            L.append(f"| {name} | {req} | {got} | {'yes' if ok else 'no' if ok is False else '-'} |")
        L.append("")
    if res.get("train"):
        L += ["### Training step", "",
              "Image pairs per second of one full CycleGAN iteration (both generators, then both discriminators) on a "
              "fixed batch; `default` is what `cyclekit train` runs with no flags. Peak memory: extra resident memory "
              "of one step (CPU: peak RSS above the RSS before it; CUDA: max allocated). FLOP/s: the official step's "
              "FLOPs counted by `torch.utils.flop_counter` divided by the step time, and its share of the matmul peak "
              "of the precision used.", ""]
        L += ["| network | variant | runs as | pairs/s | speed-up | peak MB | TFLOP/s | of peak | first step s |",
              "|---|---|---|---|---|---|---|---|---|"]
        for case in res["train"]:
            flops = case["flops_per_step"]
            for k, r in case["rows"].items():
                share = f"{r['peak_share']:.0%}" if r.get("peak_share") else "-"
                L.append(f"| {case['label']} ({flops / 1e9:,.0f} GFLOP) | {k} | {r['resolved']} | {r['pairs_per_s']:.3f} | "
                         f"{fmt_ratio(r['ratio'])} | {_mb(r.get('peak_mb'))} | {r['tflops']:.3f} | {share} | {r['first_s']:.1f} |")
        L.append("")
    if res.get("infer"):
        L += ["### Inference", "",
              "Images per second through `load_translator` (what `cyclekit translate` runs), against the official "
              "test loop (batch 1, fp32, `no_grad`); PSNR of each output against the fp32 output (dB, images in [0, 1]).", "",
              "| generator | variant | runs as | batch | images/s | speed-up | PSNR vs fp32 | first call s |",
              "|---|---|---|---|---|---|---|---|"]
        for case in res["infer"]:
            for k, r in case["rows"].items():
                if "skipped" in r:
                    L.append(f"| {case['label']} | {k} | skipped: {r['skipped']} | | | | | |")
                    continue
                L.append(f"| {case['label']} | {k} | {r.get('resolved', 'fp32, NCHW, no_grad')} | {r['batch']} | "
                         f"{r['images_per_s']:.2f} | {fmt_ratio(r['ratio'])} | {r['psnr_vs_fp32']:.1f} | {r['first_s']:.1f} |")
        L.append("")
    if res.get("data"):
        d = res["data"]
        L += ["### Data loading against the training step", "",
              "Loader: the trainer's dataset (decode, resize, random crop, flip) through a `DataLoader` created per "
              "epoch as the trainer does (worker start-up included), two epochs of 32 pairs. Step: the `default` "
              "training-step rate above at the same size, batch 1.", "",
              "| size | workers | loader pairs/s | default training step pairs/s | loader / step |", "|---|---|---|---|---|"]
        steps = {c["case"]["size"]: c["rows"]["default"]["pairs_per_s"] for c in res.get("train", [])
                 if c["case"]["batch"] == 1 and c["case"]["net"] == "resnet9" and "default" in c["rows"]}
        for r in d["loader"].values():
            s = steps.get(r["size"])
            step = f"{s:.3f}" if s else "-"
            share = f"{r['pairs_per_s'] / s:,.0f}x" if s else "-"
            L.append(f"| {r['size']} | {r['workers']} | {r['pairs_per_s']:.1f} | {step} | {share} |")
        for k, r in d["e2e"].items():
            L.append("")
            L.append(f"End to end, `Trainer.fit()` with the defaults ({k}, {r['precision']}, {r['num_workers']} loader "
                     f"workers): **{r['pairs_per_s']:.3f} pairs/s** as logged in metrics.jsonl (loading + step + "
                     "logging), against the step-only rate in the table above.")
        L.append("")
    q = res.get("quality")
    L += _notes(res)
    if q:
        L += ["### Mixed precision keeps the quality", "",
              f"`Trainer.fit()` on the synthetic {q['world']} world at {q['size']} px ({q['net']}, batch 1), "
              f"{q['steps']} steps, seeds {q['seeds']} for every precision; PSNR of the fp32 translations of the test "
              "images against their ground truth (both directions), mean over the seeds. Two fp32 seeds differ by "
              f"{q['fp32_seed_spread_db']:.2f} dB: the run-to-run spread of fp32 itself.", "",
              "| precision | runs as | PSNR dB per seed | mean | vs fp32 | train s (all seeds) |", "|---|---|---|---|---|---|"]
        for k, r in q["rows"].items():
            per = ", ".join(f"{x:.2f}" for x in r["psnr_seeds"])
            L.append(f"| {k} | {r['resolved']} | {per} | {r['psnr']:.2f} | {r['delta_db']:+.2f} | {r['seconds']:.0f} |")
        L.append("")
    return "\n".join(L)


def _notes(res: dict) -> list[str]:
    L = ["### Notes", ""]
    if res["machine"]["device"] == "cpu":
        L.append("- **GPU: not measured in this run** (no GPU was available). On a GPU the same command runs the "
                 "`cuda` profile: fp16 + GradScaler, bf16, channels_last, `--cuda-graphs` (the whole step captured "
                 "once and replayed; history pools decided on the host and applied on the device), compile, "
                 "batch 16 with its share of the bf16 matmul peak, inference at batch 64. On CPU the tests check "
                 "the CUDA-graph step's plumbing by running it uncaptured against the plain step.")
    L.append("- channels_last on CPU: PyTorch 2.13's `instance_norm` backward returns wrong input gradients "
             "when the batch has one image and the incoming gradient is channels_last (errors larger than the "
             "gradient itself, in float64 too). `--channels-last` therefore converts that gradient back to NCHW "
             "before each instance norm (`cyclekit.train.fast.guard_instance_norm`); with it the channels_last "
             "step matches the official losses to 1e-6 (tests/test_fast_paths.py).")
    cache = res.get("compile_cache")
    state = {"warm": "it was **warm** in this run (filled by earlier runs), so the first-step times of the compile "
                     "variants are cache loads; compiling from scratch takes one to two minutes per variant on 2 CPU cores",
             "cold": "it was **cold** in this run, so the first-step times of the compile variants include "
                     "compiling from scratch"}.get(cache, "")
    L.append("- `compile` variants: compiled code is cached on disk under `~/.cache/cyclekit/inductor`"
             + (f"; {state}" if state else "") + ". If compiling fails the networks run eagerly after one warning.")
    L.append("- `--precision auto` also looks at the model's size: on CPU bf16 pays only above ~0.2 GMAC per "
             "generator pass (break-even measured between 0.14 and 0.15 GMAC), so small models such as the "
             "quickstart's 64 px U-Net stay in fp32 (the `quickstart` rows).")
    L.append("")
    return L
