"""Release files and resumable training state.

A *release* is a folder with ``config.json`` (the full :class:`~cyclekit.config.Config`, plus a
``cyclekit`` metadata block) and ``model.safetensors`` holding both generators under the
prefixes ``G_AB.`` and ``G_BA.``. Loading a release needs only this module and the network
code; nothing is ever unpickled.

The *training state* (``checkpoints/last.pt``) holds all four networks, both optimizers, both
schedulers, both history pools, the RNG states, the epoch and the iteration. It is a plain
``torch.save`` of tensors and numbers, loaded with ``weights_only=True``.

Every file is written to a temporary name, flushed to disk and renamed over the old one, so a
crash at any moment leaves the previous good file intact.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Union

import torch
from torch import nn

from cyclekit import __version__
from cyclekit.config import Config, ModelConfig, atomic_write_text, generator_config_for
from cyclekit.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)

RELEASE_DIR = "model"  # inside a run directory
STATE_FILE = "checkpoints/last.pt"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def unwrap(module: nn.Module) -> nn.Module:
    """Strip DistributedDataParallel (``module.``) and torch.compile (``_orig_mod.``) wrappers."""
    while True:
        if hasattr(module, "_orig_mod"):
            module = module._orig_mod
        elif isinstance(module, nn.parallel.DistributedDataParallel):
            module = module.module
        else:
            return module


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _fsync_replace(tmp: Path, path: Path) -> None:
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


# --------------------------------------------------------------------------- release
def save_release(
    out_dir: Union[str, Path], cfg: Config, G_AB: nn.Module, G_BA: nn.Module, meta: dict | None = None
) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (both generators) atomically."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for prefix, net in (("G_AB", G_AB), ("G_BA", G_BA)):
        for k, v in unwrap(net).state_dict().items():
            tensors[f"{prefix}.{k}"] = v.detach().to("cpu").contiguous()
    info = {"cyclekit_version": __version__, **(meta or {})}
    weights = out_dir / WEIGHTS_FILE
    tmp = _tmp_path(weights)
    try:
        save_file(tensors, str(tmp), metadata={k: str(v) for k, v in info.items()})
        _fsync_replace(tmp, weights)
    finally:
        tmp.unlink(missing_ok=True)
    doc = cfg.to_dict()
    doc["cyclekit"] = info
    atomic_write_text(out_dir / CONFIG_FILE, json.dumps(doc, indent=2) + "\n")
    return out_dir


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


def load_release_config(path: Union[str, Path]) -> Config:
    release = resolve_release(path)
    try:
        doc = json.loads((release / CONFIG_FILE).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{release / CONFIG_FILE} is not valid JSON ({exc.msg})") from None
    doc.pop("cyclekit", None)
    try:
        return Config.from_dict(doc, source=str(release / CONFIG_FILE))
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None


def load_generator(
    path: Union[str, Path], direction: str = "AtoB", device: Union[str, torch.device] = "cpu"
) -> tuple[nn.Module, ModelConfig]:
    """Build one generator from a release (or run dir) and load its weights, in eval mode.

    Returns the module and its ModelConfig (``in_channels``/``out_channels`` already swapped
    for ``BtoA``).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from cyclekit.nn import build_generator

    release = resolve_release(path)
    cfg = load_release_config(release)
    gcfg = generator_config_for(cfg.model, direction)
    net = build_generator(gcfg)
    prefix = "G_AB." if direction == "AtoB" else "G_BA."
    try:
        tensors = load_file(str(release / WEIGHTS_FILE), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"cannot read {release / WEIGHTS_FILE}: {exc}") from None
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{release / WEIGHTS_FILE} does not match the network described in {release / CONFIG_FILE}: "
            f"{str(exc).splitlines()[0]}"
        ) from None
    return net.to(device).eval(), gcfg


# --------------------------------------------------------------------------- training state
def save_training_state(path: Union[str, Path], state: dict[str, Any]) -> None:
    """``torch.save`` to a temp file, fsync, rename: the last good state survives any crash."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    try:
        torch.save(state, tmp)
        _fsync_replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_training_state(path: Union[str, Path], map_location: Union[str, torch.device] = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"no training state at {path}: this run has not saved a checkpoint yet (they are written "
            "at every epoch end and every --save-every iterations)"
        )
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which and what to do
        raise CheckpointError(f"cannot load training state {path}: {exc}") from None


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(state["cuda"])
        except (RuntimeError, IndexError):  # fewer GPUs than when saved
            log.warning("could not restore the CUDA RNG state (different GPUs); continuing")
