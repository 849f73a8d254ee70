"""Which files of a folder are images: the one list of extensions and the one folder lister."""
from __future__ import annotations

from pathlib import Path
from typing import Union

from cyclekit.errors import DataError

PathLike = Union[str, Path]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
# Raw arrays (HxW or HxWxC) for data with channel counts no image format holds; listed too.
ARRAY_EXTENSIONS = frozenset({".npy"})
_LISTED = IMAGE_EXTENSIONS | ARRAY_EXTENSIONS


def is_hidden(relative: PathLike) -> bool:
    """A path inside a listed folder that listings skip: a hidden entry (``.DS_Store``, macOS
    ``._x.png`` resource forks) or anything under one, or under ``__MACOSX/``."""
    return any(part.startswith(".") or part == "__MACOSX" for part in Path(relative).parts)


def list_images(folder: PathLike, recursive: bool = True) -> list[Path]:
    """All image (and ``.npy``) files under ``folder``, sorted; hidden files are ignored.

    Hidden entries (``.DS_Store``, macOS ``._x.png`` resource forks, ``__MACOSX/``) are skipped.
    Raises :class:`DataError` when the folder is missing or holds no images.
    """
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"image folder not found: {folder}")
    if not folder.is_dir():
        raise DataError(f"expected a folder of images, got a file: {folder}")
    pattern = folder.rglob("*") if recursive else folder.iterdir()
    out = []
    for p in pattern:
        if is_hidden(p.relative_to(folder)):
            continue
        if p.suffix.lower() in _LISTED and p.is_file():
            out.append(p)
    if not out:
        exts = ", ".join(sorted(IMAGE_EXTENSIONS))
        where = " (searched sub-folders too)" if recursive else ""
        raise DataError(f"no images ({exts}) found in {folder}{where}")
    return sorted(out)
