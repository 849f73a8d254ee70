"""Bounded load test of ``cyclekit serve`` on loopback (issue 8).

Starts the real CLI server in a subprocess, fires ``--concurrency`` simultaneous
``POST /api/translate`` requests (each with its own connection), checks every response (HTTP 200,
a PNG whose pixels match translating the same image directly in Python within 1/255), and
records p50/p95/max latency, throughput and the server's resident memory (VmRSS now, VmHWM =
peak since start, from /proc). It then sends more requests at once than the queue holds to show
the overflow is answered ``503`` + ``Retry-After`` while memory stays put.

Without ``--model`` a random-weight model of the paper's 128 px architecture (ResNet-6, ngf 64)
is written to a temporary folder: weights do not change the cost of a forward pass.

    python benchmarks/serve_load.py --sizes 128,256 --write-md BENCHMARKS.md
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

SECTION = "## Web server (issue 8)"


def make_model(folder: Path, n_blocks: int, ngf: int) -> Path:
    import torch

    from cyclekit.release import save_release
    from cyclekit.config import Config, generator_config_for
    from cyclekit.nn import build_generator
    from cyclekit.nn.layers import init_weights

    torch.manual_seed(0)
    cfg = Config()
    cfg.model.n_blocks, cfg.model.ngf, cfg.model.image_size = n_blocks, ngf, 128
    nets = [init_weights(build_generator(generator_config_for(cfg.model, d))) for d in ("AtoB", "BtoA")]
    return save_release(folder / "bench", cfg, *nets)


def make_images(n: int, size: int) -> list[bytes]:
    """Smooth random photos (PNG), distinct so a cache could not cheat."""
    from PIL import Image

    rng = np.random.default_rng(size)
    out = []
    for _ in range(n):
        small = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
        im = Image.fromarray(small).resize((size, size), Image.BICUBIC)
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def proc_mem_mb(pid: int) -> dict[str, float]:
    text = Path(f"/proc/{pid}/status").read_text()
    return {k: int(re.search(rf"{k}:\s+(\d+) kB", text).group(1)) / 1024 for k in ("VmRSS", "VmHWM")}


def start_server(model: Path, max_pending: int, threads: int) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "cyclekit", "-q", "serve", "--model", str(model), "--port", "0",
           "--device", "cpu", "--max-pending", str(max_pending)]
    if threads:
        cmd += ["--threads", str(threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    m = re.search(r"(http://\S+)", line)
    if not m:
        proc.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep draining its output
    return proc, m.group(1)


def fire(url: str, bodies: list[bytes], direction: str = "AtoB"):
    """Send every body at once (one connection each); return [(status, seconds, content, headers)]."""
    import httpx

    barrier = threading.Barrier(len(bodies))

    def one(body):
        with httpx.Client(base_url=url, timeout=600) as c:
            barrier.wait()
            t0 = time.perf_counter()
            r = c.post(f"/api/translate?direction={direction}", content=body,
                       headers={"Content-Type": "image/png"})
            return r.status_code, time.perf_counter() - t0, r.content, r.headers

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(one, bodies))


def check(results, expected) -> int:
    from PIL import Image

    bad = 0
    for (status, _, content, _), want in zip(results, expected):
        if status != 200:
            bad += 1
            continue
        got = np.asarray(Image.open(io.BytesIO(content)).convert("RGB")).astype(np.float64)
        bad += int(got.shape != want.shape or np.abs(got - want).max() > 1)
    return bad


def pct(values, q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def run(args) -> dict:
    from PIL import Image

    from cyclekit.infer.translator import load_translator, translate_array

    tmp = tempfile.TemporaryDirectory()
    model = Path(args.model) if args.model else make_model(Path(tmp.name), args.n_blocks, args.ngf)
    translator = load_translator(model, "AtoB", device="cpu")
    proc, url = start_server(model, args.max_pending, args.threads)
    report = {"model": str(args.model or f"random ResNet-{args.n_blocks} ngf {args.ngf}"), "url": url,
              "loadavg_before": os.getloadavg()[0],
              "max_pending": args.max_pending, "concurrency": args.concurrency, "rounds": []}
    try:
        report["idle_mb"] = proc_mem_mb(proc.pid)
        for size in args.sizes:
            bodies = make_images(args.concurrency, size)
            expected = [np.round(translate_array(translator, np.asarray(
                Image.open(io.BytesIO(b)).convert("RGB"), dtype=np.float32) / 255.0) * 255) for b in bodies]
            fire(url, bodies[:1])  # warm-up (first-call allocations)
            for rnd in range(args.rounds):
                t0 = time.perf_counter()
                results = fire(url, bodies)
                wall = time.perf_counter() - t0
                lat = [r[1] for r in results]
                row = {"size": size, "round": rnd + 1, "requests": len(bodies), "wrong": check(results, expected),
                       "p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95), "max_ms": pct(lat, 100),
                       "server_ms_median": statistics.median(float(r[3].get("x-cyclekit-ms", "nan")) for r in results),
                       "throughput_rps": len(bodies) / wall, **proc_mem_mb(proc.pid)}
                report["rounds"].append(row)
                print(json.dumps(row), flush=True)
        if args.overflow:
            bodies = make_images(args.overflow, args.sizes[0])
            results = fire(url, bodies)
            codes = [r[0] for r in results]
            busy = [r for r in results if r[0] == 503]
            report["overflow"] = {"requests": len(bodies), "ok": codes.count(200), "busy_503": len(busy),
                                  "other": len(codes) - codes.count(200) - len(busy),
                                  "all_503_have_retry_after": all("retry-after" in r[3] for r in busy),
                                  "p50_503_ms": pct([r[1] for r in busy], 50) if busy else None,
                                  **proc_mem_mb(proc.pid)}
            print(json.dumps(report["overflow"]), flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        tmp.cleanup()
    return report


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        name = re.search(r"Model name:\s+(.+)", out).group(1).strip()
    except Exception:  # no lscpu
        name = platform.processor() or "unknown CPU"
    import torch

    return f"{name}, {os.cpu_count()} logical CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads)"


def markdown(report: dict, command: str) -> str:
    lines = [SECTION, "",
             f"`{command}`", "",
             f"Machine: {machine()}. Server: `cyclekit serve` (uvicorn, one inference worker, "
             f"`--max-pending {report['max_pending']}`), model: {report['model']}, CPU fp32. "
             f"Each round sends {report['concurrency']} requests at the same moment, one connection each, "
             "over loopback; every response is checked (HTTP 200 and pixels within 1/255 of translating "
             "the same image directly in Python). Latency is per request, client side, so it includes "
             "waiting in the queue; server ms is the decode + translate + encode time of one image. "
             "Memory is the server process: VmRSS after the round and VmHWM, its peak since start "
             f"(idle after loading: {report['idle_mb']['VmRSS']:.0f} MB). The load generator "
             f"({report['concurrency']} client threads) runs on the same CPUs, and the 1-minute load average was "
             f"{report['loadavg_before']:.1f} when the run began.", "",
             "| image | round | requests | wrong | p50 ms | p95 ms | max ms | server ms (median) | req/s "
             "| RSS MB | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rounds"]:
        lines.append(f"| {r['size']}x{r['size']} | {r['round']} | {r['requests']} | {r['wrong']} "
                     f"| {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['max_ms']:.0f} | {r['server_ms_median']:.0f} "
                     f"| {r['throughput_rps']:.1f} | {r['VmRSS']:.0f} | {r['VmHWM']:.0f} |")
    if "overflow" in report:
        o = report["overflow"]
        lines += ["", f"Overflow: {o['requests']} requests at once against `--max-pending {report['max_pending']}`: "
                      f"{o['ok']} answered 200, {o['busy_503']} answered 503 with Retry-After "
                      f"({'all' if o['all_503_have_retry_after'] else 'NOT all'} carried it; median "
                      f"{o['p50_503_ms']:.0f} ms to the 503), {o['other']} other; server RSS {o['VmRSS']:.0f} MB, "
                      f"peak {o['VmHWM']:.0f} MB."]
    lines += ["", "Reading: with one inference worker the requests of a burst are served one after another, "
                  "so a request's latency is mostly its wait in the queue (p50 is about half the burst times the "
                  "server ms, p95 about the whole burst); the worker already uses every core for one image. "
                  "The peak memory does not grow from round to round: at most `--max-pending` uploads are held "
                  "and one image is decoded and translated at a time; the rest wait or get 503.", ""]
    return "\n".join(lines)


def write_section(path: Path, text: str) -> None:
    """Replace (or append) only this benchmark's section of ``path``."""
    old = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    new = pattern.sub(lambda _: text, old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(new, encoding="utf-8")
    os.replace(tmp, path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="run directory or release (default: random ResNet weights)")
    p.add_argument("--n-blocks", type=int, default=6)
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--sizes", default="128", help="comma-separated square image sizes")
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--max-pending", type=int, default=64)
    p.add_argument("--overflow", type=int, default=150, help="requests for the overflow round (0 = skip)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--write-md", help="write the results into this BENCHMARKS.md section")
    args = p.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",")]
    report = run(args)
    wrong = sum(r["wrong"] for r in report["rounds"])
    if args.write_md:
        command = "python benchmarks/serve_load.py " + " ".join(argv if argv is not None else sys.argv[1:])
        write_section(Path(args.write_md), markdown(report, command.strip()))
    print(f"{'FAILED' if wrong else 'ok'}: {wrong} wrong responses")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
