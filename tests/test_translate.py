"""Translate images, folders and globs of any size."""
import numpy as np
import pytest
import torch

from cyclekit.io.images import load_image, save_image
from cyclekit.errors import DataError, UserError
from cyclekit.infer.translator import Translator, load_translator, pad_to_multiple
from cyclekit.infer.stream import translate_paths


def test_pad_to_multiple_and_crop_back():
    x = torch.randn(1, 3, 37, 50)
    y, (h, w) = pad_to_multiple(x, 4)
    assert y.shape[-2:] == (40, 52) and (h, w) == (37, 50)
    assert torch.equal(y[..., :37, :50], x)


def test_translate_odd_sizes_grayscale_and_folders(tiny_release, tmp_path):
    src = tmp_path / "in"
    rng = np.random.default_rng(0)
    save_image(src / "a.png", rng.random((37, 50, 3)))
    save_image(src / "sub" / "b.png", rng.random((20, 24, 3)))
    save_image(src / "gray.png", rng.random((33, 33, 1)))  # grayscale into an RGB model
    tr = load_translator(tiny_release, "AtoB", device="cpu")
    done = translate_paths(tr, [src], tmp_path / "out", batch_size=2)
    assert len(done) == 3
    assert load_image(tmp_path / "out" / "a.png", 3).shape == (37, 50, 3)
    assert load_image(tmp_path / "out" / "sub" / "b.png", 3).shape == (20, 24, 3)
    assert load_image(tmp_path / "out" / "gray.png", 3).shape == (33, 33, 3)
    # Glob input; batching does not change results.
    done = translate_paths(tr, [str(src / "*.png")], tmp_path / "out2", batch_size=1)
    assert {d.output.name for d in done} == {"a.png", "gray.png"}
    a1 = load_image(tmp_path / "out" / "a.png", 3)
    a2 = load_image(tmp_path / "out2" / "a.png", 3)
    assert np.abs(a1 - a2).max() < 1 / 255 + 1e-6


def test_translate_refuses_to_overwrite_inputs(tiny_release, tmp_path):
    save_image(tmp_path / "x.png", np.zeros((8, 8, 3)))
    tr = load_translator(tiny_release, "AtoB", device="cpu")
    with pytest.raises(UserError, match="overwrite"):
        translate_paths(tr, [tmp_path / "x.png"], tmp_path)
    with pytest.raises(DataError, match="not found"):
        translate_paths(tr, [tmp_path / "missing.png"], tmp_path / "o")
    # a.jpg -> a.png in its own folder, where the user's own a.png (not an input) already is
    save_image(tmp_path / "a.jpg", np.zeros((8, 8, 3)))
    save_image(tmp_path / "a.png", np.ones((8, 8, 3)))
    with pytest.raises(UserError, match="would overwrite a file next to the input"):
        translate_paths(tr, [tmp_path / "a.jpg"], tmp_path)
    assert load_image(tmp_path / "a.png", 3).min() == 1.0
    translate_paths(tr, [tmp_path / "a.jpg"], tmp_path, suffix="_fake")  # distinct names: written,
    translate_paths(tr, [tmp_path / "a.jpg"], tmp_path, suffix="_fake")  # and replaced on a rerun
    assert (tmp_path / "a_fake.png").is_file()


def test_translator_output_matches_the_module(tiny_release):
    from cyclekit.release import load_generator

    net, cfg = load_generator(tiny_release, "AtoB")
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        expected = net(x)
    assert torch.allclose(Translator(net, cfg)(x), expected)


def test_outputs_never_collide(tiny_release, tmp_path):
    """x.png and x.jpg in one folder give two outputs; the same name from two folders is refused
    before anything is written, naming both inputs."""
    src = tmp_path / "in"
    save_image(src / "x.png", np.zeros((8, 8, 3)))
    save_image(src / "x.jpg", np.ones((8, 8, 3)))
    tr = load_translator(tiny_release, "AtoB", device="cpu")
    done = translate_paths(tr, [src], tmp_path / "out")
    assert len(done) == 2
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["x.jpg.png", "x.png"]
    save_image(tmp_path / "d1" / "y.png", np.zeros((8, 8, 3)))
    save_image(tmp_path / "d2" / "y.png", np.zeros((8, 8, 3)))
    with pytest.raises(UserError, match=r"d1/y\.png and .*d2/y\.png would both be written"):
        translate_paths(tr, [tmp_path / "d1" / "y.png", tmp_path / "d2" / "y.png"], tmp_path / "o2")
    assert not (tmp_path / "o2").exists()


def test_bad_output_options_are_refused(tiny_release, tmp_path):
    save_image(tmp_path / "in" / "a.png", np.zeros((8, 8, 3)))
    (tmp_path / "file.txt").write_text("not a folder")
    tr = load_translator(tiny_release, "AtoB", device="cpu")
    with pytest.raises(UserError, match="is a file, not a folder"):
        translate_paths(tr, [tmp_path / "in"], tmp_path / "file.txt")
    with pytest.raises(UserError, match="path separator"):
        translate_paths(tr, [tmp_path / "in"], tmp_path / "out", suffix="../up")
    translate_paths(tr, [tmp_path / "in" / "a.png"], tmp_path / "one.webp")  # one input: that file
    from PIL import Image

    assert Image.open(tmp_path / "one.webp").format == "WEBP"
    save_image(tmp_path / "in" / "b.png", np.zeros((8, 8, 3)))
    with pytest.raises(UserError, match="names one image file but 2 images"):
        translate_paths(tr, [tmp_path / "in"], tmp_path / "two.png")
    with pytest.raises(UserError, match="--suffix"):
        translate_paths(tr, [tmp_path / "in" / "a.png"], tmp_path / "one.png", suffix="_x")
    translate_paths(tr, [tmp_path / "in"], str(tmp_path / "dir.png") + "/")  # a trailing slash: a folder
    assert sorted(p.name for p in (tmp_path / "dir.png").iterdir()) == ["a.png", "b.png"]
    with pytest.raises(UserError, match="would overwrite the input"):
        translate_paths(tr, [tmp_path / "in" / "a.png"], tmp_path / "in" / "a.png")
    assert not (tmp_path / "two.png").exists()
    with pytest.raises(UserError, match=r"\.json files cannot be written here.*out\.json/ for a folder"):
        translate_paths(tr, [tmp_path / "in"], tmp_path / "out.json")  # not silently a folder named out.json
    assert not (tmp_path / "out.json").exists()
    with pytest.raises(UserError, match=r"\.mp4 files cannot be written here"):
        translate_paths(tr, [tmp_path / "in"], tmp_path / "clip.mp4")  # translate writes images, not videos
    for folder in ("run.v2", "results.old"):  # dotted folder names that are no file type
        translate_paths(tr, [tmp_path / "in"], tmp_path / folder)
        assert sorted(p.name for p in (tmp_path / folder).iterdir()) == ["a.png", "b.png"]


@pytest.mark.parametrize("shape", [(2, 3), (1, 1), (5, 1)])
def test_tiny_images_translate_to_their_own_size(tiny_release, tmp_path, shape):
    save_image(tmp_path / "in" / "t.png", np.random.default_rng(0).random((*shape, 3)))
    tr = load_translator(tiny_release, "AtoB", device="cpu")
    translate_paths(tr, [tmp_path / "in"], tmp_path / "out")
    assert load_image(tmp_path / "out" / "t.png", 3).shape == (*shape, 3)


def test_streaming_keeps_few_images_in_memory(tiny_release, tmp_path, monkeypatch):
    """Decoded-but-unwritten images stay below the prefetch bound, however many inputs there are."""
    import cyclekit.infer.stream as stream

    for i in range(24):
        save_image(tmp_path / "in" / f"{i:02d}.png", np.full((12, 12, 3), i / 24))
    live, peak = [0], [0]
    real_load, real_save = stream.load_image, stream.save_image

    def load(path, channels):
        live[0] += 1
        peak[0] = max(peak[0], live[0])
        return real_load(path, channels)

    def save(path, array):
        live[0] -= 1
        return real_save(path, array)

    monkeypatch.setattr(stream, "load_image", load)
    monkeypatch.setattr(stream, "save_image", save)
    tr = load_translator(tiny_release, "AtoB", device="cpu")
    done = translate_paths(tr, [tmp_path / "in"], tmp_path / "out", batch_size=2, prefetch=4)
    assert len(done) == 24 and live[0] == 0
    assert peak[0] <= 4 + 2  # prefetch + one batch, not 24


def test_full_disk_says_how_many_were_written(tiny_release, tmp_path, monkeypatch):
    import errno

    import cyclekit.infer.stream as stream
    from cyclekit.errors import OutputError
    from cyclekit.io.files import atomic_path

    for i in range(6):
        save_image(tmp_path / "in" / f"{i}.png", np.zeros((8, 8, 3)))
    calls = [0]
    real_save = stream.save_image

    def save(path, array):
        calls[0] += 1
        if calls[0] > 3:  # the disk fills up during the 4th write
            with atomic_path(path) as tmp:
                tmp.write_bytes(b"partial")
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(path, array)

    monkeypatch.setattr(stream, "save_image", save)
    tr = load_translator(tiny_release, "AtoB", device="cpu")
    with pytest.raises(OutputError, match=r"no space left.*3 of 6 outputs were written"):
        translate_paths(tr, [tmp_path / "in"], tmp_path / "out", batch_size=1)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0.png", "1.png", "2.png"]  # no temp left


def test_skip_bad_counts_the_skipped(tiny_release, tmp_path):
    save_image(tmp_path / "in" / "ok.png", np.zeros((8, 8, 3)))
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    tr = load_translator(tiny_release, "AtoB", device="cpu")
    with pytest.raises(DataError, match=r"broken.png.*pass --skip-bad"):  # names the file and the way past it
        translate_paths(tr, [tmp_path / "in"], tmp_path / "out")
    assert not (tmp_path / "out").exists()  # the header check found it before any write
    done = translate_paths(tr, [tmp_path / "in"], tmp_path / "out", on_bad_file="skip")
    assert len(done) == 1 and len(done.skipped) == 1 and "broken.png" in done.skipped[0]


def test_tiny_image_through_onnxruntime(tiny_release, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    save_image(tmp_path / "in" / "t.png", np.random.default_rng(0).random((2, 3, 3)))
    tr = load_translator(tiny_release, "AtoB", device="cpu", backend="onnxruntime")
    translate_paths(tr, [tmp_path / "in"], tmp_path / "out")
    assert load_image(tmp_path / "out" / "t.png", 3).shape == (2, 3, 3)


def test_consecutive_files_broken_after_their_header_are_skipped_and_the_rest_translated(tiny_release, tmp_path):
    """Files whose header reads but whose pixels do not (truncated) are only found while
    streaming; several in a row must not end the stream early."""
    good = tmp_path / "good.png"
    save_image(good, np.random.default_rng(0).random((16, 16, 3)))
    data = good.read_bytes()
    for i in range(6):
        (tmp_path / "in").mkdir(exist_ok=True)
        (tmp_path / "in" / f"{i}_cut.png").write_bytes(data[: len(data) // 2])  # header intact, pixels cut
    for i in range(6, 9):
        save_image(tmp_path / "in" / f"{i}_ok.png", np.random.default_rng(i).random((16, 16, 3)))
    tr = load_translator(tiny_release, "AtoB", device="cpu")
    done = translate_paths(tr, [tmp_path / "in"], tmp_path / "out", batch_size=1, prefetch=2, on_bad_file="skip")
    assert len(done) == 3 and len(done.skipped) == 6
