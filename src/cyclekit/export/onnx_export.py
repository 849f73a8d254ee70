"""Export a generator to one self-contained ONNX file, and check it against PyTorch.

The graph itself (dynamic batch/height/width, ``cyclekit.*`` metadata) is built by
:mod:`cyclekit.infer.onnx_graph`, which the onnxruntime inference backend shares; this module
writes it as ONE file with every weight embedded (no external ``.data`` file), atomically, after
the full :func:`onnx.checker.check_model`, and measures parity and cost.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from cyclekit.config import ModelConfig
from cyclekit.errors import require
from cyclekit.infer.onnx_graph import (  # noqa: F401  (the graph API, re-exported for export users)
    DEFAULT_OPSET, META_PREFIX, generator_metadata, read_metadata, set_metadata, to_onnx_model,
)
from cyclekit.io.files import atomic_write_bytes
from cyclekit.nn.generators import size_multiple

log = logging.getLogger(__name__)


def save_onnx(model, path: Union[str, Path]) -> Path:
    """Check ``model`` and write it as ONE file (weights embedded, never external data), atomically."""
    onnx = require("onnx", "onnx", "ONNX export")
    path = Path(path)
    for init in model.graph.initializer:  # weights must live inside the file
        if init.data_location == onnx.TensorProto.EXTERNAL:
            raise RuntimeError(f"initializer {init.name} refers to external data; cannot write one file")
    onnx.checker.check_model(model, full_check=True)
    return atomic_write_bytes(path, model.SerializeToString())


def export_generator(net: nn.Module, cfg: ModelConfig, path: Union[str, Path], direction: str = "AtoB",
                     precision: str = "fp32", opset: int = DEFAULT_OPSET, sample_size: int = 64,
                     info: Optional[dict] = None) -> Path:
    """Export one generator to ``path`` (fp32 or fp16) with metadata (``info``: what the file keeps of
    its release's ``cyclekit`` block, :func:`export_info`); returns the path."""

    if precision not in ("fp32", "fp16"):
        raise ValueError(f"precision must be fp32 or fp16 here (int8 goes through quantize), got {precision!r}")
    multiple = size_multiple(cfg)
    model = to_onnx_model(net, cfg.in_channels, sample_size=max(sample_size, multiple), multiple=multiple,
                          opset=opset, fp16=precision == "fp16")
    set_metadata(model, generator_metadata(cfg, direction, precision, multiple, info))
    return save_onnx(model, path)


# What an exported file carries of its release's cyclekit block: names, licence and attribution, and
# what a face swap reads. Not the rest (steps, local paths such as a distilled model's teacher).
EXPORTED_INFO = ("cyclekit_version", "domains", "data", "licence", "attribution", "face_backdrop", "face_tone",
                 "face_detector", "swap_strength", "swap_strength_chosen")


def export_info(release: Union[str, Path]) -> dict:
    """The part of ``release``'s ``cyclekit`` block an ONNX file carries (:data:`EXPORTED_INFO`), with
    the domain names an older release kept only in its training config."""
    from cyclekit.release import release_domains, release_info

    info = {k: v for k, v in release_info(release).items() if k in EXPORTED_INFO}
    names = release_domains(release)
    if "domains" not in info and names != ("A", "B"):
        info["domains"] = list(names)
    return info


def export_release(model_path: Union[str, Path], out: Union[str, Path], direction: str = "AtoB",
                   precision: str = "fp32", opset: int = DEFAULT_OPSET) -> Path:
    """Load a release's generator and export it (``precision`` fp32 or fp16)."""
    from cyclekit.release import load_generator

    net, gcfg = load_generator(model_path, direction, device="cpu")
    return export_generator(net, gcfg, out, direction, precision, opset, info=export_info(model_path))


def onnx_parity(net: nn.Module, onnx_path: Union[str, Path, bytes],
                shapes: Sequence[Sequence[int]] = ((1, 3, 64, 64), (2, 3, 48, 80)),
                seed: int = 0) -> float:
    """Max absolute difference between PyTorch and onnxruntime (CPU) over random inputs.

    Inputs are uniform in [-1, 1] at each of ``shapes`` (different batch sizes and sides, so the
    dynamic axes are exercised too).
    """
    from cyclekit.infer.onnx_backend import make_session

    session = make_session(onnx_path, "cpu")
    name = session.get_inputs()[0].name
    gen = torch.Generator().manual_seed(seed)
    worst = 0.0
    net = net.eval()
    for shape in shapes:
        x = torch.rand(tuple(shape), generator=gen) * 2 - 1
        with torch.no_grad():
            ref = net(x).float().numpy()
        out = session.run(None, {name: x.numpy()})[0]
        if out.shape != ref.shape:
            raise AssertionError(f"ONNX output shape {out.shape} != PyTorch {ref.shape} for input {tuple(shape)}")
        worst = max(worst, float(np.max(np.abs(out.astype(np.float32) - ref))))
    return worst


def parity_shapes(cfg: ModelConfig, sizes: Optional[Sequence[tuple[int, int]]] = None) -> list[tuple[int, ...]]:
    """Two test shapes for :func:`onnx_parity`: batch 1 square and batch 2 non-square."""

    m = size_multiple(cfg)
    if sizes is None:
        base = max(m, 64 // m * m)
        sizes = [(base, base), (base + m, base + 2 * m)]
    return [(1 + i % 2, cfg.in_channels, h, w) for i, (h, w) in enumerate(sizes)]


def onnx_cost(path: Union[str, Path], size: int) -> dict:
    """Parameters and MACs of the convolutions of an ONNX generator (fp32, fp16 or QDQ int8) at
    ``size`` x ``size``, counted like :func:`cyclekit.nn.count_macs` (a transposed convolution at
    input resolution); the parameters are the elements of the convolution weights and biases."""
    onnx = require("onnx", "onnx", "counting an ONNX model")
    from onnx import numpy_helper, shape_inference

    model = onnx.load(str(path))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for dim, value in zip(dims, (1, None, size, size)):
        if value is not None:
            dim.ClearField("dim_param")
            dim.dim_value = value
    model = shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)}
    inits = {i.name: numpy_helper.to_array(i).shape for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}

    def weight_shape(name: str):
        while name not in inits and name in producer and producer[name].op_type in ("DequantizeLinear", "Cast"):
            name = producer[name].input[0]
        return inits.get(name)

    macs = params = 0
    for node in model.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose"):
            continue
        w = weight_shape(node.input[1])
        if w is None:
            continue
        params += int(np.prod(w))
        if len(node.input) > 2 and node.input[2]:
            b = weight_shape(node.input[2])
            params += int(np.prod(b)) if b is not None else 0
        ref = shapes.get(node.output[0] if node.op_type == "Conv" else node.input[0])
        if ref and all(d > 0 for d in ref):
            macs += int(np.prod(ref)) * int(np.prod(w[1:]))
    meta = read_metadata(model)
    return {"macs": macs, "params": params, "precision": meta.get("precision", "?"),
            "size_mb": Path(path).stat().st_size / 1e6}
