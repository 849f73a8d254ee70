"""Unpaired datasets: determinism, pairing, sampling/resume/sharding, bad files, .npz, test sets."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from cyclekit.config import DataConfig, ModelConfig
from cyclekit.data.datasets import (
    EpochSampler, UnpairedDataset, check_files, list_test_pairs, load_npz,
    resolve_domain_dirs,
)
from cyclekit.errors import DataError


def _write(folder, n, size=(20, 24), seed=0, prefix="img"):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for k in range(n):
        p = folder / f"{prefix}{k:02d}.png"
        Image.fromarray(rng.integers(0, 256, size + (3,), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


@pytest.fixture
def root(tmp_path):
    _write(tmp_path / "trainA", 5, seed=1)
    _write(tmp_path / "trainB", 3, seed=2)
    return tmp_path


def _cfg(root, **kw):
    kw.setdefault("load_size", 18)
    kw.setdefault("crop_size", 16)
    return DataConfig(dataroot=str(root), **kw)


def _ds(root, seed=0, **kw):
    return UnpairedDataset.from_config(_cfg(root, **kw), ModelConfig(), seed)


def test_resolve_domain_dirs(root, tmp_path):
    assert resolve_domain_dirs(_cfg(root)) == (root / "trainA", root / "trainB")
    with pytest.raises(DataError, match="testA.*expected layout"):
        resolve_domain_dirs(_cfg(root), "test")
    with pytest.raises(DataError, match="does not exist"):
        resolve_domain_dirs(_cfg(tmp_path / "nope"))
    with pytest.raises(DataError, match="--dataroot"):
        resolve_domain_dirs(DataConfig())
    explicit = DataConfig(dir_a=str(root / "trainB"), dir_b=str(root / "trainA"))
    assert resolve_domain_dirs(explicit) == (root / "trainB", root / "trainA")


def test_items_length_and_determinism(root):
    ds = _ds(root)
    assert len(ds) == 5  # max(5, 3)
    item = ds[4]
    assert item["A"].shape == (3, 16, 16) and item["B"].shape == (3, 16, 16)
    assert item["A"].min() >= -1 and item["A"].max() <= 1
    assert item["A_path"].endswith("img04.png") and "trainB" in item["B_path"]
    again = _ds(root)[4]  # a fresh dataset: pure function of (seed, epoch, index)
    assert torch.equal(item["A"], again["A"]) and torch.equal(item["B"], again["B"])
    assert item["B_path"] == again["B_path"]
    ds.set_epoch(1)
    assert not torch.equal(ds[4]["A"], item["A"])  # new crop / flip
    ds.set_epoch(0)
    assert torch.equal(ds[4]["A"], item["A"])
    other_seed = _ds(root, seed=1)
    assert not all(torch.equal(other_seed[i]["A"], _ds(root)[i]["A"]) for i in range(5))


def test_epoch_order_and_serial_batches(root):
    ds = _ds(root)
    o0, o1 = ds.epoch_order(0), ds.epoch_order(1)
    assert sorted(o0) == sorted(o1) == list(range(5)) and not np.array_equal(o0, o1)
    assert np.array_equal(o0, _ds(root).epoch_order(0))
    serial = _ds(root, serial_batches=True)
    assert np.array_equal(serial.epoch_order(3), np.arange(5))
    assert [serial[i]["B_path"][-9:] for i in range(5)] == [
        "img00.png", "img01.png", "img02.png", "img00.png", "img01.png"]
    random_b = set()
    for e in range(4):
        ds.set_epoch(e)
        random_b |= {ds[i]["B_path"] for i in range(5)}
    assert len(random_b) == 3  # B is drawn at random, so every B image turns up


def test_max_images(root):
    ds = _ds(root, max_images=2)
    assert len(ds) == 2 and ds.files_a[-1].name == "img01.png"


def test_epoch_sampler_start_and_shards(root):
    ds = _ds(root)
    order = ds.epoch_order(2).tolist()
    assert list(EpochSampler(ds, 2)) == order
    assert list(EpochSampler(ds, 2, start=3)) == order[3:]
    shards = [list(EpochSampler(ds, 2, rank=r, world_size=2)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 3
    padded = order + order[:1]
    assert shards[0] == padded[0::2] and shards[1] == padded[1::2]
    # resuming at global position 2 (one step of batch 1 on each of 2 ranks)
    resumed = [list(EpochSampler(ds, 2, start=2, rank=r, world_size=2)) for r in range(2)]
    assert resumed[0] == shards[0][1:] and resumed[1] == shards[1][1:]
    assert len(EpochSampler(ds, 2, start=99)) == 0


def test_dataloader_with_sampler(root):
    ds = _ds(root)
    ds.set_epoch(0)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, sampler=EpochSampler(ds, 0))
    batches = list(loader)
    assert [b["A"].shape[0] for b in batches] == [2, 2, 1]
    assert torch.equal(batches[0]["A"][0], ds[int(ds.epoch_order(0)[0])]["A"])


def test_bad_file_error_and_skip(root, caplog):
    bad = root / "trainA" / "img02.png"
    bad.write_bytes(bad.read_bytes()[:60])
    with pytest.raises(DataError, match="img02.png"):
        _ds(root)[2]
    good, badlist = check_files(sorted((root / "trainA").iterdir()), 3)
    assert len(good) == 4 and [p.name for p, _ in badlist] == ["img02.png"]
    with pytest.raises(DataError, match=r"(?s)1 unreadable.*on-bad-file skip.*img02.png"):
        _ds(root).validate()
    with caplog.at_level(logging.WARNING):
        item = _ds(root, on_bad_file="skip")[2]
    assert item["A_path"].endswith("img03.png")  # the next good file
    assert any("img02.png" in r.getMessage() for r in caplog.records)
    skip = _ds(root, on_bad_file="skip")
    assert [p for p, _ in skip.validate()] == [str(bad)]
    assert torch.equal(skip[2]["A"], item["A"])  # same result whether or not found up front


def test_too_small_for_crop_names_the_file(tmp_path):
    _write(tmp_path / "trainA", 1, size=(8, 8))
    _write(tmp_path / "trainB", 1)
    with pytest.raises(DataError, match=r"img00\.png: image is 8x8.*crop-size"):
        _ds(tmp_path, preprocess="crop")[0]


def test_grayscale_channels(root):
    ds = UnpairedDataset.from_config(_cfg(root), ModelConfig(in_channels=1, out_channels=4), 0)
    item = ds[0]
    assert item["A"].shape[0] == 1 and item["B"].shape[0] == 4


# ---------------------------------------------------------------------- .npz
def test_npz_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (4, 20, 20, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (2, 20, 20), dtype=np.uint8)  # N x H x W: one channel
    np.savez_compressed(tmp_path / "faces.npz", a, b)
    la, lb = load_npz(tmp_path / "faces.npz")
    assert la.shape == (4, 20, 20, 3) and lb.shape == (2, 20, 20, 1)
    cfg = DataConfig(dataroot=str(tmp_path / "faces.npz"), preprocess="none", flip=False)
    ds = UnpairedDataset.from_config(cfg, ModelConfig(in_channels=3, out_channels=1), 0)
    assert len(ds) == 4
    item = ds[3]
    assert item["A_path"] == "faces.npz:arr_0[3]" and item["B_path"].startswith("faces.npz:arr_1[")
    np.testing.assert_allclose((item["A"].permute(1, 2, 0).numpy() + 1) / 2, a[3] / 255.0, atol=1e-6)
    # float 0..255 as written by Keras' img_to_array is accepted
    np.savez(tmp_path / "f.npz", a.astype(np.float32), b.astype(np.float32))
    assert load_npz(tmp_path / "f.npz")[0].dtype == np.float32


def test_bad_npz_errors(tmp_path):
    np.savez(tmp_path / "one.npz", np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(DataError, match="arr_0.*arr_1"):
        load_npz(tmp_path / "one.npz")
    np.savez(tmp_path / "shape.npz", np.zeros((4, 4), np.uint8), np.zeros((1, 4, 4), np.uint8))
    with pytest.raises(DataError, match="N x H x W"):
        load_npz(tmp_path / "shape.npz")
    np.savez(tmp_path / "dtype.npz", np.zeros((1, 4, 4), np.int64), np.zeros((1, 4, 4), np.uint8))
    with pytest.raises(DataError, match="dtype"):
        load_npz(tmp_path / "dtype.npz")
    np.savez(tmp_path / "pickle.npz", np.array([{"x": 1}], dtype=object), np.zeros((1, 4, 4)))
    with pytest.raises(DataError, match="pickle.npz"):
        load_npz(tmp_path / "pickle.npz")
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(DataError, match="junk.npz"):
        load_npz(tmp_path / "junk.npz")
    with pytest.raises(DataError, match="not found"):
        load_npz(tmp_path / "missing.npz")


# ---------------------------------------------------------------------- test sets
def test_test_pairs_with_ground_truth(tmp_path):
    _write(tmp_path / "testA", 3)
    _write(tmp_path / "testB", 2)
    (tmp_path / "testA_gt").mkdir()
    Image.new("RGB", (24, 20)).save(tmp_path / "testA_gt" / "img00.png")
    Image.new("RGB", (24, 20)).save(tmp_path / "testA_gt" / "img01.jpg")  # other extension
    pairs = list_test_pairs(tmp_path, "A")
    assert [(p.name, g.name if g else None) for p, g in pairs] == [
        ("img00.png", "img00.png"), ("img01.png", "img01.jpg"), ("img02.png", None)]
    assert all(g is None for _, g in list_test_pairs(tmp_path, "B"))
    with pytest.raises(DataError, match="testA"):
        list_test_pairs(tmp_path / "nothing", "A")


def test_augment_changes_training_images_reproducibly_and_never_test_images():
    """--augment: colour (and with full, framing and resolution) drawn from the sample's own rng, so a
    seeded sample is the same image on a rerun or a resume; test images and --augment none untouched."""
    from cyclekit.data.transforms import _affine, augment, preprocess

    yy, xx = np.mgrid[:32, :32] / 31.0
    img = np.stack([xx, yy, 0.5 * (xx + yy)], axis=2).astype(np.float32) * 0.8 + 0.1
    for mode in ("colour", "geometry", "full"):
        cfg = DataConfig(preprocess="none", flip=False, augment=mode)
        a = preprocess(img, cfg, np.random.default_rng(7), train=True)
        b = preprocess(img, cfg, np.random.default_rng(7), train=True)
        c = preprocess(img, cfg, np.random.default_rng(8), train=True)
        assert a.shape == img.shape and a.dtype == np.float32 and 0.0 <= a.min() and a.max() <= 1.0
        assert np.array_equal(a, b) and np.abs(a - img).mean() > 0.01 and np.abs(a - c).mean() > 0.005
        assert np.array_equal(preprocess(img, cfg, np.random.default_rng(7), train=False), img)
    none = DataConfig(preprocess="none", flip=False)
    assert np.array_equal(preprocess(img, none, np.random.default_rng(7), train=True), img)
    # --augment geometry moves pixels but never changes a flat image's colour (no jitter); colour does
    flat = np.full((32, 32, 3), [0.6, 0.4, 0.3], np.float32)
    for seed in range(4):
        moved = preprocess(flat, DataConfig(preprocess="none", flip=False, augment="geometry"),
                           np.random.default_rng(seed), train=True)
        assert np.allclose(moved, flat, atol=1e-5)
    tinted = preprocess(flat, DataConfig(preprocess="none", flip=False, augment="colour"), np.random.default_rng(0), train=True)
    assert np.abs(tinted - flat).max() > 0.01
    # one channel works; the geometry is the identity at no rotation, zoom or shift, and it repeats
    # the edge (never mirrors it) where it reaches past the image
    grey = augment(img[..., :1], np.random.default_rng(0), geometry=True)
    assert grey.shape == (32, 32, 1)
    assert np.abs(_affine(img, 0.0, 1.0, np.zeros(2)) - img).max() < 1e-5
    moved = _affine(img, 0.0, 1.0, np.array([0.25, 0.0]))  # a quarter of the side to the right
    assert np.allclose(moved[:, :8], img[:, :1], atol=1e-5) and np.allclose(moved[:, 16], img[:, 8], atol=0.02)


def test_augment_is_one_of_the_listed_values():
    from cyclekit.config import Config, validate_config

    cfg = Config()
    cfg.data.augment = "heavy"
    with pytest.raises(Exception, match="augment"):
        validate_config(cfg)


def test_augment_rotation_keeps_shapes_on_non_square_images():
    """A rotation is a rotation in pixels on a 40 x 80 image too: a 30 px horizontal bar turned by 90
    degrees stands 30 px tall and a few px wide (not squeezed by the aspect ratio)."""
    from cyclekit.data.transforms import _affine

    img = np.zeros((40, 80, 1), np.float32)
    img[19:21, 25:55] = 1.0
    turned = _affine(img, np.pi / 2, 1.0, np.zeros(2))[..., 0] > 0.5
    rows, cols = np.nonzero(turned)
    assert 27 <= rows.max() - rows.min() + 1 <= 32 and cols.max() - cols.min() + 1 <= 4
