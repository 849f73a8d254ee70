"""Shared fixtures: a tiny synthetic world and tiny configs so every test runs in seconds on CPU."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "2")


def tiny_config(dataroot: Path, run_dir: Path, **overrides):
    """A few-thousand-parameter CycleGAN on 32 px images."""
    from cyclekit.config import Config, set_field

    cfg = Config()
    values = dict(
        dataroot=str(dataroot), run_dir=str(run_dir), n_blocks=1, ngf=4, ndf=4, image_size=32,
        load_size=36, crop_size=32, batch_size=2, n_epochs=2, n_epochs_decay=2, pool_size=3,
        log_every=1, progress=False, seed=3, threads=1,
        precision="fp32",  # tests of the maths compare to float precision; the default (auto) may be bf16
    )
    values.update(overrides)
    for k, v in values.items():
        set_field(cfg, k, v)
    return cfg.validate()


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> Path:
    from cyclekit.data.synthetic import make_world

    root = tmp_path_factory.mktemp("world")
    make_world("fruit", root, size=32, n_train=6, n_test=3, seed=1)
    return root


@pytest.fixture(scope="session")
def tiny_release(tmp_path_factory, tiny_world) -> Path:
    """A trained-for-4-steps run directory (with its release in run/model)."""
    from cyclekit.train.loop import Trainer

    run = tmp_path_factory.mktemp("run")
    Trainer(tiny_config(tiny_world, run, max_steps=4)).fit()
    return run


def assert_same(a, b, path="state"):
    """Recursively assert two nested state dicts are identical, naming the first difference."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{path} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"
