"""Data: robust datasets (folders or seed-style ``.npz``), the official preprocessing modes,
synthetic worlds with ground truth, and the standard CycleGAN dataset downloads. Image files are
read and written by :mod:`cyclekit.io.images`."""
