"""Face detectors on real photos: detection rate, eye error and time per image (markdown table).

Data: the Face Research Lab London Set in ``datasets/london`` (shipped) (102 people, 512x512,
``neutral/ID_03.jpg`` with ``.pts`` landmarks: point 0 = pupil on the image's left, point 1 =
pupil on the image's right; ``smiling/ID_08.jpg`` without landmarks). Sets made from them:

* ``neutral``, ``smiling``: the photos as they are;
* ``tight``: 178x218 crops (CelebA's size) whose width is 2.2 inter-pupil distances (cheek to
  cheek: the face fills the image); ``tighter``: 1.8 distances (the crop cuts through the cheeks);
* ``tilt+-15``, ``tilt+-30``: the neutral photo rotated about its centre (border replicated);
* ``1350``: upscaled to 1350x1350; ``portrait``: 1350x1800 with the face in the upper part and
  the shoulders continued below;
* ``no-face``: the part of each photo below the chin (neck, collar, shirt), 512 px wide; a
  detection there is a false alarm.

A face counts as found when the dominant face's eyes are within 0.25 inter-pupil distances of the
truth (a box elsewhere is a miss); eye error = mean pupil distance / inter-pupil distance. Times
are per image, one process, OMP_NUM_THREADS=1. ``haar-head`` is the Haar detector of commit 159f2df
(``git show 159f2df:src/cyclekit/faces/detect.py``), the code the issue measured: the baseline.

    OMP_NUM_THREADS=1 python benchmarks/bench_detect.py [--limit N] [--detectors dlib,haar,haar-head]

``--prepare N`` instead times ``cyclekit data faces`` on N generated CelebA-sized photos (tight
178x218 crops of the London photos with flips, scale/shift jitter and brightness changes, split
into two folders by the set's gender column): the baseline code (one process, its Haar
detector, commit 159f2df) against the current one (all cores, default detector), on the same folder, in one run.
"""
from __future__ import annotations

import argparse
import glob
import os
import platform
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LONDON = ROOT / "datasets" / "london"  # shipped with the repository (CC BY 4.0, see its README)
# The code the issue measured (Haar detector, one process): the baseline of every ratio here.
BASELINE = "159f2df"


def machine() -> str:
    cpu, flags = platform.processor() or "?", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    have = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16") if f in flags]
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    return f"{cpu}, {os.cpu_count()} logical CPUs, flags: {' '.join(have) or 'none of avx2/avx512/amx'}, OMP_NUM_THREADS={threads}"


# ---------------------------------------------------------------------- sets
def _read(path: str) -> np.ndarray:
    import cv2

    return cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)


def _warp(img, m, size):
    import cv2

    return cv2.warpAffine(img, m, size, flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)


def tight_crop(img: np.ndarray, eyes: np.ndarray, width_ipd: float, w: int = 178, h: int = 218):
    """A CelebA-sized crop ``width_ipd`` inter-pupil distances wide, eyes at 0.4 of the height."""
    ipd = float(np.linalg.norm(eyes[1] - eyes[0]))
    s = w / (width_ipd * ipd)
    mid = eyes.mean(axis=0)
    m = np.array([[s, 0, (w - 1) / 2 - s * mid[0]], [0, s, 0.4 * h - s * mid[1]]])
    return _warp(img, m, (w, h)), eyes * s + m[:, 2]


def tilt(img: np.ndarray, eyes: np.ndarray, degrees: float):
    import cv2

    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    out = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out, eyes @ m[:, :2].T + m[:, 2]


def upscale(img: np.ndarray, eyes: np.ndarray, side: int = 1350, portrait: bool = False):
    import cv2

    k = side / img.shape[1]
    out = cv2.resize(img, (side, side), interpolation=cv2.INTER_CUBIC)
    if portrait:  # 1350x1800: the shoulders continue below
        out = cv2.copyMakeBorder(out, 0, 1800 - side, 0, 0, cv2.BORDER_REPLICATE)
    return out, (eyes + 0.5) * k - 0.5


def below_chin(img: np.ndarray, pts: np.ndarray) -> np.ndarray:
    import cv2

    y0 = int(min(img.shape[0] - 64, pts[:, 1].max() + 0.04 * img.shape[0]))
    part = img[y0:]
    return cv2.resize(part, (512, max(64, round(part.shape[0] * 512 / part.shape[1]))), interpolation=cv2.INTER_CUBIC)


def make_sets(limit: int = 0) -> dict[str, list[tuple[np.ndarray, object]]]:
    files = sorted(glob.glob(str(LONDON / "neutral" / "*.jpg")))
    if not files:
        sys.exit(f"no photos in {LONDON / 'neutral'}; see the README there")
    files = files[:limit] if limit else files
    sets: dict[str, list] = {k: [] for k in ("neutral", "smiling", "tight", "tighter", "tilt-15", "tilt+15",
                                             "tilt-30", "tilt+30", "1350", "portrait", "no-face")}
    for f in files:
        img, pts = _read(f), np.loadtxt(f[:-4] + ".pts")
        eyes = pts[:2]
        sets["neutral"].append((img, eyes))
        smile = f.replace("neutral", "smiling").replace("_03.jpg", "_08.jpg")
        if os.path.exists(smile):
            sets["smiling"].append((_read(smile), None))
        sets["tight"].append(tight_crop(img, eyes, 2.2))
        sets["tighter"].append(tight_crop(img, eyes, 1.8))
        for deg in (-15, 15, -30, 30):
            sets[f"tilt{deg:+d}"].append(tilt(img, eyes, deg))
        sets["1350"].append(upscale(img, eyes))
        sets["portrait"].append(upscale(img, eyes, portrait=True))
        sets["no-face"].append((below_chin(img, pts), "none"))
    return sets


# ---------------------------------------------------------------------- detectors
def head_haar():
    """The Haar detector of the baseline commit (what the issue measured), loaded from git."""
    return head_module("src/cyclekit/faces/detect.py", "cyclekit_head_detect").HaarDetector()


def build(name: str):
    from cyclekit.faces.detectors import make_detector

    return head_haar() if name == "haar-head" else make_detector(name)


def measure(det, items) -> dict:
    found = anyface = 0
    errs, times, passes = [], [], []
    for img, truth in items:
        t0 = time.perf_counter()
        if hasattr(det, "find"):
            d = det.find(img)
            faces = d.faces
            passes.append(len(d.passes))
        else:
            faces = det.detect(img)
        times.append(time.perf_counter() - t0)
        anyface += bool(faces)
        if truth is None or isinstance(truth, str):
            continue
        if faces and faces[0].eyes is not None:
            ipd = np.linalg.norm(truth[1] - truth[0])
            err = float(np.linalg.norm(np.asarray(faces[0].eyes) - truth, axis=1).mean() / ipd)
            if err < 0.25:
                found += 1
                errs.append(err)
    n = len(items)
    return {"n": n, "found": found, "any": anyface, "err_med": np.median(errs) if errs else np.nan,
            "err_p90": np.percentile(errs, 90) if errs else np.nan, "ms": 1000 * float(np.mean(times)),
            "ms_max": 1000 * float(np.max(times)), "passes": float(np.mean(passes)) if passes else np.nan}


def head_module(path: str, name: str):
    """A module of the baseline commit, with the moved image helpers redirected to their new home."""
    src = subprocess.run(["git", "show", f"{BASELINE}:{path}"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    mod = types.ModuleType(name)
    sys.modules[name] = mod  # dataclasses look their module up there
    if name != "cyclekit_head_detect" and "cyclekit_head_detect" not in sys.modules:
        head_module("src/cyclekit/faces/detect.py", "cyclekit_head_detect")
    src = src.replace("cyclekit.data.images", "cyclekit.io.images")
    src = src.replace("from cyclekit.faces.detect import", "from cyclekit_head_detect import")
    exec(compile(src, f"{BASELINE}:{path}", "exec"), mod.__dict__)
    return mod


def make_prepare_folder(root: Path, n: int) -> tuple[Path, Path]:
    """``n`` CelebA-sized JPEGs in ``root/a`` (men) and ``root/b`` (women) made from the London photos."""
    import csv

    import cv2

    gender = {r["face_id"]: r["face_gender"] for r in csv.DictReader(open(LONDON / "london_info.csv"))}
    files = sorted(glob.glob(str(LONDON / "neutral" / "*.jpg")))
    rng = np.random.default_rng(0)
    photos = [(_read(f), np.loadtxt(f[:-4] + ".pts")[:2], gender.get(Path(f).stem[:3], "female")) for f in files]
    for i in range(n):
        img, eyes, g = photos[i % len(photos)]
        width = rng.uniform(2.0, 2.8)  # from tight (cheek to cheek) to CelebA-like framing
        jitter = eyes + rng.normal(0, 0.04, 2) * np.linalg.norm(eyes[1] - eyes[0])
        crop, _ = tight_crop(img, jitter, width)
        if (i // len(photos)) % 2:
            crop = crop[:, ::-1]
        crop = np.clip(crop.astype(np.float32) * rng.uniform(0.75, 1.2), 0, 255).astype(np.uint8)
        d = root / ("a" if g == "male" else "b")
        d.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(d / f"{i:05d}.jpg"), np.ascontiguousarray(crop[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 92])
    return root / "a", root / "b"


def bench_prepare(n: int, workers: int) -> None:
    import logging
    import tempfile

    from cyclekit.faces.params import FaceParams
    from cyclekit.faces.prepare import prepare_folders

    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        a, b = make_prepare_folder(tmp / "src", n)
        print(f"Machine: {machine()}; load average {os.getloadavg()[0]:.1f} at the start\n")
        print(f"{n} photos 178x218 JPEG ({len(list(a.iterdir()))} in a/, {len(list(b.iterdir()))} in b/), "
              "crops 128 px PNG, margin 0.4\n")
        print("| code | detector | workers | seconds | photos/s | cropped | skipped |")
        print("|---|---|---|---|---|---|---|")
        old = head_module("src/cyclekit/faces/prepare.py", "cyclekit_head_prepare")
        runs = [("baseline", lambda out: old.prepare_folders(a, b, out, params=FaceParams(), detector=head_haar()),
                 f"haar ({BASELINE})", 1)]
        runs.append(("current", lambda out: prepare_folders(a, b, out, params=FaceParams(detector="auto"),
                                                           workers=workers), "auto", workers or os.cpu_count()))
        times = {}
        for label, fn, det, w in runs:
            t0 = time.perf_counter()
            out = fn(tmp / label.replace(" ", "_"))
            times[label] = time.perf_counter() - t0
            import json

            doc = json.loads((out / "faces.json").read_text())
            crops = sum(doc["counts"].values())
            reasons = doc.get("skip_reasons", "")
            print(f"| {label} | {det if label == 'baseline' else doc.get('detector', det)} | {w} | {times[label]:.1f} | {n / times[label]:.1f} "
                  f"| {crops} | {doc['skipped']} {reasons or ''} |", flush=True)
        print(f"\nspeed-up: {times['baseline'] / times['current']:.1f}x; load average "
              f"{os.getloadavg()[0]:.1f} at the end")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=0, help="first N people only (default all 102)")
    ap.add_argument("--detectors", default="dlib,haar,haar-head")
    ap.add_argument("--sets", default="", help="comma-separated subset of the sets")
    ap.add_argument("--prepare", type=int, default=0, metavar="N", help="time `data faces` on N generated photos")
    ap.add_argument("--workers", type=int, default=0, help="with --prepare: workers of the current code (0 = all)")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    if args.prepare:
        return bench_prepare(args.prepare, args.workers)
    sets = make_sets(args.limit)
    if args.sets:
        sets = {k: v for k, v in sets.items() if k in args.sets.split(",")}
    print(f"Machine: {machine()}; load average {os.getloadavg()[0]:.1f} at the start\n")
    print("| detector | set | images | face found (eyes < 0.25 IPD) | any face returned | eye error median / p90 (IPD) "
          "| ms per image (mean / max) | passes |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.detectors.split(","):
        det = build(name)
        for set_name, items in sets.items():
            r = measure(det, items)
            if set_name == "smiling":
                found = "n/a (no landmarks)"
            elif set_name == "no-face":
                found = "n/a (false alarms: see next column)"
            else:
                found = f"{r['found']}/{r['n']} ({100 * r['found'] / r['n']:.0f}%)"
            err = "-" if np.isnan(r["err_med"]) else f"{r['err_med']:.3f} / {r['err_p90']:.3f}"
            passes = "-" if np.isnan(r["passes"]) else f"{r['passes']:.1f}"
            print(f"| {name} | {set_name} | {r['n']} | {found} | {r['any']}/{r['n']} | {err} "
                  f"| {r['ms']:.0f} / {r['ms_max']:.0f} | {passes} |", flush=True)


if __name__ == "__main__":
    main()
