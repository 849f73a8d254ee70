"""One CycleGAN update, in the paper's order.

Per iteration (Zhu et al. 2017, section 4 and the official implementation):

1. Generators G_AB and G_BA are updated together, with both discriminators frozen, on
   ``lambda_adv * (L_GAN(G_AB, D_B) + L_GAN(G_BA, D_A))``
   ``+ lambda_cycle * (|G_BA(G_AB(a)) - a|_1 + |G_AB(G_BA(b)) - b|_1)``            (eq. 2)
   ``+ lambda_cycle * lambda_identity * (|G_AB(b) - b|_1 + |G_BA(a) - a|_1)``       (sec. 5.2)
   ``+ lambda_nce * (PatchNCE(G_AB, a, G(a)) + PatchNCE(G_BA, b, F(b)))``   (CUT, :mod:`.nce`; off by default)
2. Discriminators D_A and D_B are updated on real images and on fakes drawn from the history
   pools, each objective multiplied by ``d_loss_scale`` (0.5 in the paper), plus
   ``lambda_gp`` times the gradient penalty for WGAN-GP.

With ``--diff-augment`` every image a discriminator sees, in both updates, first goes through the
same kind of random differentiable augmentation (:mod:`cyclekit.train.augment`).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn

from cyclekit.config import TrainConfig
from cyclekit.losses import GANLoss, gradient_penalty, l1
from cyclekit.train.augment import augmenter
from cyclekit.train.parallel.ddp import NoSync
from cyclekit.train.pool import ImagePool


@dataclass
class StepState:
    """Everything one update needs besides the batch."""

    nets: nn.Module  # CycleGANNets, or a wrapper exposing G_AB, G_BA, D_A, D_B
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    pool_A: ImagePool
    pool_B: ImagePool
    gan_loss: GANLoss
    # Always present; enabled for fp16 only (a disabled scaler passes losses and steps through).
    scaler: torch.amp.GradScaler = field(default_factory=lambda: torch.amp.GradScaler("cpu", enabled=False))
    autocast_dtype: torch.dtype | None = None
    # Called as grad_sync(params) between backward() and the optimizer step: averages gradients
    # over ranks under torchrun (parallel.ddp.GradSync), does nothing in one process (NoSync).
    grad_sync: Callable[[Sequence[nn.Parameter]], None] = field(default_factory=NoSync)
    # --lambda-nce: the PatchNCE heads (cyclekit.train.nce.attach_nce), trained by opt_G
    nce: nn.Module | None = None


def _set_requires_grad(modules: list[nn.Module], flag: bool) -> None:
    for m in modules:
        for p in m.parameters():
            p.requires_grad_(flag)


def _autocast(device_type: str, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=dtype)


def _noisy(x: torch.Tensor, std: float) -> torch.Tensor:
    """``--cycle-noise``: a translation seen through noise on its way back, so the cycle cannot be
    closed by a near-invisible code hidden in it (Chu et al. 2017, "CycleGAN, a master of
    steganography") and must read what the image visibly shows."""
    return x + std * torch.randn_like(x) if std > 0 else x


def _real_fake_loss(gan: GANLoss, D: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """``L_GAN(D(real), True) + L_GAN(D(fake), False)``, from one call of D on both batches where
    that is the same thing: a discriminator normalises each image on its own (instance norm or
    none), so the doubled batch only runs faster (one pass, and one spectral-norm power iteration,
    instead of two). With batch norm the real and fake statistics stay apart, as in the paper."""
    if real.shape != fake.shape or any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in D.modules()):
        return gan(D(real), True) + gan(D(fake), False)
    scores = D(torch.cat([real, fake]))  # one score map, or a tuple of them (multi-scale D)
    n = real.shape[0]

    def part(sl: slice):
        return scores[sl] if isinstance(scores, torch.Tensor) else tuple(s[sl] for s in scores)

    return gan(part(slice(None, n)), True) + gan(part(slice(n, None)), False)


def _backward_and_step(loss: torch.Tensor, opt: torch.optim.Optimizer, scaler, sync) -> None:
    scaler.scale(loss).backward()
    sync([p for group in opt.param_groups for p in group["params"]])  # gradients scaled, if fp16
    scaler.step(opt)


def train_step(
    state: StepState, real_A: torch.Tensor, real_B: torch.Tensor, cfg: TrainConfig
) -> dict[str, torch.Tensor]:
    """One update of both generators, then both discriminators.

    Returns every loss term as a detached 0-dim tensor; the caller turns them into floats only
    when it logs, so a GPU step never waits on a host sync.
    """
    nets = state.nets
    G_AB, G_BA, D_A, D_B = nets.G_AB, nets.G_BA, nets.D_A, nets.D_B
    gan, dev = state.gan_loss, real_A.device.type
    lam, lam_idt = cfg.lambda_cycle, cfg.lambda_cycle * cfg.lambda_identity
    aug = augmenter(cfg.diff_augment)

    # ---- 1. generators (discriminators frozen so no gradient is computed for them)
    _set_requires_grad([D_A, D_B], False)
    state.opt_G.zero_grad(set_to_none=True)
    with _autocast(dev, state.autocast_dtype):
        fake_B = G_AB(real_A)  # G(a)
        fake_A = G_BA(real_B)  # F(b)
        adv_AB = gan(D_B(aug(fake_B)), True)
        adv_BA = gan(D_A(aug(fake_A)), True)
        zero = torch.zeros((), device=real_A.device)
        cycle_A = cycle_B = nce_A = nce_B = zero
        if lam > 0:
            cycle_A = l1(G_BA(_noisy(fake_B, cfg.cycle_noise)), real_A) * lam  # F(G(a)) ~ a
            cycle_B = l1(G_AB(_noisy(fake_A, cfg.cycle_noise)), real_B) * lam  # G(F(b)) ~ b
        if cfg.lambda_nce > 0:
            nce_A = state.nce(G_AB, "AB", real_A, fake_B) * cfg.lambda_nce
            nce_B = state.nce(G_BA, "BA", real_B, fake_A) * cfg.lambda_nce
        if lam_idt > 0:
            idt_B = l1(G_AB(real_B), real_B) * lam_idt  # G_AB should leave a real b unchanged
            idt_A = l1(G_BA(real_A), real_A) * lam_idt
        else:
            idt_A = idt_B = zero
        loss_G = cfg.lambda_adv * (adv_AB + adv_BA) + cycle_A + cycle_B + idt_A + idt_B + nce_A + nce_B
    _backward_and_step(loss_G, state.opt_G, state.scaler, state.grad_sync)

    # ---- 2. discriminators, on real images and pooled fakes
    _set_requires_grad([D_A, D_B], True)
    state.opt_D.zero_grad(set_to_none=True)
    pooled_B = aug(state.pool_B.query(fake_B.detach()))
    pooled_A = aug(state.pool_A.query(fake_A.detach()))
    real_A, real_B = aug(real_A), aug(real_B)
    with _autocast(dev, state.autocast_dtype):
        d_B = _real_fake_loss(gan, D_B, real_B, pooled_B) * cfg.d_loss_scale
        d_A = _real_fake_loss(gan, D_A, real_A, pooled_A) * cfg.d_loss_scale
        loss_D = d_A + d_B
        if gan.mode == "wgangp" and cfg.lambda_gp > 0:
            gp = gradient_penalty(D_A, real_A, pooled_A) + gradient_penalty(D_B, real_B, pooled_B)
            loss_D = loss_D + cfg.lambda_gp * gp
    _backward_and_step(loss_D, state.opt_D, state.scaler, state.grad_sync)
    state.scaler.update()

    out = {
        "G_AB_adv": adv_AB, "G_BA_adv": adv_BA, "cycle_A": cycle_A, "cycle_B": cycle_B,
        "idt_A": idt_A, "idt_B": idt_B, "G_total": loss_G, "D_A": d_A, "D_B": d_B,
    }
    if gan.mode == "wgangp" and cfg.lambda_gp > 0:
        out["gp"] = gp
    if cfg.lambda_nce > 0:
        out["nce_A"], out["nce_B"] = nce_A, nce_B
    return {k: v.detach() for k, v in out.items()}
