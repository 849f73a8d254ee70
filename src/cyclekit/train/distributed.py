"""Data-parallel training over many processes (``torchrun``): NCCL on CUDA, gloo on CPU.

Every rank holds all four networks, trains on its own shard of each epoch and keeps the
networks identical by averaging gradients. The design choices, and why:

* **One flat all-reduce per update, no DDP wrapper.** A CycleGAN iteration has two updates: the
  generators jointly (with both discriminators frozen but in the graph) and the discriminators
  jointly. Wrapping each network in ``DistributedDataParallel`` would reduce four times per
  iteration, fire hooks for the frozen discriminators during the generator step and need
  ``find_unused_parameters`` to cope with them; the official code's DDP path breaks exactly
  there. Instead :class:`GradSync` concatenates all gradients of one optimizer into one buffer
  and does a single ``all_reduce`` between ``backward()`` and ``optimizer.step()``: exactly one
  gradient reduction for the generator update and one for the discriminator update, countable in
  a test. The price is no overlap of communication with the backward pass. CycleGAN is
  compute-bound (two ResNet-9 generators are 22.8 M parameters, ~91 MB of fp32 gradients, for
  convolutions over full-resolution images), so one bulk all-reduce per update is a small share
  of a step (an estimate from NVLink bandwidth; not measured here, no multi-GPU machine).
* **Gradients are averaged** (sum / world size), so ``N`` ranks of batch ``b`` make the same
  update as one process of batch ``N*b``, the *global batch*. The learning rate is never scaled
  automatically: the paper's 2e-4 is for batch 1, and scaling it is the user's decision.
* **Control flags ride on the generator all-reduce.** Two extra numbers (stop requested by a
  signal, time limit reached) are summed with the generator gradients, so every rank takes the
  same stop/save decision at the same iteration without another collective per step.
* **Rank 0 owns the run directory.** Other ranks never create or write files there; checkpoints
  are collective (:func:`gather_to_main` of each rank's history pools and RNG state) and then
  written by rank 0 alone; resuming, rank 0 reads the file and hands each rank its part
  (:func:`broadcast_from_main`, :func:`scatter_from_main`).
* **Batch norm is synchronised** (:func:`convert_sync_batchnorm`): ``torch.nn.SyncBatchNorm`` on
  CUDA, :class:`GlooSyncBatchNorm` on CPU (PyTorch's refuses CPU tensors), so batch statistics
  are those of the global batch and the running statistics stay identical on every rank.
* **Failures end the run instead of hanging it.** The process group has a timeout
  (``--dist-timeout`` minutes); a dead peer makes gloo collectives raise at once (NCCL's watchdog
  aborts the process after the timeout, PyTorch's default ``TORCH_NCCL_ASYNC_ERROR_HANDLING``;
  torchrun also stops the other workers of a machine whose worker died), and the trainer turns that into
  :class:`LostPeerError`, one line naming the last intact checkpoint and the resume command.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Optional, Sequence

import torch
import torch.distributed as dist
from torch import nn

from cyclekit.errors import CheckpointError, ConfigError, UserError

log = logging.getLogger(__name__)


class LostPeerError(UserError):
    """Another rank died or stopped answering; the last checkpoint is intact."""


@dataclass
class DistContext:
    """Where this process stands: rank, world size, and the device/backend it was given."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: Optional[torch.device] = None  # chosen here when distributed, else by the trainer
    backend: str = ""
    owns_group: bool = False  # we created the process group, so we destroy it

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_context() -> DistContext:
    """Rank and world size as torchrun sets them (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``)."""
    if dist.is_available() and dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return DistContext(
        int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))
    )


def setup(device: str = "auto", timeout_minutes: float = 30.0) -> DistContext:
    """Join the process group torchrun describes; a no-op (world size 1) outside torchrun.

    ``device`` is the config's ``--device``: ``auto`` uses one GPU per rank (``cuda:LOCAL_RANK``,
    NCCL) when CUDA is available, else the CPU with gloo. An existing process group (a caller
    that initialised its own) is reused and left alone at :func:`teardown`.
    """
    ctx = env_context()
    if not ctx.enabled:
        return ctx
    if not dist.is_available():
        raise ConfigError("this PyTorch build has no torch.distributed; run without torchrun")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
        if ctx.local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"local rank {ctx.local_rank} has no GPU: this machine has {torch.cuda.device_count()}; "
                "use --nproc_per_node (or --nproc) at most the number of GPUs"
            )
        ctx.device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(ctx.device)
        ctx.backend = "nccl"  # PyTorch's NCCL watchdog aborts a collective stuck past the timeout
    else:
        ctx.device = torch.device("cpu")
        ctx.backend = "gloo"
    if dist.is_initialized():
        ctx.backend = dist.get_backend()
        return ctx
    kwargs: dict[str, Any] = {"backend": ctx.backend, "timeout": timedelta(minutes=timeout_minutes)}
    if use_cuda:
        kwargs["device_id"] = ctx.device
    dist.init_process_group(**kwargs)
    ctx.owns_group = True
    log.info("rank %d/%d on %s (%s)", ctx.rank, ctx.world_size, ctx.device, ctx.backend)
    return ctx


def teardown(ctx: DistContext) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()
        ctx.owns_group = False


def rank_seed(seed: int, rank: int, stream: int = 0) -> int:
    """A seed for (run seed, rank, stream); rank 0 never calls this, so 1-process runs are unchanged."""
    return (int(seed) * 1_000_003 + int(rank) * 7919 + int(stream) * 104_729) % (2**63 - 1)


# --------------------------------------------------------------------------- gradients
class GradSync:
    """Average the gradients of one optimizer's parameters over all ranks, in one all-reduce.

    Called by :func:`cyclekit.train.step.train_step` as ``sync(name, params)`` between
    ``backward()`` and ``optimizer.step()`` (name ``"G"`` or ``"D"``). Parameters without a
    gradient are skipped; every rank runs the same graph, so the set is the same everywhere.
    The ``"G"`` reduction also sums :attr:`flags` (set by the trainer before the step); read the
    agreed values after the step with :meth:`agreed`.
    """

    def __init__(self, world_size: int, n_flags: int = 2) -> None:
        self.world_size = world_size
        self.flags = [0.0] * n_flags
        self._agreed: Optional[torch.Tensor] = None
        self._event = None

    def __call__(self, name: str, params: Sequence[nn.Parameter]) -> None:
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        dev = grads[0].device
        parts = [g.reshape(-1).float() for g in grads]
        carry = name == "G"
        if carry:
            parts.append(torch.tensor(self.flags, dtype=torch.float32, device=dev))
        flat = torch.cat(parts)
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        if carry:
            n = len(self.flags)
            flags = flat[-n:]
            if dev.type == "cuda":  # read after the step, without stalling the GPU queue now
                self._agreed = flags.to("cpu", non_blocking=True)
                self._event = torch.cuda.Event()
                self._event.record()
            else:
                self._agreed = flags.clone()
            flat = flat[:-n]
        flat.div_(self.world_size)
        offset = 0
        for g in grads:
            k = g.numel()
            g.copy_(flat[offset:offset + k].view_as(g))
            offset += k

    def agreed(self) -> list[bool]:
        """Which flags any rank raised during the last generator reduction."""
        if self._agreed is None:
            return [False] * len(self.flags)
        if self._event is not None:
            self._event.synchronize()
        return [v > 0 for v in self._agreed.tolist()]


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank (one flat broadcast per dtype)."""
    tensors = [t for t in list(module.parameters()) + list(module.buffers())]
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    with torch.no_grad():
        for group in by_dtype.values():
            flat = torch.cat([t.reshape(-1) for t in group])
            dist.broadcast(flat, src)
            offset = 0
            for t in group:
                t.copy_(flat[offset:offset + t.numel()].view_as(t))
                offset += t.numel()


def mean_across_ranks(values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Average a dict of 0-dim tensors over ranks (for the logged losses), in one all-reduce."""
    keys = list(values)
    stacked = torch.stack([values[k].detach().float().reshape(()) for k in keys])
    dist.all_reduce(stacked)
    stacked /= dist.get_world_size()
    return {k: stacked[i] for i, k in enumerate(keys)}


# --------------------------------------------------------------------------- objects
def _object_device(ctx: DistContext) -> Optional[torch.device]:
    return ctx.device if ctx.backend == "nccl" else None


def gather_to_main(ctx: DistContext, obj: Any) -> Optional[list]:
    """Every rank's ``obj`` as a list on rank 0 (``None`` elsewhere). Objects are pickled by
    PyTorch between our own ranks only; nothing from disk is unpickled."""
    out = [None] * ctx.world_size if ctx.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def broadcast_from_main(ctx: DistContext, obj: Any) -> Any:
    box = [obj if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0, device=_object_device(ctx))
    return box[0]


def scatter_from_main(ctx: DistContext, objs: Optional[list]) -> Any:
    box = [None]
    dist.scatter_object_list(box, objs if ctx.is_main else None, src=0)
    return box[0]


def is_peer_failure(exc: BaseException) -> bool:
    """True for the errors a dead or hung peer causes in a collective (gloo and NCCL)."""
    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    if not isinstance(exc, RuntimeError):
        return False
    text = str(exc).lower()
    needles = ("connection closed by peer", "connection reset", "broken pipe", "timed out", "timeout",
               "gloo", "nccl", "socket", "connection refused")
    return any(n in text for n in needles)


def lost_peer_message(ctx: DistContext, exc: BaseException, last_step: Optional[int], run_dir: str) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    first = re.sub(r"^\[[^\]]*\]\s*", "", first)  # gloo prefixes its source file and line
    if len(first) > 160:
        first = first[:157] + "..."
    saved = (f"the last checkpoint (step {last_step}) is intact" if last_step is not None
             else "no checkpoint was saved by this run yet")
    return (f"rank {ctx.rank}: lost contact with another rank ({first}); {saved}; resume with: "
            f"torchrun --nproc_per_node=N -m cyclekit train --resume {run_dir} "
            f"(or cyclekit train --resume {run_dir} --nproc N)")


# --------------------------------------------------------------------------- batch norm
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


# --------------------------------------------------------------------------- resume
def read_state_on_ranks(ctx: DistContext, load: Callable[[], dict]) -> dict:
    """Rank 0 calls ``load()`` (reads the checkpoint); every rank gets the shared part plus its own
    history pools and RNG state (``pool_A``, ``pool_B``, ``rng``), or ``None`` for those when the
    checkpoint was saved by fewer ranks (that rank then keeps the fresh pools and RNG stream it
    derived from (seed, rank)). A load error on rank 0 is raised on every rank."""
    err, common, parts = None, None, None
    if ctx.is_main:
        try:
            full = load()
        except UserError as exc:
            err = str(exc)
        else:
            mine = {k: full.pop(k) for k in ("pool_A", "pool_B", "rng")}
            ranks = [mine] + list(full.pop("other_ranks", []))
            parts = [ranks[r] if r < len(ranks) else None for r in range(ctx.world_size)]
            common = full
            if len(ranks) != ctx.world_size:
                log.warning(
                    "checkpoint saved by %d rank(s), resuming on %d: %s", len(ranks), ctx.world_size,
                    "ranks without a saved state start with an empty history pool and a fresh RNG stream"
                    if len(ranks) < ctx.world_size else "the extra ranks' history pools are dropped",
                )
    err, common = broadcast_from_main(ctx, (err, common))
    if err:
        raise CheckpointError(err)
    mine = scatter_from_main(ctx, parts) or {"pool_A": None, "pool_B": None, "rng": None}
    return {**common, **mine}


def retime_scheduler(sched, cfg, steps_per_epoch: int, position: int) -> None:
    """Re-time a per-iteration LR schedule after the iterations per epoch changed (another world
    size or batch size on resume): the factor is rebuilt for the new epoch length (``cfg`` is the
    TrainConfig) and the schedule moved to iteration ``position``, so the learning rate still
    reaches its decay at the same *epoch*."""
    from cyclekit.train.schedule import make_scheduler

    saved_lr = [g["lr"] for g in sched.optimizer.param_groups]
    factor = make_scheduler(sched.optimizer, cfg, steps_per_epoch).lr_lambdas[0]
    for group, lr in zip(sched.optimizer.param_groups, saved_lr):
        group["lr"] = lr  # undo the throwaway scheduler's initial step
    sched.lr_lambdas = [factor for _ in sched.optimizer.param_groups]
    sched.last_epoch = position
    lrs = [g["initial_lr"] * factor(position) for g in sched.optimizer.param_groups]
    for group, lr in zip(sched.optimizer.param_groups, lrs):
        group["lr"] = lr
    sched._last_lr = lrs
