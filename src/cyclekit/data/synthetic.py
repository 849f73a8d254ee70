"""Procedural synthetic worlds with ground truth: translation quality becomes a number.

A *world* is a family of random scenes. Each scene (fixed by an integer seed) renders in two
styles, domain A and domain B, pixel-aligned, so the B rendering of a scene is the exact
ground-truth translation of its A rendering (and vice versa). Worlds:

* ``fruit``  (apple2orange-like): glossy red/green apples <-> dimpled oranges, same silhouettes
  on an identical backdrop. Colour/texture change; the default world of the quickstart.
* ``zebra``  (horse2zebra-like): a horse on grass under a sky, plain coat <-> black-and-white
  stripes that follow the body parts. Texture change.
* ``faces``  (gender-swap-like): cartoon portraits, short hair + beard/stubble + thin lips <->
  long hair + no beard + full coloured lips + lashes, same identity. Geometry change.
* ``shapes`` (toy): flat-coloured squares <-> circles of the same area and colour.
* ``appear`` (objects appear/disappear): bare cartoon heads <-> the same heads wearing a dark
  hat and sunglasses (A -> B draws new objects, B -> A removes them and fills in what they hid).

:func:`make_world` writes a CycleGAN folder layout whose *training* data is unpaired (train A
and train B come from disjoint scene seeds) and whose test images come with paired truth::

    out_dir/trainA/000000.png ...   trainB/...   testA/...   testB/...
    out_dir/testA_gt/<same names as testA>  (B rendering of each testA scene)
    out_dir/testB_gt/<same names as testB>  (A rendering of each testB scene)
    out_dir/world.json

Everything is NumPy + Pillow, deterministic from the seed, and independent of the platform's
thread count. Scenes are described in normalised coordinates, so one seed gives the same scene
at every size (>= 32 px).
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
from PIL import Image

from cyclekit.errors import ConfigError, DataError
from cyclekit.io.files import atomic_path, atomic_write_text
from cyclekit.data.worlds.appear import AppearWorld
from cyclekit.data.worlds.base import Canvas, World
from cyclekit.data.worlds.dusk import DuskWorld
from cyclekit.data.worlds.faces import FacesWorld
from cyclekit.data.worlds.fruit import FruitWorld
from cyclekit.data.worlds.ink import InkWorld
from cyclekit.data.worlds.morph import MorphWorld
from cyclekit.data.worlds.shapes import ShapesWorld
from cyclekit.data.worlds.zebra import ZebraWorld

log = logging.getLogger(__name__)

__all__ = ["VERSION", "WORLDS", "World", "baseline_psnr", "get_world", "list_worlds",
           "make_world", "object_mask", "psnr", "render", "render_pair", "scene_seed"]

#: Bump when a change to any world changes its pixels (written to ``world.json``).
VERSION = 1
MIN_SIZE = 32

WORLDS: dict[str, World] = {w.name: w for w in (FruitWorld(), ZebraWorld(), FacesWorld(),
                                                ShapesWorld(), AppearWorld(), DuskWorld(),
                                                InkWorld(), MorphWorld())}

_SPLITS = {"train": 0, "test": 1}
_DOMAINS = {"A": 0, "B": 1}


def list_worlds() -> list[str]:
    """Names of the built-in worlds, default (``fruit``) first."""
    return list(WORLDS)


def get_world(world: str | World) -> World:
    if isinstance(world, World):
        return world
    try:
        return WORLDS[world]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown synthetic world {world!r}; choose one of: "
                          f"{', '.join(WORLDS)}") from None


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < MIN_SIZE:
        raise ConfigError(f"synthetic image size must be an integer >= {MIN_SIZE}, got {size!r}")
    return int(size)


def _check_domain(domain: str) -> str:
    d = str(domain).upper()
    if d not in _DOMAINS:
        raise ConfigError(f"domain must be 'A' or 'B', got {domain!r}")
    return d


def _draw(world: World, seed: int, size: int, domains: tuple[str, ...], want_mask: bool = False):
    """Render ``domains`` of one scene; returns the images and (if ``want_mask``) the object
    mask (bool HxW), else None."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"scene seed must be a non-negative integer, got {seed!r}")
    scene = world.sample(np.random.default_rng(int(seed)))
    base = Canvas(size)
    world.background(base, scene)
    base.tracking = want_mask
    images, mask = [], (np.zeros((size, size), bool) if want_mask else None)
    for i, d in enumerate(domains):
        canvas = base if i == len(domains) - 1 else base.copy()
        world.foreground(canvas, scene, d)
        images.append(canvas.render())
        if want_mask:
            mask |= canvas.coverage()
    return images, mask


def render(world: str, seed: int, size: int, domain: str) -> np.ndarray:
    """The ``domain`` ("A" or "B") rendering of scene ``seed``: uint8 array (size, size, 3)."""
    w, size, d = get_world(world), _check_size(size), _check_domain(domain)
    return _draw(w, seed, size, (d,))[0][0]


def render_pair(world: str, seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Both renderings ``(a, b)`` of scene ``seed``, pixel-aligned (b is a's ground truth)."""
    (a, b), _ = _draw(get_world(world), seed, _check_size(size), ("A", "B"))
    return a, b


def object_mask(world: str, seed: int, size: int) -> np.ndarray:
    """Bool (size, size): output pixels touched by the domain-specific object(s) in either
    rendering. A and B differ only there and in the few pixels around it that the LANCZOS
    reduction reaches (3 px); everything else is identical."""
    return _draw(get_world(world), seed, _check_size(size), ("A", "B"), want_mask=True)[1]


def scene_seed(seed: int, split: str, domain: str, index: int) -> int:
    """The scene seed of image ``index`` of ``split`` ("train"/"test") and ``domain`` in a world
    made with ``seed``: a 64-bit hash of the four, so the streams never overlap in practice
    (and :func:`make_world` checks that they do not)."""
    ss = np.random.SeedSequence([int(seed), _SPLITS[split], _DOMAINS[_check_domain(domain)],
                                 int(index)])
    return int(ss.generate_state(1, dtype=np.uint64)[0])


def _write_png(arr: np.ndarray, path: Path, channels: int) -> None:
    im = Image.fromarray(arr, "RGB")
    if channels == 1:
        im = im.convert("L")
    with atomic_path(path) as tmp:
        im.save(tmp, format="PNG")


def _write_json(obj: dict, path: Path) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def _check_count(name: str, n: int, lo: int) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < lo:
        raise ConfigError(f"{name} must be an integer >= {lo}, got {n!r}")
    return int(n)


def make_world(world: str, out_dir: str | os.PathLike, size: int = 128, n_train: int = 200,
               n_test: int = 50, seed: int = 0, channels: int = 3,
               progress: bool = False) -> Path:
    """Write a synthetic dataset (layout in the module docstring) and return ``out_dir``.

    Train A and train B images come from disjoint scene seeds (unpaired data); test A and test
    B come from two further disjoint streams, each with its paired ground truth. If ``out_dir``
    already holds a complete world with the same ``world.json`` it is reused as is; otherwise
    files are (re)written one by one atomically and ``world.json`` is written last, so an
    interrupted run is never mistaken for a complete one.
    """
    w = get_world(world)
    size = _check_size(size)
    n_train = _check_count("n_train", n_train, 1)
    n_test = _check_count("n_test", n_test, 0)
    seed = _check_count("seed", seed, 0)
    if channels not in (1, 3):
        raise ConfigError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
    out = Path(out_dir)
    meta = {"world": w.name, "size": size, "n_train": n_train, "n_test": n_test, "seed": seed,
            "channels": channels, "version": VERSION, "domains": list(w.domains)}
    counts = {"trainA": n_train, "trainB": n_train, "testA": n_test, "testB": n_test,
              "testA_gt": n_test, "testB_gt": n_test}
    meta_path = out / "world.json"
    if meta_path.is_file() and _complete(out, meta, counts):
        log.info("reusing synthetic world in %s", out)
        return out
    try:
        for sub in counts:
            (out / sub).mkdir(parents=True, exist_ok=True)
        meta_path.unlink(missing_ok=True)
    except OSError as exc:
        raise DataError(f"cannot write the synthetic world to {out}: {exc}") from exc
    _remove_stale(out, counts)

    jobs = [("train", d, i) for d in "AB" for i in range(n_train)]
    jobs += [("test", d, i) for d in "AB" for i in range(n_test)]
    seeds = [scene_seed(seed, s, d, i) for s, d, i in jobs]
    if len(set(seeds)) != len(seeds):  # 64-bit hashes: never expected
        raise ConfigError(f"scene seed collision for seed={seed}; pick another seed")
    it = zip(jobs, seeds)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, total=len(jobs), desc=f"world {w.name}", unit="img")
    for (split, d, i), s in it:
        name = f"{i:06d}.png"
        if split == "train":
            (img,), _ = _draw(w, s, size, (d,))
            _write_png(img, out / f"train{d}" / name, channels)
        else:
            (a, b), _ = _draw(w, s, size, ("A", "B"))
            src, gt = (a, b) if d == "A" else (b, a)
            _write_png(src, out / f"test{d}" / name, channels)
            _write_png(gt, out / f"test{d}_gt" / name, channels)
    _write_json(meta, meta_path)
    log.info("wrote synthetic world %r (%d px, %d train / %d test per domain) to %s",
             w.name, size, n_train, n_test, out)
    return out


def _complete(out: Path, meta: dict, counts: dict) -> bool:
    try:
        if json.loads((out / "world.json").read_text()) != meta:
            return False
    except (OSError, ValueError):
        return False
    return all(len(list((out / sub).glob("*.png"))) == n for sub, n in counts.items())


def _remove_stale(out: Path, counts: dict) -> None:
    """Delete our numbered PNGs beyond the requested counts (left by a bigger earlier run)."""
    for sub, n in counts.items():
        for p in (out / sub).glob("[0-9][0-9][0-9][0-9][0-9][0-9].png"):
            if int(p.stem) >= n:
                p.unlink()


def _load(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            gray = im.mode in ("1", "L", "LA", "I", "I;16")
            return np.asarray(im.convert("L" if gray else "RGB"), np.float32) / 255.0
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from exc


def psnr(x: np.ndarray, y: np.ndarray, data_range: float = 1.0, cap: float = 100.0) -> float:
    """Peak signal-to-noise ratio in dB between two float images (identical -> ``cap``)."""
    mse = float(np.mean((np.asarray(x, np.float64) - np.asarray(y, np.float64)) ** 2))
    if mse <= 0.0:
        return cap
    return float(min(cap, 10.0 * np.log10(data_range ** 2 / mse)))


def baseline_psnr(out_dir: str | os.PathLike, direction: str = "AtoB") -> float:
    """Mean per-image PSNR (dB, data range 1.0) of the do-nothing translation: testA against
    testA_gt for ``AtoB``, testB against testB_gt for ``BtoA``. A model must beat this."""
    if direction not in ("AtoB", "BtoA"):
        raise ConfigError(f"direction must be 'AtoB' or 'BtoA', got {direction!r}")
    src = Path(out_dir) / ("testA" if direction == "AtoB" else "testB")
    gt = src.with_name(src.name + "_gt")
    if not src.is_dir() or not gt.is_dir():
        raise DataError(f"{out_dir} has no {src.name}/ and {gt.name}/ folders; "
                        "make one with make_world()")
    files = sorted(src.glob("*.png"))
    if not files:
        raise DataError(f"no test images in {src}; make the world with n_test >= 1")
    vals = []
    for f in files:
        g = gt / f.name
        if not g.is_file():
            raise DataError(f"missing ground truth {g} for {f}")
        vals.append(psnr(_load(f), _load(g)))
    return float(np.mean(vals))
