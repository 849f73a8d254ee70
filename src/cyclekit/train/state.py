"""Resumable training state (``checkpoints/last.pt``).

It holds what the objective saves (for CycleGAN all four networks, both optimizers, both
schedulers, both history pools), the RNG states, the position in the data (epoch, iteration,
samples) and the after-step hooks' states (the validator's under ``"validation"``), packed by
:meth:`cyclekit.train.loop.Trainer.state_dict`: a plain ``torch.save`` of tensors, numbers and strings,
loaded back with ``weights_only=True`` (never unpickling arbitrary objects). Written atomically
(:mod:`cyclekit.io.files`), so a crash at any moment leaves the previous good state intact.
"""
from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any, Union

import torch

from cyclekit.errors import CheckpointError
from cyclekit.io.files import atomic_path

log = logging.getLogger(__name__)

STATE_FILE = "checkpoints/last.pt"
FORMAT = 1
_REQUIRED = ("config", "nets", "epoch", "global_step")


def save_training_state(path: Union[str, Path], state: dict[str, Any]) -> None:
    """``torch.save`` to a temp file, fsync, rename: the last good state survives any crash."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_training_state(path: Union[str, Path], map_location: Union[str, torch.device] = "cpu") -> dict:
    """Load and sanity-check a training state; every problem is one :class:`CheckpointError` line."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"no training state at {path}: this run has not saved a checkpoint yet (they are written "
            "at epoch ends (--save-minutes spaces them out), every --save-every iterations and on a stop)"
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:  # weights_only refused an object: never load such a file
        raise CheckpointError(
            f"{path} is not a safe cyclekit training state (it contains pickled Python objects, which "
            "cyclekit never loads); resume from a checkpoint that cyclekit wrote"
        ) from None
    except Exception as exc:  # truncated, not a torch file, ...
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot load training state {path}: {first}") from None
    if not isinstance(state, dict) or any(k not in state for k in _REQUIRED):
        raise CheckpointError(f"{path} is not a cyclekit training state (missing fields); "
                              "give the run directory of a `cyclekit train` run")
    if int(state.get("format", FORMAT)) > FORMAT:
        raise CheckpointError(f"{path} was written by a newer cyclekit (format {state['format']}); upgrade cyclekit")
    return state


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
