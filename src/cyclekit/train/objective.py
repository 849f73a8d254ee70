"""What the loop trains: an *objective* owns the networks, optimizers and the update.

The loop (:mod:`cyclekit.train.loop`) knows nothing about CycleGAN: it feeds batches to an
objective and handles data order, logging, stopping, checkpoints and the release. An objective
has::

    name: str                                     # progress-bar label
    progress_keys: tuple[str, ...]                # loss terms shown on the progress bar
    rank_keys: tuple[str, ...]                    # state_dict() entries that differ between ranks
    schedulers: list[LRScheduler]
    lr_step_unit: "step" | "epoch" | "time"       # when the loop advances the schedulers
    set_progress(fraction)                        # "time" only: the share of the time budget spent
    generators: tuple[nn.Module, nn.Module]       # G_AB, G_BA: samples, hooks, the release
    step(batch) -> dict[str, Tensor]              # one update; detached 0-dim losses (no host sync)
    lr() -> float                                 # the learning rate to log
    state_dict() / load_state_dict(state)         # entries merged into the checkpoint's top level
    retime(steps_per_epoch, position)             # the iterations per epoch changed on resume
    release(out_dir, meta)                        # write the release
    resume_command: str (optional)                # what to run to continue after a Ctrl-C

It is built as ``objective(cfg, device, dist, steps_per_epoch)`` after the data, with the global
RNG seeded. :class:`CycleGAN` is the paper's objective; :mod:`cyclekit.train.distill` another.
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from cyclekit import runtime
from cyclekit.config import Config
from cyclekit.errors import ConfigError
from cyclekit.losses import GANLoss
from cyclekit.nn.cyclegan import CycleGANNets
from cyclekit.release import save_release, unwrap
from cyclekit.train import fast
from cyclekit.train.optim import make_optimizers
from cyclekit.train.parallel import ddp
from cyclekit.train.parallel.graphs import use_cuda_graphs
from cyclekit.train.pool import ImagePool
from cyclekit.train.schedule import (half_res_at, half_res_share, make_scheduler, retime_scheduler, set_position,
                                     time_position)
from cyclekit.train.ema import GeneratorEMA
from cyclekit.train.nce import attach_nce
from cyclekit.train.step import StepState

log = logging.getLogger(__name__)

NETS = ("G_AB", "G_BA", "D_A", "D_B")


class CycleGAN:
    """Zhu et al. 2017: both generators, both discriminators, two Adams, two history pools."""

    name = "train"
    progress_keys = ("G_total", "D_A", "D_B")
    rank_keys = ("pool_A", "pool_B")  # each rank keeps its own fakes with its own random stream

    def __init__(self, cfg: Config, device: torch.device, dist: ddp.DistContext, steps_per_epoch: int) -> None:
        t = cfg.train
        self.cfg, self.device, self.dist = cfg, device, dist
        macs = runtime.generator_macs(cfg.model, t.batch_size, cfg.data.crop_size) if t.precision == "auto" else None
        self.amp_dtype = runtime.precision_dtype(t.precision, device, macs)
        self.half_share = half_res_share(cfg, fp32=self.amp_dtype is None, cuda=device.type == "cuda")
        self.nets = CycleGANNets(cfg.model)
        from cyclekit.nn import init_weights

        for net in (self.nets.G_AB, self.nets.G_BA, self.nets.D_A, self.nets.D_B):
            init_weights(net, cfg.model.init, cfg.model.init_gain)
        if dist.enabled:  # batch statistics over the global batch (no-op for instance norm)
            self.nets, n_bn = ddp.convert_sync_batchnorm(self.nets, device)
            if n_bn and dist.is_main:
                log.info("synchronised batch norm over %d ranks (%d layers)", dist.world_size, n_bn)
        self.nets.to(device)
        if t.channels_last:
            self.nets.to(memory_format=torch.channels_last)
        if dist.enabled:
            ddp.broadcast_module(self.nets)  # start from rank 0's weights, whatever happened
            if dist.rank > 0:  # own dropout stream per rank; rank 0 keeps the 1-process stream
                torch.manual_seed(ddp.rank_seed(t.seed, dist.rank))
        graphs = use_cuda_graphs(t, device, self.amp_dtype, dist.world_size, half_res=self.half_share > 0,
                                 preprocess=cfg.data.preprocess, distributed=dist.enabled)
        self.opt_G, self.opt_D = make_optimizers(self.nets, t, device, cuda_graphs=graphs)
        self.nce = attach_nce(cfg, self.opt_G, device)  # --lambda-nce: heads trained by opt_G, or None
        if self.nce is not None and dist.enabled:
            ddp.broadcast_module(self.nce)
        if t.lr_d:  # two time-scale update rule: the discriminators' own learning rate
            for group in self.opt_D.param_groups:
                if torch.is_tensor(group["lr"]):
                    group["lr"].fill_(t.lr_d)
                else:
                    group["lr"] = t.lr_d
        self.sched_G = make_scheduler(self.opt_G, t, steps_per_epoch)
        self.sched_D = make_scheduler(self.opt_D, t, steps_per_epoch)
        self.schedulers = [self.sched_G, self.sched_D]
        self.lr_step_unit = t.lr_step_unit
        r = dist.rank
        self.pool_A = ImagePool(t.pool_size, seed=t.seed * 2 + 1 if r == 0 else ddp.rank_seed(t.seed, r, 1))
        self.pool_B = ImagePool(t.pool_size, seed=t.seed * 2 + 2 if r == 0 else ddp.rank_seed(t.seed, r, 2))
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        state = StepState(
            nets=self.nets, opt_G=self.opt_G, opt_D=self.opt_D, pool_A=self.pool_A, pool_B=self.pool_B,
            gan_loss=GANLoss(t.gan_loss), scaler=self.scaler, autocast_dtype=self.amp_dtype,
            grad_sync=ddp.make_grad_sync(dist), nce=self.nce,
        )
        # The state the step runs on (compiled views with --compile) and the step (a CUDA graph
        # replay with --cuda-graphs); self.nets, which is saved, is never wrapped.
        self.step_state, self.step_fn = fast.make_step_fn(state, t, graphs=graphs)
        # --ema-decay: averaged generators for samples, validation and the release (not trained)
        self.ema = GeneratorEMA(unwrap(self.nets), t.ema_decay) if t.ema_decay > 0 else None

    def start_from(self, release: str) -> None:
        """``--init-from``: a new run's generators, and their average, start from ``release``."""
        from cyclekit.train.init_from import load_pretrained_generators

        nets = unwrap(self.nets)
        load_pretrained_generators(nets, self.cfg.model, release)  # in place: compiled views see it
        if self.ema is not None:
            for name in self.ema.names:
                self.ema.shadow[name].load_state_dict(getattr(nets, name).state_dict())

    @property
    def generators(self) -> tuple[torch.nn.Module, torch.nn.Module]:
        if self.ema is not None:
            return self.ema.module("G_AB"), self.ema.module("G_BA")
        nets = unwrap(self.nets)
        return unwrap(nets.G_AB), unwrap(nets.G_BA)

    def step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        real_A = batch["A"].to(self.device, non_blocking=True)
        real_B = batch["B"].to(self.device, non_blocking=True)
        if self.cfg.train.channels_last:
            real_A = real_A.contiguous(memory_format=torch.channels_last)
            real_B = real_B.contiguous(memory_format=torch.channels_last)
        if self.half_res():  # --half-res-warmup: the first part of the budget on 2x2 means
            real_A, real_B = F.avg_pool2d(real_A, 2), F.avg_pool2d(real_B, 2)
        losses = self.step_fn(self.step_state, real_A, real_B, self.cfg.train)
        if self.ema is not None:
            self.ema.update(unwrap(self.nets))
        return losses

    def half_res(self) -> bool:
        """Whether this step trains on half-size images (``--half-res-warmup``).

        Both networks are convolutional, so what they learn at half the size (shapes, layouts,
        colours; four times the steps per second) carries over to the full size, where the rest of
        the budget adds the detail. The position is the time schedule's, which every checkpoint
        saves, so a resumed run switches at the same point. The history pools drop their half-size
        fakes at the switch (:meth:`ImagePool.query`)."""
        return half_res_at(self.sched_G.last_epoch, self.half_share)

    def lr(self) -> float:
        return float(self.opt_G.param_groups[0]["lr"])

    def state_dict(self) -> dict[str, Any]:
        nets = unwrap(self.nets)
        return {
            "nets": {k: unwrap(getattr(nets, k)).state_dict() for k in NETS},
            "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(),
            "sched_G": self.sched_G.state_dict(), "sched_D": self.sched_D.state_dict(),
            "pool_A": self.pool_A.state_dict(), "pool_B": self.pool_B.state_dict(),
            "scaler": self.scaler.state_dict() or None,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "nce": self.nce.state_dict() if self.nce is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        nets = unwrap(self.nets)
        if (state.get("nce") is None) != (self.nce is None):
            raise ConfigError("--lambda-nce: the checkpoint was trained " + ("with" if self.nce is None else "without")
                              + " the PatchNCE loss; resume with the --lambda-nce it was trained with")
        for k in NETS:
            unwrap(getattr(nets, k)).load_state_dict(state["nets"][k])
        if self.nce is not None:
            self.nce.load_state_dict(state["nce"])
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        for sched, key in ((self.sched_G, "sched_G"), (self.sched_D, "sched_D")):
            # The saved position, with the schedule of the config resumed with: the same as the
            # saved one unless the user changed it (say, --n-epochs-decay to train on), which a
            # plain load_state_dict would silently undo by restoring the old factor.
            factors = [copy.copy(f) for f in sched.lr_lambdas]
            sched.load_state_dict(state[key])
            sched.lr_lambdas = factors
            set_position(sched, sched.last_epoch)
        if state.get("pool_A") is not None:  # None: a rank the checkpoint did not have
            self.pool_A.load_state_dict(state["pool_A"], self.device)
            self.pool_B.load_state_dict(state["pool_B"], self.device)
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            if state.get("ema"):
                self.ema.load_state_dict(state["ema"])
            else:  # a run resumed with --ema-decay added: average from the loaded weights on
                self.ema = GeneratorEMA(unwrap(self.nets), self.cfg.train.ema_decay)

    def set_progress(self, fraction: float) -> None:
        """A time-budget schedule (``--lr-step-unit time``) moves to ``fraction`` of the budget."""
        position = time_position(fraction)
        for sched in self.schedulers:
            if sched.last_epoch != position:
                set_position(sched, position)

    def retime(self, steps_per_epoch: int, position: int) -> None:
        """A per-iteration schedule is re-timed to the new epoch length; a per-epoch one needs nothing."""
        if self.lr_step_unit == "step":
            for sched in self.schedulers:
                retime_scheduler(sched, self.cfg.train, steps_per_epoch, position)

    def release(self, out_dir: Path, meta: dict[str, Any]) -> None:
        save_release(out_dir, self.cfg, *self.generators, meta=meta)
