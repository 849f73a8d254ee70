"""Synthetic worlds: determinism, ground truth, folder layout, unpairedness, errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cyclekit.data import synthetic as syn
from cyclekit.errors import ConfigError, DataError, UserError

OBJECT_WORLDS = ["fruit", "zebra", "faces", "shapes", "appear", "morph"]  # only an object changes
GLOBAL_WORLDS = ["dusk", "ink"]  # every pixel changes (lighting, style)
WORLDS = OBJECT_WORLDS + GLOBAL_WORLDS


def _load(path):
    with Image.open(path) as im:
        return im.mode, np.asarray(im)


def _dilate(m: np.ndarray, r: int) -> np.ndarray:
    out = np.pad(m, r)
    acc = np.zeros_like(m)
    h, w = m.shape
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            acc |= out[dy:dy + h, dx:dx + w]
    return acc


def test_registry():
    assert syn.list_worlds()[0] == "fruit"
    assert set(WORLDS) <= set(syn.list_worlds())
    for name, world in syn.WORLDS.items():
        assert world.name == name and len(world.domains) == 2 and world.summary


@pytest.mark.parametrize("world", WORLDS)
def test_render_is_deterministic_and_seed_dependent(world):
    a1 = syn.render(world, 7, 32, "A")
    a2 = syn.render(world, 7, 32, "A")
    assert a1.dtype == np.uint8 and a1.shape == (32, 32, 3)
    assert np.array_equal(a1, a2)
    assert not np.array_equal(a1, syn.render(world, 8, 32, "A"))
    a, b = syn.render_pair(world, 7, 32)
    assert np.array_equal(a, a1)
    assert np.array_equal(b, syn.render(world, 7, 32, "b"))  # domain is case-insensitive
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("size", [32, 37, 64, 128])
def test_sizes(size):
    for world in WORLDS:
        a, b = syn.render_pair(world, 1, size)
        assert a.shape == b.shape == (size, size, 3)
        assert a.std() > 5  # not blank


@pytest.mark.parametrize("world", OBJECT_WORLDS)
def test_ground_truth_differs_only_at_the_object(world):
    psnrs, changed = [], []
    for seed in range(4):
        a, b = syn.render_pair(world, seed, 64)
        mask = syn.object_mask(world, seed, 64)
        assert mask.dtype == bool and mask.shape == (64, 64) and mask.any()
        away = ~_dilate(mask, 4)  # LANCZOS reaches 3 output pixels
        assert away.mean() > 0.2, "the scene should show some background"
        assert np.array_equal(a[away], b[away]), "background must be identical in A and B"
        diff = np.abs(a.astype(float) - b.astype(float)).mean(-1)
        changed.append((diff[mask] > 30).mean())
        psnrs.append(syn.psnr(a / 255.0, b / 255.0))
    print(f"{world}: do-nothing PSNR at 64 px {np.mean(psnrs):.1f} dB, "
          f"{np.mean(changed):.0%} of object pixels change by > 30/255")
    assert np.mean(changed) > 0.08, "the object must change substantially"
    assert 10.0 < np.mean(psnrs) < 30.0


@pytest.mark.parametrize("world, lo, hi", [("dusk", 7.0, 12.0), ("ink", 4.0, 8.0)])
def test_global_worlds_change_every_pixel_but_keep_the_layout(world, lo, hi):
    """Lighting and style worlds: do-nothing scores far below the object worlds, yet the B image
    is the same scene: its edges sit where A's are (so the truth is learnable from unpaired data)."""
    psnrs = []
    for seed in range(4):
        a, b = (x.astype(float) / 255.0 for x in syn.render_pair(world, seed, 64))
        psnrs.append(syn.psnr(a, b))
        ea = np.abs(np.diff(a.mean(-1), axis=1)) > 0.08  # vertical edges of the scene
        eb = np.abs(np.diff(b.mean(-1), axis=1)) > 0.01
        assert _dilate(eb, 1)[ea].mean() > 0.6, "B must keep A's outlines"
    assert lo < np.mean(psnrs) < hi


def test_morph_draws_a_cross_where_the_disc_was():
    for seed in range(3):
        scene = syn.WORLDS["morph"].sample(np.random.default_rng(syn.scene_seed(seed, "test", "A", 0)))
        a, b = syn.render_pair("morph", syn.scene_seed(seed, "test", "A", 0), 64)
        for s in scene["shapes"]:
            cx, cy, r = (int(round(v * 64)) for v in (s["cx"], s["cy"], s["r"]))
            corner = (cy - r // 2, cx + r // 2)  # inside the disc, between two arms of the cross
            tip = (cy, min(63, cx + int(0.8 * r)))  # on an arm of the cross, near its end
            colour = s["colour"] * 255
            assert np.abs(a[corner] - colour).max() < 12 and np.abs(b[corner] - colour).max() > 30
            assert np.abs(b[tip] - colour).max() < 12


def test_same_scene_at_every_size():
    # scenes live in normalised coordinates: a 128 px render downsampled looks like the 64 px one
    big = Image.fromarray(syn.render("zebra", 3, 128, "B")).resize((64, 64), Image.BOX)
    small = syn.render("zebra", 3, 64, "B")
    assert np.abs(np.asarray(big, float) - small).mean() < 12


def test_make_world_layout(tmp_path):
    out = syn.make_world("fruit", tmp_path / "w", size=32, n_train=5, n_test=3, seed=11)
    assert out == tmp_path / "w"
    meta = json.loads((out / "world.json").read_text())
    assert {k: meta[k] for k in ("world", "size", "n_train", "n_test", "seed", "channels")} == {
        "world": "fruit", "size": 32, "n_train": 5, "n_test": 3, "seed": 11, "channels": 3}
    assert meta["version"] == syn.VERSION
    names = {"trainA": 5, "trainB": 5, "testA": 3, "testB": 3, "testA_gt": 3, "testB_gt": 3}
    for sub, n in names.items():
        files = sorted(p.name for p in (out / sub).iterdir())
        assert files == [f"{i:06d}.png" for i in range(n)], sub
    mode, arr = _load(out / "trainA" / "000000.png")
    assert mode == "RGB" and arr.shape == (32, 32, 3)
    assert not list(out.rglob(".tmp-*"))


def test_make_world_truth_and_unpaired_training(tmp_path):
    out = syn.make_world("zebra", tmp_path, size=32, n_train=6, n_test=2, seed=3)
    for i in range(2):
        sa, sb = syn.scene_seed(3, "test", "A", i), syn.scene_seed(3, "test", "B", i)
        a, b = syn.render_pair("zebra", sa, 32)
        assert np.array_equal(_load(out / "testA" / f"{i:06d}.png")[1], a)
        assert np.array_equal(_load(out / "testA_gt" / f"{i:06d}.png")[1], b)
        a, b = syn.render_pair("zebra", sb, 32)
        assert np.array_equal(_load(out / "testB" / f"{i:06d}.png")[1], b)
        assert np.array_equal(_load(out / "testB_gt" / f"{i:06d}.png")[1], a)
    seeds = {(s, d): {syn.scene_seed(3, s, d, i) for i in range(6)}
             for s in ("train", "test") for d in "AB"}
    flat = [x for v in seeds.values() for x in v]
    assert len(flat) == len(set(flat)) == 24, "scene streams must be disjoint"
    # no training B image is the translation of any training A image
    train_b = [_load(p)[1] for p in sorted((out / "trainB").iterdir())]
    for i in range(6):
        truth = syn.render("zebra", syn.scene_seed(3, "train", "A", i), 32, "B")
        assert not any(np.array_equal(truth, tb) for tb in train_b)
    first_b = syn.render("zebra", syn.scene_seed(3, "train", "B", 0), 32, "B")
    assert np.array_equal(train_b[0], first_b)


def test_make_world_grayscale_and_baseline(tmp_path):
    out = syn.make_world("faces", tmp_path, size=32, n_train=2, n_test=4, channels=1)
    for sub in ("trainA", "trainB", "testA", "testB_gt"):
        mode, arr = _load(out / sub / "000000.png")
        assert mode == "L" and arr.shape == (32, 32)
    assert json.loads((out / "world.json").read_text())["channels"] == 1
    for direction in ("AtoB", "BtoA"):
        assert 10.0 < syn.baseline_psnr(out, direction) < 30.0


def test_baseline_psnr(tmp_path):
    out = syn.make_world("fruit", tmp_path, size=32, n_train=1, n_test=6, seed=5)
    ab, ba = syn.baseline_psnr(out), syn.baseline_psnr(out, "BtoA")
    print(f"fruit baseline at 32 px: AtoB {ab:.1f} dB, BtoA {ba:.1f} dB")
    assert 12.0 < ab < 25.0 and 12.0 < ba < 25.0
    x = np.random.default_rng(0).random((8, 8, 3))
    assert syn.psnr(x, x) == 100.0
    assert syn.psnr(np.zeros((4, 4)), np.full((4, 4), 0.1)) == pytest.approx(20.0)


def test_make_world_reuses_complete_and_removes_stale(tmp_path):
    syn.make_world("shapes", tmp_path, size=32, n_train=4, n_test=2)
    stamp = (tmp_path / "trainA" / "000000.png").stat().st_mtime_ns
    syn.make_world("shapes", tmp_path, size=32, n_train=4, n_test=2)  # complete: reused
    assert (tmp_path / "trainA" / "000000.png").stat().st_mtime_ns == stamp
    syn.make_world("shapes", tmp_path, size=32, n_train=2, n_test=1, seed=1)
    assert sorted(p.name for p in (tmp_path / "trainB").iterdir()) == ["000000.png", "000001.png"]
    assert len(list((tmp_path / "testA_gt").iterdir())) == 1
    assert json.loads((tmp_path / "world.json").read_text())["seed"] == 1


def test_errors(tmp_path):
    with pytest.raises(ConfigError, match="fruit.*zebra.*faces"):
        syn.render("unicorns", 0, 64, "A")
    with pytest.raises(ConfigError, match="fruit"):
        syn.make_world("unicorns", tmp_path)
    for bad in (16, 31, 0, 64.0, "64"):
        with pytest.raises(ConfigError, match="size"):
            syn.render("fruit", 0, bad, "A")
    with pytest.raises(ConfigError, match="size"):
        syn.make_world("fruit", tmp_path, size=8)
    with pytest.raises(ConfigError, match="domain"):
        syn.render("fruit", 0, 32, "C")
    with pytest.raises(ConfigError, match="seed"):
        syn.render("fruit", -1, 32, "A")
    with pytest.raises(ConfigError, match="channels"):
        syn.make_world("fruit", tmp_path, size=32, channels=2)
    with pytest.raises(ConfigError, match="n_train"):
        syn.make_world("fruit", tmp_path, size=32, n_train=0)
    with pytest.raises(ConfigError, match="direction"):
        syn.baseline_psnr(tmp_path, "sideways")
    with pytest.raises(DataError, match="testA"):
        syn.baseline_psnr(tmp_path / "nowhere")
    assert issubclass(ConfigError, UserError)
