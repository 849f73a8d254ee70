"""``cyclekit data faces``: face datasets cropped exactly as ``cyclekit swap`` crops.

Two sources, one output layout (``trainA/ trainB/ testA/ testB/`` + ``faces.json`` +
``skipped.txt``):

* **CelebA** (Liu et al., 2015): ``img_align_celeba/``, ``list_attr_celeba.txt`` (line 1: the
  image count, line 2: the 40 attribute names, then ``000001.jpg -1 1 ...``) and the official
  ``list_eval_partition.txt`` (``000001.jpg 0``; 0 train, 1 validation, 2 test). The Kaggle CSV
  versions (``list_attr_celeba.csv``, ``list_eval_partition.csv``) are read too. Domain A holds
  the images whose attribute is 1 (``Male`` by default: A = men, B = women), B those with -1.
* **Two folders** of photos (``men/`` and ``women/``), split into train/test by a seeded shuffle.

Every photo goes through the same detector, eye-line alignment and margin as ``swap``
(:func:`cyclekit.faces.align.face_crop` on the dominant face); photos without a usable face are
skipped and listed with the reason in ``skipped.txt``, and the reasons are counted (no face,
implausible face, face too small, unreadable file, ...). ``faces.json`` records the geometry, the
detector that made the boxes, the training crops' skin colour per domain (``tone``), the counts
and any warning (an empty test split); the trainer copies its margin into the model's config and
the tone and detector into the release (:func:`~cyclekit.faces.params.dataset_release_info`), so
``swap`` crops the same way and shows the model faces of the colour it was trained on.

Photos are processed by a pool of ``workers`` processes (default: one per core), each with its
own detector; detection runs on a copy of at most 640 px (:meth:`FaceDetector.find`), the crop on
the full photo. Results are taken in file order, so the output does not depend on ``workers``.
"""
from __future__ import annotations

import csv
import dataclasses
import logging
import os
import random
import sys
from collections import Counter, deque
from pathlib import Path
from typing import Iterable, Optional, Union

import numpy as np

from cyclekit.config import DIRECTIONS
from cyclekit.errors import ConfigError, DataError
from cyclekit.faces.params import FaceParams, write_faces_json
from cyclekit.faces.tone import skin_colour, training_tone

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
SPLITS = ("trainA", "trainB", "testA", "testB")


# ---------------------------------------------------------------------- CelebA files
def _find(root: Path, names: Iterable[str], what: str) -> Path:
    names = list(names)
    for name in names:
        for candidate in (root / name, root / "Anno" / name, root / "Eval" / name):
            if candidate.exists():
                return candidate
    raise DataError(f"CelebA {what} not found in {root}: expected one of {', '.join(names)}")


def read_celeba_attributes(path: PathLike) -> tuple[list[str], dict[str, np.ndarray]]:
    """``(attribute names, {file name: int8 array of +1/-1})`` from the txt or the Kaggle csv format."""
    path = Path(path)
    rows: dict[str, np.ndarray] = {}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if path.suffix.lower() == ".csv":
        reader = csv.reader(text.splitlines())
        header = next(reader, None)
        if not header or len(header) < 2:
            raise DataError(f"{path}: expected a header 'image_id,<attribute>,...'")
        names = [h.strip() for h in header[1:]]
        lines = [(r[0].strip(), r[1:]) for r in reader if r]
    else:
        all_lines = [ln for ln in text.splitlines() if ln.strip()]
        if len(all_lines) < 2:
            raise DataError(f"{path}: expected a count line, an attribute-name line, then one row per image")
        names = all_lines[1].split()
        lines = [(ln.split()[0], ln.split()[1:]) for ln in all_lines[2:]]
    for i, (name, values) in enumerate(lines):
        if len(values) != len(names):
            raise DataError(f"{path}: row {i + 1} ({name}) has {len(values)} values, expected {len(names)}")
        try:
            rows[name] = np.array([int(v) for v in values], dtype=np.int8)
        except ValueError:
            raise DataError(f"{path}: row {i + 1} ({name}) holds a value that is not -1, 0 or 1") from None
    return names, rows


def read_celeba_partition(path: PathLike) -> dict[str, int]:
    """``{file name: 0 train | 1 validation | 2 test}`` from the official txt or the Kaggle csv."""
    path = Path(path)
    out: dict[str, int] = {}
    lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    for i, line in enumerate(lines):
        parts = [p.strip() for p in (line.split(",") if path.suffix.lower() == ".csv" else line.split())]
        if not parts or not parts[0] or (i == 0 and not parts[-1].isdigit()):
            continue  # blank line or csv header
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise DataError(f"{path}: line {i + 1} should be '<file> <0|1|2>', got {line!r}")
        out[parts[0]] = int(parts[1])
    return out


def _celeba_images(root: Path) -> Path:
    for candidate in (root / "img_align_celeba" / "img_align_celeba", root / "img_align_celeba", root):
        if candidate.is_dir() and (any(candidate.glob("*.jpg")) or any(candidate.glob("*.png"))):
            return candidate
    raise DataError(f"no CelebA images in {root}: expected img_align_celeba/000001.jpg ...")


# ---------------------------------------------------------------------- one photo (in a worker)
_WORKER: dict = {}


def _init_worker(detector, params: FaceParams, out: str, ext: str) -> None:
    _WORKER.update(detector=detector, params=params, out=Path(out), ext=ext)


def _crop_one(job: tuple[str, str, str]) -> tuple[str, str, Optional[np.ndarray]]:
    """``(kind, reason, skin)``: kind ``ok`` or a skip kind (:data:`SKIP_KINDS`), reason for
    skipped.txt, and the crop's :func:`~cyclekit.faces.tone.skin_colour` when it was written."""
    from cyclekit.faces.align import face_crop
    from cyclekit.faces.detect import as_uint8_rgb
    from cyclekit.io.images import load_image, save_image

    src, split, name = job
    detector, params = _WORKER["detector"], _WORKER["params"]
    try:
        img = load_image(src, 3)
    except DataError as exc:
        return "unreadable", f"unreadable: {exc}", None
    img = as_uint8_rgb(img)  # one conversion: the detector and the warp work on the 8 bits the crop is saved in
    found = detector.find(img)
    if not found.faces:
        if found.rejected:
            return "implausible face", f"implausible face ({found.rejected[0][1]})", None
        return "no face", "no face found", None
    face = found.faces[0]
    if face.side < params.min_face:
        return "too small", f"face too small ({face.side:.0f} px < {params.min_face})", None
    crop, _ = face_crop(img, face, params)
    crop = crop.astype(np.float32) / 255.0
    # zlib level 1 encodes 4x faster than 6; the crops are synced once, before faces.json (finish)
    save_image(_WORKER["out"] / split / (name + _WORKER["ext"]), crop, png_level=1, durable=False)
    return "ok", "", skin_colour(crop, params.margin)


def _crop_chunk(jobs: list[tuple[str, str, str]]) -> list[tuple[str, str, Optional[np.ndarray]]]:
    return [_crop_one(job) for job in jobs]


CHUNK = 8  # photos per task sent to a worker: one round trip per chunk, not per photo

SKIP_KINDS = ("no face", "implausible face", "too small", "unreadable", "missing", "not in partition",
              "same name")


# ---------------------------------------------------------------------- writer
class _FaceWriter:
    """Runs the crop jobs (in order, over a process pool), counts outputs and skip reasons."""

    def __init__(self, out: Path, params: FaceParams, detector, ext: str, workers: int) -> None:
        self.out, self.params, self.detector, self.ext, self.workers = out, params, detector, ext, workers
        self.counts = {s: 0 for s in SPLITS}
        self.skipped: list[tuple[str, str]] = []
        self.reasons: Counter = Counter()
        self.warnings: list[str] = []
        self.skins: dict[str, list] = {"trainA": [], "trainB": []}  # the training crops' skin colours

    def skip(self, path, kind: str, reason: str) -> None:
        self.skipped.append((str(path), reason))
        self.reasons[kind] += 1

    def run(self, jobs: list[tuple[str, str, str]], limit: int = 0, progress: bool = False) -> None:
        """Crop ``(source, split, name)`` jobs; with ``limit``, keep the first ``limit`` crops per split."""
        import multiprocessing

        from tqdm.auto import tqdm

        chunk_size = CHUNK if self.workers > 1 else 1  # in one process the limit check stays exact
        workers = max(1, min(self.workers, -(-len(jobs) // chunk_size)))
        initargs = (self.detector, self.params, str(self.out), self.ext)
        pool = None
        if workers > 1:
            from concurrent.futures import ProcessPoolExecutor

            ctx = multiprocessing.get_context("fork") if sys.platform == "linux" else None
            pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=initargs)
            pool.submit(int).result()  # start the workers now, before tqdm starts its monitor thread
        else:
            _init_worker(*initargs)
        log.info("face crops: %d photo(s), %s detector, %d worker(s)", len(jobs), self.detector.name, workers)
        bar = tqdm(total=len(jobs), disable=not progress, unit="img", desc="faces")
        pending: deque = deque()  # (chunk of jobs, future of their results), in file order
        todo = iter(jobs)
        try:
            while True:
                while len(pending) < 2 * workers:
                    chunk = []
                    while len(chunk) < chunk_size:
                        job = next(todo, None)
                        if job is None:
                            break
                        if limit and self.counts[job[1]] >= limit:
                            bar.update(1)
                            continue
                        chunk.append(job)
                    if not chunk:
                        break
                    pending.append((chunk, pool.submit(_crop_chunk, chunk) if pool else None))
                if not pending:
                    break
                chunk, fut = pending.popleft()
                for job, (kind, reason, skin) in zip(chunk, fut.result() if fut is not None else _crop_chunk(chunk)):
                    bar.update(1)
                    if limit and self.counts[job[1]] >= limit:  # finished after its split filled up:
                        if kind == "ok":  # not counted, not listed, whatever the number of workers
                            (self.out / job[1] / (job[2] + self.ext)).unlink(missing_ok=True)
                    elif kind != "ok":
                        self.skip(job[0], kind, reason)
                    else:
                        self.counts[job[1]] += 1
                        if job[1] in self.skins:
                            self.skins[job[1]].append(skin)
        finally:
            bar.close()
            if pool is not None:
                pool.shutdown(cancel_futures=True)

    def finish(self, source: dict, domains: tuple[str, str]) -> Path:
        from cyclekit import __version__

        for d in ("A", "B"):
            if self.counts["test" + d] == 0:
                self.warnings.append(f"test{d} is empty" + (
                    "" if self.counts["train" + d] else f" and so is train{d}") + "; no photo of domain "
                    f"{d} went to the test split or every one was skipped")
            elif self.counts["train" + d] == 0:
                self.warnings.append(f"train{d} is empty; every photo of domain {d} was skipped")
        for w in self.warnings:
            log.warning("%s (%s)", w, self.out)
        lines = [f"{p}\t{why}" for p, why in self.skipped]
        (self.out / "skipped.txt").write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
        reasons = {k: self.reasons[k] for k in SKIP_KINDS if self.reasons[k]}
        _sync(self.out)  # the crops were written without fsync: durable before faces.json
        tone = {d: training_tone(self.skins["train" + d[0]]) for d in DIRECTIONS if self.skins["train" + d[0]]}
        write_faces_json(self.out, self.params, {"domains": list(domains), "counts": self.counts, "tone": tone,
                                                 "skipped": len(self.skipped),
                                                 "skip_reasons": reasons, "warnings": self.warnings,
                                                 "source": source, "cyclekit_version": __version__})
        if self.skipped:
            log.info("%d photo(s) skipped (%s); see %s", len(self.skipped),
                     ", ".join(f"{k} {v}" for k, v in reasons.items()), self.out / "skipped.txt")
        return self.out


def _sync(out: Path) -> None:
    """Make the crops durable: one ``sync`` where the OS has it, else fsync every crop file."""
    if hasattr(os, "sync"):
        os.sync()
        return
    for split in SPLITS:  # pragma: no cover - Windows
        for entry in os.scandir(out / split) if (out / split).is_dir() else ():
            try:
                with open(entry.path, "rb+") as fh:
                    os.fsync(fh.fileno())
            except OSError:
                pass


def _check_out(out: Path) -> None:
    for s in SPLITS:
        d = out / s
        if d.is_dir() and any(d.iterdir()):
            raise DataError(f"{d} already holds files; choose an empty --out folder")


def _writer(out: PathLike, params: FaceParams, detector, ext: str, workers: Optional[int]) -> _FaceWriter:
    from cyclekit.faces.detectors import make_detector

    out = Path(out)
    params.validate()
    if ext not in (".png", ".jpg"):
        raise ConfigError(f"--format must be png or jpg, got {ext.lstrip('.')}")
    if workers is not None and workers < 0:
        raise ConfigError(f"--workers must be 0 (all cores) or more, got {workers}")
    _check_out(out)
    detector = detector or make_detector(params.detector)
    # record the backend that made the boxes (``auto`` resolves to dlib or haar)
    params = dataclasses.replace(params, detector=getattr(detector, "name", params.detector))
    for s in SPLITS:
        (out / s).mkdir(parents=True, exist_ok=True)
    return _FaceWriter(out, params, detector, ext, workers or os.cpu_count() or 1)


def prepare_celeba(
    root: PathLike, out: PathLike, *, params: Optional[FaceParams] = None, attribute: str = "Male",
    val_to: str = "train", limit: int = 0, ext: str = ".png", detector=None, progress: bool = False,
    workers: Optional[int] = None,
) -> Path:
    """Split CelebA by ``attribute`` (1 -> A, -1 -> B) and the official partition into face crops.

    ``val_to`` puts the validation partition into ``train`` or ``test`` (or ``skip``s it);
    ``limit`` caps the images per output folder (0 = all); ``workers`` processes (None or 0: one
    per core) detect and crop.
    """
    root = Path(root)
    params = params or FaceParams()
    if val_to not in ("train", "test", "skip"):
        raise ConfigError(f"--val-to must be train, test or skip, got {val_to!r}")
    attr_path = _find(root, ["list_attr_celeba.txt", "list_attr_celeba.csv"], "attribute file")
    part_path = _find(root, ["list_eval_partition.txt", "list_eval_partition.csv"], "partition file")
    images = _celeba_images(root)
    names, attrs = read_celeba_attributes(attr_path)
    if attribute not in names:
        raise ConfigError(f"--attribute {attribute!r} is not in {attr_path}; choose one of: {', '.join(names)}")
    col = names.index(attribute)
    partition = read_celeba_partition(part_path)
    writer = _writer(out, params, detector, ext, workers)
    phase = {0: "train", 1: None if val_to == "skip" else val_to, 2: "test"}
    jobs = []
    for name in sorted(attrs):
        if name not in partition:
            writer.skip(name, "not in partition", f"not in {part_path.name}")
            continue
        split = phase[partition[name]]
        if split is not None and attrs[name][col] != 0:
            src = images / name
            if not src.is_file():
                writer.skip(src, "missing", "file listed in the attribute file is missing")
                continue
            jobs.append((str(src), split + ("A" if attrs[name][col] > 0 else "B"), Path(name).stem))
    writer.run(jobs, limit=limit, progress=progress)
    names = ("male", "female") if attribute == "Male" else (attribute.lower(), f"not_{attribute.lower()}")
    return writer.finish({"kind": "celeba", "root": str(root), "attribute": attribute, "val_to": val_to}, names)


def prepare_folders(
    dir_a: PathLike, dir_b: PathLike, out: PathLike, *, params: Optional[FaceParams] = None,
    test_fraction: float = 0.1, seed: int = 0, ext: str = ".png", detector=None, progress: bool = False,
    workers: Optional[int] = None,
) -> Path:
    """Face crops from two folders of photos (A and B), split train/test by a seeded shuffle."""
    from cyclekit.io.images import list_images

    params = params or FaceParams()
    if not 0 <= test_fraction < 1:
        raise ConfigError(f"--test-fraction must be in [0, 1), got {test_fraction}")
    writer = _writer(out, params, detector, ext, workers)
    jobs, seen = [], {}
    for domain, folder in (("A", dir_a), ("B", dir_b)):
        files = list_images(folder)
        order = list(range(len(files)))
        random.Random(f"{seed}-{domain}").shuffle(order)
        n_test = int(round(test_fraction * len(files)))
        test = set(order[:n_test])
        for i, f in enumerate(files):  # sub/a.jpg -> sub__a.png
            name = "__".join(f.relative_to(folder).with_suffix("").parts)
            split = ("test" if i in test else "train") + domain
            key = f"{split}/{name}"
            if key in seen:  # a.jpg and a.png in one folder would overwrite each other
                writer.skip(f, "same name", f"same name as {seen[key]}")
                continue
            seen[key] = f
            jobs.append((str(f), split, name))
    writer.run(jobs, progress=progress)
    names = (Path(dir_a).name or "A", Path(dir_b).name or "B")  # carried into the release and the UI
    return writer.finish({"kind": "folders", "a": str(dir_a), "b": str(dir_b), "test_fraction": test_fraction,
                          "seed": seed}, names)
