"""Face swap in videos: H.264 mp4 in and out, temporally smoothed crops, audio kept.

Two passes over the file (``imageio-ffmpeg`` decodes, nothing is held in memory):

1. detect faces in every ``detect_every``-th frame and link them into tracks (nearest centre of
   a similar size, gaps up to ``max_gap`` seconds bridged);
2. smooth each track's crop parameters (centre, box size, eye-line angle) with a 5-frame median
   (drops single-frame outliers) and a zero-lag Gaussian of ``smooth`` seconds, so the pasted
   face neither jitters nor lags; then crop, translate, paste back and encode with libx264.

The original audio stream is copied back with the ffmpeg binary that ``imageio-ffmpeg`` ships
(``-map 0:v -map 1:a? -c:a copy``, re-encoded to AAC only if the container refuses the codec).
"""
from __future__ import annotations

import logging
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Union

import numpy as np

from cyclekit.errors import DataError, UserError, require
from cyclekit.io.files import temp_path_for
from cyclekit.faces.align import CropTransform, warp_crop
from cyclekit.faces.detect import Face, FaceDetector, turn
from cyclekit.faces.detectors import make_detector
from cyclekit.faces.params import MAX_TURN, FaceParams
from cyclekit.faces.pipeline import recommended_backdrop, side_by_side, swap_image
from cyclekit.faces.segment import photo_head_masks, temporal_blend

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".mpg", ".mpeg"})


def ffmpeg_exe() -> str:
    return require("imageio_ffmpeg", "video", "video input and output").get_ffmpeg_exe()


def probe_video(path: Union[str, Path]) -> dict:
    """Codec, size, fps, duration and audio codec of a video, parsed from ``ffmpeg -i`` (no ffprobe)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"video not found: {path}")
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True,
                          errors="replace")
    text = proc.stderr
    video = re.search(r"Stream #\S+.*?: Video: (\w+).*?(\d{2,5})x(\d{2,5})", text)
    if video is None:
        raise DataError(f"{path}: no video stream found (is it a video file?)")
    audio = re.search(r"Stream #\S+.*?: Audio: (\w+)", text)
    fps = re.search(r"([\d.]+) fps", text)
    dur = re.search(r"Duration: (\d+):(\d+):([\d.]+)", text)
    return {
        "video_codec": video.group(1), "width": int(video.group(2)), "height": int(video.group(3)),
        "fps": float(fps.group(1)) if fps else None,
        "duration": int(dur.group(1)) * 3600 + int(dur.group(2)) * 60 + float(dur.group(3)) if dur else None,
        "audio_codec": audio.group(1) if audio else None,
    }


def read_frames(path: Union[str, Path]) -> tuple[dict, Iterator[np.ndarray]]:
    """``(meta, frames)``: imageio-ffmpeg's metadata and a generator of HxWx3 uint8 RGB frames."""
    iio = require("imageio_ffmpeg", "video", "reading videos")
    path = Path(path)
    if not path.is_file():
        raise DataError(f"video not found: {path}")
    try:
        gen = iio.read_frames(str(path), pix_fmt="rgb24")
        meta = next(gen)
    except (OSError, RuntimeError, StopIteration) as exc:
        raise DataError(f"{path}: cannot read the video ({str(exc).strip().splitlines()[-1] if str(exc) else exc})") from None
    w, h = meta["size"]

    def frames() -> Iterator[np.ndarray]:
        try:
            for raw in gen:
                yield np.frombuffer(raw, dtype=np.uint8).reshape(h, w, 3)
        finally:
            gen.close()

    return meta, frames()


class VideoWriter:
    """H.264 (libx264, yuv420p, CRF) mp4 writer; odd sizes are padded by one edge pixel."""

    def __init__(self, path: Union[str, Path], size: tuple[int, int], fps: float, crf: int = 18) -> None:
        iio = require("imageio_ffmpeg", "video", "writing videos")
        self.path = Path(path)
        w, h = size
        self.pad = (w % 2, h % 2)
        if any(self.pad):
            log.warning("%s: H.264 needs even sizes; padding %dx%d to %dx%d", self.path, w, h, w + self.pad[0],
                        h + self.pad[1])
        self._gen = iio.write_frames(
            str(self.path), (w + self.pad[0], h + self.pad[1]), fps=fps, codec="libx264", pix_fmt_in="rgb24",
            pix_fmt_out="yuv420p", quality=None, macro_block_size=1, ffmpeg_log_level="error",
            output_params=["-crf", str(crf), "-preset", "medium"],
        )
        self._gen.send(None)

    def write(self, frame: np.ndarray) -> None:
        if any(self.pad):
            frame = np.pad(frame, ((0, self.pad[1]), (0, self.pad[0]), (0, 0)), mode="edge")
        self._gen.send(np.ascontiguousarray(frame, dtype=np.uint8))

    def close(self) -> None:
        self._gen.close()


def mux_audio(video_only: Path, source: Path, out: Path) -> bool:
    """Copy ``source``'s audio next to ``video_only``'s video into ``out``; False when that failed."""
    base = [ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-i", str(video_only), "-i", str(source),
            "-map", "0:v:0", "-map", "1:a?", "-c:v", "copy"]
    for audio in (["-c:a", "copy"], ["-c:a", "aac", "-b:a", "192k"]):
        proc = subprocess.run(base + audio + ["-movflags", "+faststart", str(out)], capture_output=True, text=True,
                              errors="replace")
        if proc.returncode == 0:
            return True
        log.debug("audio mux with %s failed: %s", audio, proc.stderr.strip())
    log.warning("could not copy the audio of %s; the output has no sound (%s)", source,
                proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "ffmpeg failed")
    return False


# ---------------------------------------------------------------------- tracking and smoothing
@dataclass
class Track:
    frames: list[int] = field(default_factory=list)
    values: list[tuple[float, float, float, float]] = field(default_factory=list)  # cx, cy, box, angle|nan
    turns: list[float] = field(default_factory=list)  # detect.turn per detection (nan: not measured)

    @property
    def weight(self) -> float:
        return float(sum(v[2] ** 2 for v in self.values))


def link_tracks(detections: list[Optional[list[Face]]], max_gap: int) -> list[Track]:
    """Greedy frame-to-frame linking: a face joins the nearest recent track of a similar size."""
    tracks: list[Track] = []
    for f, faces in enumerate(detections):
        if not faces:
            continue
        taken: set[int] = set()
        for face in faces:
            cx, cy = face.center
            box = face.side
            angle = face.eye_angle
            best, best_d = None, np.inf
            for i, tr in enumerate(tracks):
                if i in taken or f - tr.frames[-1] > max_gap:
                    continue
                # the median of the last three positions: one wild detection does not derail the track
                px, py, pbox = np.median(np.asarray(tr.values[-3:])[:, :3], axis=0)
                d = np.hypot(cx - px, cy - py)
                if d < 0.6 * max(box, pbox) and 0.6 < box / pbox < 1.67 and d < best_d:
                    best, best_d = i, d
            if best is None:
                tracks.append(Track())
                best = len(tracks) - 1
            taken.add(best)
            tracks[best].frames.append(f)
            tracks[best].values.append((cx, cy, box, np.nan if angle is None else angle))
            sideways = turn(face)
            tracks[best].turns.append(np.nan if sideways is None else sideways)
    return tracks


def _smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """5-sample running median, then a Gaussian of ``sigma`` samples (edges padded with the ends)."""
    n = len(x)
    if n >= 5:
        padded = np.pad(x, 2, mode="edge")
        x = np.median(np.lib.stride_tricks.sliding_window_view(padded, 5), axis=1)
    if sigma > 0 and n > 1:
        r = max(1, int(np.ceil(3 * sigma)))
        k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
        x = np.convolve(np.pad(x, r, mode="edge"), k / k.sum(), mode="valid")
    return x


def smooth_track(track: Track, sigma: float, align: bool = True) -> tuple[range, np.ndarray]:
    """``(frames, params)``: per-frame (cx, cy, box, angle) over the track's span, gaps interpolated."""
    f = np.asarray(track.frames)
    v = np.asarray(track.values, dtype=float)
    span = np.arange(f[0], f[-1] + 1)
    out = np.zeros((len(span), 4))
    for j in range(4):
        ok = np.isfinite(v[:, j])
        if j == 3 and (not align or not ok.any()):
            continue  # no eye line seen: keep the face upright
        out[:, j] = _smooth(np.interp(span, f[ok], v[ok, j]), sigma)
    return range(int(f[0]), int(f[-1]) + 1), out


@dataclass
class VideoInfo:
    path: Path
    frames: int = 0
    frames_swapped: int = 0
    fps: float = 0.0
    size: tuple[int, int] = (0, 0)
    audio: bool = False
    message: str = ""
    cycle_error: Optional[float] = None  # with ``back``: per face track the median over the frames measured, the largest


def plan_crops(detections: list[Optional[list[Face]]], params: FaceParams, fps: float, all_faces: bool,
               smooth: float, max_gap: float, max_turn: float = MAX_TURN) -> list[list[CropTransform]]:
    """Per-frame crop transforms from raw detections: link, rank, smooth. A track is left out,
    whole, when it is smaller than ``--min-face`` or turned further than ``max_turn`` (median over
    its detections; 0 = no limit), so no face flickers between swapped and not."""
    n = len(detections)
    tracks = link_tracks(detections, max_gap=max(1, int(round(max_gap * fps))))
    tracks.sort(key=lambda t: t.weight, reverse=True)  # the dominant face carries the most area
    plan: list[list[CropTransform]] = [[] for _ in range(n)]
    covered = np.zeros(n, dtype=bool)
    sigma = smooth * fps
    for k, tr in enumerate(tracks):
        frames, vals = smooth_track(tr, sigma, params.align)
        if np.median(vals[:, 2]) < params.min_face:
            log.info("a face track of %d frames is smaller than --min-face %d px; left unchanged",
                     len(frames), params.min_face)
            continue
        turns = np.asarray(tr.turns, dtype=float)
        if max_turn and np.isfinite(turns).any() and np.nanmedian(turns) > max_turn:
            log.info("a face track of %d frames is turned %.2f eye distances to the side (> --max-turn %g); "
                     "left unchanged", len(frames), float(np.nanmedian(turns)), max_turn)
            continue
        for f, (cx, cy, box, angle) in zip(frames, vals):
            if not all_faces and covered[f]:
                continue
            covered[f] = True
            plan[f].append(CropTransform(center=(cx, cy), side=box * (1 + 2 * params.margin), angle=angle,
                                         size=params.size, box=box, track=k))
    return plan


def swap_video(
    src: Union[str, Path], dst: Union[str, Path], translator, *, params: FaceParams,
    detector: Optional[FaceDetector] = None, all_faces: bool = False, smooth: float = 0.15,
    max_gap: float = 0.5, detect_every: int = 1, crf: int = 18, compare: bool = False,
    progress: bool = False, back=None, **swap_kwargs,
) -> VideoInfo:
    """Swap the dominant face (or all faces) through a video; writes an H.264 mp4 at ``dst``.

    With ``back`` (the generator the other way) the cycle error (:mod:`cyclekit.faces.cycle`) is
    measured on about one swapped frame a second; the result's ``cycle_error`` is the largest over the
    face tracks of each track's median (as a photo reports its worst face).
    """
    from tqdm.auto import tqdm


    src, dst = Path(src), Path(dst)
    if detect_every < 1:
        raise UserError(f"--detect-every must be at least 1, got {detect_every}")
    if dst.suffix.lower() != ".mp4":
        raise UserError(f"video output must be an .mp4 file, got {dst}")
    if dst.resolve() == src.resolve():
        raise UserError(f"output {dst} would overwrite the input video; choose another --out folder")
    detector = detector or make_detector(params.detector)
    meta, frames = read_frames(src)
    fps = float(meta.get("fps") or 25.0)
    w, h = meta["size"]
    estimate = int(round((meta.get("duration") or 0) * fps)) or None
    detections: list[Optional[list[Face]]] = []
    for i, frame in enumerate(tqdm(frames, total=estimate, disable=not progress, unit="frame", desc="detect")):
        detections.append(detector.detect(frame) if i % detect_every == 0 else None)
    info = VideoInfo(path=dst, frames=len(detections), fps=fps, size=(w, h))
    if not detections:
        raise DataError(f"{src}: the video has no frames")
    plan = plan_crops(detections, params, fps, all_faces, smooth, max_gap, swap_kwargs.pop("max_turn", MAX_TURN))

    dst.parent.mkdir(parents=True, exist_ok=True)
    cmp_path = dst.with_name(dst.stem + "_compare.mp4")
    # hidden temporaries beside the outputs (see cyclekit.io.files): renamed only when complete
    tmp_video, tmp_cmp, tmp_mux = temp_path_for(dst), temp_path_for(cmp_path), temp_path_for(dst)
    try:
        writer = VideoWriter(tmp_video, (w, h), fps, crf)
        cmp_writer = VideoWriter(tmp_cmp, (2 * w + 4, h), fps, crf) if compare else None
        _, frames = read_frames(src)
        heads: dict = {}  # (face track, kind) -> its head masks (pasted, seen) in the last frame, smoothed over time
        seen_masks = recommended_backdrop(translator) is not None  # the model sees heads on its backdrop
        guards: dict = {}  # face track -> its backdrop guard there (swap_image blends them)
        every = max(1, int(round(fps)))  # frames between cycle-error measurements
        errors: dict[int, list[float]] = {}  # face track -> its cycle errors
        try:
            for i, frame in enumerate(tqdm(frames, total=len(plan), disable=not progress, unit="frame", desc="swap")):
                crops = plan[i] if i < len(plan) else []
                out = frame
                if crops:
                    memory: list = [guards.get(t.track) for t in crops]  # updated by swap_image
                    if swap_kwargs.get("mask", "head") == "head":
                        kinds = ("subjects", "views") if seen_masks else ("subjects",)
                        both = [photo_head_masks(frame, t, params.margin) for t in crops]  # (pasted, seen)
                        for k, key in enumerate(kinds):  # k: 0 the pasted masks, 1 the seen ones
                            fresh = [b[k] for b in both]
                            swap_kwargs[key] = temporal_blend([heads.get((t.track, k)) for t in crops], fresh)
                        swap_kwargs["guard_memory"] = memory
                        heads = {(t.track, k): m for k, key in enumerate(kinds)
                                 for t, m in zip(crops, swap_kwargs[key])}
                    measure = back if back is not None and info.frames_swapped % every == 0 else None
                    out, done = swap_image(frame, translator, params=params, transforms=crops, back=measure,
                                           **swap_kwargs)
                    for t, r in zip(crops, done.faces):  # one result per transform, in order
                        if r.cycle_error is not None:
                            errors.setdefault(t.track, []).append(r.cycle_error)
                    # a face absent from this frame starts afresh when it comes back
                    guards = {t.track: g for t, g in zip(crops, memory) if g is not None}
                    info.frames_swapped += 1
                else:
                    heads, guards = {}, {}
                writer.write(out)
                if cmp_writer is not None:
                    cmp_writer.write(side_by_side(frame, out))
        finally:
            writer.close()
            if cmp_writer is not None:
                cmp_writer.close()
        if meta.get("audio_codec"):
            info.audio = mux_audio(tmp_video, src, tmp_mux)
            if info.audio:
                os.replace(tmp_mux, tmp_video)
            if cmp_writer is not None and mux_audio(tmp_cmp, src, tmp_mux):
                os.replace(tmp_mux, tmp_cmp)
        os.replace(tmp_video, dst)
        if cmp_writer is not None:
            os.replace(tmp_cmp, cmp_path)
    finally:
        for p in (tmp_video, tmp_cmp, tmp_mux):
            p.unlink(missing_ok=True)
    info.cycle_error = max((float(np.median(v)) for v in errors.values()), default=None)
    missing = info.frames - info.frames_swapped
    info.message = f"swapped faces in {info.frames_swapped}/{info.frames} frames"
    if missing:
        info.message += (f" ({missing} left unchanged: no face found, or every face too small or turned too far "
                         "to the side)")
    if meta.get("audio_codec"):
        info.message += ", audio kept" if info.audio else ", audio lost"
    log.info("%s: %s", src, info.message)
    return info
