"""CycleGAN objectives (Zhu et al. 2017, section 3 and 7.1).

* Adversarial loss (eq. 1): least squares (LSGAN, the paper's choice), the original
  cross-entropy GAN ("vanilla", on logits), or WGAN-GP (Gulrajani et al. 2017).
* Cycle-consistency loss (eq. 2): L1 between an image and its reconstruction, weight lambda = 10.
* Identity loss (section 5.2): L1 between G_AB(b) and b, weight 0.5 * lambda in the paper.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GANLoss(nn.Module):
    """Adversarial loss on raw discriminator outputs (no sigmoid in the networks)."""

    def __init__(self, mode: str = "lsgan") -> None:
        super().__init__()
        if mode not in ("lsgan", "vanilla", "wgangp"):
            raise ValueError(f"unknown GAN loss {mode!r}")
        self.mode = mode

    def forward(self, prediction, target_is_real: bool) -> torch.Tensor:
        if isinstance(prediction, (tuple, list)):  # a multi-scale discriminator: every scale alike
            return sum(self(p, target_is_real) for p in prediction) / len(prediction)
        prediction = prediction.float()  # losses in fp32 even under autocast
        if self.mode == "wgangp":
            # Critic score: real images high, fakes low.
            return -prediction.mean() if target_is_real else prediction.mean()
        target = torch.ones_like(prediction) if target_is_real else torch.zeros_like(prediction)
        if self.mode == "lsgan":
            return F.mse_loss(prediction, target)
        return F.binary_cross_entropy_with_logits(prediction, target)


def gradient_penalty(
    critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, target_norm: float = 1.0
) -> torch.Tensor:
    """WGAN-GP: E[(||grad_x D(x)||_2 - 1)^2] at random interpolates of real and fake images."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    mixed = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    scores = critic(mixed)
    scores = scores if isinstance(scores, (tuple, list)) else (scores,)  # multi-scale: all of them
    (grad,) = torch.autograd.grad(sum(s.float().sum() for s in scores), mixed, create_graph=True)
    norms = grad.flatten(1).float().norm(2, dim=1)
    return ((norms - target_norm) ** 2).mean()


def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute error in fp32 (cycle and identity losses)."""
    return F.l1_loss(a.float(), b.float())
