"""Training fast paths, each switchable, none changing the maths: the channels_last instance-norm
guard, torch.compile'd step networks and CUDA-graph replay (:func:`make_step_fn`).

Device, precision and the compile wrapper itself live in :mod:`cyclekit.runtime`; the fused and
capturable optimizers in :mod:`cyclekit.train.optim`.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch
from torch import nn

from cyclekit.runtime import compile_nets
from cyclekit.train.step import StepState, train_step


# ---------------------------------------------------------------------- channels_last
def _contiguous_grad(grad: torch.Tensor) -> torch.Tensor:
    return grad.contiguous()


def _instance_norm_grad_hook(module: nn.Module, inputs, output: torch.Tensor) -> None:
    if output.requires_grad:
        output.register_hook(_contiguous_grad)


def guard_instance_norm(module: nn.Module) -> int:
    """Make every instance norm in ``module`` receive NCHW-contiguous output gradients.

    PyTorch 2.13 on CPU computes wrong input gradients in ``instance_norm``'s backward when the
    batch has one image and the incoming gradient is channels_last (which is what the following
    channels_last convolution sends back): off by more than the gradient's own size, in float64
    too. Forward is unaffected; batch norm and batches of 2+ are unaffected. Converting that
    gradient to the standard layout first gives the correct result (checked in
    tests/test_fast_paths.py). Returns the number of layers guarded; idempotent.
    """
    n = 0
    for m in module.modules():
        if isinstance(m, nn.modules.instancenorm._InstanceNorm) and not getattr(m, "_cyclekit_guarded", False):
            m.register_forward_hook(_instance_norm_grad_hook)
            m._cyclekit_guarded = True
            n += 1
    return n


# ---------------------------------------------------------------------- the step
def make_step_fn(state: StepState, cfg, graphs: bool = False) -> tuple[StepState, Callable]:
    """The state to step and the step callable ``fn(state, real_A, real_B, cfg) -> losses``.

    ``state`` is not changed: with ``cfg.compile`` the returned state holds compiled views of
    its networks (sharing their parameters, so the originals, which are saved, stay plain).
    ``graphs`` (decided once, by :func:`cyclekit.train.parallel.graphs.use_cuda_graphs`, which
    also made the optimizers capturable) captures the step as a CUDA graph after a few eager
    warm-up steps.
    """
    if cfg.channels_last:
        guard_instance_norm(state.nets)
    if cfg.compile:
        state = dataclasses.replace(state, nets=compile_nets(state.nets))
    if graphs:
        from cyclekit.train.parallel.graphs import GraphedStep

        return state, GraphedStep(state)
    return state, train_step
