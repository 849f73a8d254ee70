"""Translate images, folders and globs in bounded memory.

:func:`translate_paths` first plans every output (so that two inputs can never write the same
file, and nothing is written when the plan is wrong), checks every input's header, then streams:
a small thread pool decodes at most ``prefetch`` images ahead, same-size images are batched, and
each output is written atomically as soon as its batch is done. Peak memory depends on the batch
size and the largest image, not on how many images there are (``benchmarks/bench_stream.py``).
"""
from __future__ import annotations

import glob
import logging
import mimetypes
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence, Union

import torch

from cyclekit.errors import DataError, OutputError, UserError
from cyclekit.infer.translator import Translator
from cyclekit.io.images import ARRAY_EXTENSIONS, IMAGE_EXTENSIONS, list_images, load_image, probe_image, save_image, \
    to_image, to_tensor

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
FILE_TYPES = mimetypes.MimeTypes()  # Python's built-in table only: not the machine's /etc/mime.types


def expand_inputs(inputs: Sequence[PathLike]) -> list[tuple[Path, Path]]:
    """Expand files, folders (recursive) and globs to (file, path relative to its root)."""
    out: list[tuple[Path, Path]] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out += [(f, f.relative_to(p)) for f in list_images(p)]
        elif p.is_file():
            out.append((p, Path(p.name)))
        else:
            matches = sorted(glob.glob(str(item), recursive=True))
            files = [Path(m) for m in matches if Path(m).suffix.lower() in IMAGE_EXTENSIONS]
            if not files:
                raise DataError(f"input not found: {item} (give an image, a folder or a quoted glob)")
            out += [(f, Path(f.name)) for f in files]
    return out


def names_a_file(out: PathLike, extensions=IMAGE_EXTENSIONS | ARRAY_EXTENSIONS) -> bool:
    """``--out`` names one output file rather than a folder: it has one of ``extensions`` (an
    image's or ``.npy``), is not an existing folder, and was not written with a trailing slash."""
    text = os.fspath(out)
    return (not text.endswith(("/", os.sep)) and not Path(text).is_dir()
            and Path(text).suffix.lower() in extensions)


def refuse_other_file_type(out: PathLike, writable=IMAGE_EXTENSIONS | ARRAY_EXTENSIONS) -> None:
    """Refuse an ``--out`` such as ``swapped.txt`` or ``clip.mp4`` (for images): a name whose
    extension is a known file type (Python's own :mod:`mimetypes` table, the same on every
    machine) that is none of ``writable`` would otherwise silently become a folder of that name.
    Other dotted names (``results.old``) are folders; a name written with a trailing slash is a
    folder; an existing path is left to the caller."""
    text = os.fspath(out)
    suffix = Path(text).suffix.lower()
    if (text.endswith(("/", os.sep)) or Path(text).exists() or suffix in writable
            or FILE_TYPES.guess_type("x" + suffix, strict=False)[0] is None):
        return
    kinds = ", ".join(sorted(e for e in writable if e not in (".jpeg", ".tiff")))
    raise UserError(f"--out {text}: {suffix} files cannot be written here; name a file ending in {kinds}, "
                    f"or a folder (write {text}/ for a folder of that name)")


def plan_outputs(pairs: Sequence[tuple[Path, Path]], out_dir: PathLike, suffix: str = "") -> list[tuple[Path, Path]]:
    """``(source, destination)`` for every input, refusing anything that would lose data.

    Outputs keep the input's relative path with ``.png``; when two inputs would get the same name
    (``x.png`` and ``x.jpg``) the later ones keep their extension (``x.jpg.png``). Two inputs that
    still collide (the same relative name from two folders), an output that would overwrite an
    input, an ``--out`` that is a file and a ``--suffix`` with a path separator are refused before
    anything is written, and so is a plain output name that already exists in its input's own
    folder (``-o`` the input folder, where ``a.jpg`` would replace the user's ``a.png``; with a
    ``--suffix`` an earlier run's output is replaced). An ``--out`` that :func:`names_a_file`
    (``-o swapped.jpg``) is the output of a single input, in the format of its extension,
    replacing a file of that name.
    """
    if any(sep in suffix for sep in ("/", "\\", os.sep)) or suffix in (".", ".."):
        raise UserError(f"--suffix {suffix!r} must not contain a path separator; it is added to file names")
    refuse_other_file_type(out_dir)
    if names_a_file(out_dir):  # -o swapped.jpg
        files = list(dict.fromkeys(src.resolve() for src, _ in pairs))
        if len(files) != 1:
            raise UserError(f"--out {out_dir} names one image file but {len(files)} images were given; "
                            "give a folder for the outputs (--out OUT/)")
        if suffix:
            raise UserError(f"--suffix {suffix!r} names outputs in a folder; --out {out_dir} already names the file")
        if Path(out_dir).resolve() == files[0]:
            raise UserError(f"output {out_dir} would overwrite the input; choose another --out")
        return [(pairs[0][0], Path(out_dir))]
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is a file, not a folder; give a folder for the outputs")
    sources = {src.resolve() for src, _ in pairs}
    unique: dict[Path, Path] = {}  # the same file named twice (a folder and a glob): once
    for src, rel in pairs:
        unique.setdefault(src.resolve(), rel)
    default = {src: out_dir / rel.with_name(rel.stem + suffix + ".png") for src, rel in unique.items()}
    keeper: dict[Path, Path] = {}  # default output -> the input that keeps the plain name (a .png first)
    for src in sorted(unique, key=lambda s: unique[s].suffix.lower() != ".png"):
        keeper.setdefault(default[src].resolve(), src)
    taken: dict[Path, Path] = {}
    jobs = []
    for src, rel in unique.items():
        dst = default[src]
        owner = keeper[dst.resolve()]
        if owner != src:
            if unique[owner].name == rel.name:  # the same file name from two places: no honest rename
                raise UserError(f"{owner} and {src} would both be written to {dst}; translate them "
                                "into different --out folders or give their parent folder instead")
            dst = out_dir / rel.with_name(rel.name + suffix + ".png")  # x.jpg -> x.jpg.png
        key = dst.resolve()
        if key in taken or (key in keeper and keeper[key] != src):
            other = taken.get(key) or keeper[key]
            raise UserError(f"{other} and {src} would both be written to {dst}; translate them "
                            "into different --out folders or give their parent folder instead")
        if key in sources:
            raise UserError(f"output {dst} would overwrite the input {key}; choose another --out folder")
        if not suffix and key.parent == src.parent and dst.exists():  # a.jpg -> a.png, where the user's a.png is
            raise UserError(f"output {dst} would overwrite a file next to the input {src}; choose another "
                            "--out folder (or a --suffix)")
        taken[key] = src
        jobs.append((src, dst))
    return jobs


@dataclass
class Translated:
    source: Path
    output: Path


@dataclass
class StreamResult:
    """What :func:`translate_paths` did: iterate over it for the :class:`Translated` files."""

    written: list[Translated] = field(default_factory=list)  # in the order they were written
    skipped: list[str] = field(default_factory=list)  # one-line reasons

    def __len__(self) -> int:
        return len(self.written)

    def __iter__(self) -> Iterator[Translated]:
        return iter(self.written)


# A batch holds at most this many pixels (one image when it alone is larger): batching does not
# speed up large images on a CPU, and each image's activations cost hundreds of MB. Decoded images
# waiting for the model are bounded the same way (at most 4x this, and ``prefetch`` images).
MAX_BATCH_PIXELS = 1_048_576


def batch_size_for(shape: tuple[int, int], batch_size: int) -> int:
    return max(1, min(batch_size, MAX_BATCH_PIXELS // max(1, shape[0] * shape[1])))


def _batches(jobs: list[tuple[Path, Path, tuple[int, int]]], batch_size: int) -> Iterator[list]:
    """Same-size jobs in groups of at most ``batch_size`` (sizes from the headers)."""
    by_size: dict[tuple[int, int], list] = {}
    for job in jobs:
        by_size.setdefault(job[2], []).append(job)
    for shape, group in by_size.items():
        n = batch_size_for(shape, batch_size)
        for i in range(0, len(group), n):
            yield group[i:i + n]


SKIP_HINT = "fix or remove it, or pass --skip-bad to skip unreadable images"


def translate_paths(
    translator: Translator, inputs: Sequence[PathLike], out_dir: PathLike, batch_size: int = 4,
    suffix: str = "", progress: bool = False, on_bad_file: str = "error", prefetch: int = 0,
) -> StreamResult:
    """Translate every input image and write ``out_dir/<relative path>.png`` (see the module notes).

    ``on_bad_file="error"`` stops at the first unreadable input before anything is written (found
    by the header check) or, for a file that only fails when decoded, with the outputs so far
    complete; ``"skip"`` skips such files with a warning. ``prefetch`` bounds the decoded images
    waiting for the model (default: two batches).
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}")
    pairs = expand_inputs(inputs)
    if not pairs:
        raise DataError("no input images given")
    result = StreamResult()
    jobs = []
    for src, dst in plan_outputs(pairs, out_dir, suffix):
        try:
            jobs.append((src, dst, probe_image(src)))
        except DataError as exc:
            if on_bad_file != "skip":
                raise DataError(f"{exc}; {SKIP_HINT}") from exc
            log.warning("skipping %s", exc)
            result.skipped.append(str(exc))
    channels = translator.cfg.in_channels
    prefetch = prefetch or 2 * batch_size
    order = [job for batch in _batches(jobs, batch_size) for job in batch]
    bar = tqdm(total=len(order), disable=not progress, unit="img", desc="translate")
    try:
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="decode") as pool:
            ahead: deque = deque()
            feed = iter(order)

            def top_up() -> None:
                pixels = sum(job[2][0] * job[2][1] for job, _ in ahead)
                while len(ahead) < prefetch and (len(ahead) < 2 or pixels < 4 * MAX_BATCH_PIXELS):
                    job = next(feed, None)
                    if job is None:
                        return
                    ahead.append((job, pool.submit(load_image, job[0], channels)))
                    pixels += job[2][0] * job[2][1]

            while True:
                top_up()
                if not ahead:
                    break
                batch, size = [], None
                while ahead and len(batch) < batch_size_for(ahead[0][0][2], batch_size):
                    (src, dst, shape), fut = ahead[0]
                    if size is not None and shape != size:
                        break
                    ahead.popleft()
                    try:
                        img = fut.result()
                    except DataError as exc:
                        if on_bad_file != "skip":
                            raise DataError(f"{exc}; {SKIP_HINT}") from exc
                        log.warning("skipping %s", exc)
                        result.skipped.append(str(exc))
                        bar.update(1)
                        top_up()
                        continue
                    if img.shape[:2] != shape:  # header and pixels disagree: batch it alone
                        if batch:
                            ahead.appendleft(((src, dst, img.shape[:2]), _done(img)))
                            break
                        shape = img.shape[:2]
                    size = shape
                    batch.append((src, dst, img))
                    top_up()
                if not batch:
                    continue
                y = translator(torch.stack([to_tensor(img) for _, _, img in batch])).cpu()
                for (src, dst, _), out in zip(batch, y):
                    save_image(dst, to_image(out))
                    result.written.append(Translated(src, dst))
                bar.update(len(batch))
                del batch, y
    except OutputError as exc:
        raise OutputError(f"{exc} ({len(result.written)} of {len(order)} outputs were written to "
                          f"{out_dir} before this)") from None
    finally:
        bar.close()
    return result


class _done:
    """A finished future holding ``value`` (to put a decoded image back in the queue)."""

    def __init__(self, value) -> None:
        self.value = value

    def result(self):
        return self.value
