"""Translate images, folders and globs of any size."""
import numpy as np
import pytest
import torch

from cyclekit.data.images import load_image, save_image
from cyclekit.errors import DataError, UserError
from cyclekit.translate import Translator, load_translator, pad_to_multiple, translate_paths


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


def test_translator_output_matches_the_module(tiny_release):
    from cyclekit.checkpoint import load_generator

    net, cfg = load_generator(tiny_release, "AtoB")
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        expected = net(x)
    assert torch.allclose(Translator(net, cfg)(x), expected)
