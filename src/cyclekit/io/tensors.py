"""Images as network inputs: ``HxWxC`` float arrays in [0, 1] <-> ``CxHxW`` tensors in [-1, 1]."""
from __future__ import annotations

import numpy as np


def to_tensor(arr: np.ndarray):
    """``HxWxC`` float array in ``[0, 1]`` -> ``CxHxW`` float32 tensor in ``[-1, 1]``."""
    import torch

    a = np.asarray(arr, dtype=np.float32)
    if a.ndim == 2:
        a = a[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))) * 2.0 - 1.0


def to_image(tensor) -> np.ndarray:
    """Inverse of :func:`to_tensor`: ``CxHxW`` (or ``1xCxHxW``) in ``[-1, 1]`` -> ``HxWxC`` [0, 1]."""
    t = tensor.detach()
    if t.dim() == 4:
        if t.shape[0] != 1:
            raise ValueError(f"to_image expects one image, got a batch of {t.shape[0]}")
        t = t[0]
    if t.dim() != 3:
        raise ValueError(f"to_image expects CxHxW, got shape {tuple(t.shape)}")
    t = ((t.float().clamp(-1.0, 1.0) + 1.0) * 0.5).permute(1, 2, 0)
    return np.ascontiguousarray(t.cpu().numpy())
