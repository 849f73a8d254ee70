"""Video face swap: H.264 mp4 in and out, audio kept, smoothed boxes, identity round trip."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import torch
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("imageio_ffmpeg")
skdata = pytest.importorskip("skimage.data")

from cyclekit.config import ModelConfig  # noqa: E402
from cyclekit.faces.detect import Face  # noqa: E402
from cyclekit.faces.params import FaceParams  # noqa: E402
from cyclekit.faces.video import (  # noqa: E402
    VideoWriter, ffmpeg_exe, plan_crops, probe_video, read_frames, swap_video,
)
from cyclekit.metrics.paired import psnr  # noqa: E402
from cyclekit.infer.translator import Translator  # noqa: E402

N_FRAMES, SIZE, FPS = 12, 192, 12.0


def pan_frames() -> list[np.ndarray]:
    """A slow pan over the astronaut photo: the face moves ~2-4 px per frame."""
    photo = skdata.astronaut()
    return [cv2.resize(photo[20 + 2 * i:320 + 2 * i, 100 + 4 * i:400 + 4 * i], (SIZE, SIZE),
                       interpolation=cv2.INTER_AREA) for i in range(N_FRAMES)]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """(video with a 440 Hz AAC track, video without audio, the frames written)."""
    d = tmp_path_factory.mktemp("video")
    frames = pan_frames()
    w = VideoWriter(d / "silent.mp4", (SIZE, SIZE), FPS, crf=10)
    for f in frames:
        w.write(f)
    w.close()
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(d / "silent.mp4"), "-f", "lavfi", "-i",
                    f"sine=frequency=440:duration={N_FRAMES / FPS}", "-map", "0:v", "-map", "1:a", "-c:v", "copy",
                    "-c:a", "aac", "-shortest", str(d / "talk.mp4")], check=True)
    return d / "talk.mp4", d / "silent.mp4", frames


def identity(size: int = 128) -> Translator:
    return Translator(lambda x: x, ModelConfig(image_size=size, face_margin=0.4))


def frames_of(path) -> list[np.ndarray]:
    _, gen = read_frames(path)
    return list(gen)


def test_probe_reads_codec_size_and_audio(clip):
    talk, silent, _ = clip
    info = probe_video(talk)
    assert (info["video_codec"], info["width"], info["height"], info["audio_codec"]) == ("h264", SIZE, SIZE, "aac")
    assert info["fps"] == pytest.approx(FPS)
    assert probe_video(silent)["audio_codec"] is None


def test_video_identity_round_trip_keeps_audio(clip, tmp_path):
    talk, _, frames = clip
    src = frames_of(talk)
    info = swap_video(talk, tmp_path / "out.mp4", identity(), params=FaceParams(size=128), detail=False,
                      compare=True)
    assert info.frames == N_FRAMES and info.frames_swapped == N_FRAMES and info.audio
    probe = probe_video(tmp_path / "out.mp4")
    assert (probe["video_codec"], probe["width"], probe["height"]) == ("h264", SIZE, SIZE)
    assert probe["audio_codec"] == "aac" and probe["fps"] == pytest.approx(FPS)
    out = frames_of(tmp_path / "out.mp4")
    assert len(out) == N_FRAMES
    values = [psnr(a / 255.0, b / 255.0) for a, b in zip(out, src)]
    assert min(values) > 33.0  # measured ~38 dB: the crop/paste resampling plus one H.264 encode
    cmp = probe_video(tmp_path / "out_compare.mp4")
    assert (cmp["width"], cmp["height"], cmp["audio_codec"]) == (2 * SIZE + 4, SIZE, "aac")
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_video_swap_changes_the_face_only(clip, tmp_path):
    _, silent, frames = clip
    swap_rb = Translator(lambda x: x[:, [2, 1, 0]], ModelConfig(image_size=64, face_margin=0.4))
    info = swap_video(silent, tmp_path / "rb.mp4", swap_rb, params=FaceParams(size=64))
    assert not info.audio and probe_video(tmp_path / "rb.mp4")["audio_codec"] is None
    out, src = frames_of(tmp_path / "rb.mp4"), frames_of(silent)
    for a, b in zip(out, src):
        diff = np.abs(a.astype(int) - b).sum(axis=2)
        assert diff[:, :8].mean() < 16 and diff[-30:].mean() < 16  # background: codec noise only (6-13)
        assert diff[40:80, 60:120].mean() > 30  # the face: channels swapped (36-108; keep_natural_hue: no swapped hue outside the middle)


def test_a_video_records_its_median_cycle_error_with_the_generator_back(clip, tmp_path):
    from cyclekit.faces.batch import swap_path

    _, silent, _ = clip
    cfg = ModelConfig(image_size=64, face_margin=0.4)
    swap_rb = Translator(lambda x: x[:, [2, 1, 0]], cfg)
    undo = Translator(lambda x: x[:, [2, 1, 0]], cfg, direction="BtoA")  # the way back returns the face
    lose = Translator(lambda x: torch.zeros_like(x), cfg, direction="BtoA")  # ... and one that loses it
    assert swap_video(silent, tmp_path / "a.mp4", swap_rb, params=FaceParams(size=64)).cycle_error is None
    assert swap_video(silent, tmp_path / "b.mp4", swap_rb, params=FaceParams(size=64), back=undo).cycle_error < 1.0
    records = swap_path(swap_rb, [silent], tmp_path / "c", params=FaceParams(size=64), back=lose)
    assert records[0].swapped == N_FRAMES and records[0].cycle_error > 30.0  # what cyclekit swap warns on
    # At 4 frames a second, frames 0, 4 and 8 of 12 are measured; the way back misses by more each
    # time (0, ~13, ~50 grey levels), and the video reports the median, not the mean or the last.
    slow = tmp_path / "slow.mp4"
    w = VideoWriter(slow, (SIZE, SIZE), 4.0, crf=10)
    for f in pan_frames():
        w.write(f)
    w.close()
    shifts = iter([0.0, 0.1, 0.4])
    calls = []
    drift = Translator(lambda x: (calls.append(1), x[:, [2, 1, 0]] + next(shifts))[1], cfg, direction="BtoA")
    info = swap_video(slow, tmp_path / "d.mp4", swap_rb, params=FaceParams(size=64), back=drift)
    assert info.frames_swapped == N_FRAMES and len(calls) == 3
    assert 8.0 < info.cycle_error < 16.0


def test_smoothing_removes_jitter_and_outliers():
    rng = np.random.default_rng(0)
    n, fps = 60, 30.0
    truth = np.stack([100 + np.arange(n) * 1.0, np.full(n, 80.0)], axis=1)  # a slow pan
    detections = []
    for i in range(n):
        cx, cy = truth[i] + rng.normal(0, 3, 2)
        if i == 30:
            cx += 40  # one wild detection
        side = 60 + rng.normal(0, 2)
        box = (cx - side / 2, cy - side / 2, side, side)
        detections.append(None if i in (10, 11, 12) else [Face(box=box)])  # and a short gap
    plan = plan_crops(detections, FaceParams(size=64, margin=0.5), fps, all_faces=False, smooth=0.15, max_gap=0.5)
    assert all(len(p) == 1 for p in plan)  # the gap is bridged
    assert {p[0].track for p in plan} == {0}  # one track all along: the masks' memory follows it
    centers = np.array([p[0].center for p in plan])
    raw = np.array([d[0].center if d else truth[i] for i, d in enumerate(detections)])
    err_raw = np.abs(raw - truth).mean()
    err = np.abs(centers - truth).mean()
    assert err < 0.6 * err_raw and np.abs(centers[30] - truth[30]).max() < 6
    jitter = np.abs(np.diff(centers[:, 0], 2)).mean()
    assert jitter < 0.2 * np.abs(np.diff(raw[:, 0], 2)).mean()
    assert np.allclose([p[0].side for p in plan], 120, atol=4)


def test_a_face_track_turned_to_the_side_is_left_unchanged_whole():
    """Two faces through a clip, one turned well to the side in most frames (dlib's nose point off
    the eye midpoint): --max-turn leaves that whole track out, not the frames where it happens to
    read less, so it does not flicker; 0 swaps both."""
    def face(cx, nose_dx):
        eyes = np.array([[cx - 10.0, 80.0], [cx + 10.0, 80.0]])
        return Face(box=(cx - 30, 60, 60, 60), eyes=eyes, landmarks={"nose": [cx + nose_dx, 92.0]}, source="dlib")

    detections = [[face(100.0, 0.0), face(300.0, 8.0 if i % 4 else 2.0)] for i in range(20)]  # turn 0.4 (0.1)
    kw = dict(fps=10.0, all_faces=True, smooth=0.15, max_gap=0.5)
    plan = plan_crops(detections, FaceParams(size=64, margin=0.5), **kw)
    assert all(len(p) == 1 and abs(p[0].center[0] - 100) < 1 for p in plan)
    plan = plan_crops(detections, FaceParams(size=64, margin=0.5), max_turn=0, **kw)
    assert all(len(p) == 2 for p in plan)


def test_cli_swap_video(clip, tmp_path, capsys):
    from cyclekit.cli import main

    talk, _, _ = clip
    rc = main(["swap", str(talk), "--model", "identity", "--size", "64", "--out", str(tmp_path / "o")])
    assert rc == 0
    assert "swapped faces in 1 of 1 file(s)" in capsys.readouterr().out
    assert probe_video(tmp_path / "o" / "talk.mp4")["audio_codec"] == "aac"
    rc = main(["swap", str(talk), "--model", "identity", "--size", "64", "-o", str(tmp_path / "named.mp4")])
    assert rc == 0 and probe_video(tmp_path / "named.mp4")["audio_codec"] == "aac"  # one video: that file


def test_videos_in_folders_and_globs_are_swapped_too(clip, tmp_path, capsys):
    import shutil

    from cyclekit.cli import main
    from cyclekit.faces.batch import plan_swap

    _, silent, frames = clip
    mixed, only = tmp_path / "mixed", tmp_path / "only"
    (mixed / "sub").mkdir(parents=True)
    only.mkdir()
    shutil.copy(silent, mixed / "sub" / "clip.mp4")
    shutil.copy(silent, only / "clip.mp4")
    cv2.imwrite(str(mixed / "photo.png"), frames[0])
    (mixed / "notes.txt").write_text("not an input")
    photos, videos = plan_swap([mixed], tmp_path / "out")
    assert [d.relative_to(tmp_path / "out") for _, d in photos] == [Path("photo.png")]
    assert [(s.name, d.relative_to(tmp_path / "out")) for s, d in videos] == [("clip.mp4", Path("sub/clip.mp4"))]
    assert plan_swap([only], tmp_path / "o")[0] == [] and len(plan_swap([only], tmp_path / "o")[1]) == 1
    assert len(plan_swap([str(only / "*.mp4"), only / "clip.mp4"], tmp_path / "o")[1]) == 1  # named twice: once
    for bad in ("x.gif", "x.mov"):  # not a folder named like a file the swap cannot write
        assert main(["swap", str(only), "--model", "identity", "--out", str(tmp_path / bad)]) == 2
        assert "cannot write" in capsys.readouterr().err and not (tmp_path / bad).exists()
    # a name with another file type's extension would silently become a folder of that name
    assert main(["swap", str(only), "--model", "identity", "--out", str(tmp_path / "swapped.txt")]) == 2
    assert ".txt files cannot be written here" in capsys.readouterr().err and not (tmp_path / "swapped.txt").exists()
    assert plan_swap([mixed / "photo.png"], tmp_path / "face.npy")[0] == [(mixed / "photo.png", tmp_path / "face.npy")]
    assert main(["swap", str(only), "--model", "identity", "--size", "64", "--out", str(tmp_path / "v")]) == 0
    assert "swapped faces in 1 of 1 file(s)" in capsys.readouterr().out
    assert probe_video(tmp_path / "v" / "clip.mp4")["video_codec"] == "h264"
    # a broken video is skipped with one line, like a broken photo; the other videos are swapped
    (only / "a_cut.mp4").write_bytes(silent.read_bytes()[: silent.stat().st_size // 3])
    (only / "b_fake.mp4").write_text("not a video")
    assert main(["swap", str(only), "--model", "identity", "--size", "64", "--out", str(tmp_path / "v2")]) == 1
    text = capsys.readouterr().out
    assert "a_cut.mp4: skipped: unreadable: " in text and "b_fake.mp4: skipped: unreadable: " in text
    assert "swapped faces in 1 of 3 file(s)" in text and "2 unreadable file(s) skipped" in text
    assert sorted(p.name for p in (tmp_path / "v2").iterdir()) == ["clip.mp4"]


def test_video_with_a_backdrop_model_guards_frame_after_frame(clip, tmp_path, monkeypatch):
    """A model trained on a backdrop: every frame's backdrop guard is blended with the same face
    track's guard of the frame before (the memory swap_image receives and fills)."""
    import cyclekit.faces.pipeline as pipeline

    _, silent, _ = clip
    grey = torch.tensor([209, 212, 212], dtype=torch.float32).view(1, 3, 1, 1) / 127.5 - 1
    painter = Translator(lambda x: grey.expand_as(x).clone(), ModelConfig(image_size=64, face_margin=0.4),
                         info={"face_backdrop": [209, 212, 212]})
    seen = []
    real = pipeline.swap_image

    def spy(*args, **kwargs):
        before = [None if g is None else g.copy() for g in kwargs["guard_memory"]]
        out = real(*args, **kwargs)
        seen.append((before, kwargs["guard_memory"], [t.track for t in kwargs["transforms"]]))
        return out
    monkeypatch.setattr("cyclekit.faces.video.swap_image", spy)
    info = swap_video(silent, tmp_path / "g.mp4", painter, params=FaceParams(size=64))
    assert info.frames_swapped == len(seen) >= N_FRAMES - 1
    assert seen[0][0] == [None] and seen[0][1][0] is not None  # the first frame starts from its own guard
    for (before, after, tracks), (_, last, last_tracks) in zip(seen[1:], seen):
        if tracks == last_tracks:  # the same face: its memory was handed on
            assert before[0] is not None and np.array_equal(before[0], last[0])
