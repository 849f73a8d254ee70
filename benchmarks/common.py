"""Shared pieces of the speed benchmarks: interleaved timing, statistics, machine facts, peak
FLOP/s, peak memory, and writing our section of BENCHMARKS.md.

Timing discipline (these machines are shared and noisy): every figure is a ratio against the
baseline measured in the *same* rounds. In each round every variant is timed back to back with
a baseline measurement (order rotated from round to round, baseline first or second in turn);
the ratio of a round is ``baseline time / variant time`` of that pair, and we report the median
and the min-max of those per-round ratios next to absolute rates.
"""
from __future__ import annotations

import ctypes
import gc
import os
import platform
import re
import statistics
import time
from pathlib import Path
from typing import Callable, Optional

import torch


def sync(device: torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], n: int, device: torch.device) -> float:
    """Seconds per call of ``fn`` over ``n`` calls (device work included)."""
    sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / n


def interleaved(variants: dict[str, Callable[[], object]], rounds: int, n: int, device: torch.device,
                progress: Optional[Callable[[str], None]] = None,
                baseline: str = "official") -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Seconds per call of every variant, each timed right next to a baseline measurement.

    Round ``r`` visits the variants in an order rotated by ``r``; each visit times the baseline
    and the variant back to back (baseline first in even rounds, second in odd ones), so a burst
    of load from another process hits both sides of a ratio alike. Returns ``(times, paired)``:
    all timings per name, and for each variant the baseline timings taken next to it.
    """
    others = [k for k in variants if k != baseline]
    times: dict[str, list[float]] = {k: [] for k in variants}
    paired: dict[str, list[float]] = {k: [] for k in others}
    for r in range(rounds):
        order = others[r % len(others):] + others[:r % len(others)] if others else []
        for name in order:
            pair = (baseline, name) if r % 2 == 0 else (name, baseline)
            for k in pair:
                t = timed(variants[k], n, device)
                times[k].append(t)
                if k == baseline:
                    paired[name].append(t)
        if progress:
            progress(f"round {r + 1}/{rounds}: " + ", ".join(f"{k} {times[k][-1]:.3f}s" for k in variants))
    return times, paired


def ratio_stats(base: list[float], other: list[float]) -> dict[str, float]:
    """Median and min/max of the per-round speed-ups ``base / other``."""
    ratios = [b / o for b, o in zip(base, other)]
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}


def fmt_ratio(s: dict[str, float]) -> str:
    return f"**{s['median']:.2f}x** ({s['min']:.2f}-{s['max']:.2f})"


# ---------------------------------------------------------------------- memory
def _malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _status_kb(field: str) -> Optional[int]:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    m = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) if m else None


def peak_memory_mb(fn: Callable[[], object], device: torch.device) -> Optional[float]:
    """Extra memory one call of ``fn`` needs at its peak, in MB.

    CUDA: ``max_memory_allocated`` above what was allocated before. CPU: the process's peak
    resident set (VmHWM, reset through ``/proc/self/clear_refs``) above the resident set before
    the call, after returning freed heap to the OS; None where /proc does not allow it.
    """
    device = torch.device(device)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    _malloc_trim()
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    before = _status_kb("VmRSS")
    fn()
    peak = _status_kb("VmHWM")
    if before is None or peak is None:
        return None
    return (peak - before) / 1024


# ---------------------------------------------------------------------- machine
def machine(device: torch.device) -> dict[str, object]:
    info: dict[str, object] = {
        "python": platform.python_version(), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "device": str(device),
    }
    try:
        model = re.search(r"^model name\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
        info["cpu"] = model.group(1).strip() if model else platform.processor()
    except OSError:
        info["cpu"] = platform.processor()
    info["cores"] = os.cpu_count()
    caps = getattr(torch.cpu, "get_capabilities", None)
    if caps:
        c = caps()
        info["cpu_bf16"] = ", ".join(k for k in ("avx512_bf16", "amx_bf16", "amx_tile") if c.get(k)) or "none"
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
    try:
        info["load_avg"] = os.getloadavg()
    except OSError:
        pass
    return info


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 0, repeats: int = 3) -> float:
    """Best FLOP/s of a large square matmul (the machine's practical peak for ``dtype``)."""
    device = torch.device(device)
    n = n or (8192 if device.type == "cuda" else 4096)
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    (a @ b)  # warm-up
    best = min(timed(lambda: a @ b, 2 if device.type == "cpu" else 10, device) for _ in range(repeats))
    return 2 * n ** 3 / best


# ---------------------------------------------------------------------- markdown
SECTION = "## Training and inference speed (issue 5)"


def write_section(path: Path, text: str) -> None:
    """Replace (or append) only our section of ``path``; other sections are left as they are."""
    old = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = text.rstrip("\n") + "\n\n"
    new = pattern.sub(lambda _: text, old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(new, encoding="utf-8")
    os.replace(tmp, path)


def gflops(x: float) -> str:
    return f"{x / 1e9:,.0f}" if x >= 1e10 else f"{x / 1e9:,.1f}"
