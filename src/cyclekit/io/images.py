"""Robust image I/O: every file becomes a float32 ``HxWxC`` array in ``[0, 1]``.

Decisions (documented once, relied on everywhere):

* **Precision.** 8-bit files are divided by 255, 16-bit files by 65535 without passing through
  8 bits (Pillow's ``I;16``/``I`` modes for grayscale; OpenCV or tifffile for 16-bit colour, which
  Pillow would silently reduce to 8 bits). Float files (``F`` TIFF, float ``.npy``) are taken as
  already in ``[0, 1]`` and clipped.
* **Alpha.** When 1 or 3 channels are requested, transparency is *composited on white* (what an
  image viewer shows; the colour under fully transparent pixels is arbitrary). With 4 channels the
  alpha channel is kept (a file without alpha gets an opaque one); with 2 channels a
  gray + alpha file is returned as is.
* **Channels.** 1 = luminance with the ITU-R 601 weights of Pillow's ``L`` (computed in float),
  3 = RGB (gray replicated), 4 = RGBA. Any other count needs a file with exactly that many channels
  (a multi-channel TIFF, read with tifffile when installed, or a ``.npy`` array ``HxWxC``).
* **Orientation.** The EXIF orientation tag is applied, so a portrait phone photo is portrait.
* **Errors.** A missing, empty, truncated or non-image file raises :class:`DataError` naming the
  file and the problem. Pillow is made to decode the whole file, so truncation is detected
  (``LOAD_TRUNCATED_IMAGES`` is never set).
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path
from typing import Optional, Union

import numpy as np

from cyclekit.errors import DataError, MissingDependencyError, require
from cyclekit.io.channels import png_with_icc, profile_for
from cyclekit.io.files import atomic_path
from cyclekit.io.listing import ARRAY_EXTENSIONS, IMAGE_EXTENSIONS, is_hidden, list_images  # noqa: F401 (API)
from cyclekit.io.tensors import to_image, to_tensor  # noqa: F401  (part of this module's API)

log = logging.getLogger(__name__)

PathLike = Union[str, Path]

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601-2, as Pillow's "L": the one brightness
_KIND_OF = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
_warned: set[str] = set()


def _kind_of(k: int) -> str:
    """What the channels of a raw array mean: 2 channels are not assumed to be gray + alpha."""
    return {1: "L", 3: "RGB", 4: "RGBA"}.get(k, "multi")


def _warn_once(key: str, msg: str) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning(msg)


# ---------------------------------------------------------------------- loading
def _existing_file(path: PathLike) -> Path:
    """``path`` as a Path, or a DataError when it is missing, not a file, or empty."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image not found: {path}" if not path.exists() else f"not a file: {path}")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty (0 bytes); delete it or re-export the image")
    return path


def load_image(path: PathLike, channels: int) -> np.ndarray:
    """Read ``path`` as a float32 ``HxWxchannels`` array in ``[0, 1]`` (see the module notes)."""
    if channels < 1:
        raise ValueError(f"channels must be at least 1, got {channels}")
    path = _existing_file(path)
    if path.suffix.lower() == ".npy":
        arr = _read_npy(path)
        kind = _kind_of(arr.shape[2])
    else:
        arr, kind = _read_image(path, channels)
    return convert_channels(arr, kind, channels, str(path))


def decode_image_bytes(data: bytes, channels: int, name: str = "the upload",
                       formats: Optional[tuple[str, ...]] = None) -> np.ndarray:
    """Decode an image held in memory exactly as :func:`load_image` decodes a file (16-bit,
    alpha, EXIF and channel rules included); ``formats`` limits the Pillow decoders tried.
    Raises :class:`DataError` naming ``name``."""
    if not data:
        raise DataError(f"{name}: the image is empty (0 bytes)")
    arr, kind = _read_image(Path(name), channels, data=bytes(data), formats=formats)
    return convert_channels(arr, kind, channels, name)


def probe_image(path: PathLike) -> tuple[int, int]:
    """``(height, width)`` of an image file as :func:`load_image` will return it (EXIF rotation
    applied), from its header alone: a fast check that every input of a run can be opened.
    Raises :class:`DataError` like :func:`load_image` for missing, empty or non-image files
    (a file truncated after its header is only found when it is decoded)."""
    from PIL import Image, UnidentifiedImageError

    path = _existing_file(path)
    if path.suffix.lower() == ".npy":
        try:
            a = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise DataError(f"{path}: not a readable .npy array ({exc})") from None
        if a.ndim not in (2, 3):
            raise DataError(f"{path}: expected an HxW or HxWxC array, got shape {a.shape}")
        return int(a.shape[0]), int(a.shape[1])
    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1)
    except UnidentifiedImageError:
        if path.suffix.lower() in (".tif", ".tiff"):
            arr = load_image(path, 1)  # tifffile fallback: decode to know
            return int(arr.shape[0]), int(arr.shape[1])
        raise DataError(f"{path}: not a recognised image file (is it really a {path.suffix or 'image'}? "
                        "re-export it as PNG or JPEG, or remove it)") from None
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: image too large to open safely ({exc})") from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError) as exc:
        raise DataError(f"{path}: cannot read the image header: {exc or type(exc).__name__}") from None
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)


def convert_channels(arr: np.ndarray, kind: str, channels: int, name: str = "image") -> np.ndarray:
    """Convert a float ``HxWxK`` array whose channels mean ``kind`` (L, LA, RGB, RGBA or multi)."""
    k = arr.shape[2]
    if k == channels and (kind != "LA" or channels == 2):
        return np.ascontiguousarray(arr, dtype=np.float32)
    if kind == "multi" or channels not in (1, 3, 4):
        raise DataError(
            f"{name}: has {k} channel(s) but {channels} were requested; multi-channel data needs "
            f"a file with exactly {channels} channels (a TIFF or a .npy array HxWx{channels})"
        )
    # Composite alpha on white for 1/3 outputs; keep it for 4.
    alpha = None
    if kind in ("LA", "RGBA"):
        color, alpha = arr[..., :-1], arr[..., -1:]
        if channels != 4:
            color, alpha = color * alpha + (1.0 - alpha), None
    else:
        color = arr
    if channels == 1:
        out = color if color.shape[2] == 1 else (color @ LUMA)[..., None]
    else:
        rgb = color if color.shape[2] == 3 else np.repeat(color, 3, axis=2)
        if channels == 3:
            out = rgb
        else:
            a = alpha if alpha is not None else np.ones_like(rgb[..., :1])
            out = np.concatenate([rgb, a], axis=2)
    return np.ascontiguousarray(np.clip(out, 0.0, 1.0), dtype=np.float32)


def _as_float(a: np.ndarray, name: str) -> np.ndarray:
    """Integer arrays scale by their type's maximum; float arrays are clipped to [0, 1]."""
    if a.dtype == np.bool_:
        return a.astype(np.float32)
    if np.issubdtype(a.dtype, np.integer):
        if a.dtype.itemsize > 2 or np.issubdtype(a.dtype, np.signedinteger):
            if a.size and (a.min() < 0 or a.max() > 65535):
                raise DataError(f"{name}: integer values outside 0..65535; save it as 8/16-bit")
            return a.astype(np.float32) / 65535.0
        return a.astype(np.float32) / float(np.iinfo(a.dtype).max)
    if np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float32)
        if not np.isfinite(a).all():
            raise DataError(f"{name}: contains NaN or infinite values")
        return np.clip(a, 0.0, 1.0)
    raise DataError(f"{name}: unsupported pixel type {a.dtype}")


def _hwc(a: np.ndarray, name: str) -> np.ndarray:
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[0] == 0 or a.shape[1] == 0 or a.shape[2] == 0:
        raise DataError(f"{name}: expected an HxW or HxWxC array, got shape {a.shape}")
    return a


def _read_npy(path: Path) -> np.ndarray:
    try:
        a = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy array ({exc})") from None
    if not isinstance(a, np.ndarray):
        raise DataError(f"{path}: expected one array, got {type(a).__name__}")
    return _as_float(_hwc(a, str(path)), str(path))


def image_bit_depth(path: PathLike) -> int:
    """16 for a 16-bit image file (grey or colour PNG/TIFF), else 8, from its header alone (8 for
    anything Pillow cannot open: the decoder reports those)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return 16 if ";16" in _rawmode(im) or im.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N") else 8
    except Exception:  # noqa: BLE001 - load_image gives the real error
        return 8


def _rawmode(im) -> str:
    """The decoder's raw mode (e.g. ``RGB;16B``): tells a 16-bit colour file from an 8-bit one."""
    if not im.tile:
        return ""
    args = im.tile[0][3]
    return args if isinstance(args, str) else str(args[0]) if args else ""


def _read_image(path: Path, channels: int, data: Optional[bytes] = None,
                formats: Optional[tuple[str, ...]] = None) -> tuple[np.ndarray, str]:
    """Decode ``path`` (or, when given, the bytes ``data`` that ``path`` names) with Pillow."""
    import io

    from PIL import Image, ImageOps, UnidentifiedImageError

    if data is None:
        is_tiff = path.suffix.lower() in (".tif", ".tiff")
    else:
        is_tiff = data[:4] in (b"II*\x00", b"MM\x00*")
    try:
        with _big_images_allowed(), Image.open(io.BytesIO(data) if data is not None else path, formats=formats) as im:
            im.seek(0)  # the first frame of an animation
            raw = _rawmode(im)
            if ";16" in raw and im.mode in ("RGB", "RGBA", "LA"):
                arr = _read_16bit_colour(path, is_tiff, data)
                if arr is not None:
                    return arr, _KIND_OF.get(arr.shape[2], "multi")
            im.load()  # decode everything now, so a truncated file fails here
            im = ImageOps.exif_transpose(im)
            return _pil_to_array(im, str(path))
    except UnidentifiedImageError:
        if is_tiff:
            arr = _read_tifffile(path, data=data)
            if arr is not None:
                return arr, _kind_of(arr.shape[2])
        raise DataError(
            f"{path}: not a recognised image file (is it really a {path.suffix or 'image'}? "
            f"re-export it as PNG or JPEG, or remove it)"
        ) from None
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: image too large to open safely ({exc})") from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError) as exc:
        reason = str(exc) or type(exc).__name__
        if "truncated" in reason.lower():
            reason = "the file is truncated (an interrupted download or copy?)"
        raise DataError(f"{path}: cannot decode image: {reason}") from None


@contextlib.contextmanager
def _big_images_allowed():
    """Pillow's warning for a photo over 89 Mpx would print its source path: the user's own file
    is read (the server checks sizes itself); past twice that Pillow refuses it (a DataError)."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def _pil_to_array(im, name: str) -> tuple[np.ndarray, str]:
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return _hwc(np.asarray(im).astype(np.float32) / 65535.0, name), "L"
    if mode in ("I", "F"):  # 16-bit PNGs can open as "I"; float TIFFs as "F"
        return _hwc(_as_float(np.asarray(im), name), name), "L"
    if mode == "1":
        im = im.convert("L")
    elif mode == "P" or mode == "PA":
        im = im.convert("RGBA" if ("transparency" in im.info or mode == "PA") else "RGB")
    elif mode == "La":
        im = im.convert("LA")
    elif mode == "RGBa":
        im = im.convert("RGBA")
    elif mode not in ("L", "LA", "RGB", "RGBA"):  # CMYK, YCbCr, RGBX, LAB, HSV, ...
        try:
            im = im.convert("RGB")
        except ValueError:
            raise DataError(f"{name}: unsupported image mode {mode}; re-export it as RGB") from None
    arr = _hwc(np.asarray(im, dtype=np.uint8).astype(np.float32) / 255.0, name)
    return arr, im.mode


def _read_16bit_colour(path: Path, is_tiff: bool, data: Optional[bytes] = None):
    """16-bit RGB(A) without losing precision: tifffile for TIFF, else OpenCV; None if neither."""
    if is_tiff:
        arr = _read_tifffile(path, strict=False, data=data)
        if arr is not None:
            return arr
    try:
        import cv2
    except ImportError:
        _warn_once("cv2-16", f"{path}: 16-bit colour image read at 8-bit precision; install "
                   "opencv-python-headless (pip install 'cyclekit[faces]') to keep 16 bits")
        return None
    raw = np.frombuffer(data, dtype=np.uint8) if data is not None else np.fromfile(str(path), dtype=np.uint8)
    a = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)
    if a is None:
        raise DataError(f"{path}: cannot decode 16-bit image (truncated or corrupt?)")
    if a.ndim == 3 and a.shape[2] == 3:
        a = a[..., ::-1]
    elif a.ndim == 3 and a.shape[2] == 4:
        a = a[..., [2, 1, 0, 3]]
    return _as_float(_hwc(np.ascontiguousarray(a), str(path)), str(path))


def _read_tifffile(path: Path, strict: bool = True, data: Optional[bytes] = None):
    """Read a TIFF's first page with tifffile; None when it is missing (or fails, if not strict)."""
    try:
        import tifffile
    except ImportError:
        _warn_once("tifffile", "tifffile is not installed; some TIFFs (16-bit colour, more than "
                   "4 channels) need it: pip install tifffile")
        return None
    try:
        import io

        with tifffile.TiffFile(io.BytesIO(data) if data is not None else path) as tf:
            page = tf.pages[0]
            a, axes = page.asarray(), page.axes
    except Exception as exc:  # tifffile raises many types (TiffFileError, ValueError, ...)
        if not strict:  # e.g. LZW needs imagecodecs: let the caller try OpenCV
            log.debug("tifffile could not read %s: %s", path, exc)
            return None
        raise DataError(f"{path}: cannot decode TIFF: {exc}") from None
    if "S" in axes and a.ndim == 3:
        a = np.moveaxis(a, axes.index("S"), -1)
    return _as_float(_hwc(np.ascontiguousarray(a), str(path)), str(path))


# ---------------------------------------------------------------------- saving
_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP",
            ".tif": "TIFF", ".tiff": "TIFF"}


def save_image(path: PathLike, array: np.ndarray, bit_depth: int = 8, quality: int = 95,
               png_level: int = 6, durable: bool = True, icc: Optional[bytes] = None) -> Path:
    """Write a float ``HxWxC`` array in ``[0, 1]`` (C = 1, 2, 3 or 4) atomically; format by extension.
    ``png_level``: zlib level of 8-bit PNGs (6 = Pillow's default, 1 about 4x faster: dataset
    preparation); ``durable``: see :func:`cyclekit.io.files.atomic_path`. ``bit_depth=16`` writes
    16-bit PNG/TIFF (colour needs OpenCV). Grey + alpha is an 8-bit PNG's ``LA``, RGBA in other
    formats; JPEG has no alpha: RGBA and grey + alpha are composited on white. ``.npy``
    stores the float32 array itself (any C). Readers never see a half-written file.
    ``icc``: a colour profile to embed (:func:`cyclekit.io.channels.icc_profile`; not in BMP, nor in a
    16-bit colour TIFF without tifffile).
    """
    path = Path(path)
    ext = path.suffix.lower()
    arr = np.asarray(array, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise ValueError(f"save_image expects HxWxC, got shape {arr.shape}")
    arr = np.clip(np.nan_to_num(arr), 0.0, 1.0)
    if bit_depth not in (8, 16):
        raise DataError(f"{path}: bit_depth must be 8 or 16, got {bit_depth}")
    if ext != ".npy":
        if ext not in _FORMATS:
            raise DataError(f"{path}: unknown image extension; use one of {sorted(_FORMATS)} or .npy")
        if arr.shape[2] not in (1, 2, 3, 4):
            raise DataError(f"{path}: {arr.shape[2]}-channel images can only be saved as .npy")
        if bit_depth == 16 and _FORMATS[ext] not in ("PNG", "TIFF"):
            raise DataError(f"{path}: 16-bit output needs a .png or .tif file name")
        if _FORMATS[ext] == "JPEG" and arr.shape[2] in (2, 4):
            arr = convert_channels(arr, _KIND_OF[arr.shape[2]], 1 if arr.shape[2] == 2 else 3)
        elif arr.shape[2] == 2 and (bit_depth == 16 or _FORMATS[ext] != "PNG"):
            arr = convert_channels(arr, "LA", 4)
    with atomic_path(path, durable) as tmp:
        _write(tmp, ext, arr, bit_depth, quality, png_level, icc)
    return path


def _write(tmp: Path, ext: str, arr: np.ndarray, bit_depth: int, quality: int, png_level: int = 6,
           icc: Optional[bytes] = None) -> None:
    if ext == ".npy":
        with open(tmp, "wb") as fh:
            np.save(fh, arr)
        return
    from PIL import Image

    fmt, c = _FORMATS[ext], arr.shape[2]
    icc = profile_for(icc, c)  # a grey profile never lands in a colour file, nor an RGB one in a grey file
    if bit_depth == 16:
        a16 = np.round(arr * 65535.0).astype(np.uint16)
        if c == 1:
            Image.fromarray(a16[:, :, 0]).save(tmp, format=fmt, **({"icc_profile": icc} if icc else {}))
            return
        if fmt == "TIFF" and icc and _write_tifffile(tmp, a16, icc):
            return
        try:
            cv2 = require("cv2", "faces", "16-bit colour image output")
        except MissingDependencyError as exc:
            raise MissingDependencyError(f"{exc} (or save with bit_depth=8)") from None
        bgr = a16[..., ::-1] if c == 3 else a16[..., [2, 1, 0, 3]]
        ok, buf = cv2.imencode(".png" if fmt == "PNG" else ".tif", np.ascontiguousarray(bgr))
        if not ok:
            raise DataError(f"{tmp}: OpenCV could not encode the 16-bit image")
        tmp.write_bytes(png_with_icc(buf.tobytes(), icc) if fmt == "PNG" else buf.tobytes())
        return
    a8 = np.round(arr * 255.0).astype(np.uint8)
    im = Image.fromarray(a8[:, :, 0] if c == 1 else a8)
    kwargs = {"quality": quality} if fmt in ("JPEG", "WEBP") else {"compress_level": png_level} if fmt == "PNG" else {}
    if icc and fmt != "BMP":
        kwargs["icc_profile"] = icc
    im.save(tmp, format=fmt, **kwargs)


def _write_tifffile(tmp: Path, a16: np.ndarray, icc: bytes) -> bool:
    """A 16-bit colour TIFF with its colour profile, through tifffile; False when it is missing."""
    try:
        import tifffile
    except ImportError:
        _warn_once("tifffile-icc", "tifffile is not installed: 16-bit colour TIFFs are written without their "
                   "colour profile (pip install 'cyclekit[faces]')")
        return False
    tifffile.imwrite(tmp, a16, photometric="rgb", extrasamples=("unassalpha",) if a16.shape[2] == 4 else None,
                     iccprofile=icc, compression="zlib", metadata=None)
    return True
