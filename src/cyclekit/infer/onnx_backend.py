"""onnxruntime as an inference backend, usable wherever a PyTorch generator is.

:class:`OrtGenerator` is a callable with the generator's contract (``[N, C, H, W]`` float tensor in
[-1, 1] in, same-size translated tensor out), so :class:`cyclekit.infer.translator.Translator` wraps it
unchanged and pads/crops to the size multiple exactly as for PyTorch. It runs either an exported
``.onnx`` file (fp32, fp16 or int8; its ``cyclekit.*`` metadata says what it is) or a release,
which is exported in memory on load. The CUDA execution provider is used when asked for (or with
``device="auto"`` when onnxruntime-gpu sees a GPU), the CPU provider otherwise.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch

from cyclekit.config import ModelConfig
from cyclekit.errors import CheckpointError, ConfigError, require
from cyclekit.nn.generators import size_multiple

log = logging.getLogger(__name__)

ModelLike = Union[str, Path, bytes, Any]  # a path, serialized bytes or an onnx.ModelProto


def _ort():
    return require("onnxruntime", "onnx", "the onnxruntime backend")


def pick_providers(device: str = "auto") -> list[str]:
    """Execution providers for ``device`` (auto: CUDA when onnxruntime offers it, else CPU)."""
    ort = _ort()
    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device in ("cuda", "auto") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise ConfigError(
            "--device cuda with --backend onnxruntime needs the CUDA execution provider, which this "
            f"onnxruntime does not have (available: {', '.join(available)}); install onnxruntime-gpu "
            "or use --device cpu"
        )
    if device != "auto":
        raise ConfigError(f"device must be auto, cpu or cuda, got {device!r}")
    return ["CPUExecutionProvider"]


def make_session(model: ModelLike, device: str = "auto", threads: int = 0,
                 optimization: str = "all", spin: bool = False):
    """An ``InferenceSession`` for a file path, serialized bytes or an ``onnx.ModelProto``.

    ``spin=False`` (default) stops idle worker threads from busy-waiting between operators: on a
    small machine shared with other work busy-waiting costs more than it saves (BENCHMARKS.md,
    "Timings behind code choices"); it only pays on an otherwise idle machine.
    """
    ort = _ort()
    opts = ort.SessionOptions()
    if threads > 0:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "1" if spin else "0")
    opts.graph_optimization_level = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    }[optimization]
    opts.log_severity_level = 3  # errors only
    if hasattr(model, "SerializeToString"):
        model = model.SerializeToString()
    elif isinstance(model, Path):
        model = str(model)
    providers = pick_providers(device)
    try:
        return ort.InferenceSession(model, opts, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
        where = model if isinstance(model, str) else "the exported model"
        raise CheckpointError(f"onnxruntime cannot load {where}: {str(exc).splitlines()[0]}") from None


class OrtGenerator:
    """A generator that runs in onnxruntime: ``gen(x)`` maps ``[N, C, H, W]`` tensors like the module.

    Inputs are fed in the dtype the graph declares (float32, or float16 for an fp16 graph without
    float32 I/O); the output is returned as a float32 CPU tensor.
    """

    def __init__(self, session, cfg: ModelConfig, direction: str = "AtoB", precision: str = "fp32",
                 info: Optional[dict] = None) -> None:
        self.session, self.cfg, self.direction, self.precision = session, cfg, direction, precision
        self.info = dict(info or {})  # the release's cyclekit block (domains, face swap settings, ...)
        inp = session.get_inputs()[0]
        self.input_name = inp.name
        self.input_dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
        self.providers = session.get_providers()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        feed = x.detach().to("cpu", torch.float32).numpy().astype(self.input_dtype, copy=False)
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(feed)})[0]
        return torch.from_numpy(np.asarray(out, dtype=np.float32))

    def eval(self) -> "OrtGenerator":  # lets callers treat it like an nn.Module in eval mode
        return self

    def __repr__(self) -> str:
        return f"OrtGenerator({self.cfg.generator}, {self.direction}, {self.precision}, {self.providers[0]})"


def config_from_metadata(meta: dict[str, str], session, source: str) -> tuple[ModelConfig, str, str]:
    """The ModelConfig, direction and precision stored in a cyclekit ONNX file.

    A foreign ONNX file (no metadata) is accepted with its channel counts read from the graph
    and a size multiple of 4 (the ResNet generator's).
    """
    from cyclekit.config import Config, validate_model_config

    if "cyclekit.model_config" in meta:
        try:
            fields = json.loads(meta["cyclekit.model_config"])
            cfg = Config.from_dict({"model": fields}, source=f"{source} metadata").model
            validate_model_config(cfg)
        except (ValueError, ConfigError) as exc:
            raise CheckpointError(f"{source}: unreadable cyclekit metadata ({exc})") from None
        return cfg, meta.get("cyclekit.direction", "AtoB"), meta.get("cyclekit.precision", "fp32")
    shape_in, shape_out = session.get_inputs()[0].shape, session.get_outputs()[0].shape
    c_in = shape_in[1] if len(shape_in) == 4 and isinstance(shape_in[1], int) else 3
    c_out = shape_out[1] if len(shape_out) == 4 and isinstance(shape_out[1], int) else c_in
    log.warning("%s has no cyclekit metadata; assuming %d->%d channels and sides padded to multiples of 4",
                source, c_in, c_out)
    return ModelConfig(in_channels=c_in, out_channels=c_out), "AtoB", "fp32"


MAX_INFO_CHARS = 1 << 20  # a release's cyclekit block is a few KB


def info_from_metadata(meta: dict[str, str], source: str) -> dict:
    """The release's ``cyclekit`` block an export stored (``cyclekit.release_info``), or {}.

    Only parsed as JSON and checked to be an object here; its face settings are checked where they
    are used (:func:`cyclekit.faces.pipeline.check_face_release`), as for a release."""
    text = meta.get("cyclekit.release_info")
    if text is None:
        return {}
    try:
        if len(text) > MAX_INFO_CHARS:
            raise ValueError(f"{len(text)} characters, more than {MAX_INFO_CHARS}")
        info = json.loads(text)
        if not isinstance(info, dict):
            raise ValueError("not a JSON object")
    except (ValueError, RecursionError) as exc:  # RecursionError: JSON nested deeper than Python's stack
        why = exc if isinstance(exc, ValueError) else "nested too deeply"
        raise CheckpointError(f"{source}: unreadable cyclekit.release_info metadata ({why}); re-export the "
                              "model with `cyclekit export`") from None
    return info


def load_onnx_generator(model: Union[str, Path], direction: str = "AtoB", device: str = "auto",
                        precision: str = "fp32", threads: int = 0) -> tuple[OrtGenerator, ModelConfig]:
    """An :class:`OrtGenerator` from an ``.onnx`` file, or from a release exported in memory.

    ``precision`` applies to releases (``fp32``, or ``fp16`` for GPUs); an ``.onnx`` file runs in
    the precision it was exported or quantised in (``cyclekit export --precision int8``).
    """
    _ort()  # fail now, before any export work, when onnxruntime is missing
    path = Path(model)
    if path.suffix.lower() == ".onnx":
        if not path.is_file():
            raise CheckpointError(f"ONNX file not found: {path}")
        session = make_session(path, device, threads)
        meta = session.get_modelmeta().custom_metadata_map
        cfg, file_direction, file_precision = config_from_metadata(meta, session, str(path))
        if file_direction != direction:
            log.warning("%s translates %s; --direction %s is ignored for ONNX files", path,
                        file_direction, direction)
        info = info_from_metadata(meta, str(path))
        return OrtGenerator(session, cfg, file_direction, file_precision, info), cfg
    if precision not in ("fp32", "fp16"):
        raise ConfigError(
            f"--precision {precision} is not available when exporting a release on the fly; use fp32 "
            "(or fp16 on a GPU), or export an int8 file with `cyclekit export MODEL --precision int8` "
            "and pass that .onnx file as the model"
        )
    from cyclekit.release import load_generator, release_info
    from cyclekit.infer.onnx_graph import generator_metadata, set_metadata, to_onnx_model

    net, cfg = load_generator(model, direction, device="cpu")
    info = release_info(model)
    multiple = size_multiple(cfg)
    log.info("exporting the %s generator to ONNX in memory (%s)", direction, precision)
    proto = to_onnx_model(net, cfg.in_channels, multiple=multiple, fp16=precision == "fp16")
    set_metadata(proto, generator_metadata(cfg, direction, precision, multiple, info))
    session = make_session(proto, device, threads)
    return OrtGenerator(session, cfg, direction, precision, info), cfg
