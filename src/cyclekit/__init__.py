"""cyclekit: unpaired image-to-image translation with CycleGAN.

Naming used everywhere in this package (the paper's G and F, made explicit):

* ``G_AB`` maps domain A to domain B (the paper's G),
* ``G_BA`` maps domain B to domain A (the paper's F),
* ``D_A`` judges whether an image is a real member of domain A,
* ``D_B`` judges whether an image is a real member of domain B.

(The official PyTorch code calls G_AB ``netG_A`` and lets ``netD_A`` judge domain *B*; we do not.)
"""
__version__ = "0.1.0"
