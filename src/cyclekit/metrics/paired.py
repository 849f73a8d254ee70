"""Paired metrics against ground truth: L1, PSNR and SSIM.

Images are float arrays in [0, 1], HxWxC (or HxW). SSIM follows Wang et al. (2004): an 11x11
Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, computed per channel on the valid region
and averaged, which matches ``skimage.metrics.structural_similarity(..., gaussian_weights=True,
sigma=1.5, use_sample_covariance=False, data_range=1)``.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def _as_float(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a[..., None] if a.ndim == 2 else a


def _check(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")


def l1(a: np.ndarray, b: np.ndarray) -> float:
    a, b = _as_float(a), _as_float(b)
    _check(a, b)
    return float(np.abs(a - b).mean())


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB (capped at 100 dB for identical images)."""
    a, b = _as_float(a), _as_float(b)
    _check(a, b)
    mse = float(((a - b) ** 2).mean())
    if mse <= 1e-20:
        return 100.0
    return 10.0 * math.log10(data_range**2 / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]  # [1,1,k,k]


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0, win: int = 11, sigma: float = 1.5) -> float:
    """Mean structural similarity over the image (channels averaged)."""
    a, b = _as_float(a), _as_float(b)
    _check(a, b)
    if min(a.shape[:2]) < win:
        win = min(a.shape[:2]) | 1 if min(a.shape[:2]) % 2 else min(a.shape[:2]) - 1
        win = max(win, 3)
    x = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[:, None]  # [C,1,H,W]
    y = torch.from_numpy(np.ascontiguousarray(b.transpose(2, 0, 1)))[:, None]
    w = _gaussian_window(win, sigma)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = F.conv2d(x, w), F.conv2d(y, w)
    sxx = F.conv2d(x * x, w) - mu_x**2
    syy = F.conv2d(y * y, w) - mu_y**2
    sxy = F.conv2d(x * y, w) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return float((num / den).mean())


def paired_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    return {"l1": l1(pred, truth), "psnr": psnr(pred, truth), "ssim": ssim(pred, truth)}
