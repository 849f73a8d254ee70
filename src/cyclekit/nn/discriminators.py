"""CycleGAN discriminators: the PatchGAN of the paper and the 1x1 PixelGAN.

Both return raw scores (no sigmoid) of shape ``(N, 1, h, w)``: one per image patch. The GAN loss
decides how to read them (least squares by default, BCE-with-logits for ``vanilla``).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch
import torch.nn as nn

from cyclekit.config import CHOICES, ModelConfig
from cyclekit.errors import ConfigError
from cyclekit.nn.layers import ConvBlock, conv_bias


class PatchDiscriminator(nn.Module):
    """PatchGAN (Isola et al. 2017), as the CycleGAN paper's 70x70 discriminator (appendix 7.2).

    ``C64 - C128 - C256 - C512 - C1`` for ``n_layers=3``: 4x4 convolutions with LeakyReLU 0.2,
    no norm on the first, stride 2 for the first ``n_layers`` and stride 1 for the last two;
    widths ``ndf * min(2**n, 8)``. ``padding="official"`` pads 1 (a 256 input gives 30x30 scores),
    ``padding="same"`` pads like TensorFlow (a 128 input gives 16x16 as in the Keras seeds).
    ``n_layers=4`` is seed 000's ``C64-C128-C256-C512-C512(s1)-C1``.
    """

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "instance",
                 norm_affine: bool = False, padding: str = "official") -> None:
        super().__init__()
        if padding not in CHOICES["d_padding"]:
            raise ConfigError(f"d_padding {padding!r} is not one of official, same")
        pad = "zeros" if padding == "official" else "same"
        kw = dict(padding=pad, pad=1, norm=norm, affine=norm_affine, bias=conv_bias(norm))

        self.stem = ConvBlock(in_channels, ndf, 4, stride=2, padding=pad, pad=1, bias=True,
                              act=nn.LeakyReLU(0.2))
        downs: list[nn.Module] = []
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, 8)
            downs.append(ConvBlock(ndf * prev, ndf * mult, 4, stride=2, act=nn.LeakyReLU(0.2), **kw))
        self.downs = nn.Sequential(*downs)
        prev, mult = mult, min(2 ** n_layers, 8)
        self.neck = ConvBlock(ndf * prev, ndf * mult, 4, stride=1, act=nn.LeakyReLU(0.2), **kw)
        self.head = ConvBlock(ndf * mult, 1, 4, stride=1, padding=pad, pad=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (N, ndf, H/2, W/2)
        x = self.downs(x)  # (N, ndf*min(2^(L-1), 8), H/2^L, W/2^L)
        x = self.neck(x)  # (N, ndf*min(2^L, 8), ~H/2^L, ~W/2^L); official: one pixel less
        return self.head(x)  # (N, 1, h, w) raw scores; official: two pixels less than H/2^L


class PixelDiscriminator(nn.Module):
    """1x1 PatchGAN ("PixelGAN", official ``PixelDiscriminator``): judges each pixel alone.

    ``conv1x1(ndf) - LReLU - conv1x1(2ndf) - norm - LReLU - conv1x1(1)``; output ``(N, 1, H, W)``.
    """

    def __init__(self, in_channels: int = 3, ndf: int = 64, norm: str = "instance",
                 norm_affine: bool = False) -> None:
        super().__init__()
        bias = conv_bias(norm)
        self.stem = ConvBlock(in_channels, ndf, 1, pad=0, bias=True, act=nn.LeakyReLU(0.2))
        self.body = ConvBlock(ndf, 2 * ndf, 1, pad=0, norm=norm, affine=norm_affine, bias=bias,
                              act=nn.LeakyReLU(0.2))
        self.head = ConvBlock(2 * ndf, 1, 1, pad=0, bias=bias)  # official: bias=use_bias here too

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (N, ndf, H, W)
        x = self.body(x)  # (N, 2ndf, H, W)
        return self.head(x)  # (N, 1, H, W)


class MultiScaleDiscriminator(nn.Module):
    """``d_scales`` discriminators, each judging the image at half the size of the one before
    (pix2pixHD's multi-scale discriminator, Wang et al. 2018). A coarse copy cannot be fooled by
    fine texture, so it judges outlines; the fine one judges detail. Returns a tuple of score
    maps, finest first; :class:`cyclekit.losses.GANLoss` weighs every scale alike."""

    def __init__(self, make: Callable[[], nn.Module], scales: int) -> None:
        super().__init__()
        self.scales = nn.ModuleList(make() for _ in range(scales))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        scores = []
        for i, d in enumerate(self.scales):
            if i:
                x = nn.functional.avg_pool2d(x, 2)
            scores.append(d(x))
        return tuple(scores)


def build_discriminator(cfg: ModelConfig, in_channels: int) -> nn.Module:
    """The discriminator ``cfg`` describes, judging images with ``in_channels`` channels."""
    if cfg.d_scales > 1:
        single = dataclasses.replace(cfg, d_scales=1)
        return MultiScaleDiscriminator(lambda: build_discriminator(single, in_channels), cfg.d_scales)
    if cfg.discriminator == "patchgan":
        net: nn.Module = PatchDiscriminator(in_channels, ndf=cfg.ndf, n_layers=cfg.d_layers, norm=cfg.d_norm,
                                            norm_affine=cfg.norm_affine, padding=cfg.d_padding)
    elif cfg.discriminator == "pixelgan":
        net = PixelDiscriminator(in_channels, ndf=cfg.ndf, norm=cfg.d_norm, norm_affine=cfg.norm_affine)
    else:
        raise ConfigError(f"discriminator {cfg.discriminator!r} is not one of patchgan, pixelgan")
    return spectral_norm(net) if cfg.d_spectral_norm else net


def spectral_norm(net: nn.Module) -> nn.Module:
    """``--d-spectral-norm``: every convolution of ``net`` divided by its largest singular value
    (Miyato et al. 2018, one power iteration per forward pass), which bounds how much any change of
    the input can move the scores, so a generator cannot fool the discriminator with a small
    stamped pattern. The power-iteration vectors are buffers, saved and restored with the weights."""
    for m in list(net.modules()):
        if isinstance(m, nn.Conv2d):
            nn.utils.parametrizations.spectral_norm(m)
    return net
