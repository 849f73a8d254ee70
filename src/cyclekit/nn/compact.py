"""A compact student generator for deployment: the ResNet generator with separable residual blocks.

In the spirit of GAN Compression (Li et al., CVPR 2020, "GAN Compression: Efficient Architectures
for Interactive Conditional GANs"), whose ``MobileResnetGenerator`` replaces every 3x3
convolution of the residual blocks by a depthwise-separable one (Howard et al. 2017, MobileNets)
and then shrinks the channel widths; distilled from the full CycleGAN generator it cut the
horse2zebra generator from 56.8 G to 2.67 G MACs at equal FID.

Layout (``ngf`` is the first width, the blocks run at ``4 ngf`` and quarter resolution)::

    c7s1-ngf, d(2ngf), d(4ngf), S(4ngf) x n_blocks, u(2ngf), u(ngf), c3s1-out, tanh

``S(k)`` is ``x + IN(pw(dw(pad(ReLU(IN(pw(dw(pad(x))))))))``: reflection pad 1, a depthwise 3x3
convolution, a pointwise 1x1 convolution, instance norm (ReLU after the first half). GAN
Compression also normalises between the depthwise and the pointwise convolution; we drop that
norm, which halves the memory-bound normalisation work per block on CPUs for no measurable loss
after distillation. The rest (stem, downsampling, transposed-convolution upsampling and head)
is the paper's generator at the smaller width, so the student's layers mirror the teacher's and
an intermediate feature map (after the blocks, ``4 ngf`` channels at H/4) can be distilled
through a 1x1 adapter (see :mod:`cyclekit.train.distill`).

The head is a 3x3 convolution (the paper's is 7x7): with three output channels the 7x7 head was
the slowest layer in onnxruntime. With ``ngf=16`` and 9 blocks a 256x256 RGB image costs 0.83 G
MACs (ResNet-9 ngf 64: 49.55 G, counted the same way by :func:`cyclekit.nn.count_macs`), 60x
fewer, with 0.13 M parameters.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from cyclekit.nn.layers import ConvBlock, UpBlock, make_norm


class SeparableConv(nn.Module):
    """Reflection pad -> depthwise 3x3 -> pointwise 1x1 -> norm [-> ReLU]."""

    def __init__(self, channels: int, norm: str = "instance", affine: bool = False,
                 act: bool = True) -> None:
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        self.depthwise = nn.Conv2d(channels, channels, 3, groups=channels, bias=False)
        self.pointwise = nn.Conv2d(channels, channels, 1, bias=norm == "none")  # a norm follows
        self.norm = make_norm(norm, channels, affine)
        self.act = nn.ReLU(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (N, C, H, W) -> (N, C, H, W)
        return self.act(self.norm(self.pointwise(self.depthwise(self.pad(x)))))


class SeparableResnetBlock(nn.Module):
    """GAN Compression's mobile residual block: ``x + sep(sep(x))`` (ReLU only after the first)."""

    def __init__(self, channels: int, norm: str = "instance", affine: bool = False,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.conv1 = SeparableConv(channels, norm, affine, act=True)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = SeparableConv(channels, norm, affine, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.dropout(self.conv1(x)))  # (N, C, H, W)


class MobileResnetGenerator(nn.Module):
    """The compact student generator (``generator="mobile_resnet"``); H and W multiples of 4.

    ``forward(x, return_features=True)`` also returns the block output ``(N, 4ngf, H/4, W/4)``,
    the feature map that distillation matches to the teacher's.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, ngf: int = 16, n_blocks: int = 9,
                 norm: str = "instance", norm_affine: bool = False, dropout: float = 0.0,
                 upsample: str = "convtranspose", norm_before_tanh: bool = False) -> None:
        super().__init__()
        self.size_multiple = 4
        kw = dict(norm=norm, affine=norm_affine)
        self.stem = ConvBlock(in_channels, ngf, 7, padding="reflect", act=nn.ReLU(inplace=True), **kw)
        self.down1 = ConvBlock(ngf, 2 * ngf, 3, stride=2, padding="zeros", pad=1,
                               act=nn.ReLU(inplace=True), **kw)
        self.down2 = ConvBlock(2 * ngf, 4 * ngf, 3, stride=2, padding="zeros", pad=1,
                               act=nn.ReLU(inplace=True), **kw)
        self.blocks = nn.Sequential(*[SeparableResnetBlock(4 * ngf, dropout=dropout, **kw)
                                      for _ in range(n_blocks)])
        self.up1 = UpBlock(4 * ngf, 2 * ngf, mode=upsample, padding="reflect", **kw)
        self.up2 = UpBlock(2 * ngf, ngf, mode=upsample, padding="reflect", **kw)
        head_norm = norm if norm_before_tanh else "none"
        # 3x3 instead of the paper's 7x7: the 7x7 head with 3 output channels was the single
        # slowest layer in onnxruntime (BENCHMARKS.md, "Timings behind code choices")
        self.head = ConvBlock(ngf, out_channels, 3, padding="reflect", norm=head_norm,
                              affine=norm_affine, act=nn.Tanh(), bias=True)
        self.feature_channels = 4 * ngf

    def forward(self, x: torch.Tensor, return_features: bool = False):
        h = self.stem(x)  # (N, ngf, H, W)
        h = self.down1(h)  # (N, 2ngf, H/2, W/2)
        h = self.down2(h)  # (N, 4ngf, H/4, W/4)
        feat = self.blocks(h)  # (N, 4ngf, H/4, W/4): the distilled feature map
        y = self.head(self.up2(self.up1(feat)))  # (N, out, H, W) in [-1, 1]
        return (y, feat) if return_features else y
