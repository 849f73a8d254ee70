"""Peak memory of `cyclekit translate` against the number of inputs (it must not grow with it).

Generates 1-megapixel JPEGs (a few distinct photos-like images, hard-linked under many names),
then runs ``cyclekit translate`` on 10, 100 and 1,000 of them in fresh processes and reads each
process's peak resident memory from the kernel (``wait4``). The model is a small ResNet release
(its size is printed next to the figures): what is measured is how memory grows with the number
of inputs, so a cheap network keeps the 1,000-image run short.

    python benchmarks/bench_stream.py --counts 10,100,1000 --write-md BENCHMARKS.md
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SECTION = "## Translate: peak memory vs number of inputs"


def make_images(folder: Path, count: int, side: int, distinct: int = 8) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    base = []
    for i in range(distinct):
        path = folder.parent / f"base_{side}_{i}.jpg"
        if not path.exists():
            img = np.stack([np.sin(6 * xx + i) * 0.5 + 0.5, yy, np.cos(4 * yy * xx + i) * 0.5 + 0.5], -1)
            img = np.clip(img + rng.normal(0, 0.03, img.shape), 0, 1)
            Image.fromarray((img * 255).astype(np.uint8)).save(path, quality=90)
        base.append(path)
    for j in range(count):
        dst = folder / f"img_{j:05d}.jpg"
        if not dst.exists():
            os.link(base[j % distinct], dst)


def make_release(path: Path, ngf: int, n_blocks: int) -> tuple[Path, int]:
    import torch

    from cyclekit.config import Config, generator_config_for
    from cyclekit.nn import build_generator, count_parameters, init_weights
    from cyclekit.release import save_release

    cfg = Config()
    cfg.model.ngf, cfg.model.n_blocks, cfg.model.image_size = ngf, n_blocks, 256
    torch.manual_seed(0)
    nets = [init_weights(build_generator(generator_config_for(cfg.model, d)), "normal", 0.02) for d in ("AtoB", "BtoA")]
    save_release(path, cfg, *nets)
    return path, count_parameters(nets[0])


def run_translate(model: Path, inputs: Path, out: Path, batch: int) -> tuple[float, float, int]:
    """(peak RSS MB, seconds, outputs written) of one `cyclekit translate` process."""
    cmd = [sys.executable, "-m", "cyclekit", "--quiet", "translate", str(inputs), "--model", str(model),
           "--out", str(out), "--batch-size", str(batch), "--device", "cpu"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    stderr = proc.stderr.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"translate failed: {stderr[-2000:]}")
    return usage.ru_maxrss / 1024.0, seconds, len(list(out.glob("*.png")))


def machine() -> str:
    cpu = re.search(r"^model name\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
    flags = re.search(r"^flags\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
    have = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if flags and f in flags.group(1).split()]
    return f"{cpu.group(1).strip() if cpu else 'unknown CPU'}, {os.cpu_count()} cores, flags: {', '.join(have) or 'none'}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--counts", default="10,100,1000")
    p.add_argument("--side", type=int, default=1024, help="images are side x side (1024: 1 MP)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--ngf", type=int, default=8, help="width of the ResNet generator used (memory is what is measured)")
    p.add_argument("--n-blocks", type=int, default=2)
    p.add_argument("--workdir", default="", help="keep the generated images here (default: a temp dir)")
    p.add_argument("--write-md", help="replace this benchmark's section of the markdown file")
    args = p.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="cyclekit-stream-"))
    model, n_params = make_release(work / "model", args.ngf, args.n_blocks)
    weights_mb = (model / "model.safetensors").stat().st_size / 1e6
    rows = []
    for count in [int(c) for c in args.counts.split(",")]:
        inputs = work / f"in_{count}"
        make_images(inputs, count, args.side)
        out = work / f"out_{count}"
        peak, seconds, written = run_translate(model, inputs, out, args.batch_size)
        rows.append((count, peak, seconds, written))
        print(f"{count:5d} images: peak RSS {peak:,.0f} MB, {seconds:.0f} s, {written} written", flush=True)
    cmd = "python benchmarks/bench_stream.py " + " ".join(a for a in (argv or sys.argv[1:]))
    lines = [SECTION, "", f"Command: `{cmd}`. Machine: {machine()}. Each count is a fresh "
             f"`cyclekit translate --batch-size {args.batch_size} --device cpu` process on {args.side}x{args.side} "
             f"JPEGs; peak RSS from the kernel (`wait4`). Model: ResNet ngf {args.ngf}, {args.n_blocks} blocks, {n_params:,} parameters per "
             f"generator ({weights_mb:.1f} MB release, both generators).", "",
             "| inputs | peak RSS MB | wall s | written |", "|---|---|---|---|"]
    lines += [f"| {c:,} | {m:,.0f} | {s:,.0f} | {w:,} |" for c, m, s, w in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write_md:
        path = Path(args.write_md)
        old = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
        pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
        new = pattern.sub(lambda _: text + "\n", old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
        from cyclekit.io.files import atomic_write_text

        atomic_write_text(path, new)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
