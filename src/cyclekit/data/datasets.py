"""Unpaired two-domain datasets whose every random choice is a pure function of (seed, epoch, index).

That is what makes a resumed run bit-identical to an uninterrupted one: the epoch's order
(:meth:`UnpairedDataset.epoch_order`), which B image goes with each A image, the crop and the flip
are all drawn from generators seeded with ``[seed, epoch, stream, index]``, never from global or
per-worker state. :class:`EpochSampler` replays an epoch from any position and shards it across
DDP ranks.

Sources are folders of images (``dataroot/trainA``, ``dataroot/trainB`` or ``--dir-a/--dir-b``)
or, as in the Keras seed code, one ``.npz`` file holding ``arr_0`` (domain A) and ``arr_1``
(domain B) as uint8 ``NxHxWxC`` (or ``NxHxW``) arrays.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

import numpy as np
from torch.utils.data import Dataset, Sampler

from cyclekit.config import DataConfig
from cyclekit.io.images import IMAGE_EXTENSIONS, convert_channels, list_images, load_image, to_tensor
from cyclekit.data.transforms import preprocess
from cyclekit.errors import DataError

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
_MASK = (1 << 64) - 1
# Independent random streams per (seed, epoch): epoch order, B pairing, A transform, B transform.
_ORDER, _PAIR, _TF_A, _TF_B = 0, 1, 2, 3


def _rng(seed: int, epoch: int, stream: int, index: int = 0) -> np.random.Generator:
    return np.random.default_rng([int(seed) & _MASK, int(epoch) & _MASK, stream, int(index)])


# ---------------------------------------------------------------------- sources
class ArraySource:
    """One domain held in memory: a uint8/uint16/float ``NxHxWxC`` array (float = 0..255)."""

    def __init__(self, array: np.ndarray, label: str):
        self.array = _check_npz_array(array, label)
        self.label = label

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def name(self, i: int) -> str:
        return f"{self.label}[{i}]"

    def load(self, i: int, channels: int) -> np.ndarray:
        a = self.array[i]
        if a.dtype == np.uint8:
            f = a.astype(np.float32) / 255.0
        elif a.dtype == np.uint16:
            f = a.astype(np.float32) / 65535.0
        else:  # Keras img_to_array convention: float32 in 0..255
            f = np.clip(a.astype(np.float32) / 255.0, 0.0, 1.0)
        return convert_channels(f, {1: "L", 3: "RGB", 4: "RGBA"}.get(f.shape[2], "multi"),
                                channels, self.name(i))


class FileSource:
    """One domain as a list of image files."""

    def __init__(self, files: Sequence[PathLike]):
        self.files = [Path(f) for f in files]

    def __len__(self) -> int:
        return len(self.files)

    def name(self, i: int) -> str:
        return str(self.files[i])

    def load(self, i: int, channels: int) -> np.ndarray:
        return load_image(self.files[i], channels)


def _names(src) -> list:
    return list(src.files) if isinstance(src, FileSource) else [src.name(i) for i in range(len(src))]


def _as_source(x) -> Union[FileSource, ArraySource]:
    return x if isinstance(x, (FileSource, ArraySource)) else FileSource(x)


def _check_npz_array(a: np.ndarray, label: str) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise DataError(f"{label}: expected an array, got {type(a).__name__}")
    if a.ndim == 3:
        a = a[..., None]
    if a.ndim != 4 or min(a.shape) == 0:
        raise DataError(
            f"{label}: expected images as N x H x W x C (or N x H x W), got shape {a.shape}"
        )
    if a.dtype not in (np.uint8, np.uint16) and not np.issubdtype(a.dtype, np.floating):
        raise DataError(f"{label}: expected uint8 pixels (or float 0..255), got dtype {a.dtype}")
    if np.issubdtype(a.dtype, np.floating):
        lo, hi = float(np.min(a)), float(np.max(a))
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0.0 or hi > 255.0:
            raise DataError(f"{label}: float pixels must be in 0..255 (got {lo:g}..{hi:g})")
        if hi <= 1.0 and hi > 0.0:
            log.warning("%s: float pixels are all <= 1; they are read as 0..255 like the Keras "
                        "seed code, so the images will look black; multiply by 255 first", label)
    return a


def load_npz(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Load a seed-style ``.npz`` (``arr_0`` = domain A, ``arr_1`` = domain B); validated."""
    import zipfile

    path = Path(path)
    if not path.is_file():
        raise DataError(f".npz file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = list(data.keys())
            if "arr_0" not in keys or "arr_1" not in keys:
                raise DataError(
                    f"{path}: expected arrays arr_0 (domain A) and arr_1 (domain B), found "
                    f"{keys or 'none'}; create it with numpy.savez(path, images_a, images_b)"
                )
            a, b = data["arr_0"], data["arr_1"]
    except DataError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    return (_check_npz_array(a, f"{path.name}:arr_0"), _check_npz_array(b, f"{path.name}:arr_1"))


def _is_npz(dataroot: str) -> bool:
    return dataroot.lower().endswith(".npz")


# ---------------------------------------------------------------------- folders
def resolve_domain_dirs(cfg: DataConfig, phase: str = "train") -> tuple[Path, Path]:
    """``--dir-a/--dir-b`` if given, else ``dataroot/{phase}A`` and ``dataroot/{phase}B``."""
    layout = (f"expected layout: DATAROOT/{phase}A/ and DATAROOT/{phase}B/ with images in each "
              f"(or pass --dir-a and --dir-b)")
    if not cfg.dataroot and not (cfg.dir_a and cfg.dir_b):
        raise DataError(f"no training data given: set --dataroot; {layout}")
    if cfg.dataroot and _is_npz(cfg.dataroot) and not (cfg.dir_a and cfg.dir_b):
        raise DataError(f"{cfg.dataroot} is an .npz file, not a folder; load it with load_npz")
    root = Path(cfg.dataroot) if cfg.dataroot else None
    if root is not None and not root.exists() and not (cfg.dir_a and cfg.dir_b):
        raise DataError(f"--dataroot {root} does not exist; {layout}")
    out = []
    for explicit, side in ((cfg.dir_a, "A"), (cfg.dir_b, "B")):
        d = Path(explicit) if explicit else root / f"{phase}{side}"
        if not d.is_dir():
            what = f"--dir-{side.lower()} {d}" if explicit else f"{d}"
            raise DataError(f"{what} is not a folder; {layout}")
        out.append(d)
    return out[0], out[1]


def check_files(files: Sequence[PathLike], channels: int, workers: int = 0):
    """Decode every file now; returns ``(good, bad)`` with ``bad`` a list of (path, reason)."""
    files = [Path(f) for f in files]

    def one(p: Path):
        try:
            load_image(p, channels)
            return None
        except DataError as exc:
            return str(exc)

    workers = workers or min(4, len(files) or 1)
    if workers > 1:
        with ThreadPoolExecutor(workers) as ex:  # Pillow decodes with the GIL released
            reasons = list(ex.map(one, files))
    else:
        reasons = [one(p) for p in files]
    good = [p for p, r in zip(files, reasons) if r is None]
    bad = [(p, r) for p, r in zip(files, reasons) if r is not None]
    return good, bad


# ---------------------------------------------------------------------- datasets
class UnpairedDataset(Dataset):
    """Domain A and domain B images, paired at random (or index-to-index with serial_batches).

    ``len`` is ``max(len(A), len(B))``; item ``i`` uses A image ``i % len(A)`` and a B image drawn
    from ``[seed, epoch, i]`` (``i % len(B)`` with ``serial_batches``). Call :meth:`set_epoch`
    before each epoch. Items are ``{"A": CxHxW, "B": CxHxW, "A_path": str, "B_path": str}`` with
    tensors in ``[-1, 1]``.
    """

    def __init__(self, files_a, files_b, cfg: DataConfig, channels_a: int, channels_b: int,
                 seed: int, train: bool = True):
        self.src_a, self.src_b = _as_source(files_a), _as_source(files_b)
        for src, side in ((self.src_a, "A"), (self.src_b, "B")):
            if len(src) == 0:
                raise DataError(f"domain {side} has no images")
        self.cfg = cfg
        self.channels_a, self.channels_b = channels_a, channels_b
        self.seed, self.train, self.epoch = int(seed), bool(train), 0
        self._bad: dict[int, set[int]] = {0: set(), 1: set()}  # known-bad indices per domain
        self._order_cache: Optional[tuple[int, np.ndarray]] = None

    @classmethod
    def from_config(cls, cfg: DataConfig, model_cfg, seed: int, phase: str = "train"):
        """Build from ``cfg.dataroot`` (folders or ``.npz``), honouring ``max_images``."""
        if cfg.dataroot and _is_npz(cfg.dataroot) and not (cfg.dir_a and cfg.dir_b):
            a, b = load_npz(cfg.dataroot)
            name = Path(cfg.dataroot).name
            src_a, src_b = ArraySource(a, f"{name}:arr_0"), ArraySource(b, f"{name}:arr_1")
            if cfg.max_images:
                src_a.array, src_b.array = src_a.array[: cfg.max_images], src_b.array[: cfg.max_images]
        else:
            dir_a, dir_b = resolve_domain_dirs(cfg, phase)
            files_a, files_b = list_images(dir_a), list_images(dir_b)
            if cfg.max_images:
                files_a, files_b = files_a[: cfg.max_images], files_b[: cfg.max_images]
            src_a, src_b = FileSource(files_a), FileSource(files_b)
        log.info("domain A: %d images, domain B: %d images", len(src_a), len(src_b))
        return cls(src_a, src_b, cfg, model_cfg.in_channels, model_cfg.out_channels, seed,
                   train=(phase == "train"))

    @property
    def files_a(self) -> list:
        """Domain A's files (or ``.npz`` item names)."""
        return _names(self.src_a)

    @property
    def files_b(self) -> list:
        return _names(self.src_b)

    def __len__(self) -> int:
        return max(len(self.src_a), len(self.src_b))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def epoch_order(self, epoch: Optional[int] = None) -> np.ndarray:
        """The order of the epoch's items: a seeded permutation (identity for serial/eval)."""
        epoch = self.epoch if epoch is None else int(epoch)
        n = len(self)
        if not self.train or self.cfg.serial_batches:
            return np.arange(n)
        if self._order_cache is None or self._order_cache[0] != epoch:
            self._order_cache = (epoch, _rng(self.seed, epoch, _ORDER).permutation(n))
        return self._order_cache[1].copy()

    def _load(self, side: int, i: int, stream: int, index: int) -> tuple[np.ndarray, str]:
        """Load + preprocess image ``i`` of a domain; in skip mode fall through to the next good one.

        The transform's generator is rebuilt from ``(seed, epoch, stream, index)`` for every
        attempt, so the result never depends on which files failed before.
        """
        src = self.src_a if side == 0 else self.src_b
        channels = self.channels_a if side == 0 else self.channels_b
        n = len(src)
        for step in range(n):
            j = (i + step) % n
            if j in self._bad[side]:
                continue
            try:
                img = src.load(j, channels)
                rng = _rng(self.seed, self.epoch, stream, index)
                return preprocess(img, self.cfg, rng, self.train, path=src.name(j)), src.name(j)
            except DataError as exc:
                if self.cfg.on_bad_file != "skip":
                    raise
                self._bad[side].add(j)
                log.warning("skipping bad file (--on-bad-file skip): %s", exc)
        raise DataError(f"domain {'AB'[side]}: none of its {n} files could be used")

    def validate(self, workers: int = 0) -> list[tuple[str, str]]:
        """Decode every file now, before training starts; returns ``[(file, reason), ...]``.

        With ``on_bad_file='error'`` any bad file raises one DataError listing them; with
        ``'skip'`` they are logged, remembered and skipped from then on.
        """
        bad_all: list[tuple[str, str]] = []
        for side, src, ch in ((0, self.src_a, self.channels_a), (1, self.src_b, self.channels_b)):
            if isinstance(src, ArraySource):
                continue  # validated when loaded
            _, bad = check_files(src.files, ch, workers=workers)
            index = {p: k for k, p in enumerate(src.files)}
            for p, reason in bad:
                self._bad[side].add(index[p])
                bad_all.append((str(p), reason))
        if bad_all and self.cfg.on_bad_file != "skip":
            shown = "\n  ".join(r for _, r in bad_all[:10])
            more = f"\n  ... and {len(bad_all) - 10} more" if len(bad_all) > 10 else ""
            raise DataError(f"{len(bad_all)} unreadable image(s); fix or remove them, or pass "
                            f"--on-bad-file skip:\n  {shown}{more}")
        for p, reason in bad_all:
            log.warning("skipping bad file (--on-bad-file skip): %s", reason)
        for side, src in ((0, self.src_a), (1, self.src_b)):
            if len(self._bad[side]) >= len(src):
                raise DataError(f"domain {'AB'[side]}: none of its {len(src)} files can be read")
        return bad_all

    def __getitem__(self, index: int) -> dict:
        i = int(index)
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} items")
        e = self.epoch
        if self.cfg.serial_batches:
            ib = i % len(self.src_b)
        else:
            ib = int(_rng(self.seed, e, _PAIR, i).integers(len(self.src_b)))
        a, a_name = self._load(0, i % len(self.src_a), _TF_A, i)
        b, b_name = self._load(1, ib, _TF_B, i)
        return {"A": to_tensor(a), "B": to_tensor(b), "A_path": a_name, "B_path": b_name}


class EpochSampler(Sampler):
    """Yield ``dataset.epoch_order(epoch)`` from global position ``start``, sharded over ranks.

    ``start`` counts samples consumed by all ranks together (``steps * batch_size * world_size``
    when resuming). The rest of the order is padded by wrapping around to a multiple of
    ``world_size`` (as DistributedSampler does) and rank ``r`` takes items ``r::world_size``.
    """

    def __init__(self, dataset, epoch: int, start: int = 0, rank: int = 0, world_size: int = 1):
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad rank {rank} for world size {world_size}")
        if start < 0:
            raise ValueError(f"start must not be negative, got {start}")
        order = np.asarray(dataset.epoch_order(epoch), dtype=np.int64)
        rest = order[min(start, len(order)):]
        if len(rest) and len(rest) % world_size:
            extra = world_size - len(rest) % world_size
            rest = np.concatenate([rest, np.resize(order, extra)])
        self.indices = rest[rank::world_size].tolist()
        self.epoch, self.start, self.rank, self.world_size = epoch, start, rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


# ---------------------------------------------------------------------- test sets
def _find_gt(gt_dir: Path, rel: Path) -> Optional[Path]:
    exact = gt_dir / rel
    if exact.is_file():
        return exact
    for ext in sorted(IMAGE_EXTENSIONS | {".npy"}):
        for cand in (exact.with_suffix(ext), exact.with_suffix(ext.upper())):
            if cand.is_file():
                return cand
    return None


def list_test_pairs(dataroot: PathLike, domain: str = "A") -> list[tuple[Path, Optional[Path]]]:
    """``(input, ground_truth_or_None)`` for ``dataroot/test{domain}``; ground truth (the true
    translation into the other domain) lives in ``test{domain}_gt`` under the same file name
    (any image extension)."""
    if domain not in ("A", "B"):
        raise ValueError(f"domain must be 'A' or 'B', got {domain!r}")
    root = Path(dataroot)
    test_dir, gt_dir = root / f"test{domain}", root / f"test{domain}_gt"
    if not test_dir.is_dir():
        raise DataError(f"{test_dir} is not a folder; expected layout: DATAROOT/test{domain}/ "
                        f"(optionally DATAROOT/test{domain}_gt/ with ground truth)")
    files = list_images(test_dir)
    if not gt_dir.is_dir():
        return [(f, None) for f in files]
    return [(f, _find_gt(gt_dir, f.relative_to(test_dir))) for f in files]
