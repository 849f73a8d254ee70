"""The baseline: one iteration exactly as the official implementation does it.

A self-contained transcription of ``CycleGANModel.optimize_parameters`` from
junyanz/pytorch-CycleGAN-and-pix2pix (``models/cycle_gan_model.py``, ``models/networks.py``
``GANLoss``, ``util/image_pool.py``), so that every speed-up we report is measured against what
that code does, not against our own trainer with its flags off:

* fp32, eager, NCHW; the same network classes (``cyclekit.nn``, parameter counts checked
  against the official ones in the tests), initialised N(0, 0.02);
* ``forward()`` (fake_B, rec_A, fake_A, rec_B), then discriminators frozen
  (``set_requires_grad(False)``), ``optimizer_G.zero_grad()``, ``backward_G()`` (identity,
  adversarial, cycle), ``optimizer_G.step()``; then discriminators unfrozen,
  ``optimizer_D.zero_grad()``, ``backward_D_A()`` and ``backward_D_B()`` (two separate
  backward passes, each ``(real + fake) * 0.5``), ``optimizer_D.step()``;
* ``torch.optim.Adam(itertools.chain(G_A, G_B))`` and ``Adam(itertools.chain(D_A, D_B))`` with
  PyTorch's default kernels, LSGAN via ``nn.MSELoss`` against ``real_label.expand_as(pred)``,
  ``nn.L1Loss`` for cycle and identity, the image pool with Python's ``random``.

Naming: the official code's ``netG_A``/``netG_B``/``netD_A``/``netD_B`` are our ``G_AB``/``G_BA``/
``D_B``/``D_A`` (its ``netD_A`` judges domain B). We use our names throughout.
"""
from __future__ import annotations

import itertools
import random

import torch
from torch import nn

from cyclekit.config import ModelConfig, TrainConfig, generator_config_for
from cyclekit.nn import build_discriminator, build_generator, init_weights


class OfficialImagePool:
    """``util/image_pool.py``: returns new images until full, then half the time an old one."""

    def __init__(self, pool_size: int, seed: int = 0) -> None:
        self.pool_size, self.num_imgs, self.images = pool_size, 0, []
        self.rng = random.Random(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.pool_size == 0:
            return images
        return_images = []
        for image in images:
            image = torch.unsqueeze(image.data, 0)
            if self.num_imgs < self.pool_size:
                self.num_imgs += 1
                self.images.append(image)
                return_images.append(image)
            elif self.rng.uniform(0, 1) > 0.5:
                random_id = self.rng.randint(0, self.pool_size - 1)
                tmp = self.images[random_id].clone()
                self.images[random_id] = image
                return_images.append(tmp)
            else:
                return_images.append(image)
        return torch.cat(return_images, 0)


class OfficialGANLoss(nn.Module):
    """``networks.GANLoss('lsgan')``: MSE against a target tensor expanded to the prediction."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("real_label", torch.tensor(1.0))
        self.register_buffer("fake_label", torch.tensor(0.0))
        self.loss = nn.MSELoss()

    def __call__(self, prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        target = (self.real_label if target_is_real else self.fake_label).expand_as(prediction)
        return self.loss(prediction, target)


def set_requires_grad(nets, requires_grad: bool) -> None:
    for net in nets:
        for param in net.parameters():
            param.requires_grad = requires_grad


class OfficialCycleGAN:
    """The official model's networks, optimizers, pools and ``optimize_parameters``."""

    def __init__(self, model: ModelConfig, train: TrainConfig, device: str | torch.device = "cpu",
                 seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.device = torch.device(device)
        self.G_AB = build_generator(generator_config_for(model, "AtoB"))
        self.G_BA = build_generator(generator_config_for(model, "BtoA"))
        self.D_A = build_discriminator(model, model.in_channels)
        self.D_B = build_discriminator(model, model.out_channels)
        for net in self.nets():
            init_weights(net, "normal", 0.02)
            net.to(self.device)
        self.lambda_A = self.lambda_B = train.lambda_cycle
        self.lambda_idt = train.lambda_identity
        self.fake_A_pool = OfficialImagePool(train.pool_size, seed)
        self.fake_B_pool = OfficialImagePool(train.pool_size, seed + 1)
        self.criterionGAN = OfficialGANLoss().to(self.device)
        self.criterionCycle = nn.L1Loss()
        self.criterionIdt = nn.L1Loss()
        betas = (train.beta1, train.beta2)
        self.optimizer_G = torch.optim.Adam(itertools.chain(self.G_AB.parameters(), self.G_BA.parameters()),
                                            lr=train.lr, betas=betas)
        self.optimizer_D = torch.optim.Adam(itertools.chain(self.D_A.parameters(), self.D_B.parameters()),
                                            lr=train.lr, betas=betas)

    def nets(self):
        return [self.G_AB, self.G_BA, self.D_A, self.D_B]

    def set_input(self, real_A: torch.Tensor, real_B: torch.Tensor) -> None:
        self.real_A = real_A.to(self.device)
        self.real_B = real_B.to(self.device)

    def forward(self) -> None:
        self.fake_B = self.G_AB(self.real_A)  # G_A(A)
        self.rec_A = self.G_BA(self.fake_B)  # G_B(G_A(A))
        self.fake_A = self.G_BA(self.real_B)  # G_B(B)
        self.rec_B = self.G_AB(self.fake_A)  # G_A(G_B(B))

    def backward_D_basic(self, netD, real, fake) -> torch.Tensor:
        loss_D_real = self.criterionGAN(netD(real), True)
        loss_D_fake = self.criterionGAN(netD(fake.detach()), False)
        loss_D = (loss_D_real + loss_D_fake) * 0.5
        loss_D.backward()
        return loss_D

    def backward_G(self) -> None:
        if self.lambda_idt > 0:
            self.idt_A = self.G_AB(self.real_B)
            self.loss_idt_A = self.criterionIdt(self.idt_A, self.real_B) * self.lambda_B * self.lambda_idt
            self.idt_B = self.G_BA(self.real_A)
            self.loss_idt_B = self.criterionIdt(self.idt_B, self.real_A) * self.lambda_A * self.lambda_idt
        else:
            self.loss_idt_A = self.loss_idt_B = 0
        self.loss_G_A = self.criterionGAN(self.D_B(self.fake_B), True)
        self.loss_G_B = self.criterionGAN(self.D_A(self.fake_A), True)
        self.loss_cycle_A = self.criterionCycle(self.rec_A, self.real_A) * self.lambda_A
        self.loss_cycle_B = self.criterionCycle(self.rec_B, self.real_B) * self.lambda_B
        self.loss_G = (self.loss_G_A + self.loss_G_B + self.loss_cycle_A + self.loss_cycle_B
                       + self.loss_idt_A + self.loss_idt_B)
        self.loss_G.backward()

    def optimize_parameters(self) -> None:
        self.forward()
        set_requires_grad([self.D_A, self.D_B], False)
        self.optimizer_G.zero_grad()
        self.backward_G()
        self.optimizer_G.step()
        set_requires_grad([self.D_A, self.D_B], True)
        self.optimizer_D.zero_grad()
        self.loss_D_B = self.backward_D_basic(self.D_B, self.real_B, self.fake_B_pool.query(self.fake_B))
        self.loss_D_A = self.backward_D_basic(self.D_A, self.real_A, self.fake_A_pool.query(self.fake_A))
        self.optimizer_D.step()

    def step(self, real_A: torch.Tensor, real_B: torch.Tensor) -> None:
        self.set_input(real_A, real_B)
        self.optimize_parameters()

    def losses(self) -> dict[str, float]:
        """The official ``get_current_losses()`` (host syncs: call at logging intervals only),
        under cyclekit's loss names."""
        f = lambda t: float(t.detach()) if torch.is_tensor(t) else float(t)  # noqa: E731
        return {
            "G_AB_adv": f(self.loss_G_A), "G_BA_adv": f(self.loss_G_B),
            "cycle_A": f(self.loss_cycle_A), "cycle_B": f(self.loss_cycle_B),
            "idt_A": f(self.loss_idt_B), "idt_B": f(self.loss_idt_A),
            "G_total": f(self.loss_G), "D_A": f(self.loss_D_A), "D_B": f(self.loss_D_B),
        }

    def state_dict(self) -> dict[str, dict]:
        return {name: getattr(self, name).state_dict() for name in ("G_AB", "G_BA", "D_A", "D_B")}
