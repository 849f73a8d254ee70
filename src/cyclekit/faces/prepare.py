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
skipped and listed with the reason in ``skipped.txt``. ``faces.json`` records the geometry, and
the trainer copies its margin into the model's config so ``swap`` reuses it.
"""
from __future__ import annotations

import csv
import logging
import random
from pathlib import Path
from typing import Iterable, Optional, Union

import numpy as np

from cyclekit.errors import ConfigError, DataError
from cyclekit.faces.params import FaceParams, write_faces_json

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


# ---------------------------------------------------------------------- writer
class _FaceWriter:
    """Detect, crop and write one photo into a split; collects skipped files."""

    def __init__(self, out: Path, params: FaceParams, detector, ext: str) -> None:
        self.out, self.params, self.detector, self.ext = out, params, detector, ext
        self.counts = {s: 0 for s in SPLITS}
        self.skipped: list[tuple[str, str]] = []

    def add(self, src: Path, split: str, name: Optional[str] = None) -> bool:
        from cyclekit.data.images import load_image, save_image
        from cyclekit.faces.align import face_crop

        try:
            img = load_image(src, 3)
        except DataError as exc:
            self.skipped.append((str(src), f"unreadable: {exc}"))
            return False
        faces = self.detector.detect(img)
        if not faces:
            self.skipped.append((str(src), "no face found"))
            return False
        if faces[0].side < self.params.min_face:
            self.skipped.append((str(src), f"face too small ({faces[0].side:.0f} px < {self.params.min_face})"))
            return False
        crop, _ = face_crop(img, faces[0], self.params)
        save_image(self.out / split / ((name or src.stem) + self.ext), crop)
        self.counts[split] += 1
        return True

    def finish(self, source: dict) -> Path:
        from cyclekit import __version__

        lines = [f"{p}\t{why}" for p, why in self.skipped]
        (self.out / "skipped.txt").write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
        write_faces_json(self.out, self.params, {"counts": self.counts, "skipped": len(self.skipped),
                                                 "source": source, "cyclekit_version": __version__})
        if self.skipped:
            log.info("%d photo(s) skipped (no usable face); see %s", len(self.skipped), self.out / "skipped.txt")
        return self.out


def _check_out(out: Path) -> None:
    for s in SPLITS:
        d = out / s
        if d.is_dir() and any(d.iterdir()):
            raise DataError(f"{d} already holds files; choose an empty --out folder")


def _writer(out: PathLike, params: FaceParams, detector, ext: str) -> _FaceWriter:
    from cyclekit.faces.detect import make_detector

    out = Path(out)
    params.validate()
    if ext not in (".png", ".jpg"):
        raise ConfigError(f"--format must be png or jpg, got {ext.lstrip('.')}")
    _check_out(out)
    for s in SPLITS:
        (out / s).mkdir(parents=True, exist_ok=True)
    return _FaceWriter(out, params, detector or make_detector(params.detector), ext)


def prepare_celeba(
    root: PathLike, out: PathLike, *, params: Optional[FaceParams] = None, attribute: str = "Male",
    val_to: str = "train", limit: int = 0, ext: str = ".png", detector=None, progress: bool = False,
) -> Path:
    """Split CelebA by ``attribute`` (1 -> A, -1 -> B) and the official partition into face crops.

    ``val_to`` puts the validation partition into ``train`` or ``test`` (or ``skip``s it);
    ``limit`` caps the images per output folder (0 = all).
    """
    from tqdm.auto import tqdm

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
    writer = _writer(out, params, detector, ext)
    phase = {0: "train", 1: None if val_to == "skip" else val_to, 2: "test"}
    jobs = []
    for name in sorted(attrs):
        if name not in partition:
            writer.skipped.append((name, f"not in {part_path.name}"))
            continue
        split = phase[partition[name]]
        if split is not None and attrs[name][col] != 0:
            jobs.append((name, split + ("A" if attrs[name][col] > 0 else "B")))
    for name, split in tqdm(jobs, disable=not progress, unit="img", desc="faces"):
        if limit and writer.counts[split] >= limit:
            continue
        src = images / name
        if not src.is_file():
            writer.skipped.append((str(src), "file listed in the attribute file is missing"))
            continue
        writer.add(src, split)
    return writer.finish({"kind": "celeba", "root": str(root), "attribute": attribute, "val_to": val_to})


def prepare_folders(
    dir_a: PathLike, dir_b: PathLike, out: PathLike, *, params: Optional[FaceParams] = None,
    test_fraction: float = 0.1, seed: int = 0, ext: str = ".png", detector=None, progress: bool = False,
) -> Path:
    """Face crops from two folders of photos (A and B), split train/test by a seeded shuffle."""
    from tqdm.auto import tqdm

    from cyclekit.data.images import list_images

    params = params or FaceParams()
    if not 0 <= test_fraction < 1:
        raise ConfigError(f"--test-fraction must be in [0, 1), got {test_fraction}")
    writer = _writer(out, params, detector, ext)
    jobs = []
    for domain, folder in (("A", dir_a), ("B", dir_b)):
        files = list_images(folder)
        order = list(range(len(files)))
        random.Random(f"{seed}-{domain}").shuffle(order)
        n_test = int(round(test_fraction * len(files)))
        test = set(order[:n_test])
        for i, f in enumerate(files):  # sub/a.jpg -> sub__a.png
            name = "__".join(f.relative_to(folder).with_suffix("").parts)
            jobs.append((f, ("test" if i in test else "train") + domain, name))
    seen: dict[str, Path] = {}
    for src, split, name in tqdm(jobs, disable=not progress, unit="img", desc="faces"):
        key = f"{split}/{name}"
        if key in seen:  # a.jpg and a.png in one folder would overwrite each other
            writer.skipped.append((str(src), f"same name as {seen[key]}"))
            continue
        seen[key] = src
        writer.add(src, split, name)
    return writer.finish({"kind": "folders", "a": str(dir_a), "b": str(dir_b), "test_fraction": test_fraction,
                          "seed": seed})
