"""Building blocks shared by the generators and discriminators.

Two padding conventions appear in the reference code and both are reproduced here:

* the official PyTorch CycleGAN (junyanz) pads symmetrically (``padding=1`` or reflection);
* the Keras / TensorFlow seeds use ``padding='same'``, which for even kernels or stride 2 pads
  *asymmetrically* (more after than before). :class:`Conv2dSame` and
  :class:`ConvTranspose2dSame` compute that padding exactly like TensorFlow does.

Normalisation follows the paper: instance norm without running statistics (the official
default, ``affine=False``); the Keras seeds use an affine instance norm (``affine=True``).
"""
from __future__ import annotations

import copy
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize

from cyclekit.config import CHOICES
from cyclekit.errors import ConfigError

NORMS = CHOICES["norm"]


def make_norm(kind: str, channels: int, affine: bool = False) -> nn.Module:
    """Normalisation layer by name.

    ``instance``: ``InstanceNorm2d(affine=affine, track_running_stats=False)`` (paper);
    ``batch``: ``BatchNorm2d`` (always affine, as in the official code); ``layer``:
    ``GroupNorm(1, C)``, one mean and variance over all channels and positions of an image, so a
    uniform change of colour survives it as a difference between channels (instance norm removes
    it exactly); ``none``: identity.
    """
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=affine, track_running_stats=False)
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=True)
    if kind == "layer":
        return nn.GroupNorm(1, channels, affine=affine)
    if kind == "none":
        return nn.Identity()
    raise ConfigError(f"norm {kind!r} is not one of {', '.join(NORMS)}")


def conv_bias(norm: str) -> bool:
    """Whether a convolution followed by ``norm`` gets a bias.

    The official code turns biases off only in front of batch norm (its affine shift makes a bias
    redundant); with instance norm (and, sensibly, with no norm) biases are on.
    """
    return norm != "batch"


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow ``padding='same'`` for one axis: ``(before, after)``.

    The output has ``ceil(size / stride)`` positions; the total padding needed for that is split
    with the smaller half first, e.g. ``(1, 2)`` for kernel 4 / stride 1 and ``(0, 1)`` for
    kernel 3 / stride 2 on an even size.
    """
    out = (size + stride - 1) // stride
    total = (out - 1) * stride + kernel - size  # >= kernel - stride, so only clamp when negative
    if kernel < stride:
        total = torch.sym_max(total, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow ``'same'`` zero padding (asymmetric where TF is)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # sizes stay symbolic under torch.export, so exported models keep dynamic H and W
        h, w = x.shape[-2:]
        top, bottom = tf_same_padding(h, self.kernel_size[0], self.stride[0])
        left, right = tf_same_padding(w, self.kernel_size[1], self.stride[1])
        return super().forward(F.pad(x, (left, right, top, bottom)))


class ConvTranspose2dSame(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` with TensorFlow ``'same'`` semantics: output = input x stride.

    TF computes the transposed convolution as the gradient of a ``'same'`` convolution, i.e. the
    full transposed output cropped by that convolution's (asymmetric) padding. For kernel 3 and
    stride 2 this keeps the first ``2n`` rows, where PyTorch's ``padding=1, output_padding=1``
    would keep rows ``1..2n`` (a one-pixel shift).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 2,
                 bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        h, w = x.shape[-2:]
        sh, sw = self.stride
        top = max(self.kernel_size[0] - sh, 0) // 2
        left = max(self.kernel_size[1] - sw, 0) // 2
        y = super().forward(x)  # (N, C, (h-1)*s + k, (w-1)*s + k)
        return y[..., top:top + h * sh, left:left + w * sw]


class ConvBlock(nn.Module):
    """``[pad] -> conv -> norm -> act``: the paper's ``c7s1-k``, ``dk`` and ``Ck`` units.

    ``padding`` is ``"reflect"`` (pad ``kernel // 2`` by reflection, conv unpadded), ``"zeros"``
    (symmetric zero padding of ``pad`` pixels inside the conv) or ``"same"`` (TensorFlow).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: str = "zeros", pad: Optional[int] = None, norm: str = "none",
                 affine: bool = False, act: Optional[nn.Module] = None, bias: Optional[bool] = None) -> None:
        super().__init__()
        bias = conv_bias(norm) if bias is None else bias
        pad = kernel_size // 2 if pad is None else pad
        self.pad: nn.Module = nn.Identity()
        if padding == "reflect":
            self.pad = nn.ReflectionPad2d(pad)
            self.conv: nn.Conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, stride, 0, bias=bias)
        elif padding == "zeros":
            self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, pad, bias=bias)
        elif padding == "same":
            self.conv = Conv2dSame(in_channels, out_channels, kernel_size, stride, bias=bias)
        else:
            raise ValueError(f"unknown padding {padding!r}")
        self.norm = make_norm(norm, out_channels, affine)
        self.act = act if act is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(self.pad(x))))


class ResizeConv2d(nn.Module):
    """Nearest-neighbour x2 upsampling then a 3x3 convolution, computed without the upsampling.

    On the upsampled image each output pixel's 3x3 window covers only 2x2 input pixels, so the
    pair is one stride-2 transposed convolution whose 4x4 kernel sums the 3x3 one's taps that fall
    on the same input pixel: ``[w2, w1 + w2, w0 + w1, w0]`` along each axis (w0..w2 the 3x3
    taps). The result is the same function with the same weights (``conv.weight`` keeps its
    3x3 shape, checkpoints are unchanged) for 16/36 of the multiply-adds: 1.5-2.3x faster per
    layer forward and backward on a CPU core (BENCHMARKS.md). Reflection padding of the upsampled
    image equals edge replication of the input; zero padding stays zero padding.
    """

    def __init__(self, in_channels: int, out_channels: int, padding: str = "reflect", bias: bool = True) -> None:
        super().__init__()
        if padding not in ("reflect", "zeros", "same"):  # "same" is symmetric for 3x3 at stride 1
            raise ValueError(f"unknown padding {padding!r}")
        self.replicate = padding == "reflect"
        self.conv = nn.Conv2d(in_channels, out_channels, 3, 1, 0 if self.replicate else 1, bias=bias)

    def kernel(self) -> torch.Tensor:
        """The 4x4 transposed-convolution kernel, (in, out, 4, 4), from the 3x3 weight."""
        w = self.conv.weight  # (out, in, 3, 3)
        rows = torch.stack([w[:, :, 2], w[:, :, 1] + w[:, :, 2], w[:, :, 0] + w[:, :, 1], w[:, :, 0]], 2)
        k = torch.stack([rows[..., 2], rows[..., 1] + rows[..., 2], rows[..., 0] + rows[..., 1], rows[..., 0]], 3)
        return k.transpose(0, 1)

    def two_step(self, x: torch.Tensor) -> torch.Tensor:
        """The same function computed as it reads: nearest x2, pad, 3x3 convolution."""
        up = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(F.pad(up, (1, 1, 1, 1), mode="reflect") if self.replicate else up)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (N, C_in, H, W) -> (N, C_out, 2H, 2W)
        if torch.compiler.is_exporting():  # ONNX: a plain Conv whose 3x3 weight int8 quantisation reads
            return self.two_step(x)
        if self.replicate:
            return F.conv_transpose2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), self.kernel(),
                                      self.conv.bias, stride=2, padding=3)
        return F.conv_transpose2d(x, self.kernel(), self.conv.bias, stride=2, padding=1)


class UpBlock(nn.Module):
    """Stride-1/2 upsampling unit ``uk``: ``up -> norm -> ReLU``.

    ``mode="convtranspose"``: a 3x3 fractionally-strided convolution (paper; ``padding=1,
    output_padding=1`` officially, TF ``'same'`` when ``padding="same"``).
    ``mode="resize_conv"``: nearest-neighbour x2 then a 3x3 convolution (Odena et al., 2016),
    which avoids checkerboard artefacts; same parameter count (:class:`ResizeConv2d`).
    """

    def __init__(self, in_channels: int, out_channels: int, mode: str = "convtranspose",
                 padding: str = "reflect", norm: str = "instance", affine: bool = False) -> None:
        super().__init__()
        bias = conv_bias(norm)
        if mode == "convtranspose":
            self.up: nn.Module = nn.Identity()
            if padding == "same":
                self.conv: nn.Module = ConvTranspose2dSame(in_channels, out_channels, 3, 2, bias=bias)
            else:
                self.conv = nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1,
                                               output_padding=1, bias=bias)
        elif mode == "resize_conv":
            self.up = nn.Identity()
            self.conv = ResizeConv2d(in_channels, out_channels, padding=padding, bias=bias)
        else:
            raise ConfigError(f"upsample {mode!r} is not one of {', '.join(CHOICES['upsample'])}")
        self.norm = make_norm(norm, out_channels, affine)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (N, C_in, H, W) -> (N, C_out, 2H, 2W)
        return self.act(self.norm(self.conv(self.up(x))))


class ResnetBlock(nn.Module):
    """Residual block ``Rk`` of the paper: ``x + norm(conv(relu(norm(conv(x)))))``.

    Both 3x3 convolutions are reflection padded (official code); optional dropout sits between
    them as in the official ``use_dropout`` (which uses p=0.5).
    """

    def __init__(self, channels: int, norm: str = "instance", affine: bool = False,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.conv1 = ConvBlock(channels, channels, 3, padding="reflect", norm=norm, affine=affine,
                               act=nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = ConvBlock(channels, channels, 3, padding="reflect", norm=norm, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (N, C, H, W) -> (N, C, H, W)
        return x + self.conv2(self.dropout(self.conv1(x)))


class ConcatBlock(nn.Module):
    """The Keras seeds' "residual" block: ``cat([norm(conv(x)), x])``, so channels grow by ``k``.

    This is the graph the Keras model of seed 004 actually contains (its parameter table lists
    one 3x3 'same' convolution + affine instance norm per block, fed by the block input, and a
    ``Concatenate([g, input])``): the first convolution of the tutorial's two-convolution block
    is not connected to the output there, so Keras drops it and so do we. This reproduces the
    published 14,905,859-parameter generator exactly.
    """

    def __init__(self, in_channels: int, growth: int, norm: str = "instance", affine: bool = True,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.conv = ConvBlock(in_channels, growth, 3, padding="same", norm=norm, affine=affine)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.out_channels = in_channels + growth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (N, C, H, W) -> (N, C + growth, H, W); new features first, as Concatenate([g, input])
        return torch.cat([self.dropout(self.conv(x)), x], dim=1)


# ----------------------------------------------------------------------------- utilities
INITS = CHOICES["init"]


def init_weights(module: nn.Module, init: str = "normal", gain: float = 0.02) -> nn.Module:
    """Initialise weights in place like the official code's ``init_weights``.

    Conv / transposed-conv / linear weights: ``normal`` N(0, gain), ``xavier`` (normal, gain),
    ``kaiming`` (normal, fan_in, a=0; gain unused) or ``orthogonal`` (gain); their biases 0.
    Affine norm layers (batch norm, affine instance norm): weight N(1, gain), bias 0.
    Returns ``module`` for chaining.
    """
    if init not in INITS:
        raise ConfigError(f"init {init!r} is not one of {', '.join(INITS)}")

    def init_one(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            # a spectrally normalised layer computes .weight from the stored one: initialise that
            w = m.parametrizations.weight.original if parametrize.is_parametrized(m, "weight") else m.weight
            if init == "normal":
                nn.init.normal_(w, 0.0, gain)
            elif init == "xavier":
                nn.init.xavier_normal_(w, gain=gain)
            elif init == "kaiming":
                nn.init.kaiming_normal_(w, a=0, mode="fan_in")
            else:
                nn.init.orthogonal_(w, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)

    with torch.no_grad():
        module.apply(init_one)
    return module


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def count_macs(module: nn.Module, input_shape) -> int:
    """Multiply-accumulates of the Conv2d / ConvTranspose2d / Linear layers for one forward pass.

    ``input_shape`` is ``(C, H, W)`` (batch 1) or ``(N, C, H, W)``. The forward pass runs on a copy
    of ``module`` on the ``meta`` device (shapes only, no arithmetic), falling back to a real
    forward on zeros if some layer cannot run on ``meta``.

    A :class:`ResizeConv2d` is counted as the transposed convolution it runs. A transposed
    convolution is counted as ``input elements x C_out/groups x kh x kw`` (the real
    work). Tools such as torchprofile count it at output resolution instead, which is why GAN
    Compression quotes 56.8G MACs for the 256x256 ResNet-9 generator; this function gives 49.55G.
    """
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3:
        shape = (1,) + shape
    if len(shape) != 4:
        raise ValueError(f"input_shape must be (C, H, W) or (N, C, H, W), got {tuple(input_shape)}")
    try:
        net = copy.deepcopy(module).to("meta")
        return _count_macs(net, torch.empty(shape, device="meta"))
    except (NotImplementedError, RuntimeError):
        param = next(module.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        net = copy.deepcopy(module)
        return _count_macs(net, torch.zeros(shape, device=device))


def _count_macs(net: nn.Module, x: torch.Tensor) -> int:
    total = 0

    def hook(m: nn.Module, inputs, output) -> None:
        nonlocal total
        if isinstance(m, ResizeConv2d):  # one 4x4 transposed convolution (its 3x3 conv never runs)
            n, c, h, w = inputs[0].shape
            pad = 2 if m.replicate else 0  # the replicated border is convolved too
            total += n * c * (h + pad) * (w + pad) * m.conv.out_channels * 16
        elif isinstance(m, nn.ConvTranspose2d):
            kh, kw = m.kernel_size
            total += inputs[0].numel() * (m.out_channels // m.groups) * kh * kw
        elif isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            total += output.numel() * (m.in_channels // m.groups) * kh * kw
        elif isinstance(m, nn.Linear):
            total += output.numel() * m.in_features

    handles = [m.register_forward_hook(hook) for m in net.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, ResizeConv2d))]
    net.eval()
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in handles:
            h.remove()
    return int(total)
