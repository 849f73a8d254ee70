"""Image I/O: formats, bit depths, channels, orientation, bad files; tensors; transforms."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from cyclekit.config import DataConfig
from cyclekit.io.images import (
    IMAGE_EXTENSIONS, list_images, load_image, save_image, to_image, to_tensor,
)
from cyclekit.data.transforms import preprocess
from cyclekit.errors import DataError


def _rgb(h=12, w=10, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ---------------------------------------------------------------------- formats
@pytest.mark.parametrize("ext", [".png", ".bmp", ".tif", ".webp"])
def test_lossless_rgb_formats_round_trip(tmp_path, ext):
    a = _rgb()
    p = tmp_path / f"x{ext}"
    Image.fromarray(a).save(p, **({"lossless": True} if ext == ".webp" else {}))
    out = load_image(p, 3)
    assert out.dtype == np.float32 and out.shape == (12, 10, 3)
    np.testing.assert_allclose(out, a / 255.0, atol=1e-6)


def test_jpeg_and_uppercase_extension(tmp_path):
    a = np.full((16, 16, 3), 128, np.uint8)
    Image.fromarray(a).save(tmp_path / "x.JPG", quality=95)
    assert list_images(tmp_path) == [tmp_path / "x.JPG"]
    out = load_image(tmp_path / "x.JPG", 3)
    assert np.abs(out - 128 / 255).max() < 0.02


def test_8bit_gray_png_and_channel_conversions(tmp_path):
    g = np.arange(120, dtype=np.uint8).reshape(12, 10)
    Image.fromarray(g).save(tmp_path / "g.png")
    one = load_image(tmp_path / "g.png", 1)
    three = load_image(tmp_path / "g.png", 3)
    four = load_image(tmp_path / "g.png", 4)
    np.testing.assert_allclose(one[..., 0], g / 255.0, atol=1e-6)
    assert three.shape == (12, 10, 3) and np.array_equal(three[..., 0], three[..., 2])
    assert four.shape == (12, 10, 4) and np.all(four[..., 3] == 1.0)


def test_16bit_gray_png_keeps_full_precision(tmp_path):
    g = (np.arange(120, dtype=np.uint16).reshape(12, 10) * 500 + 1000).astype(np.uint16)
    Image.fromarray(g).save(tmp_path / "g16.png")
    out = load_image(tmp_path / "g16.png", 1)
    np.testing.assert_array_equal(out[..., 0], (g / 65535.0).astype(np.float32))
    assert out[0, 0, 0] == np.float32(1000 / 65535)  # not quantised to a multiple of 1/255
    # save_image writes 16-bit back losslessly
    save_image(tmp_path / "back.png", out, bit_depth=16)
    np.testing.assert_array_equal(load_image(tmp_path / "back.png", 1), out)


def test_16bit_rgb_png_and_tiff_keep_precision(tmp_path):
    cv2 = pytest.importorskip("cv2")
    a = (np.arange(12 * 10 * 3).reshape(12, 10, 3) * 150 + 7).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "c16.png"), a[..., ::-1])  # cv2 writes BGR
    cv2.imwrite(str(tmp_path / "c16.tif"), a[..., ::-1])
    for name in ("c16.png", "c16.tif"):
        out = load_image(tmp_path / name, 3)
        np.testing.assert_array_equal(out, (a / 65535.0).astype(np.float32))
    save_image(tmp_path / "o16.png", out, bit_depth=16)
    np.testing.assert_array_equal(load_image(tmp_path / "o16.png", 3), out)


def test_a_profile_lands_only_in_a_file_of_its_colour_space(tmp_path):
    from PIL import ImageCms

    from cyclekit.io.channels import profile_for

    rgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    grey = rgb[:16] + b"GRAY" + rgb[20:]  # a grey profile's header
    assert [profile_for(rgb, c) is not None for c in (1, 2, 3, 4)] == [False, False, True, True]
    assert [profile_for(grey, c) is not None for c in (1, 2, 3, 4)] == [True, True, False, False]
    assert profile_for(rgb[:16] + b"CMYK" + rgb[20:], 3) is None and profile_for(b"short", 3) is None
    save_image(tmp_path / "la16.png", np.full((4, 4, 2), 0.5, np.float32), bit_depth=16, icc=grey)  # RGBA now
    assert "icc_profile" not in Image.open(tmp_path / "la16.png").info


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("ext", ["png", "tif"])
def test_16bit_outputs_keep_the_colour_profile(tmp_path, channels, ext):
    pytest.importorskip("cv2")
    if ext == "tif" and channels > 1:
        tifffile = pytest.importorskip("tifffile")
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    if channels == 1:
        icc = icc[:16] + b"GRAY" + icc[20:]  # a grey photo carries a grey profile
    a = np.random.default_rng(channels).random((9, 7, channels)).astype(np.float32)
    path = save_image(tmp_path / f"o16.{ext}", a, bit_depth=16, icc=icc)
    np.testing.assert_allclose(load_image(path, channels), a, atol=1e-5)  # still 16 bits, still the pixels
    if ext == "tif" and channels > 1:
        with tifffile.TiffFile(path) as tf:
            assert bytes(tf.pages[0].tags[34675].value) == icc  # the TIFF's InterColorProfile tag
    else:
        assert Image.open(path).info.get("icc_profile") == icc


def test_palette_and_rgba_composited_on_white(tmp_path):
    p = Image.fromarray(_rgb()).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    p.save(tmp_path / "p.png")
    assert load_image(tmp_path / "p.png", 3).shape == (12, 10, 3)
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255  # red ...
    rgba[:2, ..., 3] = 255  # ... opaque in the top half, fully transparent below
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    rgb = load_image(tmp_path / "a.png", 3)
    np.testing.assert_allclose(rgb[0, 0], [1, 0, 0])
    np.testing.assert_allclose(rgb[3, 0], [1, 1, 1])  # transparent -> white
    kept = load_image(tmp_path / "a.png", 4)
    np.testing.assert_allclose(kept[3, 0], [1, 0, 0, 0])
    gray = load_image(tmp_path / "a.png", 1)
    assert gray[0, 0, 0] == pytest.approx(0.299, abs=1e-6) and gray[3, 0, 0] == 1.0


def test_cmyk_jpeg(tmp_path):
    Image.fromarray(_rgb()).convert("CMYK").save(tmp_path / "c.jpg")
    assert load_image(tmp_path / "c.jpg", 3).shape == (12, 10, 3)


def test_exif_orientation_is_applied(tmp_path):
    im = Image.fromarray(np.zeros((10, 20, 3), np.uint8))  # 20 wide, 10 high
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    im.save(tmp_path / "r.jpg", exif=exif.tobytes())
    assert load_image(tmp_path / "r.jpg", 3).shape == (20, 10, 3)


def test_multichannel_npy_and_tiff(tmp_path):
    a = np.random.default_rng(0).random((6, 5, 5), dtype=np.float32)
    np.save(tmp_path / "m.npy", a)
    np.testing.assert_array_equal(load_image(tmp_path / "m.npy", 5), a)
    with pytest.raises(DataError, match="5 channel"):
        load_image(tmp_path / "m.npy", 3)
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(tmp_path / "m.tif", (a * 65535).astype(np.uint16), planarconfig="contig")
    out = load_image(tmp_path / "m.tif", 5)
    assert out.shape == (6, 5, 5) and np.abs(out - a).max() < 1e-4
    with pytest.raises(DataError, match="channel"):
        load_image(tmp_path / "m.tif", 2)


# ---------------------------------------------------------------------- bad files
def test_truncated_png_names_the_file(tmp_path):
    p = tmp_path / "t.png"
    Image.fromarray(_rgb(64, 64)).save(p)
    p.write_bytes(p.read_bytes()[:-200])
    with pytest.raises(DataError, match="t.png"):
        load_image(p, 3)


def test_truncated_jpeg(tmp_path):
    p = tmp_path / "t.jpg"
    Image.fromarray(_rgb(64, 64)).save(p, quality=95)
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    with pytest.raises(DataError, match="t.jpg.*truncated"):
        load_image(p, 3)


def test_empty_text_and_missing_files(tmp_path):
    (tmp_path / "e.png").write_bytes(b"")
    with pytest.raises(DataError, match="e.png.*empty"):
        load_image(tmp_path / "e.png", 3)
    (tmp_path / "t.png").write_text("hello, not an image")
    with pytest.raises(DataError, match="t.png.*not a recognised image"):
        load_image(tmp_path / "t.png", 3)
    with pytest.raises(DataError, match="nope.png"):
        load_image(tmp_path / "nope.png", 3)


def test_list_images(tmp_path):
    with pytest.raises(DataError, match="not found"):
        list_images(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"no images \(.*\.png.*\) found in"):
        list_images(tmp_path)
    (tmp_path / "sub").mkdir()
    for name in ("b.png", "a.jpeg", "sub/c.TIFF", "._a.png", ".hidden.png"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == ["a.jpeg", "b.png", "c.TIFF"]
    assert [p.name for p in list_images(tmp_path, recursive=False)] == ["a.jpeg", "b.png"]
    assert {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"} == set(IMAGE_EXTENSIONS)


# ---------------------------------------------------------------------- saving, tensors
def test_save_image_formats_and_atomicity(tmp_path):
    a = np.random.default_rng(1).random((8, 6, 3), dtype=np.float32)
    for ext in (".png", ".jpg", ".webp", ".bmp", ".tif"):
        p = save_image(tmp_path / "deep" / f"o{ext}", a)
        assert load_image(p, 3).shape == (8, 6, 3)
    np.testing.assert_allclose(load_image(tmp_path / "deep" / "o.png", 3), np.round(a * 255) / 255,
                               atol=1e-6)
    save_image(tmp_path / "rgba.jpg", np.ones((4, 4, 4), np.float32))
    assert [p.name for p in (tmp_path / "deep").iterdir() if p.name.startswith(".")] == []
    with pytest.raises(DataError, match="16-bit"):
        save_image(tmp_path / "x.jpg", a, bit_depth=16)
    with pytest.raises(DataError, match="npy"):
        save_image(tmp_path / "x.png", np.zeros((4, 4, 5), np.float32))


def test_tensor_round_trip():
    a = np.random.default_rng(2).random((5, 7, 3), dtype=np.float32)
    t = to_tensor(a)
    assert t.shape == (3, 5, 7) and t.dtype == torch.float32
    assert t.min() >= -1 and t.max() <= 1
    np.testing.assert_allclose(to_image(t), a, atol=1e-6)
    np.testing.assert_allclose(to_image(t[None] * 3), np.where(a > 0.5, 1.0, 0.0), atol=0.5)


# ---------------------------------------------------------------------- transforms
@pytest.mark.parametrize("mode,shape", [
    ("resize_and_crop", (16, 16)), ("crop", (16, 16)), ("scale_width", (32, 20)),  # 30 -> 32: multiples of 4
    ("scale_width_and_crop", (16, 16)), ("none", (44, 32)),  # as the official __make_power_2
])
def test_preprocess_output_sizes(mode, shape):
    cfg = DataConfig(preprocess=mode, load_size=20, crop_size=16)
    img = np.random.default_rng(0).random((45, 30, 3), dtype=np.float32)
    for train in (True, False):
        out = preprocess(img, cfg, np.random.default_rng(0), train)
        assert out.shape == shape + (3,) and out.dtype == np.float32
        assert out.min() >= 0 and out.max() <= 1


def test_preprocess_is_a_function_of_the_rng_and_keeps_precision():
    cfg = DataConfig(preprocess="resize_and_crop", load_size=24, crop_size=16)
    img = np.random.default_rng(0).random((32, 32, 2), dtype=np.float32) * 0.01
    a = preprocess(img, cfg, np.random.default_rng(5), True)
    b = preprocess(img, cfg, np.random.default_rng(5), True)
    assert np.array_equal(a, b)
    assert len(np.unique(a)) > 300  # not quantised to 8 bits (0.01 * 255 < 3 levels)
    centre = preprocess(img, cfg, np.random.default_rng(1), False)
    assert np.array_equal(centre, preprocess(img, cfg, np.random.default_rng(2), False))


def test_flip_only_when_training():
    cfg = DataConfig(preprocess="none", flip=True)
    img = np.arange(32, dtype=np.float32).reshape(4, 8, 1) / 32  # sides already multiples of 4
    flips = {preprocess(img, cfg, np.random.default_rng(s), True)[0, 0, 0] for s in range(20)}
    assert flips == {img[0, 0, 0], img[0, -1, 0]}
    assert preprocess(img, cfg, np.random.default_rng(0), False)[0, 0, 0] == img[0, 0, 0]


def test_image_smaller_than_crop_names_file_and_fix():
    cfg = DataConfig(preprocess="crop", crop_size=32)
    with pytest.raises(DataError, match=r"small\.png: image is 20x10.*resize_and_crop.*crop-size"):
        preprocess(np.zeros((10, 20, 3), np.float32), cfg, np.random.default_rng(0), True,
                   path="small.png")


def test_quiet_logging(caplog, tmp_path):
    with caplog.at_level(logging.WARNING):
        Image.fromarray(_rgb()).save(tmp_path / "ok.png")
        load_image(tmp_path / "ok.png", 3)
    assert caplog.records == []


def test_bytes_and_files_decode_identically(tmp_path):
    """The server's uploads and the CLI's files go through the same decoder (16-bit, alpha)."""
    from cyclekit.io.images import decode_image_bytes

    g16 = (np.arange(20 * 30, dtype=np.uint16).reshape(20, 30) * 97).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    rgba = np.random.default_rng(1).integers(0, 256, (12, 10, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    for name, channels in (("g16.png", 1), ("g16.png", 3), ("rgba.png", 3), ("rgba.png", 4)):
        data = (tmp_path / name).read_bytes()
        assert np.array_equal(decode_image_bytes(data, channels), load_image(tmp_path / name, channels))
    assert decode_image_bytes((tmp_path / "g16.png").read_bytes(), 1).max() > 200 / 255  # 16 bits kept
    with pytest.raises(DataError, match="the upload"):
        decode_image_bytes(b"\x89PNG\r\n\x1a\n garbage", 3)


@pytest.mark.parametrize("mode", ["scale_width", "none"])
def test_shape_keeping_modes_give_multiples_of_four(mode):
    """The official __make_power_2: any load size works with the ResNet generators."""
    cfg = DataConfig(preprocess=mode, load_size=30, crop_size=30)
    out = preprocess(np.zeros((47, 61, 3), np.float32), cfg, np.random.default_rng(0), True)
    assert out.shape[0] % 4 == 0 and out.shape[1] % 4 == 0
    if mode == "scale_width":
        assert out.shape[1] == 32  # the load size 30 rounded to a multiple of 4


def test_a_photo_goes_back_in_the_channels_its_file_had(tmp_path):
    from cyclekit.io.channels import grey_as_source, is_grey, without_opaque_alpha

    rng = np.random.default_rng(0)
    grey = rng.random((6, 5, 1), dtype=np.float32)
    alpha = np.full((6, 5, 1), 0.5, np.float32)
    colour = rng.random((6, 5, 3), dtype=np.float32)
    opaque = np.concatenate([colour, np.ones_like(alpha)], axis=2)
    assert without_opaque_alpha(opaque).shape[2] == 3 and without_opaque_alpha(colour) is colour
    translucent = np.concatenate([colour, alpha], axis=2)
    assert without_opaque_alpha(translucent) is translucent
    # grey, with and without alpha, as a grey file decodes: equal colour channels
    for src in (np.repeat(grey, 3, axis=2), np.concatenate([np.repeat(grey, 3, axis=2), alpha], axis=2)):
        assert is_grey(src)
        result = src.copy()
        result[..., :3] = 1.0 - result[..., :3]
        back = grey_as_source(src, result)
        assert back.shape[2] == src.shape[2] - 2 and np.allclose(back[..., 0], 1.0 - grey[..., 0])
        assert np.array_equal(back[..., 1:], src[..., 3:])
    # one pixel of colour is enough to keep a photo in colour; integer results keep their dtype
    tinted = np.repeat(grey, 3, axis=2)
    tinted[0, 0, 0] += 0.01
    assert not is_grey(tinted) and grey_as_source(tinted, colour) is colour
    u8 = np.round(colour * 255).astype(np.uint8)
    assert grey_as_source(np.repeat(grey, 3, axis=2), u8).dtype == np.uint8
    # grey + alpha is written as such to PNG, composited on white for JPEG, as RGBA at 16 bits
    la = np.concatenate([grey, alpha], axis=2)
    save_image(tmp_path / "la.png", la)
    assert Image.open(tmp_path / "la.png").mode == "LA"
    assert np.allclose(load_image(tmp_path / "la.png", 2), la, atol=1 / 255)
    save_image(tmp_path / "la.jpg", la)
    assert Image.open(tmp_path / "la.jpg").mode == "L"
    save_image(tmp_path / "la16.png", la, bit_depth=16)
    assert np.allclose(load_image(tmp_path / "la16.png", 4)[..., 3], 0.5, atol=1e-4)


def test_a_big_photo_is_read_without_pillows_warning_and_a_bomb_is_refused(tmp_path, monkeypatch):
    import warnings

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow warns past this, refuses past twice it
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / "big.png")  # 1,600 px
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_image(tmp_path / "big.png", 1).shape == (40, 40, 1)
    Image.fromarray(np.zeros((50, 50), np.uint8)).save(tmp_path / "bomb.png")  # 2,500 px
    with pytest.raises(DataError, match="bomb.png: image too large to open safely"):
        load_image(tmp_path / "bomb.png", 1)
