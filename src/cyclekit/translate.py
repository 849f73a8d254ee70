"""Inference: translate images, folders and globs with a trained generator.

Any image size works: inputs are padded (reflection) to the multiple the generator needs and
the output is cropped back to the input size. Images of the same size are batched together.
Outputs are PNG (lossless), never written over an input.
"""
from __future__ import annotations

import glob
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F


from cyclekit.config import ModelConfig
from cyclekit.errors import DataError, UserError

log = logging.getLogger(__name__)


def size_multiple(cfg: ModelConfig) -> int:
    """Input sides must be a multiple of this for the generator to return the same size."""
    if cfg.generator == "unet":
        return 2 ** cfg.unet_levels
    if cfg.generator == "unet_gia":
        return 16
    return 4


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflection-pad [N,C,H,W] on the bottom/right to multiples of ``multiple``."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


class Translator:
    """A generator ready for inference: ``translator(batch)`` maps [N,C,H,W] in [-1,1] to the target.

    ``backend='torch'`` runs the PyTorch module; other backends (onnxruntime) plug in through
    :func:`load_translator`.
    """

    def __init__(self, net: Callable[[torch.Tensor], torch.Tensor], cfg: ModelConfig,
                 device: Union[str, torch.device] = "cpu", dtype: Optional[torch.dtype] = None,
                 channels_last: bool = False) -> None:
        self.net, self.cfg = net, cfg
        self.device = torch.device(device)
        self.dtype = dtype
        self.channels_last = channels_last  # feed NHWC batches (the net was converted to match)
        self.multiple = size_multiple(cfg)

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x, (h, w) = pad_to_multiple(x.to(self.device), self.multiple)
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
    int8); both pad to the generator's size multiple and crop back.

    ``precision="auto"`` picks the fastest safe path for the device (bf16 autocast with NHWC
    batches on CPUs with native bf16 and on Ampere+ GPUs; see
    :func:`cyclekit.train.fast.inference_plan`); ``compile=True`` adds torch.compile with
    frozen weights (falls back to eager with a warning)."""
    from cyclekit.checkpoint import load_generator
    from cyclekit.train.trainer import pick_device

    if backend == "onnxruntime":
        from cyclekit.export.ort_backend import load_onnx_generator

        ort_net, ort_cfg = load_onnx_generator(model, direction, device, "fp32" if precision == "auto" else precision)
        return Translator(ort_net, ort_cfg, "cpu", None)
    if backend != "torch":
        raise UserError(f"backend must be torch or onnxruntime, got {backend!r}")
    if str(model).lower().endswith(".onnx"):
        raise UserError(f"{model} is an ONNX file; run it with --backend onnxruntime")
    from cyclekit.train.fast import generator_macs, prepare_inference_net

    dev = pick_device(device)
    net, gcfg = load_generator(model, direction, device=dev)
    macs = generator_macs(gcfg) if precision == "auto" else None  # tiny models: fp32 is faster on CPU
    net, dtype, channels_last = prepare_inference_net(net, precision, dev, compile=compile, macs=macs)
    return Translator(net, gcfg, dev, dtype, channels_last=channels_last)


def expand_inputs(inputs: Sequence[Union[str, Path]]) -> list[tuple[Path, Path]]:
    """Expand files, folders (recursive) and globs to (file, path relative to its root)."""
    from cyclekit.data.images import IMAGE_EXTENSIONS, list_images

    out: list[tuple[Path, Path]] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out += [(f, f.relative_to(p)) for f in list_images(p)]
        elif p.is_file():
            out.append((p, Path(p.name)))
        else:
            matches = sorted(glob.glob(str(item), recursive=True))
            files = [Path(m) for m in matches if Path(m).suffix.lower() in IMAGE_EXTENSIONS]
            if not files:
                raise DataError(f"input not found: {item} (give an image, a folder or a quoted glob)")
            out += [(f, Path(f.name)) for f in files]
    return out


@dataclass
class Translated:
    source: Path
    output: Path


def _batches(items: list, key: Callable, batch_size: int) -> Iterator[list]:
    groups: dict = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    for group in groups.values():
        for i in range(0, len(group), batch_size):
            yield group[i:i + batch_size]


def translate_paths(
    translator: Translator, inputs: Sequence[Union[str, Path]], out_dir: Union[str, Path],
    batch_size: int = 4, suffix: str = "", progress: bool = False, on_bad_file: str = "error",
) -> list[Translated]:
    """Translate every input image and write ``out_dir/<relative path>.png``."""
    from tqdm.auto import tqdm

    from cyclekit.data.images import load_image, save_image, to_image, to_tensor

    out_dir = Path(out_dir)
    pairs = expand_inputs(inputs)
    if not pairs:
        raise DataError("no input images given")
    sources = {src.resolve() for src, _ in pairs}
    jobs = []
    for src, rel in pairs:
        dst = out_dir / rel.with_name(rel.stem + suffix + ".png")
        if dst.resolve() in sources:
            raise UserError(f"output {dst} would overwrite an input; choose another --out folder")
        jobs.append((src, dst))
    loaded = []
    for src, dst in jobs:
        try:
            img = load_image(src, translator.cfg.in_channels)
        except DataError as exc:
            if on_bad_file == "skip":
                log.warning("skipping %s", exc)
                continue
            raise
        loaded.append((src, dst, img))
    done: list[Translated] = []
    bar = tqdm(total=len(loaded), disable=not progress, unit="img", desc="translate")
    for batch in _batches(loaded, key=lambda t: t[2].shape[:2], batch_size=batch_size):
        x = torch.stack([to_tensor(img) for _, _, img in batch])
        y = translator(x).cpu()
        for (src, dst, _), out in zip(batch, y):
            save_image(dst, to_image(out))
            done.append(Translated(src, dst))
        bar.update(len(batch))
    bar.close()
    return done


def translate_array(translator: Translator, image: np.ndarray) -> np.ndarray:
    """One HxWxC float image in [0, 1] -> translated HxWxC float image in [0, 1]."""
    from cyclekit.data.images import to_image, to_tensor

    y = translator(to_tensor(image).unsqueeze(0))[0].cpu()
    return to_image(y)


