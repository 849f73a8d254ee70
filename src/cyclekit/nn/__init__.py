"""Networks of CycleGAN (Zhu et al., 2017): generators, discriminators and helpers.

Pure ``torch.nn``, no I/O. Build from a :class:`cyclekit.config.ModelConfig`::

    G_AB = build_generator(cfg)                                   # A -> B
    G_BA = build_generator(generator_config_for(cfg, "BtoA"))     # B -> A
    D_A = build_discriminator(cfg, cfg.in_channels)               # judges domain A
    D_B = build_discriminator(cfg, cfg.out_channels)              # judges domain B
    for net in (G_AB, G_BA, D_A, D_B):
        init_weights(net, cfg.init, cfg.init_gain)
"""
from cyclekit.nn.discriminators import PatchDiscriminator, PixelDiscriminator, build_discriminator
from cyclekit.nn.generators import (
    GiaUnetGenerator, ResnetGenerator, UnetGenerator, build_generator, min_input_size, size_multiple,
)
from cyclekit.nn.layers import count_macs, count_parameters, init_weights, make_norm

__all__ = [
    "build_generator", "build_discriminator", "init_weights", "count_parameters", "count_macs",
    "make_norm", "ResnetGenerator", "UnetGenerator", "GiaUnetGenerator", "PatchDiscriminator",
    "PixelDiscriminator", "size_multiple", "min_input_size",
]
