"""Inference throughput: the official test loop against our Translator paths.

Baseline: what the official ``test.py`` does per image: ``model.eval()``, batch 1, fp32, NCHW,
``torch.no_grad()``, ``netG(real)``. Candidates go through :func:`cyclekit.infer.translator.load_translator`
on a release written to a temporary folder (the weights: the paper's random init; weights do not
change the cost), i.e. exactly what ``cyclekit translate`` runs. The input is a real image of the
synthetic fruit world, and each variant's output is compared with the fp32 output (PSNR, images
in [0, 1]).
"""
from __future__ import annotations

import copy
import dataclasses
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_train import LABELS, make_config, world  # noqa: E402
from benchmarks.common import interleaved, ratio_stats, sync  # noqa: E402

# name -> (load_translator kwargs, batch size)
VARIANTS = {
    "default": (dict(precision="auto"), 1),
    "default, batch 8": (dict(precision="auto"), 8),
    "fp32 inference_mode": (dict(precision="fp32"), 1),
    "fp32 inference_mode, batch 8": (dict(precision="fp32"), 8),
    "bf16 + compile (frozen)": (dict(precision="bf16", compile=True), 1),
    "fp16": (dict(precision="fp16"), 1),
    "default, batch 64": (dict(precision="auto"), 64),
    "fp32 inference_mode, batch 64": (dict(precision="fp32"), 64),
    "fp16, batch 64": (dict(precision="fp16"), 64),
    "onnxruntime fp32": (dict(backend="onnxruntime", precision="fp32"), 1),
}


@dataclasses.dataclass
class Case:
    net: str
    size: int
    variants: list[str]
    rounds: int = 5
    calls: int = 1  # calls per variant per round

    @property
    def label(self) -> str:
        return f"{LABELS[self.net]} @ {self.size}"


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.float() - b.float()) ** 2).mean()) / 4  # [-1, 1] -> [0, 1]
    return 100.0 if mse <= 1e-20 else 10 * math.log10(1 / mse)


def _images(case: Case, tmp: Path, n: int) -> torch.Tensor:
    from cyclekit.io.images import list_images, load_image, to_tensor

    root = world(tmp, case.size, 8)
    files = list_images(root / "trainA")
    return torch.stack([to_tensor(load_image(files[i % len(files)], 3)) for i in range(n)])


def _describe(tr) -> str:
    if not isinstance(tr.net, torch.nn.Module):
        return "onnxruntime"
    dtype = getattr(tr.net, "compute_dtype", None) or tr.dtype or torch.float32
    bits = [{torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]]
    bits.append("autocast" if tr.dtype is not None else "weights" if dtype != torch.float32 else "")
    bits.append("NHWC" if getattr(tr, "channels_last", False) else "NCHW")
    if type(tr.net).__name__ == "CompiledModule":
        bits.append("compiled")
    return ", ".join(b for b in bits if b) + ", inference_mode"


def run_case(case: Case, device: torch.device, tmp: Path, progress: Callable[[str], None]) -> dict:
    from cyclekit.release import save_release
    from cyclekit.nn import build_generator, init_weights
    from cyclekit.infer.translator import load_translator

    cfg = make_config(case.net, case.size, 1, tmp, tmp / "run", str(device))
    torch.manual_seed(0)
    G = init_weights(build_generator(cfg.model), "normal", 0.02).to(device).eval()
    release = save_release(Path(tempfile.mkdtemp(dir=tmp)) / "model", cfg, G, copy.deepcopy(G))
    max_batch = max(VARIANTS[v][1] for v in case.variants)
    x_all = _images(case, tmp, max_batch).to(device)
    x1 = x_all[:1]

    def official():
        with torch.no_grad():
            return G(x1)

    with torch.no_grad():
        ref = G(x_all).float()
    calls: dict[str, Callable[[], object]] = {"official": official}
    batch = {"official": 1}
    rows: dict[str, dict] = {"official": {"psnr_vs_fp32": 100.0, "first_s": 0.0}}
    for v in case.variants:
        kwargs, b = VARIANTS[v]
        try:
            t0 = time.perf_counter()
            tr = load_translator(release, "AtoB", device=str(device), **kwargs)
            xb = x_all[:b]
            out = tr(xb)  # warm-up (and compile)
            sync(device)
            first = time.perf_counter() - t0
        except Exception as exc:  # an optional backend that is not installed / not supported here
            rows[v] = {"skipped": f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"}
            progress(f"{case.label}: {v} skipped ({rows[v]['skipped']})")
            continue
        rows[v] = {"psnr_vs_fp32": _psnr(out, ref[:b]), "first_s": first,
                   "resolved": _describe(tr)}
        calls[v] = (lambda tr=tr, xb=xb: tr(xb))
        batch[v] = b
        progress(f"{case.label}: {v} ready, PSNR vs fp32 {rows[v]['psnr_vs_fp32']:.1f} dB")
    official()
    times, paired = interleaved(calls, case.rounds, case.calls, device,
                                progress=lambda m: progress(f"{case.label}: {m}"))
    per_image = {k: [t / batch[k] for t in ts] for k, ts in times.items()}
    for k, ts in per_image.items():
        sec = statistics.median(ts)
        rows[k].update({"batch": batch[k], "s_per_image": sec, "images_per_s": 1 / sec,
                        "ratio": ratio_stats(paired.get(k, ts), ts)})
    return {"case": dataclasses.asdict(case), "label": case.label, "rows": rows}
