"""Networks: exact parameter counts of the reference models, shapes, init, gradients, MACs."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn as nn

from cyclekit.config import ModelConfig
from cyclekit.errors import ConfigError
from cyclekit.nn import (
    build_discriminator, build_generator, count_macs, count_parameters, init_weights,
)
from cyclekit.nn.layers import Conv2dSame, ConvTranspose2dSame, tf_same_padding

KERAS_G = dict(block="concat", norm_affine=True, norm_before_tanh=True)


def cfg(**kw) -> ModelConfig:
    return replace(ModelConfig(), **kw)


def tiny(**kw) -> ModelConfig:
    """A small model for forward/backward tests."""
    base = dict(ngf=4, ndf=4, n_blocks=2)
    base.update(kw)
    return cfg(**base)


# ----------------------------------------------------------------------------- exact counts
@pytest.mark.parametrize("kw, expected", [
    (dict(), 11_378_179),  # official ResNet-9, 256 px
    (dict(n_blocks=6), 7_837_699),  # official ResNet-6, 128 px
    (dict(in_channels=1, out_channels=1, n_blocks=6, **KERAS_G), 14_905_859),  # seed 004 table
    (dict(generator="unet", unet_levels=7), 41_825_667),  # official unet_128
    (dict(generator="unet", unet_levels=8), 54_409_603),  # official unet_256
    (dict(generator="unet_gia", ngf=32), 1_545_411),  # GANs in Action (computed by hand)
    (dict(upsample="resize_conv"), 11_378_179),  # resize-conv keeps the parameter count
])
def test_generator_parameter_counts(kw, expected):
    assert count_parameters(build_generator(cfg(**kw))) == expected


@pytest.mark.parametrize("kw, channels, expected", [
    (dict(), 3, 2_764_737),  # official 70x70 PatchGAN
    (dict(norm_affine=True, d_padding="same"), 1, 2_764_481),  # seed 004 table
    (dict(discriminator="pixelgan"), 3, 64 * 3 + 64 + 64 * 128 + 128 + 128 * 1 + 1),
])
def test_discriminator_parameter_counts(kw, channels, expected):
    assert count_parameters(build_discriminator(cfg(**kw), channels)) == expected


def test_bias_rules_follow_official_code():
    g_in = build_generator(tiny(norm="instance"))
    g_bn = build_generator(tiny(norm="batch"))
    assert g_in.down1.conv.bias is not None and g_bn.down1.conv.bias is None
    assert g_bn.head.conv.bias is not None  # the last conv always has a bias (no norm after it)
    d_bn = build_discriminator(tiny(d_norm="batch"), 3)
    assert d_bn.stem.conv.bias is not None and d_bn.neck.conv.bias is None
    assert d_bn.head.conv.bias is not None


# ----------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("c_in, c_out", [(1, 1), (3, 3), (4, 4), (1, 3)])
@pytest.mark.parametrize("size", [(36, 52), (32, 32), (12, 8)])
@pytest.mark.parametrize("variant", [dict(), dict(upsample="resize_conv"), KERAS_G])
def test_resnet_shapes(c_in, c_out, size, variant):
    g = build_generator(tiny(in_channels=c_in, out_channels=c_out, **variant))
    y = g(torch.randn(2, c_in, *size))
    assert y.shape == (2, c_out, *size)
    assert y.abs().max() <= 1.0


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("levels, size", [(3, (8, 24)), (5, (32, 64)), (1, (6, 4))])
def test_unet_shapes(channels, levels, size):
    g = build_generator(tiny(generator="unet", unet_levels=levels, in_channels=channels,
                             out_channels=channels, dropout=0.5))
    assert g.size_multiple == 2 ** levels
    assert g(torch.randn(2, channels, *size)).shape == (2, channels, *size)


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("size", [(32, 32), (16, 48)])
def test_gia_unet_shapes(channels, size):
    g = build_generator(tiny(generator="unet_gia", in_channels=channels, out_channels=channels))
    y = g(torch.randn(1, channels, *size))
    assert y.shape == (1, channels, *size) and y.abs().max() <= 1.0


@pytest.mark.parametrize("kw, size", [(dict(), (30, 32)), (dict(generator="unet", unet_levels=3), (12, 8)),
                                      (dict(generator="unet_gia"), (24, 32))])
def test_generator_rejects_sizes_it_cannot_reproduce(kw, size):
    g = build_generator(tiny(**kw))
    with pytest.raises(ValueError, match="multiples of"):
        g(torch.randn(1, 3, *size))


@pytest.mark.parametrize("kw, size, expected", [
    (dict(), 256, 30),  # 70x70 PatchGAN, official padding
    (dict(), 128, 14),
    (dict(d_padding="same"), 128, 16),  # the Keras seeds
    (dict(d_padding="same", d_layers=4), 128, 8),  # seed 000: C64-C128-C256-C512-C512(s1)-C1
    (dict(d_layers=1), 64, 30),
    (dict(discriminator="pixelgan"), 20, 20),
])
def test_discriminator_shapes(kw, size, expected):
    for channels in (1, 3):
        d = build_discriminator(tiny(**kw), channels)
        assert d(torch.randn(2, channels, size, size)).shape == (2, 1, expected, expected)


def test_discriminator_non_square_and_d_norms():
    for norm in ("none", "batch", "instance"):
        d = build_discriminator(tiny(d_norm=norm), 4)
        assert d(torch.randn(2, 4, 64, 96)).shape == (2, 1, 6, 10)


# ----------------------------------------------------------------------------- reference behaviour
def test_tf_same_padding_matches_tensorflow():
    assert tf_same_padding(128, 4, 1) == (1, 2)
    assert tf_same_padding(128, 4, 2) == (1, 1)
    assert tf_same_padding(128, 3, 2) == (0, 1)
    assert tf_same_padding(7, 3, 2) == (1, 1)
    assert tf_same_padding(128, 7, 1) == (3, 3)
    conv = Conv2dSame(2, 3, 4, stride=2)
    assert conv(torch.randn(1, 2, 9, 10)).shape == (1, 3, 5, 5)  # ceil(size / stride)


def test_convtranspose_same_is_the_gradient_of_conv_same():
    """TF defines conv2d_transpose 'same' as the input-gradient of conv2d 'same'."""
    torch.manual_seed(0)
    down = Conv2dSame(3, 5, 3, stride=2, bias=False)
    up = ConvTranspose2dSame(5, 3, 3, stride=2, bias=False)
    up.weight.data.copy_(down.weight.data)  # both (5, 3, 3, 3)
    z = torch.randn(1, 3, 8, 6, requires_grad=True)
    g = torch.randn(1, 5, 4, 3)
    (grad,) = torch.autograd.grad((down(z) * g).sum(), z)
    torch.testing.assert_close(up(g), grad)


class _OfficialUnetBlock(nn.Module):
    """The official UnetSkipConnectionBlock (instance norm, no dropout), for comparison only."""

    def __init__(self, outer, inner, input_nc=None, sub=None, outermost=False, innermost=False):
        super().__init__()
        self.outermost = outermost
        input_nc = outer if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner, 4, 2, 1, bias=True)
        down_relu, up_relu = nn.LeakyReLU(0.2, True), nn.ReLU(True)
        if outermost:
            layers = [downconv, sub, up_relu, nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1), nn.Tanh()]
        elif innermost:
            layers = [down_relu, downconv, up_relu, nn.ConvTranspose2d(inner, outer, 4, 2, 1),
                      nn.InstanceNorm2d(outer)]
        else:
            layers = [down_relu, downconv, nn.InstanceNorm2d(inner), sub, up_relu,
                      nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1), nn.InstanceNorm2d(outer)]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


def test_unet_matches_official_structure_numerically():
    torch.manual_seed(0)
    ngf, levels = 2, 6
    block = _OfficialUnetBlock(ngf * 8, ngf * 8, innermost=True)
    for _ in range(levels - 5):
        block = _OfficialUnetBlock(ngf * 8, ngf * 8, sub=block)
    for outer, inner in ((ngf * 4, ngf * 8), (ngf * 2, ngf * 4), (ngf, ngf * 2)):
        block = _OfficialUnetBlock(outer, inner, sub=block)
    official = _OfficialUnetBlock(3, ngf, input_nc=3, sub=block, outermost=True)

    ours = build_generator(cfg(generator="unet", unet_levels=levels, ngf=ngf))
    # the official parameter order is down_0 .. down_{L-1}, up_{L-1} .. up_0
    order = [*ours.downs, *reversed(ours.ups)]
    ours_params = [p for m in order for p in m.parameters()]
    official_params = list(official.parameters())
    assert [p.shape for p in ours_params] == [p.shape for p in official_params]
    with torch.no_grad():
        for p, q in zip(ours_params, official_params):
            p.copy_(q)
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(ours(x), official(x.clone()))


def _official_resnet(c_in, c_out, ngf, n_blocks):
    """The official ResnetGenerator (instance norm, reflection padding), for comparison only."""
    norm = nn.InstanceNorm2d

    class Block(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.conv_block = nn.Sequential(
                nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), norm(dim), nn.ReLU(True),
                nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), norm(dim))

        def forward(self, x):
            return x + self.conv_block(x)

    layers = [nn.ReflectionPad2d(3), nn.Conv2d(c_in, ngf, 7), norm(ngf), nn.ReLU(True)]
    for mult in (1, 2):
        layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, 2, 1), norm(ngf * mult * 2), nn.ReLU(True)]
    layers += [Block(ngf * 4) for _ in range(n_blocks)]
    for mult in (4, 2):
        layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, 2, 1, output_padding=1),
                   norm(ngf * mult // 2), nn.ReLU(True)]
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, c_out, 7), nn.Tanh()]
    return nn.Sequential(*layers)


def test_resnet_matches_official_structure_numerically():
    torch.manual_seed(0)
    official = _official_resnet(3, 1, 4, 2)
    ours = build_generator(cfg(in_channels=3, out_channels=1, ngf=4, n_blocks=2))
    ours_params, official_params = list(ours.parameters()), list(official.parameters())
    assert [p.shape for p in ours_params] == [p.shape for p in official_params]
    with torch.no_grad():
        for p, q in zip(ours_params, official_params):
            p.copy_(q)
    x = torch.randn(2, 3, 20, 28)
    torch.testing.assert_close(ours(x), official(x))


def test_instance_norm_is_configured_like_the_paper():
    g = build_generator(tiny())
    assert isinstance(g.stem.norm, nn.InstanceNorm2d)
    assert not g.stem.norm.affine and not g.stem.norm.track_running_stats
    k = build_generator(tiny(**KERAS_G))
    assert k.stem.norm.affine and isinstance(k.head.norm, nn.InstanceNorm2d)
    assert isinstance(build_generator(tiny(norm="none")).stem.norm, nn.Identity)


# ----------------------------------------------------------------------------- init, grads, MACs
@pytest.mark.parametrize("init", ["normal", "xavier", "kaiming", "orthogonal"])
def test_init_weights_changes_weights(init):
    torch.manual_seed(0)
    g = build_generator(tiny(norm="batch", norm_affine=True))
    before = {k: v.clone() for k, v in g.state_dict().items()}
    assert init_weights(g, init, 0.02) is g
    assert not torch.equal(g.down1.conv.weight, before["down1.conv.weight"])
    assert not torch.equal(g.up1.conv.weight, before["up1.conv.weight"])
    assert torch.all(g.head.conv.bias == 0)
    if init == "normal":
        big = build_generator(cfg(ngf=32, n_blocks=1))
        init_weights(big, "normal", 0.02)
        assert abs(big.blocks[0].conv1.conv.weight.std().item() - 0.02) < 0.001
        assert torch.all(big.blocks[0].conv1.conv.bias == 0)
        bn = g.down1.norm
        assert not torch.all(bn.weight == 1) and abs(bn.weight.mean().item() - 1) < 0.05
        assert torch.all(bn.bias == 0)


def test_init_weights_rejects_unknown_init():
    with pytest.raises(ConfigError):
        init_weights(nn.Conv2d(1, 1, 1), "uniform", 0.02)


@pytest.mark.parametrize("kw", [dict(), KERAS_G, dict(generator="unet", unet_levels=3),
                                dict(generator="unet_gia"), dict(norm="batch", d_norm="batch")])
def test_gradients_flow(kw):
    torch.manual_seed(0)
    c = tiny(**kw)
    g, d = build_generator(c), build_discriminator(c, c.out_channels)
    init_weights(g, "normal", 0.02)
    init_weights(d, "normal", 0.02)
    d(g(torch.randn(2, 3, 32, 32))).square().mean().backward()
    for net in (g, d):
        for name, p in net.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            assert p.grad.abs().sum() > 0, name


def test_count_macs_small_net_by_hand():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ConvTranspose2d(8, 4, 2, stride=2),
                        nn.Flatten(), nn.Linear(4 * 8 * 8, 5))
    expected = (4 * 4 * 8) * 3 * 9 + (4 * 4 * 8) * 4 * 4 + 5 * 256
    assert count_macs(net, (3, 4, 4)) == expected
    assert count_macs(net, (2, 3, 4, 4)) == 2 * expected
    assert next(net.parameters()).device.type == "cpu"  # the model itself is untouched


def test_count_macs_resnet9_256():
    # By hand: c7s1 2 x 0.617G, d/u 4 x 1.208G, 18 res convs x 2.416G = 49.55G.
    # GAN Compression's 56.8G counts the two transposed convs at output resolution (4x): +7.25G.
    macs = count_macs(build_generator(cfg()), (3, 256, 256))
    assert macs == 49_551_507_456
    assert abs(macs + 3 * (1_207_959_552 * 2) - 56.8e9) < 0.01e9


@pytest.mark.parametrize("generator", ["resnet", "unet", "unet_gia"])
def test_residual_generator_adds_its_change_to_the_input(generator):
    from cyclekit.config import ModelConfig
    from cyclekit.nn import build_generator
    from cyclekit.nn.generators import ResidualGenerator

    cfg = ModelConfig(generator=generator, ngf=4, n_blocks=1, unet_levels=5, residual=True)
    net = build_generator(cfg)
    assert isinstance(net, ResidualGenerator)
    assert not any(isinstance(m, torch.nn.Tanh) for m in net.modules())
    x = torch.rand(2, 3, 32, 32) * 1.6 - 0.8
    with torch.no_grad():
        for p in net.net.parameters():  # f(x) = 0: the generator must return its input
            p.zero_()
        y = net(x)
    assert torch.allclose(y, x, atol=1e-5)


def test_unet_resize_conv_upsamples_without_transposed_convolutions():
    from cyclekit.config import ModelConfig
    from cyclekit.nn import build_generator

    cfg = ModelConfig(generator="unet", unet_levels=4, ngf=8, upsample="resize_conv")
    net = build_generator(cfg)
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in net.modules())
    ref = build_generator(ModelConfig(generator="unet", unet_levels=4, ngf=8))
    assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in ref.modules()) == 4
    # the same levels and channels, 3x3 instead of 4x4 kernels on the way up
    assert sum(p.numel() for p in net.parameters()) < sum(p.numel() for p in ref.parameters())
    x = torch.rand(2, 3, 32, 48) * 2 - 1
    with torch.no_grad():
        y = net(x)
    assert y.shape == x.shape and y.abs().max() <= 1


def test_every_generator_choice_has_a_builder_and_a_size_rule():
    """The option values are listed once (config.CHOICES); every one must be buildable."""
    from cyclekit.config import CHOICES, ModelConfig
    from cyclekit.nn import build_generator, min_input_size, size_multiple

    for name in CHOICES["generator"]:
        cfg = ModelConfig(generator=name, ngf=4, n_blocks=1, unet_levels=3, image_size=32)
        net = build_generator(cfg)
        side = min_input_size(cfg)
        assert side % size_multiple(cfg) == 0
        with torch.no_grad():
            assert net(torch.zeros(1, 3, side, side)).shape == (1, 3, side, side)


@pytest.mark.parametrize("padding", ["reflect", "zeros", "same"])
@pytest.mark.parametrize("size", [(5, 7), (8, 8)])
def test_resize_conv_is_upsampling_then_a_3x3_convolution(padding, size):
    """ResizeConv2d computes nearest x2 + padded 3x3 conv as one transposed convolution: same
    outputs and gradients as the two-step reference, on the same 3x3 weight."""
    import torch.nn.functional as F

    from cyclekit.nn.layers import ResizeConv2d

    torch.manual_seed(0)
    layer = ResizeConv2d(6, 4, padding=padding, bias=True)
    x = torch.randn(2, 6, *size, requires_grad=True)
    up = F.interpolate(x, scale_factor=2, mode="nearest")
    ref = F.conv2d(F.pad(up, (1, 1, 1, 1), mode="reflect" if padding == "reflect" else "constant"),
                   layer.conv.weight, layer.conv.bias)
    out = layer(x)
    assert out.shape == ref.shape == (2, 4, 2 * size[0], 2 * size[1])
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(out)
    grads = torch.autograd.grad((out * g).sum(), (x, layer.conv.weight, layer.conv.bias))
    ref_grads = torch.autograd.grad((ref * g).sum(), (x, layer.conv.weight, layer.conv.bias))
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    # counted as the transposed convolution it runs: 16/36 of the upsampled 3x3 convolution
    pad = 2 if padding == "reflect" else 0  # the replicated border is part of the work
    assert count_macs(layer, (6, *size)) == 6 * (size[0] + pad) * (size[1] + pad) * 4 * 16
    torch.testing.assert_close(layer.two_step(x), ref, rtol=1e-5, atol=1e-5)


def test_resize_conv_resnet_keeps_checkpoint_names():
    """The ResNet's resize-conv weights keep the names and 3x3 shapes they had as
    Upsample + ConvBlock, so existing checkpoints and releases load unchanged."""
    from cyclekit.config import ModelConfig

    net = build_generator(ModelConfig(generator="resnet", ngf=8, n_blocks=1, upsample="resize_conv"))
    sd = net.state_dict()
    assert sd["up1.conv.conv.weight"].shape == (16, 32, 3, 3)
    assert sd["up2.conv.conv.weight"].shape == (8, 16, 3, 3)
