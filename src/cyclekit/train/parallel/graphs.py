"""The whole CycleGAN training step replayed as one CUDA graph (fixed batch and image size).

At batch 1 a step launches a couple of thousand small kernels (eight generator and six
discriminator passes, their backwards, two optimizer updates); on a fast GPU the host cannot
launch them as quickly as the GPU runs them. Capturing the step once and replaying it removes
that launch cost. The captured step is :func:`cyclekit.train.step.train_step` itself; what makes
the replay equal to running it eagerly:

* inputs are copied into static tensors before each replay;
* the history pools' random choices (Shrivastava et al. 2017: with a full pool, return a stored
  fake with probability 1/2) are drawn on the host *before* the replay, with the pool's own
  random generator through :meth:`~cyclekit.train.pool.ImagePool.draw` (the one definition of the
  sequence of draws), and
  handed to the graph as index tensors (:class:`DevicePool`); the pool's stored images live in
  one device tensor whose slices *are* the ``ImagePool``'s images, so checkpoints see them;
* learning rates are device tensors updated in place by the schedulers, and the optimizers are
  capturable (:func:`cyclekit.train.optim.make_optimizers` with ``cuda_graphs=True``);
* nothing inside syncs with the host: no gradient scaler (bf16 or fp32 only), no ``.item()``.

``GraphedStep(state, capture=False)`` runs the same code without capturing (each "replay" runs
the step eagerly); the tests use it on CPU to check the pools and the plumbing against the plain
step.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Optional

import torch

from cyclekit.train.pool import ImagePool
from cyclekit.train.step import StepState, train_step

log = logging.getLogger(__name__)


def cuda_graphs_blockers(device: torch.device, amp_dtype: Optional[torch.dtype], world_size: int,
                         gan_mode: str) -> list[str]:
    """Why the training step cannot be captured as a CUDA graph here ([] = it can)."""
    why = []
    if torch.device(device).type != "cuda":
        why.append("no CUDA device")
    if amp_dtype == torch.float16:
        why.append("fp16 needs a gradient scaler, whose inf check syncs with the host (use bf16)")
    if world_size > 1:
        why.append("multi-process gradient all-reduce")
    if gan_mode == "wgangp":
        why.append("the WGAN-GP penalty (double backward)")
    return why


def use_cuda_graphs(cfg, device: torch.device, amp_dtype: Optional[torch.dtype], world_size: int,
                    half_res: bool = False, preprocess: str = "resize_and_crop", distributed: bool = False) -> bool:
    """The one decision whether the step is replayed as a CUDA graph (``cfg`` is the TrainConfig);
    it sets both the optimizers' capturability and the step function. ``auto`` captures wherever
    it can, quietly; ``true`` says why not where it cannot."""
    if cfg.cuda_graphs == "false":
        return False
    blockers = cuda_graphs_blockers(device, amp_dtype, world_size, cfg.gan_loss)
    if cfg.diff_augment != "none":  # random shifts drawn inside the step: not verified under capture
        blockers.append("--diff-augment")
    if cfg.lambda_nce > 0:  # the sampled patch positions, likewise
        blockers.append("--lambda-nce")
    if half_res:  # --half-res-warmup: the batch changes size mid-run; a graph replays one shape
        blockers.append("--half-res-warmup")
    if preprocess in ("none", "scale_width"):  # no fixed crop: images of different sizes
        blockers.append(f"--preprocess {preprocess} (images of varying size)")
    if cfg.cuda_graphs == "auto":  # measured only without these; --cuda-graphs true still tries
        if cfg.compile:
            blockers.append("--compile (not measured inside a graph)")
        if distributed and world_size == 1:
            blockers.append("a process group (torchrun)")
    if blockers and (cfg.cuda_graphs == "true" or torch.device(device).type == "cuda"):
        (log.warning if cfg.cuda_graphs == "true" else log.info)("CUDA graphs off: %s", "; ".join(blockers))
    return not blockers


class DevicePool:
    """An :class:`ImagePool` whose random choices are made before the step and applied on device.

    Call :meth:`prepare` before each step (it draws this step's choices), then :meth:`query`
    inside the step: it uses only device tensors, so it can be captured in a CUDA graph.
    """

    def __init__(self, pool: ImagePool, like: torch.Tensor) -> None:
        self.pool, self.size = pool, pool.size
        n, c, h, w = like.shape
        self.batch, self.device = n, like.device
        # fp32 storage: fakes made under bf16/fp16 autocast convert to it and back exactly.
        self.storage = torch.zeros(max(self.size, 1), c, h, w, device=like.device)
        if pool.images and pool.images[0].shape[1:] != like.shape[1:]:
            pool.images = []  # another image size (a resume with a new crop size): as ImagePool does
        k = len(pool.images)
        if k:
            self.storage[:k].copy_(torch.cat(pool.images).to(self.storage))
        pool.images = [self.storage[i:i + 1] for i in range(k)]  # views: state_dict() reads the device
        # Row 0: pool slot; row 1: return the stored image (1) or the new one (0); row 2: store the new one.
        self.decisions = torch.zeros(3, n, dtype=torch.long, device=like.device)

    def prepare(self) -> None:
        """Draw this step's choices with :meth:`ImagePool.draw`, exactly as ``ImagePool.query`` would."""
        if self.size == 0:
            return
        rows: list[list[int]] = [[], [], []]
        for _ in range(self.batch):
            slot, use_old, store = self.pool.draw()
            if store and slot == len(self.pool.images):  # filling up: the slot becomes part of the pool
                self.pool.images.append(self.storage[slot:slot + 1])
            for row, v in zip(rows, (slot, int(use_old), int(store))):
                row.append(v)
        host = torch.tensor(rows, dtype=torch.long)
        if self.device.type == "cuda":  # asynchronous: the caching host allocator keeps it alive
            self.decisions.copy_(host.pin_memory(), non_blocking=True)
        else:
            self.decisions.copy_(host)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        images = images.detach()
        outs = []
        for i in range(self.batch):  # in order: a later image may take the slot an earlier one filled
            new = images[i:i + 1].to(self.storage.dtype)
            slot = self.decisions[0, i:i + 1]
            old = self.storage.index_select(0, slot)
            outs.append(torch.where(self.decisions[1, i].bool(), old, new))
            self.storage.index_copy_(0, slot, torch.where(self.decisions[2, i].bool(), new, old))
        return torch.cat(outs).to(images.dtype)


class GraphedStep:
    """``train_step`` captured as a CUDA graph after ``warmup`` eager steps (called like it).

    The warm-up steps are real training steps (run on a side stream, as CUDA graph capture
    requires); they let cudnn pick its algorithms and the optimizers create their state. Then
    the step is captured once and every later call copies the batch in and replays it.
    """

    def __init__(self, state: StepState, warmup: int = 3, capture: bool = True) -> None:
        self.state, self.warmup, self.capture = state, warmup, capture
        self.graph: Optional[torch.cuda.CUDAGraph] = None
        self.steps = 0
        self.static_A: Optional[torch.Tensor] = None
        self.static_B: Optional[torch.Tensor] = None
        self.static_out: Optional[dict] = None

    def _setup(self, real_A: torch.Tensor, real_B: torch.Tensor) -> None:
        self.static_A, self.static_B = real_A.clone(), real_B.clone()
        # fake_A lives in domain A (shape of real_A), fake_B in domain B (shape of real_B)
        self.pools = (DevicePool(self.state.pool_A, real_A), DevicePool(self.state.pool_B, real_B))
        self.graph_state = dataclasses.replace(self.state, pool_A=self.pools[0], pool_B=self.pools[1])

    def _eager(self, cfg) -> dict:
        if not (self.capture and self.static_A.is_cuda):
            return train_step(self.graph_state, self.static_A, self.static_B, cfg)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            out = train_step(self.graph_state, self.static_A, self.static_B, cfg)
        torch.cuda.current_stream().wait_stream(side)
        return out

    def _capture(self, cfg) -> None:
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        # thread_local: the DataLoader's pin-memory thread may call CUDA while we capture
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            self.static_out = train_step(self.graph_state, self.static_A, self.static_B, cfg)
        self.graph = graph
        log.info("training step captured as a CUDA graph after %d warm-up steps", self.steps)

    def __call__(self, state: StepState, real_A: torch.Tensor, real_B: torch.Tensor, cfg) -> dict:
        if state is not self.state:  # a captured graph can only replay the tensors it recorded
            raise ValueError("a GraphedStep runs the StepState it was built for; build one per state")
        if self.static_A is None:
            self._setup(real_A, real_B)
        if real_A.shape != self.static_A.shape or real_B.shape != self.static_B.shape:
            raise ValueError(
                f"CUDA graphs need a fixed batch shape: captured {tuple(self.static_A.shape)}, got "
                f"{tuple(real_A.shape)}; train with drop_last batches of one size or turn --cuda-graphs off"
            )
        self.static_A.copy_(real_A, non_blocking=True)
        self.static_B.copy_(real_B, non_blocking=True)
        for pool in self.pools:
            pool.prepare()
        if self.capture and self.graph is None and self.steps >= self.warmup and self.static_A.is_cuda:
            self._capture(cfg)  # records the step without running it; the replay below runs it
        if self.graph is not None:
            self.graph.replay()
            out = self.static_out
        else:
            out = self._eager(cfg)
        self.steps += 1
        return {k: v.clone() for k, v in out.items()}  # the next replay overwrites the static ones
