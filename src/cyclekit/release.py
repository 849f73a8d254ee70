"""Releases: a trained pair of generators, ready for inference.

A *release* is a folder with ``config.json`` (the model section of the
:class:`~cyclekit.config.Config`, plus a ``cyclekit`` metadata block: version, domain names,
training step) and ``model.safetensors`` holding both generators under the prefixes ``G_AB.``
and ``G_BA.``. Loading a release needs only this module and the network code; nothing is ever
unpickled. Training details (data paths, run directory, optimiser settings) stay in the run
directory's own ``config.json``; a release does not carry them.

Files are written atomically (:mod:`cyclekit.io.files`): a crash leaves the previous release intact.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import nn

from cyclekit import __version__
from cyclekit.config import Config, ModelConfig, generator_config_for, validate_model_config
from cyclekit.data.domains import domain_names
from cyclekit.errors import CheckpointError, ConfigError
from cyclekit.io.files import atomic_path, atomic_write_text

log = logging.getLogger(__name__)

RELEASE_DIR = "model"  # inside a run directory
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def unwrap(module: nn.Module) -> nn.Module:
    """Strip torch.compile wrappers (``_orig_mod.``) so weights keep their plain keys."""
    while hasattr(module, "_orig_mod"):
        module = module._orig_mod
    return module


def save_release(
    out_dir: Union[str, Path], cfg: Config, G_AB: nn.Module, G_BA: nn.Module, meta: dict | None = None
) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (both generators) atomically."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    tensors = {}
    for prefix, net in (("G_AB", G_AB), ("G_BA", G_BA)):
        for k, v in unwrap(net).state_dict().items():
            tensors[f"{prefix}.{k}"] = v.detach().to("cpu").contiguous()
    info = {"cyclekit_version": __version__, **(meta or {})}
    with atomic_path(out_dir / WEIGHTS_FILE) as tmp:
        save_file(tensors, str(tmp), metadata={k: str(v) for k, v in info.items()})
    doc = {"model": dataclasses.asdict(cfg.model), "cyclekit": info}
    atomic_write_text(out_dir / CONFIG_FILE, json.dumps(doc, indent=2) + "\n")
    return out_dir


def release_info(path: Union[str, Path]) -> dict[str, Any]:
    """The ``cyclekit`` metadata block of a release (version, ``domains``, step, ...)."""
    doc = _read_doc(resolve_release(path))
    info = doc.get("cyclekit")
    return dict(info) if isinstance(info, dict) else {}


def update_release_info(path: Union[str, Path], **fields: Any) -> Path:
    """Add or replace ``fields`` in a release's ``cyclekit`` metadata block (e.g. the paste
    strength a face model recommends, chosen after training). Only ``config.json`` is rewritten,
    atomically; the weights are untouched. Returns the release folder."""
    release = resolve_release(path)
    doc = _read_doc(release)
    info = doc.get("cyclekit") if isinstance(doc.get("cyclekit"), dict) else {}
    doc["cyclekit"] = {**info, **fields}
    atomic_write_text(release / CONFIG_FILE, json.dumps(doc, indent=2) + "\n")
    return release


def release_domains(path: Union[str, Path]) -> tuple[str, str]:
    """The names of domain A and B recorded at training time (``("A", "B")`` when unnamed)."""
    names = info_domains(release_info(path))
    if names is not None:
        return names
    cfg = training_config(path)  # a release from before domain names were recorded
    return domain_names(cfg.data) if cfg is not None else ("A", "B")


def info_domains(info: dict) -> Optional[tuple[str, str]]:
    """The domain names in a ``cyclekit`` metadata block (a release's, or an ONNX file's), or None."""
    names = info.get("domains")
    if isinstance(names, (list, tuple)) and len(names) == 2 and all(isinstance(n, str) and n for n in names):
        return names[0], names[1]
    return None


# The gender-swap model the package ships (domain A male, B female): `cyclekit swap`'s default
# model and what `cyclekit train --init-from builtin` fine-tunes.
BUILTIN_MODEL = Path(__file__).resolve().parent / "faces" / "models" / "genderswap"


def builtin_model() -> Path:
    """The release folder of the built-in gender-swap model (domain A male, B female)."""
    if not (BUILTIN_MODEL / WEIGHTS_FILE).is_file():
        raise CheckpointError(f"the built-in gender-swap model is missing from {BUILTIN_MODEL}; reinstall cyclekit "
                              "or pass --model RUN_DIR")
    return BUILTIN_MODEL


def resolve_release(path: Union[str, Path]) -> Path:
    """Find the release folder from a run dir, a release dir, or a ``model.safetensors`` path."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"model not found: {path} (give a run directory or a release folder)")
    if path.is_file():
        if path.suffix != ".safetensors":
            raise CheckpointError(
                f"{path} is not a .safetensors release file; give the run directory or the folder "
                f"holding {CONFIG_FILE} and {WEIGHTS_FILE}"
            )
        path = path.parent
    for candidate in (path, path / RELEASE_DIR):
        if (candidate / WEIGHTS_FILE).is_file() and (candidate / CONFIG_FILE).is_file():
            return candidate
    raise CheckpointError(
        f"no release in {path}: expected {CONFIG_FILE} and {WEIGHTS_FILE} there or in {path / RELEASE_DIR}; "
        "a run writes them at the end of every epoch"
    )


def _read_doc(release: Path) -> dict[str, Any]:
    path = release / CONFIG_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise CheckpointError(f"{path} is not a UTF-8 text file; re-export the model") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc.msg})") from None
    if not isinstance(doc, dict):
        raise CheckpointError(f"{path}: expected a JSON object with a model section, got {type(doc).__name__}")
    return doc


def load_release_config(path: Union[str, Path]) -> Config:
    """The release's model configuration, validated (data/train sections are defaults: a release
    does not carry them; releases written by older versions had them and they are ignored)."""
    release = resolve_release(path)
    doc = _read_doc(release)
    try:
        model = Config.from_dict({"model": doc.get("model", {})}, source=str(release / CONFIG_FILE)).model
        validate_model_config(model, where=str(release / CONFIG_FILE))
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None
    return Config(model=model)


def training_config(path: Union[str, Path]) -> Optional[Config]:
    """The full training Config behind a release, when it can be found: the run directory's
    ``config.json`` (the folder holding the release), or a release written by an older version
    that still carried its data and train sections. None for a release shipped on its own."""
    release = resolve_release(path)
    candidates = [release.parent / CONFIG_FILE] if release.name == RELEASE_DIR else []
    candidates.append(release / CONFIG_FILE)
    for cand in candidates:
        try:
            doc = json.loads(cand.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(doc, dict) and isinstance(doc.get("data"), dict):
            doc.pop("cyclekit", None)
            try:
                return Config.from_dict(doc, source=str(cand))
            except ConfigError as exc:
                raise CheckpointError(str(exc)) from None
    return None


def load_generator(
    path: Union[str, Path], direction: str = "AtoB", device: Union[str, torch.device] = "cpu"
) -> tuple[nn.Module, ModelConfig]:
    """Build one generator from a release (or run dir) and load its weights, in eval mode.

    Returns the module and its ModelConfig (``in_channels``/``out_channels`` already swapped
    for ``BtoA``). The network is first described on the meta device (no memory) and its
    parameter shapes are checked against the weights file's header, so a config that does not
    match its weights (or asks for a gigantic network) is refused before anything is allocated.
    """
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    from cyclekit.nn import build_generator

    release = resolve_release(path)
    cfg = load_release_config(release)
    gcfg = generator_config_for(cfg.model, direction)
    weights = release / WEIGHTS_FILE
    prefix = "G_AB." if direction == "AtoB" else "G_BA."
    try:
        with safe_open(str(weights), framework="pt") as fh:
            shapes = {k[len(prefix):]: tuple(fh.get_slice(k).get_shape()) for k in fh.keys() if k.startswith(prefix)}
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"cannot read {weights}: {exc}") from None
    with torch.device("meta"):
        skeleton = build_generator(gcfg)
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    if expected != shapes:
        n_cfg = sum(math.prod(s) for s in expected.values())
        n_file = sum(math.prod(s) for s in shapes.values())
        raise CheckpointError(
            f"{weights} does not match the network described in {release / CONFIG_FILE} "
            f"({n_cfg:,} parameters described, {n_file:,} stored for {direction}); the two files come "
            "from different models: copy both from the same run"
        )
    net = build_generator(gcfg)
    try:
        tensors = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"cannot read {weights}: {exc}") from None
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{weights} does not match the network described in {release / CONFIG_FILE}: "
            f"{str(exc).splitlines()[0]}"
        ) from None
    return net.to(device).eval(), gcfg


def direction_label(path: Union[str, Path], direction: str, info: Optional[dict] = None) -> str:
    """``"AtoB (horse -> zebra)"`` for a model whose domains are named (in ``info``, a loaded
    model's ``cyclekit`` block, else in the release at ``path``), else ``"AtoB"``."""
    names = info_domains(info or {})
    try:
        a, b = names or release_domains(path)
    except CheckpointError:  # an .onnx file without names or an identity model: no release to ask
        return direction
    if (a, b) == ("A", "B"):
        return direction
    return f"{direction} ({a} -> {b})" if direction == "AtoB" else f"{direction} ({b} -> {a})"
