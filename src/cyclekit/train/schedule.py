"""Learning-rate schedules as multiplicative factors for ``torch.optim.lr_scheduler.LambdaLR``.

``linear`` is the paper's: constant for ``n_epochs`` then linear decay towards zero over
``n_epochs_decay`` (the official code's formula, which reaches 1/(n_decay+1) on the last epoch).
The schedule advances per epoch (official) or per iteration (the TF2 seed article), in which
case the epoch counts are multiplied by the iterations per epoch, or with the time spent of a
``--max-minutes`` budget (``time``): the budget is cut into :data:`TIME_STEPS` positions, of which
``n_epochs / (n_epochs + n_epochs_decay)`` are constant and the rest decay, so a run uses its
whole budget at full rate and ends at lr ~0 whatever the machine's speed.
"""
from __future__ import annotations

import logging
import math

import torch

from cyclekit.config import Config, TrainConfig, warmup_share
from cyclekit.errors import ConfigError


log = logging.getLogger(__name__)

TIME_STEPS = 1000  # positions of a time-budget schedule (lr_step_unit "time")


class LRFactor:
    """A picklable factor t -> lr multiplier (its attributes go into the scheduler's state)."""

    def __init__(self, policy: str, n_const: int, n_decay: int, every: int, gamma: float) -> None:
        self.policy, self.n_const, self.n_decay = policy, n_const, n_decay
        self.every, self.gamma = max(1, every), gamma

    def __call__(self, t: int) -> float:
        if self.policy == "constant":
            return 1.0
        if self.policy == "linear":
            return 1.0 - max(0, t + 1 - self.n_const) / float(self.n_decay + 1)
        if self.policy == "step":
            return self.gamma ** (t // self.every)
        if self.policy == "cosine":  # anneal over the whole run to zero
            total = max(1, self.n_const + self.n_decay)
            return 0.5 * (1.0 + math.cos(math.pi * min(t, total) / total))
        raise ValueError(f"unknown lr policy {self.policy!r}")


def make_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    if cfg.lr_step_unit == "time":
        total = max(1, cfg.n_epochs + cfg.n_epochs_decay)
        n_const = round(TIME_STEPS * cfg.n_epochs / total)
        factor = LRFactor(cfg.lr_policy, n_const, TIME_STEPS - n_const, cfg.lr_decay_every, cfg.lr_gamma)
    else:
        scale = steps_per_epoch if cfg.lr_step_unit == "step" else 1
        factor = LRFactor(
            cfg.lr_policy, cfg.n_epochs * scale, cfg.n_epochs_decay * scale, cfg.lr_decay_every, cfg.lr_gamma
        )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def time_position(fraction: float) -> int:
    """The position of a time-budget schedule after ``fraction`` of the budget."""
    return min(TIME_STEPS - 1, max(0, int(fraction * TIME_STEPS)))


# --half-res-warmup auto: the share of the budget at half size where training runs in fp32. There
# a step costs about 1.5x a bf16 one, too few for the geometry world's new shapes in the
# budget; the half-size steps (about 4x as many per second) learn them (BENCHMARKS.md, session 20).
# Under bf16/fp16 autocast the steps are there already and the full size keeps the finest texture.
AUTO_HALF_RES = 0.25


def half_res_share(cfg: Config, fp32: bool, cuda: bool = False) -> float:
    """--half-res-warmup resolved for this run: a share given as a number must suit the networks
    (else a ConfigError); ``auto`` turns itself off, with a log line, where it cannot apply."""
    from cyclekit.nn.generators import min_input_size, size_multiple

    t, d, m = cfg.train, cfg.data, cfg.model
    share = warmup_share(t.half_res_warmup)
    auto = share is None
    share = (AUTO_HALF_RES if fp32 else 0.0) if auto else share
    if not share:
        return 0.0
    if auto and t.init_from:  # the warm-up is where a new model learns its layout; a fine-tune has one
        log.info("--half-res-warmup auto: off for a fine-tune (--init-from)")
        return 0.0
    if auto and cuda and t.cuda_graphs != "false":  # one shape all run: the CUDA graph gains far more
        log.info("--half-res-warmup auto: off on a GPU, where the training step runs as a CUDA graph")
        return 0.0
    half = d.crop_size // 2
    # the PatchGAN (at its coarsest scale with --d-scales) needs 2^(d_layers + 2) px
    need_d = 2 ** (m.d_layers + 2) * 2 ** (m.d_scales - 1) if m.discriminator == "patchgan" else 1
    fits = not d.crop_size % 2 and half % size_multiple(m) == 0 and half >= max(min_input_size(m), need_d)
    if auto and (not fits or t.lr_step_unit != "time" or d.preprocess in ("scale_width", "none")):
        log.info("--half-res-warmup auto: off for this run (it needs a time budget and even crops whose "
                 "half both networks take)")
        return 0.0
    if not fits:
        raise ConfigError(f"--half-res-warmup trains on {half} px crops (half of --crop-size {cfg.data.crop_size}), "
                          f"which the networks cannot take (the generator needs a multiple of {size_multiple(m)} "
                          f"of at least {min_input_size(m)} px, the discriminator {need_d} px); "
                          "use larger crops or --half-res-warmup 0")
    if auto:
        log.info("--half-res-warmup auto: the first %.0f%% of the budget at %d px (training in fp32)", 100 * share, half)
    return share


def half_res_at(position: int, share: float) -> bool:
    """``--half-res-warmup``: whether a time schedule at ``position`` still trains at half size."""
    return share > 0 and position < time_position(share)


def set_position(sched, position: int) -> None:
    """Move a LambdaLR schedule to ``position`` and set the optimizer's learning rates from it."""
    sched.last_epoch = position
    lrs = [g["initial_lr"] * f(position) for g, f in zip(sched.optimizer.param_groups, sched.lr_lambdas)]
    for group, lr in zip(sched.optimizer.param_groups, lrs):
        if torch.is_tensor(group["lr"]):  # capturable/fused optimizers keep lr as a tensor
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr
    sched._last_lr = lrs


def retime_scheduler(sched, cfg, steps_per_epoch: int, position: int) -> None:
    """Re-time a per-iteration LR schedule after the iterations per epoch changed (another world
    size or batch size on resume): the factor is rebuilt for the new epoch length (``cfg`` is the
    TrainConfig) and the schedule moved to iteration ``position``, so the learning rate still
    reaches its decay at the same *epoch*."""
    saved_lr = [g["lr"] for g in sched.optimizer.param_groups]
    factor = make_scheduler(sched.optimizer, cfg, steps_per_epoch).lr_lambdas[0]
    for group, lr in zip(sched.optimizer.param_groups, saved_lr):
        group["lr"] = lr  # undo the throwaway scheduler's initial step
    sched.lr_lambdas = [factor for _ in sched.optimizer.param_groups]
    set_position(sched, position)
