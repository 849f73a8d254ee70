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
import warnings
from typing import Optional

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
    require("onnx", "onnx", "ONNX export")
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


def generator_metadata(cfg: ModelConfig, direction: str, precision: str, multiple: int,
                       info: Optional[dict] = None) -> dict:
    """The ``cyclekit.*`` metadata of an exported generator. ``info`` is what the file keeps of its
    release's ``cyclekit`` block (:func:`cyclekit.export.onnx_export.export_info`: domain names,
    attribution, a face model's ``face_tone``, ``face_backdrop``, ``swap_strength`` ...), as JSON in
    ``cyclekit.release_info``, so an ``.onnx`` file swaps faces the way its release does."""
    meta = {"model_config": json.dumps(dataclasses.asdict(cfg)), "direction": direction,
            "precision": precision, "size_multiple": str(multiple)}
    if info:
        meta["release_info"] = json.dumps(info, sort_keys=True)
    return meta
