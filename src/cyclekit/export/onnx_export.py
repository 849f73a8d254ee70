"""Export a generator to one self-contained ONNX file with dynamic batch, height and width.

We use PyTorch's ``torch.export``-based ONNX exporter (``dynamo=True``, the default of recent
PyTorch): for the CycleGAN generators it writes a clean graph of ``Pad(mode=reflect)``, ``Conv``,
``ConvTranspose``, ``InstanceNormalization``, ``Relu`` and ``Tanh`` (no shape-computation
subgraphs), which onnxruntime runs fast. The file is written with every weight embedded (no
external ``.data`` file), checked with :func:`onnx.checker.check_model` (full check), and carries
``metadata_props`` that make it usable on its own:

* ``cyclekit.model_config``: the generator's :class:`~cyclekit.config.ModelConfig` as JSON
  (channels, architecture, training size),
* ``cyclekit.direction`` (``AtoB``/``BtoA``), ``cyclekit.size_multiple`` (pad H and W to it),
* ``cyclekit.precision`` (``fp32``, ``fp16`` or ``int8``).

The input is ``input`` ``[batch, C_in, height, width]`` float32 in [-1, 1]; the output is
``output`` ``[batch, C_out, height, width]`` in [-1, 1]. An ``fp16`` export keeps float32 inputs
and outputs (two ``Cast`` nodes) and stores every weight and activation in half precision; it is
meant for GPUs (onnxruntime's CUDA provider).
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from cyclekit.config import ModelConfig
from cyclekit.errors import require

log = logging.getLogger(__name__)

INPUT_NAME, OUTPUT_NAME = "input", "output"
DIM_NAMES = ("batch", None, "height", "width")
DEFAULT_OPSET = 18
META_PREFIX = "cyclekit."


class _CastWrapper(nn.Module):
    """Run ``net`` in float16 behind float32 inputs and outputs (the fp16 export)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net.half()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.half()).float()


def _quiet():
    """The exporter prints progress lines and a few warnings on every call; keep the CLI clean."""
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "onnx_ir"):
        logger = logging.getLogger(name)
        stack.callback(logger.setLevel, logger.level)
        logger.setLevel(logging.ERROR)
    return stack


def to_onnx_model(net: nn.Module, in_channels: int, sample_size: int = 64, multiple: int = 4,
                  opset: int = DEFAULT_OPSET, fp16: bool = False):
    """Trace ``net`` into an in-memory ``onnx.ModelProto`` with dynamic batch, height and width."""
    onnx = require("onnx", "onnx", "ONNX export")
    require("onnxscript", "onnx", "ONNX export (the torch.export-based exporter)")
    net = net.eval().to("cpu")
    if fp16:
        import copy

        net = _CastWrapper(copy.deepcopy(net))
    side = max(sample_size, 2 * multiple) // multiple * multiple
    sample = torch.zeros(1, in_channels, side, side)
    dyn = torch.export.Dim.DYNAMIC
    with _quiet():
        program = torch.onnx.export(
            net, (sample,), None, dynamo=True, opset_version=opset,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: dyn, 2: dyn, 3: dyn},), verbose=False, optimize=True,
        )
    model = program.model_proto
    _name_dynamic_dims(model)
    _name_nodes_by_module(model)
    return model


def _name_nodes_by_module(model) -> None:
    """Name each node after the PyTorch module it comes from (``blocks.3.conv1.conv``).

    The exporter's per-node metadata (stack traces with local file paths, FX node dumps) is
    dropped: it would bloat the file and leak paths. The names are what ``--exclude`` takes and
    what the quantisation sensitivity report lists.
    """
    import ast

    used: dict[str, int] = {}
    for node in model.graph.node:
        scope = ""
        for prop in node.metadata_props:
            if prop.key == "pkg.torch.onnx.name_scopes":
                try:
                    scopes = ast.literal_eval(prop.value)
                    scope = scopes[-2] if len(scopes) >= 2 else ""
                except (ValueError, SyntaxError):
                    scope = ""
        del node.metadata_props[:]
        base = scope if scope and node.op_type in ("Conv", "ConvTranspose") else (
            f"{scope}.{node.op_type}" if scope else node.op_type)
        n = used.get(base, 0)
        used[base] = n + 1
        node.name = base if n == 0 else f"{base}_{n}"


def _name_dynamic_dims(model) -> None:
    """Give the symbolic dimensions readable names (batch, height, width) on inputs and outputs."""
    renames: dict[str, str] = {}
    for value in list(model.graph.input) + list(model.graph.output):
        for dim, name in zip(value.type.tensor_type.shape.dim, DIM_NAMES):
            if name and dim.dim_param:
                renames.setdefault(dim.dim_param, name)
    for value in list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in renames:
                dim.dim_param = renames[dim.dim_param]


def set_metadata(model, meta: dict) -> None:
    """Replace the ``cyclekit.*`` metadata of an ONNX model (values JSON-encoded if not str)."""
    keep = [p for p in model.metadata_props if not p.key.startswith(META_PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for k, v in meta.items():
        prop = model.metadata_props.add()
        prop.key = META_PREFIX + k
        prop.value = v if isinstance(v, str) else json.dumps(v)


def read_metadata(model) -> dict[str, str]:
    return {p.key[len(META_PREFIX):]: p.value for p in model.metadata_props if p.key.startswith(META_PREFIX)}


def generator_metadata(cfg: ModelConfig, direction: str, precision: str, multiple: int) -> dict:
    return {"model_config": json.dumps(dataclasses.asdict(cfg)), "direction": direction,
            "precision": precision, "size_multiple": str(multiple)}


def save_onnx(model, path: Union[str, Path]) -> Path:
    """Check ``model`` and write it as ONE file (weights embedded, never external data), atomically."""
    onnx = require("onnx", "onnx", "ONNX export")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for init in model.graph.initializer:  # weights must live inside the file
        if init.data_location == onnx.TensorProto.EXTERNAL:
            raise RuntimeError(f"initializer {init.name} refers to external data; cannot write one file")
    onnx.checker.check_model(model, full_check=True)
    data = model.SerializeToString()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def export_generator(net: nn.Module, cfg: ModelConfig, path: Union[str, Path], direction: str = "AtoB",
                     precision: str = "fp32", opset: int = DEFAULT_OPSET, sample_size: int = 64) -> Path:
    """Export one generator to ``path`` (fp32 or fp16) with metadata; returns the path."""
    from cyclekit.translate import size_multiple

    if precision not in ("fp32", "fp16"):
        raise ValueError(f"precision must be fp32 or fp16 here (int8 goes through quantize), got {precision!r}")
    multiple = size_multiple(cfg)
    model = to_onnx_model(net, cfg.in_channels, sample_size=max(sample_size, multiple), multiple=multiple,
                          opset=opset, fp16=precision == "fp16")
    set_metadata(model, generator_metadata(cfg, direction, precision, multiple))
    return save_onnx(model, path)


def export_release(model_path: Union[str, Path], out: Union[str, Path], direction: str = "AtoB",
                   precision: str = "fp32", opset: int = DEFAULT_OPSET) -> Path:
    """Load a release's generator and export it (``precision`` fp32 or fp16)."""
    from cyclekit.checkpoint import load_generator

    net, gcfg = load_generator(model_path, direction, device="cpu")
    return export_generator(net, gcfg, out, direction, precision, opset)


def onnx_parity(net: nn.Module, onnx_path: Union[str, Path, bytes],
                shapes: Sequence[Sequence[int]] = ((1, 3, 64, 64), (2, 3, 48, 80)),
                seed: int = 0) -> float:
    """Max absolute difference between PyTorch and onnxruntime (CPU) over random inputs.

    Inputs are uniform in [-1, 1] at each of ``shapes`` (different batch sizes and sides, so the
    dynamic axes are exercised too).
    """
    from cyclekit.export.ort_backend import make_session

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
    from cyclekit.translate import size_multiple

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
