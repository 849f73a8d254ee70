"""Face swap over many files: image files, folders (recursive) and videos, written to a folder (or one named file)."""
from __future__ import annotations

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
from cyclekit.infer.stream import expand_inputs, plan_outputs
from cyclekit.io.images import IMAGE_EXTENSIONS, load_image, save_image

log = logging.getLogger(__name__)


@dataclass
class SwapRecord:
    source: Path
    output: Path
    message: str
    swapped: int
    readable: bool = True


def swap_path(
    translator, inputs: Sequence[Union[str, Path]], out_dir: Union[str, Path], *, compare: bool = False,
    progress: bool = False, params: Optional[FaceParams] = None, detector: Optional[FaceDetector] = None,
    video_options: Optional[dict] = None, **swap_kwargs,
) -> list[SwapRecord]:
    """Swap faces in image files, folders (recursive) and video files; write PNGs / mp4s to ``out_dir``.

    Images are written as ``out_dir/<relative name>.png`` (lossless, so untouched pixels stay
    exact) and, with ``compare``, ``<name>_compare.png`` showing input and output side by side.
    Videos go through :func:`cyclekit.faces.video.swap_video`.
    """
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    params = params or face_params_for(translator)
    detector = detector or make_detector(params.detector)
    videos, images = [], []
    for item in inputs:
        p = Path(item)
        if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS:
            videos.append(p)
        else:
            images.append(item)
    ext = out_dir.suffix.lower()
    named = not out_dir.is_dir() and ext in VIDEO_EXTENSIONS | IMAGE_EXTENSIONS  # -o x.jpg / -o x.mp4: one file
    one_photo = ext in IMAGE_EXTENSIONS and not videos  # (plan_outputs checks that it is one)
    one_video = ext == ".mp4" and not images and len(videos) == 1
    if named and not (one_photo or one_video):
        raise UserError(f"--out {out_dir} names one output file: give one photo with --out NAME.png/.jpg, one video "
                        "with --out NAME.mp4, or a folder for the outputs (--out OUT/)")
    jobs = plan_outputs(expand_inputs(images), out_dir) if images else []  # no two inputs share an output
    sources = {src.resolve() for src, _ in jobs} | {v.resolve() for v in videos}
    records: list[SwapRecord] = []
    for src, dst in tqdm(jobs, disable=not progress, unit="img", desc="swap"):
        try:
            img = load_image(src, 3)
        except DataError as exc:
            log.warning("skipping %s", exc)
            records.append(SwapRecord(src, dst, "skipped: unreadable (see the warning above)", 0, readable=False))
            continue
        result, info = swap_image(img, translator, params=params, detector=detector, **swap_kwargs)
        save_image(dst, result)
        if compare:
            save_image(dst.with_name(dst.stem + "_compare.png"), side_by_side(img, result))
        records.append(SwapRecord(src, dst, info.message, info.swapped))
    for video in videos:
        dst = out_dir if named else out_dir / (video.stem + ".mp4")
        if dst.resolve() in sources:
            raise UserError(f"output {dst} would overwrite an input; choose another --out folder")
        vinfo = swap_video(video, dst, translator, params=params, detector=detector, compare=compare,
                           progress=progress, **(video_options or {}), **swap_kwargs)
        records.append(SwapRecord(video, dst, vinfo.message, vinfo.frames_swapped))
    return records
