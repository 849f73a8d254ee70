"""A trained generator ready for inference, whatever the image size, device or backend.

:func:`load_translator` opens a release (or run directory) with PyTorch, or an exported ``.onnx``
file (or a release exported in memory) with onnxruntime; either way the result is a
:class:`Translator`: ``translator(batch)`` maps ``[N, C, H, W]`` in ``[-1, 1]`` to the other domain.
Any image size works: the batch is padded (reflection, or edge replication where the image is too
small to reflect) to the multiple the generator needs, and at least to its minimum size, and the
output is cropped back to the input size. Nothing here imports training code.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F

from cyclekit.config import CHOICES, ModelConfig
from cyclekit.errors import UserError
from cyclekit.nn.generators import min_input_size, size_multiple

log = logging.getLogger(__name__)

BACKENDS = CHOICES["backend"]


def pad_to_multiple(x: torch.Tensor, multiple: int, min_size: int = 0) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad ``[N, C, H, W]`` on the bottom/right to multiples of ``multiple`` (and at least
    ``min_size``); returns the padded batch and the original ``(H, W)`` to crop back to."""
    h, w = x.shape[-2:]
    th, tw = max(h, min_size), max(w, min_size)
    ph, pw = (th - h) + (-th) % multiple, (tw - w) + (-tw) % multiple
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


class Translator:
    """A generator ready for inference: ``translator(batch)`` maps [N,C,H,W] in [-1,1] to the target.

    ``net`` is a PyTorch module or any callable with the same contract (the onnxruntime backend).
    ``direction`` and ``info`` (the release's ``cyclekit`` metadata block) say which generator this
    is and what its release recommends (e.g. a face model's ``swap_strength``).
    """

    def __init__(self, net: Callable[[torch.Tensor], torch.Tensor], cfg: ModelConfig,
                 device: Union[str, torch.device] = "cpu", dtype: Optional[torch.dtype] = None,
                 channels_last: bool = False, direction: str = "AtoB", info: Optional[dict] = None) -> None:
        self.net, self.cfg = net, cfg
        self.direction, self.info = direction, dict(info or {})
        self.device = torch.device(device)
        self.dtype = dtype
        self.channels_last = channels_last  # feed NHWC batches (the net was converted to match)
        self.multiple = size_multiple(cfg)
        self.min_size = min_input_size(cfg)

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x, (h, w) = pad_to_multiple(x.to(self.device), self.multiple, self.min_size)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.dtype is not None:
            with torch.autocast(self.device.type, dtype=self.dtype):
                y = self.net(x)
        else:
            y = self.net(x)
        return y[..., :h, :w].float()


def load_translator(model: Union[str, Path], direction: str = "AtoB", device: str = "auto",
                    precision: str = "fp32", backend: str = "torch", compile: bool = False) -> Translator:
    """A Translator for a release / run dir (``backend="torch"``) or, with
    ``backend="onnxruntime"``, for a release exported in memory or an ``.onnx`` file (fp32, fp16,
    int8).

    ``precision="auto"`` picks the fastest safe path for the device (see
    :func:`cyclekit.runtime.inference_plan`); ``compile=True`` adds torch.compile with frozen
    weights (falls back to eager with a warning)."""
    if backend not in BACKENDS:
        raise UserError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "onnxruntime":
        from cyclekit.infer.onnx_backend import load_onnx_generator

        ort_net, ort_cfg = load_onnx_generator(model, direction, device, "fp32" if precision == "auto" else precision)
        # an .onnx file translates the direction it was exported for, with its release's settings
        return Translator(ort_net, ort_cfg, "cpu", None, direction=ort_net.direction, info=ort_net.info)
    if str(model).lower().endswith(".onnx"):
        raise UserError(f"{model} is an ONNX file; run it with --backend onnxruntime")
    from cyclekit.release import load_generator, release_info
    from cyclekit.runtime import generator_macs, pick_device, prepare_inference_net

    dev = pick_device(device)
    net, gcfg = load_generator(model, direction, device=dev)
    macs = generator_macs(gcfg) if precision == "auto" else None  # tiny models: fp32 is faster on CPU
    net, dtype, channels_last = prepare_inference_net(net, precision, dev, compile=compile, macs=macs)
    return Translator(net, gcfg, dev, dtype, channels_last=channels_last, direction=direction,
                      info=release_info(model))


def translate_array(translator: Translator, image: np.ndarray) -> np.ndarray:
    """One HxWxC float image in [0, 1] -> translated HxWxC float image in [0, 1]."""
    from cyclekit.io.images import to_image, to_tensor

    y = translator(to_tensor(image).unsqueeze(0))[0].cpu()
    return to_image(y)
