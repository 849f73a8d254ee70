"""CycleGAN generators: the paper's ResNet, the official U-Net, and the GANs-in-Action U-Net.

All generators map ``(N, in_channels, H, W)`` in [-1, 1] to ``(N, out_channels, H, W)`` in
[-1, 1] (tanh) and expose ``size_multiple``: H and W must be multiples of it (the caller pads,
e.g. by reflection, and crops the result). :func:`build_generator` picks one from a ModelConfig.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from cyclekit.config import CHOICES, ModelConfig
from cyclekit.errors import ConfigError
from cyclekit.nn.layers import (
    ConcatBlock, Conv2dSame, ConvBlock, ResnetBlock, UpBlock, conv_bias, make_norm,
)


def _check_size(x: torch.Tensor, multiple: int, name: str) -> None:
    """Fail early with a clear message when H or W does not fit the architecture."""
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return
    h, w = x.shape[-2:]
    if h % multiple or w % multiple:
        raise ValueError(
            f"{name} needs an input height and width that are multiples of {multiple}, got {h}x{w}; "
            f"pad the image (e.g. by reflection) to a multiple of {multiple} and crop the output"
        )


def _head(in_channels: int, out_channels: int, padding: str, norm: str, affine: bool,
          norm_before_tanh: bool, size: int = 7) -> ConvBlock:
    """``c7s1-out`` + tanh: the last layer of the ResNet generator (optionally normalised)."""
    head_norm = norm if norm_before_tanh else "none"
    bias = conv_bias(norm) if norm_before_tanh else True
    return ConvBlock(in_channels, out_channels, size, padding=padding, norm=head_norm, affine=affine,
                     act=nn.Tanh(), bias=bias)


class ResnetGenerator(nn.Module):
    """The CycleGAN paper's generator (Johnson et al. 2016 style), Zhu et al. 2017, appendix 7.2.

    ``c7s1-ngf, d(2ngf), d(4ngf), R(4ngf) x n_blocks, u(2ngf), u(ngf), c7s1-out, tanh``
    with reflection padding and instance norm, as in the official PyTorch code (11,378,179
    parameters for 9 blocks, ngf 64, RGB). H and W must be multiples of 4.

    ``block="concat"`` builds the Keras seed variant instead: each block concatenates its
    output to its input (channels grow by 4ngf per block) and every convolution uses TensorFlow
    ``'same'`` zero padding, as the Keras code does; combine with ``norm_affine=True`` and
    ``norm_before_tanh=True`` for the exact seed model.

    ``pixel_shuffle=True`` drops the full-resolution layers: ``unshuffle(2), c3s1-2ngf, d(4ngf),
    R(4ngf) x n_blocks, u(2ngf), c3s1-4out, shuffle(2)``, each 2x2 block of pixels handled as 4x the
    channels at H/2 (BENCHMARKS.md, "Images per CPU second without bf16").
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, ngf: int = 64, n_blocks: int = 9,
                 norm: str = "instance", norm_affine: bool = False, dropout: float = 0.0,
                 block: str = "add", upsample: str = "convtranspose",
                 norm_before_tanh: bool = False, input_skip: bool = False,
                 colour_gain: float = 0.0, colour_gain_mode: str = "rgb",
                 colour_gain_luma: float = 0.0, pixel_shuffle: bool = False) -> None:
        super().__init__()
        if block not in CHOICES["block"]:
            raise ConfigError(f"block {block!r} is not one of add, concat")
        self.size_multiple = 4
        keras = block == "concat"
        pad_big = "same" if keras else "reflect"  # 7x7 convolutions
        pad_down = "same" if keras else "zeros"  # stride-2 3x3 convolutions (official: padding=1)
        kw = dict(norm=norm, affine=norm_affine)

        # pixel_shuffle: the layers at full resolution (the 7x7 stem, the first downsampling, the
        # last upsampling and the 7x7 head) are the slowest per multiply-add on a CPU (few channels,
        # many pixels). Instead the input's 2x2 pixel blocks become 4x the channels at H/2
        # (pixel unshuffle), a 3x3 convolution takes them to 2ngf, and the head predicts 4x the
        # output channels at H/2 that a pixel shuffle lays out as 2x2 blocks again.
        self.unshuffle = nn.PixelUnshuffle(2) if pixel_shuffle else nn.Identity()
        self.shuffle = nn.PixelShuffle(2) if pixel_shuffle else nn.Identity()
        if pixel_shuffle:
            self.stem = ConvBlock(4 * in_channels, 2 * ngf, 3, padding=pad_big,
                                  act=nn.ReLU(inplace=True), **kw)
            self.down1: nn.Module = nn.Identity()
        else:
            self.stem = ConvBlock(in_channels, ngf, 7, padding=pad_big, act=nn.ReLU(inplace=True), **kw)
            self.down1 = ConvBlock(ngf, 2 * ngf, 3, stride=2, padding=pad_down, pad=1,
                                   act=nn.ReLU(inplace=True), **kw)
        self.down2 = ConvBlock(2 * ngf, 4 * ngf, 3, stride=2, padding=pad_down, pad=1,
                               act=nn.ReLU(inplace=True), **kw)
        blocks: list[nn.Module] = []
        channels = 4 * ngf
        for _ in range(n_blocks):
            if keras:
                blocks.append(ConcatBlock(channels, 4 * ngf, dropout=dropout, **kw))
                channels += 4 * ngf
            else:
                blocks.append(ResnetBlock(channels, dropout=dropout, **kw))
        self.blocks = nn.Sequential(*blocks)
        self.up1 = UpBlock(channels, 2 * ngf, mode=upsample, padding=pad_big, **kw)
        self.up2 = nn.Identity() if pixel_shuffle else UpBlock(2 * ngf, ngf, mode=upsample, padding=pad_big, **kw)
        head_in, head_out = (2 * ngf, 4 * out_channels) if pixel_shuffle else (ngf, out_channels)
        # input_skip: the last convolution also sees the input image. Instance norm removes each
        # feature map's mean and spread, and with them the input's absolute colours; this long
        # skip hands them to the output layer (a backdrop can keep its tint, a shape its colour).
        self.input_skip = input_skip
        self.head = _head(head_in + (head_out // out_channels * in_channels if input_skip else 0), head_out,
                          pad_big, norm, norm_affine, norm_before_tanh, size=3 if pixel_shuffle else 7)
        # colour_gain: out = tanh(head + g * input) with one gain g_c = softplus(.) >= 0 per channel.
        # The path can scale each channel of the input (as a change of light does) but neither
        # invert nor mix colours, so a pair of generators cannot satisfy the cycle by swapping
        # every hue for its complement, which is what they do when they see absolute colour through
        # an unconstrained input skip. colour_gain_mode="chroma" passes x_c - mean_c(x) instead: the
        # hue and saturation of each pixel without its brightness, so a light backdrop that must turn
        # dark (a drawing in light ink on black paper) is not pulled towards light; "split" adds the
        # brightness mean_c(x) back through a gain of its own, of either sign (light may turn dark),
        # that starts at colour_gain_luma (equal to colour_gain, the generator starts as rgb).
        if colour_gain_mode not in CHOICES["colour_gain_mode"]:
            raise ConfigError(f"colour_gain_mode {colour_gain_mode!r} is not one of "
                              f"{', '.join(CHOICES['colour_gain_mode'])}")
        self.mode = colour_gain_mode
        self.colour_gain = self.luma_gain = None
        if colour_gain > 0:
            self.head.act = nn.Identity()
            start = torch.full((1, out_channels, 1, 1), float(colour_gain))
            self.colour_gain = nn.Parameter(start + torch.log(-torch.expm1(-start)))  # softplus^-1
            if colour_gain_mode == "split":
                self.luma_gain = nn.Parameter(torch.full_like(start, float(colour_gain_luma)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_size(x, self.size_multiple, "the ResNet generator")
        image = x
        x = self.stem(self.unshuffle(x))  # (N, ngf, H, W); pixel_shuffle: (N, 2ngf, H/2, W/2)
        x = self.down1(x)  # (N, 2ngf, H/2, W/2)
        x = self.down2(x)  # (N, 4ngf, H/4, W/4)
        x = self.blocks(x)  # (N, 4ngf, H/4, W/4); concat: (N, 4ngf * (n_blocks + 1), H/4, W/4)
        x = self.up1(x)  # (N, 2ngf, H/2, W/2)
        x = self.up2(x)  # (N, ngf, H, W); pixel_shuffle: unchanged
        if self.input_skip:
            x = torch.cat([x, self.unshuffle(image)], 1)  # (N, ngf + in, H, W), or 2ngf + 4in at H/2
        if self.colour_gain is not None:
            if self.mode == "rgb":
                return torch.tanh(self.shuffle(self.head(x)) + F.softplus(self.colour_gain) * image)
            luma = image.mean(1, keepdim=True)
            x = self.shuffle(self.head(x)) + F.softplus(self.colour_gain) * (image - luma)
            return torch.tanh(x if self.luma_gain is None else x + self.luma_gain * luma)
        return self.shuffle(self.head(x))  # (N, out, H, W) in [-1, 1]


class UnetUp(nn.Module):
    """Decoder half of one official U-Net level: ``ReLU -> ConvT 4x4/2 -> norm [-> dropout]``.

    ``upsample="resize_conv"`` replaces the transposed convolution by nearest x2 and a 3x3
    reflection-padded convolution (no checkerboard artefacts, fewer weights).
    """

    def __init__(self, in_channels: int, out_channels: int, norm: str, affine: bool,
                 dropout: float = 0.0, bias: bool = True, final: bool = False,
                 upsample: str = "convtranspose") -> None:
        super().__init__()
        self.act = nn.ReLU()
        if upsample == "resize_conv":
            self.conv: nn.Module = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="nearest"), nn.ReflectionPad2d(1),
                nn.Conv2d(in_channels, out_channels, 3, bias=bias))
        elif upsample == "convtranspose":
            self.conv = nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1, bias=bias)
        else:
            raise ConfigError(f"upsample {upsample!r} is not one of {', '.join(CHOICES['upsample'])}")
        self.norm = make_norm(norm, out_channels, affine)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.out = nn.Tanh() if final else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (N, C_in, h, w) -> (N, C_out, 2h, 2w)
        return self.out(self.dropout(self.norm(self.conv(self.act(x)))))


class UnetGenerator(nn.Module):
    """The official pix2pix/CycleGAN U-Net (Ronneberger et al. 2015; Isola et al. 2017).

    ``levels`` stride-2 4x4 convolutions down to ``H / 2**levels`` (7 for 128 px, 8 for 256 px),
    channels ``ngf, 2ngf, 4ngf, 8ngf, 8ngf, ...``, and mirrored 4x4 transposed convolutions up,
    each level's decoder input being ``cat([skip, up])``. ``downs[j]`` and ``ups[j]`` are the two
    halves of the official ``UnetSkipConnectionBlock`` number ``j`` counted from the outside:
    the outermost has no norm on its down path and ends in tanh, the innermost has no norm on
    its down path, and ``dropout`` (official: 0.5) applies to the 8ngf->8ngf middle levels.

    (The official blocks apply ``LeakyReLU(0.2, inplace=True)`` to the block input, so their skip
    tensors are activated too; that is invisible because every decoder step starts with a ReLU,
    and ``ReLU(LeakyReLU(x)) == ReLU(x)``.) H and W must be multiples of ``2**levels``.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, levels: int = 8, ngf: int = 64,
                 norm: str = "instance", norm_affine: bool = False, dropout: float = 0.0,
                 norm_before_tanh: bool = False, upsample: str = "convtranspose") -> None:
        super().__init__()
        if levels < 1:
            raise ConfigError(f"unet_levels must be at least 1, got {levels}")
        self.size_multiple = 2 ** levels
        ch = [ngf * min(2 ** j, 8) for j in range(levels)]  # encoder width of level j
        bias = conv_bias(norm)
        self.downs = nn.ModuleList()
        self.ups = nn.ModuleList()
        for j in range(levels):
            c_in = in_channels if j == 0 else ch[j - 1]
            innermost, outermost = j == levels - 1, j == 0
            self.downs.append(ConvBlock(c_in, ch[j], 4, stride=2, pad=1, bias=bias,
                                        norm="none" if (innermost or outermost) else norm,
                                        affine=norm_affine))
            up_in = ch[j] if innermost else 2 * ch[j]
            if outermost:
                self.ups.append(UnetUp(up_in, out_channels, norm if norm_before_tanh else "none",
                                       norm_affine, bias=bias if norm_before_tanh else True, final=True,
                                       upsample=upsample))
            else:
                middle = 4 <= j < levels - 1  # the official `for i in range(num_downs - 5)` blocks
                self.ups.append(UnetUp(up_in, ch[j - 1], norm, norm_affine,
                                       dropout=dropout if middle else 0.0, bias=bias, upsample=upsample))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_size(x, self.size_multiple, f"the {len(self.downs)}-level U-Net generator")
        h = self.downs[0](x)  # (N, ngf, H/2, W/2)
        skips: list[torch.Tensor] = []
        for down in self.downs[1:]:
            h = F.leaky_relu(h, 0.2)  # (N, ch[j-1], ...); the official block's downrelu
            skips.append(h)
            h = down(h)  # level j: (N, ch[j], H/2^(j+1), W/2^(j+1))
        for j in range(len(self.ups) - 1, 0, -1):
            h = self.ups[j](h)  # (N, ch[j-1], H/2^j, W/2^j)
            h = torch.cat([skips.pop(), h], dim=1)  # (N, 2 ch[j-1], H/2^j, W/2^j)
        return self.ups[0](h)  # (N, out, H, W) in [-1, 1]


class GiaDown(nn.Module):
    """GANs in Action ``conv2d``: 4x4 stride-2 'same' conv, LeakyReLU 0.2, then instance norm."""

    def __init__(self, in_channels: int, out_channels: int, norm: str, affine: bool) -> None:
        super().__init__()
        self.conv = Conv2dSame(in_channels, out_channels, 4, stride=2, bias=conv_bias(norm))
        self.act = nn.LeakyReLU(0.2)
        self.norm = make_norm(norm, out_channels, affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.act(self.conv(x)))  # (N, C, h, w) -> (N, C_out, h/2, w/2)


class GiaUp(nn.Module):
    """GANs in Action ``deconv2d``: nearest x2, 4x4 'same' conv + ReLU, [dropout], norm, concat skip."""

    def __init__(self, in_channels: int, out_channels: int, norm: str, affine: bool,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv = Conv2dSame(in_channels, out_channels, 4, stride=1, bias=conv_bias(norm))
        self.act = nn.ReLU()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.norm = make_norm(norm, out_channels, affine)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        # (N, C_in, h, w) + skip (N, C_s, 2h, 2w) -> (N, C_out + C_s, 2h, 2w); Concatenate([u, skip])
        u = self.norm(self.dropout(self.act(self.conv(self.up(x)))))
        return torch.cat([u, skip], dim=1)


class GiaUnetGenerator(nn.Module):
    """The U-Net generator of GANs in Action, ch. 9 (Langr & Bok 2019), ``gf = ngf`` (32 there).

    Downs ``d1..d4`` (gf, 2gf, 4gf, 8gf), ups ``u1..u3`` (4gf, 2gf, gf) each concatenated with the
    matching down, then nearest x2 and a 4x4 'same' conv to ``out_channels`` with tanh. Keras
    'same' padding is reproduced exactly (asymmetric for the 4x4 kernels). H and W must be
    multiples of 16 (and, to train with instance norm, more than 16 pixels in one of them, so that
    the 8gf bottleneck has more than one pixel to normalise). (The book's ``InstanceNormalization()`` from keras_contrib defaults to
    ``axis=None``, which normalises over all of C, H, W; we use true instance norm as intended.)
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, ngf: int = 32,
                 norm: str = "instance", norm_affine: bool = False, dropout: float = 0.0,
                 norm_before_tanh: bool = False) -> None:
        super().__init__()
        self.size_multiple = 16
        gf, kw = ngf, dict(norm=norm, affine=norm_affine)
        self.down1 = GiaDown(in_channels, gf, **kw)
        self.down2 = GiaDown(gf, 2 * gf, **kw)
        self.down3 = GiaDown(2 * gf, 4 * gf, **kw)
        self.down4 = GiaDown(4 * gf, 8 * gf, **kw)
        self.up1 = GiaUp(8 * gf, 4 * gf, dropout=dropout, **kw)
        self.up2 = GiaUp(8 * gf, 2 * gf, dropout=dropout, **kw)
        self.up3 = GiaUp(4 * gf, gf, dropout=dropout, **kw)
        self.head = nn.Sequential()
        self.head.add_module("up", nn.Upsample(scale_factor=2, mode="nearest"))
        self.head.add_module("conv", Conv2dSame(2 * gf, out_channels, 4, stride=1,
                                                bias=conv_bias(norm) if norm_before_tanh else True))
        self.head.add_module("norm", make_norm(norm if norm_before_tanh else "none", out_channels,
                                               norm_affine))
        self.head.add_module("act", nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_size(x, self.size_multiple, "the GANs-in-Action U-Net generator")
        d1 = self.down1(x)  # (N, gf, H/2, W/2)
        d2 = self.down2(d1)  # (N, 2gf, H/4, W/4)
        d3 = self.down3(d2)  # (N, 4gf, H/8, W/8)
        d4 = self.down4(d3)  # (N, 8gf, H/16, W/16)
        u1 = self.up1(d4, d3)  # (N, 8gf, H/8, W/8)
        u2 = self.up2(u1, d2)  # (N, 4gf, H/4, W/4)
        u3 = self.up3(u2, d1)  # (N, 2gf, H/2, W/2)
        return self.head(u3)  # (N, out, H, W) in [-1, 1]


class ResidualGenerator(nn.Module):
    """``output = tanh(atanh(input) + f(input))``: the wrapped generator predicts a *change*.

    The last ``tanh`` of ``net`` is removed and applied after adding the input in tanh-logit
    space, so an untrained generator (f close to 0) starts at the identity: backgrounds keep
    their colour and texture from the first step and training only has to learn what differs
    between the domains. This speeds up training a lot on colour/texture translations; the
    paper's generator (direct output) stays the default. Needs ``in_channels == out_channels``.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        tanhs = [(name, m) for name, m in net.named_modules() if isinstance(m, nn.Tanh)]
        if not tanhs:
            raise ConfigError("residual output needs a generator that ends in tanh")
        parent_name, _, attr = tanhs[-1][0].rpartition(".")
        setattr(net.get_submodule(parent_name) if parent_name else net, attr, nn.Identity())
        self.net = net
        self.size_multiple = getattr(net, "size_multiple", 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logit = torch.atanh(x.clamp(-0.999, 0.999))  # (N, C, H, W), the input before tanh
        return torch.tanh(logit + self.net(x))  # (N, C, H, W) in (-1, 1)


# ModelConfig options only some generators read (_build_generator below): the others ignore them.
READ_BY = {"unet_levels": {"unet"}, "n_blocks": {"resnet", "mobile_resnet"}, "block": {"resnet"},
           "input_skip": {"resnet"}, "colour_gain": {"resnet"}, "colour_gain_mode": {"resnet"},
           "colour_gain_luma": {"resnet"}, "pixel_shuffle": {"resnet"}, "upsample": {"resnet", "unet", "mobile_resnet"}}


def build_generator(cfg: ModelConfig) -> nn.Module:
    """The generator ``cfg`` describes (wrapped in :class:`ResidualGenerator` if ``cfg.residual``)."""
    net = _build_generator(cfg)
    return ResidualGenerator(net) if cfg.residual else net


def _build_generator(cfg: ModelConfig) -> nn.Module:
    """The generator ``cfg`` describes, mapping ``cfg.in_channels`` to ``cfg.out_channels``.

    (For G_BA pass ``config.generator_config_for(cfg, "BtoA")``, which swaps the channels.)
    Weights are PyTorch defaults; call :func:`cyclekit.nn.init_weights` for the paper's init.
    """
    common = dict(in_channels=cfg.in_channels, out_channels=cfg.out_channels, ngf=cfg.ngf,
                  norm=cfg.norm, norm_affine=cfg.norm_affine, dropout=cfg.dropout,
                  norm_before_tanh=cfg.norm_before_tanh)
    if cfg.generator == "resnet":
        return ResnetGenerator(n_blocks=cfg.n_blocks, block=cfg.block, upsample=cfg.upsample,
                               input_skip=cfg.input_skip, colour_gain=cfg.colour_gain,
                               colour_gain_mode=cfg.colour_gain_mode,
                               colour_gain_luma=cfg.colour_gain_luma, pixel_shuffle=cfg.pixel_shuffle,
                               **common)
    if cfg.generator == "unet":
        return UnetGenerator(levels=cfg.unet_levels, upsample=cfg.upsample, **common)
    if cfg.generator == "unet_gia":
        return GiaUnetGenerator(**common)
    if cfg.generator == "mobile_resnet":  # the compact student of `cyclekit distill`
        from cyclekit.nn.compact import MobileResnetGenerator

        return MobileResnetGenerator(n_blocks=cfg.n_blocks, upsample=cfg.upsample, **common)
    raise ConfigError(f"generator {cfg.generator!r} is not one of resnet, unet, unet_gia, mobile_resnet")


# Input sides must be multiples of this for each generator to return its input's size.
_SIZE_MULTIPLE = {
    "resnet": lambda cfg: 4, "mobile_resnet": lambda cfg: 4,
    "unet": lambda cfg: 2 ** cfg.unet_levels, "unet_gia": lambda cfg: 16,
}


def size_multiple(cfg: ModelConfig) -> int:
    """Input height and width must be a multiple of this (callers pad, see cyclekit.infer)."""
    if cfg.generator not in _SIZE_MULTIPLE:
        raise ConfigError(f"generator {cfg.generator!r} is not one of {', '.join(_SIZE_MULTIPLE)}")
    return _SIZE_MULTIPLE[cfg.generator](cfg)


def min_input_size(cfg: ModelConfig) -> int:
    """The smallest side the generator accepts: twice its size multiple, so that the innermost
    feature map keeps more than one pixel (instance norm needs two) and every reflection pad
    has room; smaller images are padded up to it by the translator and cropped back."""
    return 2 * size_multiple(cfg)
