"""The four networks of a CycleGAN (Zhu et al. 2017).

Naming, once: ``G_AB`` maps domain A to B (the paper's G), ``G_BA`` maps B to A (the paper's F),
``D_A`` judges domain A and ``D_B`` judges domain B. (The official code's ``netD_A`` judges
domain B; ours does not.)
"""
from __future__ import annotations

from torch import nn

from cyclekit.config import ModelConfig, generator_config_for
from cyclekit.nn.discriminators import build_discriminator
from cyclekit.nn.generators import build_generator


class CycleGANNets(nn.Module):
    """The four networks, nothing else. ``D_A`` judges domain A, ``D_B`` judges domain B."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.G_AB = build_generator(generator_config_for(cfg, "AtoB"))
        self.G_BA = build_generator(generator_config_for(cfg, "BtoA"))
        self.D_A = build_discriminator(cfg, cfg.in_channels)
        self.D_B = build_discriminator(cfg, cfg.out_channels)

    def generators(self) -> list[nn.Module]:
        return [self.G_AB, self.G_BA]

    def discriminators(self) -> list[nn.Module]:
        return [self.D_A, self.D_B]
