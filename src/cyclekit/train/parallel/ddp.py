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
* **Stop decisions are agreed.** A signal or the time limit may reach one rank only; after
  every update one tiny all-reduce of the stop flags (:func:`any_rank`) makes every rank stop
  and save at the same iteration; one more after a resume's checkpoint load stops them all
  before the first step when a signal came while it loaded.
* **Rank 0 owns the run directory.** Other ranks never create or write files there; checkpoints
  are collective (:func:`gather_to_main` of each rank's history pools and RNG state) and then
  written by rank 0 alone; resuming, rank 0 reads the file and hands each rank its part
  (:func:`broadcast_from_main`, :func:`scatter_from_main`).
* **Batch norm is synchronised** (:mod:`cyclekit.train.parallel.syncbn`), so batch statistics
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
from cyclekit.train.parallel.syncbn import GlooSyncBatchNorm, convert_sync_batchnorm  # noqa: F401  (re-exported)

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
class NoSync:
    """The gradient sync of a single process: nothing to average. Same interface as GradSync."""

    collective = False

    def __call__(self, params: Sequence[nn.Parameter]) -> None:
        pass


class GradSync:
    """Average the gradients of one optimizer's parameters over all ranks, in one all-reduce.

    Called by :func:`cyclekit.train.step.train_step` as ``sync(params)`` between ``backward()``
    and ``optimizer.step()``. Parameters without a gradient are skipped; every rank runs the
    same graph, so the set is the same everywhere.
    """

    collective = True

    def __init__(self, world_size: int) -> None:
        self.world_size = world_size

    def __call__(self, params: Sequence[nn.Parameter]) -> None:
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1).float() for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat.div_(self.world_size)
        offset = 0
        for g in grads:
            k = g.numel()
            g.copy_(flat[offset:offset + k].view_as(g))
            offset += k


def make_grad_sync(ctx: DistContext):
    """:class:`GradSync` under torchrun, :class:`NoSync` for one process."""
    return GradSync(ctx.world_size) if ctx.enabled else NoSync()


def any_rank(ctx: DistContext, flags: Sequence[bool]) -> list[bool]:
    """For each flag, whether any rank raised it: one all-reduce of ``len(flags)`` numbers
    under torchrun, the flags themselves in one process."""
    return [v > 0 for v in max_across_ranks(ctx, [float(f) for f in flags])]


def max_across_ranks(ctx: DistContext, values: Sequence[float]) -> list[float]:
    """The largest of each value over the ranks (one all-reduce; the values themselves in one
    process): lets every rank take the same decision from its own clock."""
    if not ctx.enabled:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64,
                     device=ctx.device if ctx.backend == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


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


# --------------------------------------------------------------------------- resume
def read_state_on_ranks(ctx: DistContext, load: Callable[[], dict],
                        rank_keys: Sequence[str] = ("pool_A", "pool_B", "rng")) -> dict:
    """Rank 0 calls ``load()`` (reads the checkpoint); every rank gets the shared part plus its own
    entries (``rank_keys``: history pools and RNG state), or ``None`` for those when the
    checkpoint was saved by fewer ranks (that rank then keeps the fresh pools and RNG stream it
    derived from (seed, rank)). A load error on rank 0 is raised on every rank."""
    err, common, parts = None, None, None
    if ctx.is_main:
        try:
            full = load()
        except UserError as exc:
            err = str(exc)
        else:
            mine = {k: full.pop(k, None) for k in rank_keys}
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
    mine = scatter_from_main(ctx, parts) or dict.fromkeys(rank_keys)
    return {**common, **mine}
