"""Exponential moving average (EMA) of the generators' weights, used for inference.

GAN generators oscillate around a good solution from step to step; the average of their
recent weights is a smoother, better translator (Yazici et al. 2019, "The unusual effectiveness
of averaging in GAN training"; used by ProGAN/StyleGAN). Training itself is unchanged: the EMA
is a shadow copy updated after every optimizer step and read only to translate or to export.

``decay`` is warmed up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so a short
run is not dominated by the random initial weights. The state (shadow tensors and ``n``) goes
into training checkpoints through :meth:`state_dict` for an exact resume.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


class GeneratorEMA:
    """Shadow copies of named modules (by default ``G_AB`` and ``G_BA`` of a CycleGANNets)."""

    def __init__(self, nets: nn.Module, decay: float, names: tuple[str, ...] = ("G_AB", "G_BA")) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay, self.names, self.updates = float(decay), tuple(names), 0
        self.shadow: dict[str, nn.Module] = {}
        for name in self.names:
            m = copy.deepcopy(getattr(nets, name)).eval()
            for p in m.parameters():
                p.requires_grad_(False)
            self.shadow[name] = m

    def current_decay(self) -> float:
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, nets: nn.Module) -> None:
        """Move the shadow weights towards the live ones; buffers (if any) are copied."""
        d = self.current_decay()
        for name, avg in self.shadow.items():
            live = getattr(nets, name)
            avg_p = [p for p in avg.parameters()]
            live_p = [p.detach() for p in live.parameters()]
            torch._foreach_lerp_(avg_p, live_p, 1.0 - d)  # avg += (1 - d) * (live - avg)
            for b_avg, b_live in zip(avg.buffers(), live.buffers()):
                b_avg.copy_(b_live)
        self.updates += 1

    def module(self, name: str) -> nn.Module:
        """The averaged generator ``name`` (in eval mode; do not train it)."""
        return self.shadow[name]

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates,
                "shadow": {n: m.state_dict() for n, m in self.shadow.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.decay, self.updates = float(state["decay"]), int(state["updates"])
        for n, sd in state["shadow"].items():
            self.shadow[n].load_state_dict(sd)
