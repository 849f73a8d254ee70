"""After-step hooks: how code outside training (validation, tests) joins the loop.

A hook is any object with::

    name: str | None                  # its state is saved in the checkpoint under this key (None: stateless)
    after_step(view: StepView) -> None
    state_dict() -> dict | None       # plain data (numbers, strings, tensors): weights_only-loadable
    load_state_dict(state: dict | None) -> None   # None: the checkpoint has nothing under ``name``

The loop calls ``after_step`` after every iteration (after logging, before saving), on every rank;
hooks that should run on one rank only are given to rank 0's Trainer only. A hook must not touch
the training RNG if it is to keep runs with and without it identical.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol

import torch
from torch import nn


@dataclass(frozen=True)
class StepView:
    """What a hook sees: the live generators (in training mode), where they are, and how far training is."""

    generators: tuple[nn.Module, nn.Module]  # G_AB, G_BA
    device: torch.device
    step: int  # iterations done
    epoch: int  # the current epoch, 0-based
    log: Callable[[dict[str, Any]], None]  # append a row to metrics.jsonl (a no-op on ranks > 0)


class StepHook(Protocol):
    name: Optional[str]

    def after_step(self, view: StepView) -> None: ...

    def state_dict(self) -> Optional[dict[str, Any]]: ...

    def load_state_dict(self, state: Optional[dict[str, Any]]) -> None: ...


class Callback:
    """A stateless hook around ``fn(view)``."""

    name: Optional[str] = None

    def __init__(self, fn: Callable[[StepView], None]) -> None:
        self.fn = fn

    def after_step(self, view: StepView) -> None:
        self.fn(view)

    def state_dict(self) -> None:
        return None

    def load_state_dict(self, state: Optional[dict[str, Any]]) -> None:
        pass
