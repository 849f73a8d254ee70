"""How right is the independent gender judge on real photos, and how well do identity measures separate people?

Runs on the Face Research Lab London Set (102 adults, a neutral and a smiling photo each;
shared/faces/london, CC BY 4.0) and prints markdown tables:

* judge accuracy on neutral photos with chips built from the ground-truth pupils (.pts points 0, 1);
* where dlib is installed (extra ``identity``): the same with dlib's own 5-point chips
  (``dlib.get_face_chip``, the pipeline the judge was trained with), with our chips from dlib's
  eye-corner midpoints, and with loose crops (dlib's face box widened by 0.4 per side), on the
  neutral and the smiling photos; then the face-embedding distances between the neutral and the
  smiling photo of one person vs of two people, and the pixel measures on the same pairs.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_judge.py [--london DIR] [--limit N] [--no-identity]
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from cyclekit.faces import identity, judge  # noqa: E402


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load_rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def dlib_tools():
    try:
        import dlib
        sp = identity.recognition_model_path().parent / "shape_predictor_5_face_landmarks.dat"
    except ImportError:
        return None
    return dlib, dlib.get_frontal_face_detector(), dlib.shape_predictor(str(sp))


def row(name: str, p: np.ndarray, genders: list[str]) -> str:
    male = np.array([g == "male" for g in genders])
    acc = judge.gender_accuracy(p, genders)
    f_acc, m_acc = np.mean(p[~male] <= 0.5), np.mean(p[male] > 0.5)
    return f"| {name} | {len(p)} | {acc:.1%} ({int(round(acc * len(p)))}/{len(p)}) | {f_acc:.1%} | {m_acc:.1%} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--london", type=Path, default=ROOT.parent / "shared" / "faces" / "london")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N people (0 = all)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-identity", action="store_true", help="skip the face-embedding measures")
    args = ap.parse_args()
    info_csv = args.london / "london_info.csv"
    if not info_csv.is_file():
        sys.exit(f"{info_csv} not found; pass --london DIR (the folder with london_info.csv, neutral/, smiling/)")
    with open(info_csv, newline="") as f:
        gender = {r["face_id"]: r["face_gender"] for r in csv.DictReader(f)}
    ids = sorted(gender)[: args.limit or None]
    genders = [gender[i] for i in ids]
    gj = judge.GenderJudge(threads=args.threads)
    tools = dlib_tools()

    chips: dict[str, list[np.ndarray]] = {}
    eyes5: dict[tuple[str, str], np.ndarray] = {}
    t_chip = 0.0
    for kind, suffix in (("neutral", "03"), ("smiling", "08")):
        for i in ids:
            img = load_rgb(args.london / kind / f"{i}_{suffix}.jpg")
            if kind == "neutral":
                pupils = np.loadtxt(args.london / kind / f"{i}_{suffix}.pts")[:2]
                t0 = time.perf_counter()
                chips.setdefault("neutral: pupils -> our chip", []).append(judge.face_chip(img, pupils))
                t_chip += time.perf_counter() - t0
            if tools is None:
                continue
            dlib, detector, predictor = tools
            box = max(detector(img, 1), key=lambda r: r.area())
            shape = predictor(img, box)
            p5 = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
            eyes5[kind, i] = np.array([p5[2:4].mean(axis=0), p5[0:2].mean(axis=0)])
            chips.setdefault(f"{kind}: dlib 5-point -> dlib's chip", []).append(
                np.asarray(dlib.get_face_chip(img, shape, size=32, padding=0.2)))
            chips.setdefault(f"{kind}: dlib eye midpoints -> our chip", []).append(judge.face_chip(img, eyes5[kind, i]))
            chips.setdefault(f"{kind}: dlib face box + 0.4 margin (loose crop)", []).append(
                judge.loose_crop(img, (box.left(), box.top(), box.width(), box.height()), margin=0.4))

    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(f"Machine: {cpu_name()}, {os.cpu_count()} logical CPUs; judge threads {args.threads}, "
          f"OMP_NUM_THREADS={threads}; Python {platform.python_version()}\n")
    print("| chips | faces | accuracy | women right | men right |\n|---|---|---|---|---|")
    t_judge = 0.0
    for name, batch in chips.items():
        t0 = time.perf_counter()
        p = gj.predict(batch)
        t_judge += time.perf_counter() - t0
        print(row(name, p, genders))
    n_judged = sum(len(b) for b in chips.values())
    print(f"\nChip cutting {1e3 * t_chip / len(ids):.2f} ms/face; judge {1e3 * t_judge / n_judged:.3f} ms/face (batched).")
    if tools is None:
        print("\n(dlib not installed: pip install 'cyclekit[identity]' for the dlib, loose-crop and identity rows)")
        return
    if args.no_identity:
        return
    emb = identity.FaceEmbedder()
    t0 = time.perf_counter()
    vecs = {}
    for kind, suffix in (("neutral", "03"), ("smiling", "08")):
        vecs[kind] = np.stack([emb.embed(load_rgb(args.london / kind / f"{i}_{suffix}.jpg"), eyes5[kind, i]) for i in ids])
    t_emb = (time.perf_counter() - t0) / (2 * len(ids))
    d = np.linalg.norm(vecs["neutral"][:, None] - vecs["smiling"][None], axis=2)
    same, other = np.diag(d), d[~np.eye(len(ids), dtype=bool)]
    th = identity.SAME_PERSON_DISTANCE
    print("\nFace-embedding distance, neutral vs smiling photo (dlib ResNet on our 150 px eye-aligned chips):\n")
    print("| pairs | n | mean | min | max | share < 0.6 |\n|---|---|---|---|---|---|")
    for name, v in (("same person", same), ("different people", other)):
        print(f"| {name} | {len(v)} | {v.mean():.3f} | {v.min():.3f} | {v.max():.3f} | {np.mean(v < th):.2%} |")
    print(f"\nSame person recognised at {th}: {identity.same_person_rate(vecs['neutral'], vecs['smiling']):.1%}; "
          f"nearest neutral photo is the own one: {identity.own_original_rank1(vecs['neutral'], vecs['smiling']):.1%}; "
          f"embedding {1e3 * t_emb:.0f} ms/face.")
    m = identity.face_mask()
    cut = {k: [judge.face_chip(load_rgb(args.london / k / f"{i}_{s}.jpg"), eyes5[k, i], identity.IDENTITY_SIZE)
               for i in ids] for k, s in (("neutral", "03"), ("smiling", "08"))}
    print("\nPixel measures inside the face ellipse (112 px chips), neutral vs smiling photo:\n")
    print("| pairs | PSNR dB | SSIM |\n|---|---|---|")
    for name, shift in (("same person", 0), ("different people (next ID)", 1)):
        pairs = [(cut["neutral"][j], cut["smiling"][(j + shift) % len(ids)]) for j in range(len(ids))]
        ps = np.mean([identity.masked_psnr(a, b, m) for a, b in pairs])
        ss = np.mean([identity.masked_ssim(a, b, m) for a, b in pairs])
        print(f"| {name} | {ps:.2f} | {ss:.3f} |")


if __name__ == "__main__":
    main()
