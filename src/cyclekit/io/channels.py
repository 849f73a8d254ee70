"""A processed photo written back as its file had it: channels and colour profile.

:func:`cyclekit.io.images.load_image` gives a photo as many channels as asked; a tool that edits
photos (``cyclekit swap``, the web page's face mode) reads RGBA, so it keeps an alpha channel, and
hands back what it made through these two, so a file without alpha comes back without it and a
grey photo comes back grey (its one channel, and its alpha if it had one); :func:`icc_profile`
gives the profile to write back with it, and :func:`png_with_icc` embeds one where Pillow cannot
(16-bit colour PNGs).
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Optional, Union

import numpy as np


def without_opaque_alpha(arr: np.ndarray) -> np.ndarray:
    """An ``HxWx4`` array whose every pixel is opaque (a file without alpha, read with 4 channels)
    as ``HxWx3``; anything else as it is."""
    return arr[..., :3] if arr.ndim == 3 and arr.shape[2] == 4 and float(arr[..., 3].min()) == 1.0 else arr


def is_grey(arr: np.ndarray) -> bool:
    """Three or four channels whose colour channels are equal everywhere: a grey file, decoded."""
    return (arr.ndim == 3 and arr.shape[2] in (3, 4) and np.array_equal(arr[..., 0], arr[..., 1])
            and np.array_equal(arr[..., 1], arr[..., 2]))


def grey_as_source(source: np.ndarray, result: np.ndarray) -> np.ndarray:
    """``result`` (``HxWx3`` or ``x4``) as grey (the mean of its colour channels, plus its alpha)
    when ``source`` :func:`is_grey`; otherwise as it is. The dtype is kept."""
    if not (is_grey(source) and result.ndim == 3 and result.shape[2] in (3, 4)):
        return result
    grey = result[..., :3].mean(axis=2, keepdims=True, dtype=np.float32)
    if np.issubdtype(result.dtype, np.integer):
        grey = np.round(grey)
    return np.concatenate([grey.astype(result.dtype), result[..., 3:]], axis=2)


def icc_profile(path: Union[str, Path]) -> Optional[bytes]:
    """The colour profile embedded in an image file (None without one, or unreadable), for
    :func:`cyclekit.io.images.save_image` to write back: a Display P3 phone photo keeps its colours."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.info.get("icc_profile") or None
    except Exception:  # noqa: BLE001 - load_image gives the real error
        return None


def png_with_icc(png: bytes, icc: Optional[bytes]) -> bytes:
    """``png`` (an encoded PNG without a profile, e.g. OpenCV's 16-bit colour) with ``icc`` in an
    ``iCCP`` chunk right after the header, where the PNG specification puts it."""
    if not icc:
        return png
    ihdr_end = 8 + 4 + 4 + 13 + 4  # signature, then IHDR: length, type, 13 bytes of data, CRC
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise ValueError("not a PNG stream")
    body = b"ICC profile\x00\x00" + zlib.compress(icc)  # name, NUL, compression method 0 (deflate)
    chunk = struct.pack(">I", len(body)) + b"iCCP" + body + struct.pack(">I", zlib.crc32(b"iCCP" + body))
    return png[:ihdr_end] + chunk + png[ihdr_end:]


def profile_for(icc: Optional[bytes], channels: int) -> Optional[bytes]:
    """``icc`` when its colour space suits an image of ``channels`` (a grey profile for 1 or 2, an
    RGB one for 3 or 4: the profile's header says which, bytes 16-20), else None: a grey photo
    written as RGBA (16-bit grey + alpha) must not carry its grey profile."""
    if not icc or len(icc) < 20:
        return None
    space = icc[16:20]
    return icc if (space == b"GRAY") == (channels <= 2) and space in (b"GRAY", b"RGB ") else None
