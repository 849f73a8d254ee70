"""--lambda-nce: CUT's patchwise contrastive loss (cyclekit.train.nce), its training and exact resume."""
from __future__ import annotations

import pytest
import torch
from conftest import assert_same, tiny_config

from cyclekit.config import Config, set_field
from cyclekit.errors import ConfigError
from cyclekit.nn.cyclegan import CycleGANNets
from cyclekit.train.loop import Trainer
from cyclekit.train.nce import PatchNCE, encoder_features, feature_channels


def _model(size: int = 32):
    cfg = Config()
    for k, v in dict(ngf=8, n_blocks=2, image_size=size, crop_size=size, lambda_nce=1.0).items():
        set_field(cfg, k, v)
    return cfg.validate()


def test_encoder_features_have_the_declared_channels_and_sizes():
    cfg = _model()
    torch.manual_seed(0)
    G = CycleGANNets(cfg.model).G_AB
    feats = encoder_features(G, torch.randn(2, 3, 32, 32))
    assert [f.shape[1] for f in feats] == [3, *feature_channels(cfg.model)]
    assert [f.shape[-1] for f in feats] == [32, 32, 16, 8, 8]


def test_the_loss_rewards_keeping_each_place_recognisable():
    """Heads untrained: the translation that is the source itself scores lower than a shuffled one,
    and the gradient reaches the generator and the heads."""
    cfg = _model()
    torch.manual_seed(0)
    nets = CycleGANNets(cfg.model)
    nce = PatchNCE(cfg.model, patches=64)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    same = nce(nets.G_AB, "AB", x, x.clone())
    shuffled = nce(nets.G_AB, "AB", x, x.flip(-1).flip(-2))
    assert same.item() < shuffled.item()
    y = nets.G_AB(x)
    nce(nets.G_AB, "AB", x, y).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in nets.G_AB.parameters())
    assert all(p.grad is not None for p in nce.heads["AB"].parameters())
    assert all(p.grad is None for p in nce.heads["BA"].parameters())


def test_lambda_nce_needs_the_resnet_generator():
    cfg = Config()
    set_field(cfg, "generator", "unet")
    set_field(cfg, "lambda_nce", 1.0)
    with pytest.raises(ConfigError, match="--lambda-nce"):
        cfg.validate()
    set_field(cfg, "generator", "resnet")
    set_field(cfg, "lambda_nce", -1.0)
    with pytest.raises(ConfigError, match="--lambda-nce must not be negative"):
        cfg.validate()


def test_training_with_nce_and_no_cycle_resumes_exactly(tiny_world, tmp_path):
    kw = dict(lambda_nce=1.0, lambda_cycle=0.0, n_blocks=2)
    one = Trainer(tiny_config(tiny_world, tmp_path / "one", max_steps=6, **kw))
    one.fit()
    Trainer(tiny_config(tiny_world, tmp_path / "two", max_steps=3, **kw)).fit()
    two = Trainer(tiny_config(tiny_world, tmp_path / "two", max_steps=6, **kw), resume=True)
    two.fit()
    a, b = one.state_dict(), two.state_dict()
    for s in (a, b):
        s.pop("config"), s.pop("seconds_trained")
    assert a["nce"] is not None
    assert_same(a, b)
    rows = (tmp_path / "one" / "metrics.jsonl").read_text()
    assert '"nce_A"' in rows and '"cycle_A": 0.0' in rows
    with pytest.raises(ConfigError, match="--lambda-nce"):  # the heads and their Adam state would be lost
        Trainer(tiny_config(tiny_world, tmp_path / "two", max_steps=8, lambda_nce=0.0, n_blocks=2), resume=True).fit()
