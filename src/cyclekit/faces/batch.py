"""Face swap over many files: image files, folders (recursive) and videos, written to a folder
(or to one named file)."""
from __future__ import annotations

import glob
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

from cyclekit.errors import DataError, UserError
from cyclekit.faces.detect import FaceDetector
from cyclekit.faces.detectors import make_detector
from cyclekit.faces.params import FaceParams
from cyclekit.faces.pipeline import face_params_for, side_by_side, swap_image
from cyclekit.faces.video import VIDEO_EXTENSIONS, swap_video
from cyclekit.infer.stream import expand_inputs, names_a_file, plan_outputs, refuse_other_file_type
from cyclekit.io.channels import grey_as_source, icc_profile, without_opaque_alpha
from cyclekit.io.images import ARRAY_EXTENSIONS, IMAGE_EXTENSIONS, image_bit_depth, is_hidden, load_image, save_image

log = logging.getLogger(__name__)


@dataclass
class SwapRecord:
    source: Path
    output: Path
    message: str
    swapped: int
    readable: bool = True
    cycle_error: Optional[float] = None  # the largest of its faces' (faces/cycle.py), when measured
    left: tuple[str, ...] = ()  # why faces of a photo were left unchanged: "too small", "turned"


def compare_path(dst: Path) -> Path:
    """Where ``--compare`` writes ``input | output`` next to ``dst`` (``NAME_compare.png``/``.mp4``)."""
    return dst.with_name(dst.stem + ("_compare.mp4" if dst.suffix.lower() == ".mp4" else "_compare.png"))


# --out names that look like a file the swap cannot write (rather than a folder to create)
UNWRITABLE = frozenset({".gif", ".heic", ".heif", ".avif", ".jxl"}) | (VIDEO_EXTENSIONS - {".mp4"})


def _split_videos(inputs: Sequence[Union[str, Path]]) -> tuple[dict[Path, tuple[Path, Path]], list]:
    """``({resolved video: (video, output path relative to --out)}, the inputs left for photos)``:
    video files named directly, found in folders (recursive, hidden entries skipped) or matched by
    a glob. A folder or glob goes on to the photos when it holds photos too, or no video (for the
    photo lister's error); the same video named twice is swapped once."""
    videos: dict[Path, tuple[Path, Path]] = {}
    images = []
    for item in inputs:
        p = Path(item)
        if p.is_file():
            found, photos = ([(p, Path(p.name))], False) if p.suffix.lower() in VIDEO_EXTENSIONS else ([], True)
        else:
            if p.is_dir():
                files = [(f, f.relative_to(p)) for f in sorted(p.rglob("*")) if not is_hidden(f.relative_to(p))]
            else:
                files = [(Path(m), Path(Path(m).name)) for m in sorted(glob.glob(str(item), recursive=True))]
            files = [(f, rel) for f, rel in files if f.is_file()]
            found = [(f, rel) for f, rel in files if f.suffix.lower() in VIDEO_EXTENSIONS]
            photos = not found or any(f.suffix.lower() in IMAGE_EXTENSIONS for f, _ in files)
        for f, rel in found:
            videos.setdefault(f.resolve(), (f, rel))
        if photos:
            images.append(item)
    return videos, images


def plan_swap(inputs: Sequence[Union[str, Path]], out_dir: Union[str, Path], *, compare: bool = False,
              ) -> tuple[list[tuple[Path, Path]], list[tuple[Path, Path]]]:
    """``(photo jobs, video jobs)``, each ``(source, destination)``; refuses, before anything is
    read or written, an output (or its ``--compare`` image) that would overwrite an input or
    another output, and a file-like ``--out`` (:func:`~cyclekit.infer.stream.names_a_file`, or
    ``NAME.mp4``) for anything but one photo or one video."""
    videos, images = _split_videos(inputs)
    out = Path(out_dir)
    one_video = names_a_file(out_dir, {".mp4"})
    if names_a_file(out_dir, UNWRITABLE):  # it would become a folder of that name
        raise UserError(f"--out {out_dir}: cannot write {out.suffix} files; name a .png, .jpg, .webp, .bmp or .tif "
                        "photo, an .mp4 video, or a folder (--out OUT/)")
    refuse_other_file_type(out_dir, IMAGE_EXTENSIONS | ARRAY_EXTENSIONS | {".mp4"})
    if (one_video and (images or len(videos) != 1)) or (names_a_file(out_dir) and videos):
        raise UserError(f"--out {out_dir} names one output file but {len(images)} photo input(s) and "
                        f"{len(videos)} video(s) were given: give one photo with --out NAME.png, one video "
                        "with --out NAME.mp4, or a folder (--out OUT/)")
    if not one_video and not names_a_file(out_dir) and out.exists() and not out.is_dir():
        raise UserError(f"--out {out_dir} is a file, not a folder; give a folder for the outputs")
    photo_jobs = plan_outputs(expand_inputs(images), out_dir) if images else []  # no two inputs share an output
    video_jobs = [(v, out if one_video else out / rel.with_suffix(".mp4")) for v, rel in videos.values()]
    sources = {src.resolve() for src, _ in photo_jobs} | set(videos)
    owner: dict[Path, tuple[Path, str]] = {}  # output -> (input, what it is)
    for src, dst in photo_jobs + video_jobs:
        for path, what in ((dst, "output"), (compare_path(dst), "--compare image"))[:2 if compare else 1]:
            key = path.resolve()
            if key in sources:
                raise UserError(f"the {what} {path} would overwrite the input {key}; choose another --out"
                                + (" or leave out --compare" if what != "output" else ""))
            other, other_what = owner.setdefault(key, (src, what))
            if other != src:
                raise UserError(f"the {what} of {src} and the {other_what} of {other} would both be {path}; "
                                + ("leave out --compare or rename one of them" if "compare" in what + other_what
                                   else "swap them into different --out folders"))
    return photo_jobs, video_jobs


def swap_path(
    translator, inputs: Sequence[Union[str, Path]], out_dir: Union[str, Path], *, compare: bool = False,
    progress: bool = False, params: Optional[FaceParams] = None, detector: Optional[FaceDetector] = None,
    video_options: Optional[dict] = None, back=None, **swap_kwargs,
) -> list[SwapRecord]:
    """Swap faces in image files, folders (recursive) and video files; write PNGs / mp4s to ``out_dir``.

    Images are written as ``out_dir/<relative name>.png`` (lossless, so untouched pixels stay
    exact) and, with ``compare``, ``<name>_compare.png`` showing input and output side by side.
    Videos go through :func:`cyclekit.faces.video.swap_video`. ``out_dir`` may instead name the
    one output file of a single photo (``swapped.jpg``: its format, JPEG lossy) or video
    (``swapped.mp4``); see :func:`plan_swap` for what is refused. ``back`` (the generator the
    other way) measures each photo's cycle error (:mod:`cyclekit.faces.cycle`; a video's over its frames).
    """
    from tqdm.auto import tqdm

    photo_jobs, video_jobs = plan_swap(inputs, out_dir, compare=compare)
    params = params or face_params_for(translator)
    detector = detector or make_detector(params.detector)
    records: list[SwapRecord] = []
    for src, dst in tqdm(photo_jobs, disable=not (progress and photo_jobs), unit="img", desc="swap"):
        try:
            img = without_opaque_alpha(load_image(src, 4))  # the swap keeps an alpha channel
        except DataError as exc:
            records.append(SwapRecord(src, dst, _unreadable(src, exc), 0, readable=False))
            continue
        if img.shape[2] == 4 and dst.suffix.lower() in (".jpg", ".jpeg"):
            log.warning("%s: JPEG has no transparency, so %s is flattened on white; --out NAME.png keeps it",
                        src.name, dst.name)
        result, info = swap_image(img, translator, params=params, detector=detector, back=back, **swap_kwargs)
        # a 16-bit photo keeps its depth (its PNG comparison too), a grey one its single channel, each its profile
        depth = image_bit_depth(src)
        deep = depth == 16 and dst.suffix.lower() in (".png", ".tif", ".tiff")
        icc = icc_profile(src)
        save_image(dst, grey_as_source(img, result), bit_depth=16 if deep else 8, icc=icc)
        if compare:
            save_image(compare_path(dst), grey_as_source(img, side_by_side(img, result)), icc=icc,
                       bit_depth=16 if depth == 16 else 8)
        errors = [r.cycle_error for r in info.faces if r.cycle_error is not None]
        left = tuple(sorted({r.status for r in info.faces if r.status != "swapped"}))
        records.append(SwapRecord(src, dst, info.message, info.swapped, cycle_error=max(errors, default=None),
                                  left=left))
    for video, dst in video_jobs:
        try:
            vinfo = swap_video(video, dst, translator, params=params, detector=detector, compare=compare,
                               progress=progress, back=back, **(video_options or {}), **swap_kwargs)
        except DataError as exc:  # a broken video is skipped like a broken photo; the others go on
            records.append(SwapRecord(video, dst, _unreadable(video, exc), 0, readable=False))
            continue
        records.append(SwapRecord(video, dst, vinfo.message, vinfo.frames_swapped, cycle_error=vinfo.cycle_error))
    return records


def _unreadable(src: Path, exc: DataError) -> str:
    """A skipped file's one line: ``skipped: unreadable: <why>`` (the path said once, by the caller)."""
    why = str(exc)
    for name in (str(src), src.name):
        why = why[len(name) + 2:] if why.startswith(name + ": ") else why
    return f"skipped: unreadable: {why}"
