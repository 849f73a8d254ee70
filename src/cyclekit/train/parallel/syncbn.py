"""Synchronised batch norm for multi-process training on any device.

``torch.nn.SyncBatchNorm`` runs only on GPUs; :class:`GlooSyncBatchNorm` uses plain all-reduces
and so also works with gloo on CPU. :func:`convert_sync_batchnorm` picks the right one, so batch
statistics are those of the global batch and running statistics stay identical on every rank.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class _SyncBNFunction(torch.autograd.Function):
    """Batch norm over the global batch: statistics and their gradients summed over ranks."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, eps, factor, group):
        c = x.shape[1]
        dims = [0] + list(range(2, x.dim()))
        n_local = x.numel() // c
        stats = torch.cat([
            x.sum(dims, dtype=torch.float64), (x.double() ** 2).sum(dims),
            torch.tensor([float(n_local)], dtype=torch.float64, device=x.device),
        ])
        dist.all_reduce(stats, group=group)
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp_min(0.0)  # biased, as batch norm normalises
        if running_mean is not None:
            with torch.no_grad():
                running_mean.mul_(1 - factor).add_(mean.to(running_mean.dtype), alpha=factor)
                unbiased = var * n / (n - 1).clamp_min(1)
                running_var.mul_(1 - factor).add_(unbiased.to(running_var.dtype), alpha=factor)
        shape = [1, c] + [1] * (x.dim() - 2)
        invstd = (var + eps).rsqrt().to(x.dtype).view(shape)
        xhat = (x - mean.to(x.dtype).view(shape)) * invstd
        y = xhat
        if weight is not None:
            y = y * weight.view(shape) + bias.view(shape)
        ctx.save_for_backward(xhat, invstd, weight)
        ctx.n, ctx.group = float(n), group
        return y

    @staticmethod
    def backward(ctx, dy):
        xhat, invstd, weight = ctx.saved_tensors
        c = dy.shape[1]
        dims = [0] + list(range(2, dy.dim()))
        shape = [1, c] + [1] * (dy.dim() - 2)
        sum_dy = dy.sum(dims)
        sum_dy_xhat = (dy * xhat).sum(dims)
        both = torch.cat([sum_dy, sum_dy_xhat]).double()
        dist.all_reduce(both, group=ctx.group)  # every rank's rows share the mean and variance
        mean_dy = (both[:c] / ctx.n).to(dy.dtype).view(shape)
        mean_dy_xhat = (both[c:] / ctx.n).to(dy.dtype).view(shape)
        scale = invstd if weight is None else invstd * weight.view(shape)
        dx = (dy - mean_dy - xhat * mean_dy_xhat) * scale
        # Parameter gradients stay local: GradSync averages them with all the others.
        gw = sum_dy_xhat if weight is not None else None
        gb = sum_dy if weight is not None else None
        return dx, gw, gb, None, None, None, None, None


class GlooSyncBatchNorm(nn.BatchNorm2d):
    """``BatchNorm2d`` whose training statistics are those of the global batch, on any device.

    ``torch.nn.SyncBatchNorm`` only runs on GPUs; this one uses plain all-reduces and so also
    works with gloo on CPU. Outside training, or with one process, it is ordinary batch norm.
    Its state dict is a ``BatchNorm2d``'s, so checkpoints load with or without it.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average, as BatchNorm2d
                factor = 1.0 / float(self.num_batches_tracked)
        rm = self.running_mean if self.track_running_stats else None
        rv = self.running_var if self.track_running_stats else None
        return _SyncBNFunction.apply(x, self.weight, self.bias, rm, rv, self.eps, factor, None)


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> tuple[nn.Module, int]:
    """Replace every ``BatchNorm2d`` by a synchronised one; returns (module, how many)."""
    n = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())
    if n == 0:
        return module, 0
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module), n
    return _to_gloo_bn(module), n


def _to_gloo_bn(module: nn.Module) -> nn.Module:
    if type(module) is nn.BatchNorm2d:
        new = GlooSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                module.track_running_stats, device=None)
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        p = next(module.parameters(), None)
        if p is not None:
            new.to(p.device)
        return new
    for name, child in module.named_children():
        setattr(module, name, _to_gloo_bn(child))
    return module
