"""The paper's two Adam optimizers, with the fastest kernel the device has."""
from __future__ import annotations

import itertools
from typing import Optional

import torch
from torch import nn


def supports_fused_adam(device: torch.device) -> bool:
    """Fused Adam kernels exist for CPU and CUDA tensors (PyTorch 2.4+)."""
    return torch.device(device).type in ("cpu", "cuda") and torch.__version__ >= "2.4"


def make_optimizers(nets: nn.Module, cfg, device: torch.device, fused: Optional[bool] = None,
                    cuda_graphs: bool = False) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """The paper's two Adams (lr, betas from ``cfg``): G_AB+G_BA jointly and D_A+D_B jointly.

    ``fused=None`` uses the fused kernel where the device has one (one kernel per step instead
    of a Python loop over ~100 parameter tensors). ``cuda_graphs=True`` makes the optimizers
    capturable, with the learning rate a device tensor that LR schedulers update in place.
    Mathematically the same update as the official per-parameter Adam.
    """
    device = torch.device(device)
    if fused is None:
        fused = supports_fused_adam(device)
    kwargs: dict = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    if fused:
        kwargs["fused"] = True
    elif device.type == "cuda":
        kwargs["foreach"] = True
    if cuda_graphs:
        kwargs["capturable"] = True
    groups = (
        itertools.chain(nets.G_AB.parameters(), nets.G_BA.parameters()),
        itertools.chain(nets.D_A.parameters(), nets.D_B.parameters()),
    )
    opts = []
    for params in groups:
        lr = torch.tensor(cfg.lr, device=device) if cuda_graphs else cfg.lr
        opt = torch.optim.Adam(params, **{**kwargs, "lr": lr})
        opt.register_load_state_dict_post_hook(_keep_kernel_choice(kwargs, device if cuda_graphs else None))
        opts.append(opt)
    return opts[0], opts[1]


def _keep_kernel_choice(kwargs: dict, lr_device: Optional[torch.device]):
    """``Optimizer.load_state_dict`` restores the saved groups' fused/foreach/capturable flags and
    lr type too; keep this run's choice instead (a checkpoint may come from another device or
    mode), and move the step counters where that choice wants them."""
    flags = {k: kwargs.get(k, None if k != "capturable" else False) for k in ("fused", "foreach", "capturable")}

    def hook(opt: torch.optim.Optimizer) -> None:
        for group in opt.param_groups:
            group.update(flags)
            for key in ("lr", "initial_lr"):
                if key in group:
                    value = float(group[key])
                    group[key] = torch.tensor(value, device=lr_device) if lr_device is not None else value
            on_device = bool(flags["fused"] or flags["capturable"])
            for p in group["params"]:
                st = opt.state.get(p, {})
                if torch.is_tensor(st.get("step")):
                    st["step"] = st["step"].to(p.device if on_device else "cpu", torch.float32)

    return hook
