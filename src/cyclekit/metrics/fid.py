"""FID and KID from features, with a pluggable feature extractor.

* **FID** (Heusel et al., 2017): the Fréchet distance between two Gaussians fitted to the
  features, ``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))``. The trace of the matrix square
  root is computed as ``sum(sqrt(eig(S1^(1/2) S2 S1^(1/2))))`` with symmetric eigendecompositions
  (equal to ``tr(sqrtm(S1 S2))`` for covariance matrices, but never complex and stable when the
  covariances are singular, as they are with fewer images than feature dimensions).
* **KID** (Binkowski et al., 2018): the unbiased estimator of the squared MMD with the cubic
  polynomial kernel ``k(x, y) = (x.y / d + 1)^3``, averaged over random subsets (seeded, so a
  fixed seed gives the same number every run), as in the reference code and torch-fidelity.

A *feature extractor* is any object with ``name`` (written next to every FID/KID number),
``dim`` and ``__call__(x) -> np.ndarray [N, dim]`` for a batch ``[N, C, H, W]`` in ``[-1, 1]``.
The standard one is the FID Inception-v3 (:mod:`cyclekit.metrics.inception`), used when its
weights file is on disk; otherwise the domain classifier's pooled features stand in, and are
labelled as NOT comparable to published FIDs.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional, Protocol, Union

import numpy as np
import torch

from cyclekit.errors import ConfigError

log = logging.getLogger(__name__)

INCEPTION_LABEL = "inception-v3 (standard FID)"
CLASSIFIER_LABEL = "domain-classifier features (NOT comparable to published FID)"
# pytorch-fid's and torch-fidelity's ports of the TF 2015-12-05 Inception graph (same keys).
FID_WEIGHT_FILES = ("pt_inception-2015-12-05-6726825d.pth", "weights-inception-2015-12-05-6726825d.pth")
WEIGHTS_ENV = "CYCLEKIT_FID_WEIGHTS"


# --------------------------------------------------------------------------- maths
def feature_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased, N-1) covariance of ``[N, D]`` features, in float64."""
    f = np.asarray(feats, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors of shape [N, D], got {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shape mismatch: mu {mu1.shape}/{mu2.shape}, sigma {s1.shape}/{s2.shape}")
    r = _psd_sqrt(s1)
    m = r @ s2 @ r
    tr_covmean = float(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0.0, None)).sum())
    diff = mu1 - mu2
    fd = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)
    return max(fd, 0.0)


def fid_from_features(f1: np.ndarray, f2: np.ndarray) -> float:
    """FID of two feature sets ``[N1, D]``, ``[N2, D]``.

    With fewer images than dimensions (the usual case for test sets and 2048-d Inception
    features) the trace term is computed from the centred data matrices instead of D x D
    covariances: with ``S1 = X1'X1/(N1-1)`` and ``S2 = X2'X2/(N2-1)``, the eigenvalues of
    ``S1 S2`` are the squared singular values of ``X1 X2' / sqrt((N1-1)(N2-1))``, so
    ``tr((S1 S2)^(1/2))`` is their sum. Same number, N x N work instead of D x D.
    """
    x1, x2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    if x1.ndim != 2 or x2.ndim != 2 or x1.shape[1] != x2.shape[1] or min(len(x1), len(x2)) < 2:
        raise ValueError(f"need two [N>=2, D] feature sets with the same D, got {x1.shape} and {x2.shape}")
    if min(len(x1), len(x2)) >= x1.shape[1]:
        return frechet_distance(*feature_stats(x1), *feature_stats(x2))
    mu1, mu2 = x1.mean(0), x2.mean(0)
    a = (x1 - mu1) / np.sqrt(len(x1) - 1)
    b = (x2 - mu2) / np.sqrt(len(x2) - 1)
    tr_covmean = float(np.linalg.svd(a @ b.T, compute_uv=False).sum())
    diff = mu1 - mu2
    fd = float(diff @ diff + (a * a).sum() + (b * b).sum() - 2.0 * tr_covmean)
    return max(fd, 0.0)


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, coef0: float = 1.0) -> np.ndarray:
    """``(x.y / d + coef0)^degree``, the KID kernel."""
    return (x @ y.T / x.shape[1] + coef0) ** degree


def mmd2_unbiased(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray) -> float:
    """Unbiased MMD^2 for equal-size samples (the KID estimator; diagonals excluded)."""
    m = kxx.shape[0]
    sxx = kxx.sum() - np.trace(kxx)
    syy = kyy.sum() - np.trace(kyy)
    return float((sxx + syy) / (m * (m - 1)) - 2.0 * kxy.sum() / (m * m))


def kid(f1: np.ndarray, f2: np.ndarray, n_subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float, int]:
    """KID: mean and standard deviation of unbiased MMD^2 over ``n_subsets`` random subsets.

    Subsets of ``min(subset_size, N1, N2)`` images are drawn without replacement from a NumPy
    generator seeded with ``seed``. Returns ``(mean, std, subset size used)``.
    """
    x, y = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    m = min(int(subset_size), x.shape[0], y.shape[0])
    if m < 2:
        raise ValueError(f"KID needs at least 2 images per set, got {x.shape[0]} and {y.shape[0]}")
    if n_subsets < 1:
        raise ConfigError(f"--kid-subsets must be at least 1, got {n_subsets}")
    rng = np.random.default_rng(seed)
    full = x.shape[0] ** 2 + y.shape[0] ** 2 + x.shape[0] * y.shape[0] <= 30_000_000
    if full:  # kernels once, subsets by indexing
        kxx_all, kyy_all, kxy_all = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    values = []
    for _ in range(n_subsets):
        ix = rng.choice(x.shape[0], m, replace=False)
        iy = rng.choice(y.shape[0], m, replace=False)
        if full:
            kxx, kyy, kxy = kxx_all[np.ix_(ix, ix)], kyy_all[np.ix_(iy, iy)], kxy_all[np.ix_(ix, iy)]
        else:
            xs, ys = x[ix], y[iy]
            kxx, kyy, kxy = polynomial_kernel(xs, xs), polynomial_kernel(ys, ys), polynomial_kernel(xs, ys)
        values.append(mmd2_unbiased(kxx, kyy, kxy))
    v = np.asarray(values)
    return float(v.mean()), float(v.std()), m


# --------------------------------------------------------------------------- extractors
class FeatureExtractor(Protocol):
    name: str
    dim: int

    def __call__(self, x: torch.Tensor) -> np.ndarray: ...


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Round [-1, 1] images to 8 bits, as if saved to PNG and read back."""
    return (torch.round((x.clamp(-1, 1) + 1) * 127.5) / 127.5) - 1


def to_rgb(x: torch.Tensor) -> torch.Tensor:
    """1 channel -> 3 (gray replicated); 4 (RGBA) -> 3 (alpha dropped); 3 unchanged."""
    c = x.shape[1]
    if c == 3:
        return x
    if c == 1:
        return x.expand(-1, 3, -1, -1)
    if c == 4:
        return x[:, :3]
    raise ConfigError(f"the Inception FID network needs 1, 3 or 4 channel images, got {c}")


class InceptionFeatures:
    """The 2048-d pool3 features of the FID Inception-v3."""

    name = INCEPTION_LABEL
    dim = 2048

    def __init__(self, weights: Union[str, Path], device: Union[str, torch.device] = "cpu",
                 batch_size: int = 16) -> None:
        from cyclekit.metrics.inception import load_fid_inception

        self.weights = str(weights)
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.net = load_fid_inception(weights, self.device)

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> np.ndarray:
        out = []
        for i in range(0, x.shape[0], self.batch_size):
            xb = to_rgb(quantize(x[i:i + self.batch_size].float())).to(self.device)
            out.append(self.net(xb).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim))


def find_fid_weights(explicit: Optional[Union[str, Path]] = None) -> tuple[Optional[Path], list[Path]]:
    """Locate the FID Inception weights: ``explicit`` path, ``$CYCLEKIT_FID_WEIGHTS``, then the
    torch hub checkpoints cache (``$TORCH_HOME/hub/checkpoints``, where pytorch-fid and
    torch-fidelity download it). Returns ``(path or None, places searched)``. A path the user
    gave explicitly must exist."""
    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise ConfigError(
                f"--fid-weights {p}: file not found; give the path of pt_inception-2015-12-05-6726825d.pth "
                "(pytorch-fid's FID Inception weights)"
            )
        return p, [p]
    searched: list[Path] = []
    env = os.environ.get(WEIGHTS_ENV, "")
    if env:
        p = Path(env).expanduser()
        searched.append(p)
        if p.is_file():
            return p, searched
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    for name in FID_WEIGHT_FILES:
        p = hub / name
        searched.append(p)
        if p.is_file():
            return p, searched
    return None, searched


def pick_extractor(kind: str, weights: Optional[str], classifier, device="cpu"):
    """Choose the FID/KID feature extractor. Returns ``(extractor or None, note or "")``.

    ``kind``: ``auto`` (Inception when its weights are found, else the domain classifier),
    ``inception`` (error when the weights are missing), ``classifier``, or ``none``.
    """
    if kind not in ("auto", "inception", "classifier", "none"):
        raise ConfigError(f"--features must be auto, inception, classifier or none, got {kind!r}")
    if kind == "none":
        return None, "FID/KID skipped (--features none)"
    if kind in ("auto", "inception"):
        path, searched = find_fid_weights(weights)
        if path is not None:
            return InceptionFeatures(path, device), ""
        if kind == "inception":
            raise ConfigError(
                "--features inception: the FID Inception-v3 weights (pt_inception-2015-12-05-6726825d.pth) "
                f"were not found in {', '.join(str(s) for s in searched)}; pass --fid-weights PATH"
            )
    if classifier is None:
        return None, "FID/KID skipped: no Inception FID weights and no domain classifier (needs trainA/ and trainB/)"
    note = ("FID/KID: Inception-v3 FID weights (pt_inception-2015-12-05-6726825d.pth) not found (pass "
            "--fid-weights or put them in the torch hub cache); using " + CLASSIFIER_LABEL)
    if kind == "classifier":
        note = "FID/KID: using " + CLASSIFIER_LABEL + " (--features classifier)"
    return ClassifierFeatures(classifier), note


class ClassifierFeatures:
    """The domain classifier's pooled multi-scale features (a fallback, labelled as such)."""

    name = CLASSIFIER_LABEL

    def __init__(self, classifier) -> None:
        self.classifier = classifier
        self.dim = classifier.feature_dim

    def __call__(self, x: torch.Tensor) -> np.ndarray:
        return self.classifier.features(quantize(x))
