"""The face-swap pipeline of the TF2 seed article, for any trained face-to-face model.

1. detect the dominant face (or all faces) with a box and keypoints (:mod:`.detect`);
2. widen the box by the model's ``face_margin`` and rotate by the eye line (:mod:`.align`);
3. crop, resize to the model's size and translate with the CycleGAN generator;
4. paste the result back through the inverse transform with a feathered mask (:mod:`.blend`);
5. optionally overlay RGBA details (eyeliner, beard, hair) at the keypoints (:mod:`.overlays`).

Pixels outside the pasted region are returned bit for bit; an image without a usable face is
returned unchanged with a message saying why.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from cyclekit.config import CHOICES
from cyclekit.errors import CheckpointError, ConfigError
from cyclekit.faces.align import CropTransform, crop_transform, warp_crop
from cyclekit.faces.blend import paste_back, rim_change
from cyclekit.faces.cycle import cycle_error, recorded_limit
from cyclekit.faces.detect import Face, FaceDetector, turn
from cyclekit.faces.detectors import make_detector
from cyclekit.faces.params import DEFAULT_MARGIN, MAX_TURN, FaceParams, check_max_turn, is_rgb, is_tone_table
from cyclekit.faces.segment import backdrop_guard, on_backdrop, photo_head_masks, temporal_blend, toned_on_backdrop
from cyclekit.faces.tone import ToneMove, keep_natural_hue, keep_skin_colour
from cyclekit.io.images import LUMA

log = logging.getLogger(__name__)

MAX_STRENGTH = 2.0  # --strength: beyond twice the model's change the clipped colours only get harsher


def check_strength(strength: float) -> float:
    """``strength`` if it is a usable ``--strength`` (0 < s <= MAX_STRENGTH), else a ConfigError."""
    if not 0.0 < strength <= MAX_STRENGTH:
        raise ConfigError(f"--strength must be in (0, {MAX_STRENGTH:g}], got {strength:g}; 1 is the model's own swap")
    return strength


def _release_info(translator) -> dict:
    """What the model's release recommends (its ``cyclekit`` metadata), or {}."""
    return getattr(translator, "info", None) or {}


def recommended_strength(translator) -> float:
    """The paste strength the model's release recommends for its direction (``swap_strength``
    in its metadata, e.g. ``{"AtoB": 1.0, "BtoA": 0.8}``), else 1: the model's own swap."""
    table = _release_info(translator).get("swap_strength")
    if table is None:
        return 1.0
    value = table.get(getattr(translator, "direction", "AtoB"), 1.0) if isinstance(table, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= MAX_STRENGTH:
        raise CheckpointError(f"the model's swap_strength {table!r} is not a map of AtoB/BtoA to numbers in "
                              f"(0, {MAX_STRENGTH:g}]; fix it in the release's config.json or pass --strength")
    return float(value)


def _colour(value, key: str) -> Optional[list[float]]:
    """``value`` (from the model's release, under ``key``) as an RGB colour in 0-255, or None when absent."""
    if value is None:
        return None
    if not is_rgb(value):
        raise CheckpointError(f"the model's {key} {value!r} is not [r, g, b] in 0-255; fix it in the "
                              "release's config.json or remove it")
    return [float(v) for v in value]


def recommended_backdrop(translator) -> Optional[list[float]]:
    """The flat backdrop colour the model's release records (``face_backdrop``, 0-255 RGB: the
    background of its training crops), or None. With it, ``mask="head"`` swaps show the model the
    head on that backdrop: a model trained in one studio otherwise paints garbage into faces seen
    against a wall, a room or a street."""
    return _colour(_release_info(translator).get("face_backdrop"), "face_backdrop")


def recommended_tone(translator) -> Optional[list[float]]:
    """The average skin colour of the faces the model's generator for its direction was trained on
    (``face_tone`` in its release: ``{"AtoB": [r, g, b], "BtoA": [r, g, b]}``, 0-255), or None.
    With it, swaps show the model each face at that colour and paste its change onto the person's
    own crop (:mod:`cyclekit.faces.tone`)."""
    table = _release_info(translator).get("face_tone")
    if table is None:
        return None
    if not is_tone_table(table):
        raise CheckpointError(f"the model's face_tone {table!r} is not a map of AtoB/BtoA to [r, g, b] in 0-255; "
                              "fix it in the release's config.json or remove it")
    return _colour(table.get(getattr(translator, "direction", "AtoB")), "face_tone")


def check_face_release(translator) -> None:
    """Refuse, before any photo is read, a release whose face recommendations (``swap_strength``,
    ``face_backdrop``, ``face_tone``, ``cycle_limit``, for both directions) ``swap_image`` could not use
    (a ``cycle_limit`` measured another way is checked, then not used: :func:`~cyclekit.faces.cycle.recorded_limit`)."""
    recommended_strength(translator)
    recommended_backdrop(translator)
    recommended_tone(translator)
    recorded_limit(translator)


@dataclass
class FaceResult:
    face: Optional[Face]
    transform: Optional[CropTransform]
    status: str  # "swapped" | "too small" | "turned"
    region: Optional[tuple[int, int, int, int]] = None  # (x0, y0, x1, y1) that may have changed
    cycle_error: Optional[float] = None  # grey levels the generator back misses by (faces.cycle); with ``back``


@dataclass
class SwapInfo:
    """What :func:`swap_image` did. ``mask`` (HxW bool) marks every pixel that may differ."""

    faces: list[FaceResult] = field(default_factory=list)
    message: str = ""
    mask: Optional[np.ndarray] = None
    rim_change: float = 0.0  # mean change where the pasted faces blend in (a halo); see blend.rim_change

    @property
    def swapped(self) -> int:
        return sum(r.status == "swapped" for r in self.faces)


def face_params_for(translator, margin: Optional[float] = None, align: bool = True, size: Optional[int] = None,
                    detector: str = "auto", min_face: int = 40) -> FaceParams:
    """Crop parameters for a model: its recorded ``face_margin`` (or ``margin``) and image size."""
    cfg = getattr(translator, "cfg", None)
    if margin is None:
        margin = getattr(cfg, "face_margin", 0.0) or 0.0
        if margin <= 0:
            log.info("the model records no face margin (it was not trained on `cyclekit data faces` crops); "
                     "using %.2f (set --margin to match your training crops)", DEFAULT_MARGIN)
            margin = DEFAULT_MARGIN
    if size is None:
        size = getattr(cfg, "image_size", None) or 128
    return FaceParams(margin=float(margin), align=align, size=int(size), detector=detector,
                      min_face=min_face).validate()


def translate_crops(translator, crops: list[np.ndarray]) -> list[np.ndarray]:
    """Run the generator on float ``SxSx3`` crops in [0, 1]; returns ``SxSx3`` crops in [0, 1].

    ``translator`` is a :class:`cyclekit.infer.translator.Translator` (or any callable on ``[N,C,H,W]``
    tensors in [-1, 1] with a ``cfg``); 1-channel models get luminance and their output is
    replicated to RGB.
    """
    import torch

    from cyclekit.io.images import convert_channels, to_image, to_tensor

    if not crops:
        return []
    cfg = getattr(translator, "cfg", None)
    cin = getattr(cfg, "in_channels", 3)
    x = torch.stack([to_tensor(convert_channels(c, "RGB", cin)) for c in crops])
    y = translator(x)
    out = []
    for t in y:
        img = to_image(t.detach().cpu().float())
        if img.shape[2] == 1:
            img = np.repeat(img, 3, axis=2)
        elif img.shape[2] != 3:
            raise ConfigError(f"the model outputs {img.shape[2]} channels; face swap needs 1 or 3")
        out.append(np.ascontiguousarray(img, dtype=np.float32))
    return out


def _as_float(image: np.ndarray) -> tuple[np.ndarray, np.dtype]:
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ConfigError(f"swap_image expects an HxWx3 RGB image, got shape {a.shape}")
    if a.dtype == np.uint8:
        return a[:, :, :3].astype(np.float32) / 255.0, a.dtype
    if np.issubdtype(a.dtype, np.floating):
        return np.ascontiguousarray(a[:, :, :3], dtype=np.float32), a.dtype
    raise ConfigError(f"swap_image expects uint8 or float [0, 1] pixels, got {a.dtype}")


def swap_image(
    image: np.ndarray, translator, *, params: Optional[FaceParams] = None,
    detector: Optional[FaceDetector] = None, all_faces: bool = False, blend: str = "feather",
    detail: bool = True, feather: float = 0.15, mask: str = "head", overlays: Sequence = (), match: bool = True,
    faces: Optional[list[Face]] = None, transforms: Optional[list[CropTransform]] = None,
    subjects: Optional[Sequence[np.ndarray]] = None, views: Optional[Sequence[np.ndarray]] = None,
    strength: Optional[float] = None, guard: bool = True,
    guard_memory: Optional[list] = None, tone: bool = True, max_turn: float = MAX_TURN, back=None,
    natural_hue: bool = True,
) -> tuple[np.ndarray, SwapInfo]:
    """Swap the dominant face (or ``all_faces``) of ``image`` (HxWx3 uint8, or float in [0, 1]).

    Returns ``(result, info)``; ``result`` has the input's dtype and shape, and equals the input
    exactly wherever ``info.mask`` is False. ``faces`` (detections) or ``transforms`` (crops, as
    the video path gives after temporal smoothing) skip the detector; ``subjects`` (one head mask
    per transform, the video path's smoothed ones) replace the head masks of ``mask="head"``, and
    ``views`` the masks the model is shown each person through on its backdrop (head, neck and
    shoulders; :func:`~cyclekit.faces.segment.photo_head_masks`).
    ``strength`` scales the pasted change: 1 is the model's swap, 0.5 half of it, 1.5 more; by
    default the strength the model's release recommends (:func:`recommended_strength`), else 1.
    ``guard`` (with the head mask and a model trained on a backdrop) keeps the photo's own pixels
    where the model painted its backdrop over the person (:func:`~cyclekit.faces.segment.backdrop_guard`);
    ``guard_memory`` (the video path's list, updated in place) blends each frame's guards with the
    previous frame's (:func:`~cyclekit.faces.segment.temporal_blend`), so the kept pixels do not flicker.
    ``tone`` (with a model whose release records ``face_tone``) shows the model each face at its
    training faces' skin colour and pastes its change, moved back to the person's colours, onto
    the person's own crop (or with ``detail=False`` its output moved back), keeping the skin's mean
    colour (:mod:`.tone`). ``natural_hue`` (any model): outside the middle of the face the change keeps
    its brightness and its colour along the skin's hue, not a green or magenta cast
    (:func:`~cyclekit.faces.tone.keep_natural_hue`); off for a model meant to change those colours.
    A detected face turned further to the side than ``max_turn``
    (:func:`~cyclekit.faces.detect.turn`; 0 = no limit; faces without dlib's nose point are not
    measured) is left unchanged: a model trained on frontal faces paints blotches into it.
    ``back`` (the release's generator the other way) measures each swapped face's
    :func:`~cyclekit.faces.cycle.cycle_error` into its ``FaceResult``: how far the face is from
    what the model knows. It costs one more generator run per face and changes no pixel.
    """
    if mask not in CHOICES["mask"]:
        raise ConfigError(f"--mask: {mask!r} is not one of {', '.join(CHOICES['mask'])}")
    strength = check_strength(recommended_strength(translator) if strength is None else strength)
    check_max_turn(max_turn)
    src, dtype = _as_float(image)
    params = params or face_params_for(translator)
    info = SwapInfo()
    if transforms is None:
        if faces is None:
            detector = detector or make_detector(params.detector)
            faces = detector.detect(src)
        if not faces:
            info.message = "no face found; the image is returned unchanged"
            log.debug(info.message)  # the caller reports it, with the file's name
            return np.array(image, copy=True), info
        chosen = faces if all_faces else faces[:1]
        transforms = []
        for face in chosen:
            if face.side < params.min_face:
                info.faces.append(FaceResult(face, None, "too small"))
                continue
            if max_turn and (sideways := turn(face)) is not None and sideways > max_turn:
                info.faces.append(FaceResult(face, None, "turned"))
                continue
            transforms.append(crop_transform(face, params))
            info.faces.append(FaceResult(face, transforms[-1], "swapped"))
        if not transforms:
            info.message = f"{_skipped(info, params, max_turn)}; the image is returned unchanged"
            log.debug(info.message)
            return np.array(image, copy=True), info
    else:
        info.faces = [FaceResult(None, t, "swapped") for t in transforms]
        if not transforms:
            info.message = "no face in this frame; returned unchanged"
            return np.array(image, copy=True), info

    crops = [warp_crop(src, t) for t in transforms]
    skin = recommended_tone(translator) if tone else None
    backdrop = recommended_backdrop(translator) if mask == "head" else None
    if mask == "head" and (subjects is None or (backdrop is not None and views is None)):
        both = [photo_head_masks(src, t, params.margin) for t in transforms]  # one segmenter run per face
        subjects = [b[0] for b in both] if subjects is None else subjects
        views = [b[1] for b in both] if views is None else views
    # with a face_tone the model sees each face at its training faces' skin colour (faces/tone.py)
    moves = [ToneMove(c, params.margin, skin) for c in crops] if skin is not None else []
    seen = [m.apply(c) for m, c in zip(moves, crops)] if moves else crops
    if backdrop is not None:  # the model sees the person on its training backdrop; only the head is pasted
        views = [np.maximum(v, h) for v, h in zip(views, subjects)]  # the model sees all it pastes
        backed = [on_backdrop(c, v, backdrop) for c, v in zip(crops, views)]
        # the tone moves the person only; the background stays as shot or becomes the backdrop
        seen = backed if skin is None else [toned_on_backdrop(c, s, v, backdrop) for c, s, v in zip(crops, seen, views)]
        crops = backed
    new = translate_crops(translator, seen)
    if back is not None:  # how far each face is from the model's training faces (faces/cycle.py)
        done = [r for r in info.faces if r.status == "swapped"]  # one per transform, in order
        for r, shown, again in zip(done, seen, translate_crops(back, new)):
            error = cycle_error(shown, again, params.margin)
            r.cycle_error = None if error is None else round(error, 2)
    if guard and backdrop is not None:  # no backdrop paint over the jaw (backdrop_guard)
        guards = [backdrop_guard(c, g, backdrop) for c, g in zip(seen, new)]
        if guard_memory is not None:
            guard_memory[:] = guards = temporal_blend(guard_memory, guards)
        subjects = [s * w for s, w in zip(subjects, guards)]
    if moves:  # the model's change moved back to the person's colours, on their own crop (or its output moved back)
        people = views if backdrop is not None else [None] * len(moves)
        new = [keep_skin_colour(c, c + m.change_back(s, g, p) if detail else m.undo(g), params.margin)
               for c, s, g, m, p in zip(crops, seen, new, moves, people)]
    if natural_hue:  # no green or magenta casts outside the middle of the face
        new = [keep_natural_hue(c, g, params.margin, strength) for c, g in zip(crops, new)]
    out = src.copy()
    changed = np.zeros(src.shape[:2], dtype=bool)
    swapped = [r for r in info.faces if r.status == "swapped"]
    roi_rim = None  # measured on the first (dominant) face
    for k, (r, t, old, gen) in enumerate(zip(swapped, transforms, crops, new)):
        before = out.copy() if roi_rim is None else None
        subject = subjects[k] if mask == "head" else None
        out, roi, m = paste_back(out, gen, t, old_crop=old if detail else None, feather=feather,
                                 shape="round" if mask == "head" else mask, blend=blend, match=match, subject=subject,
                                 strength=strength)
        if before is not None:
            roi_rim = rim_change(before, out, roi, m)
        if roi is not None:
            x0, y0, x1, y1 = roi
            changed[y0:y1, x0:x1] |= m > 0
            r.region = roi
    if overlays:
        from cyclekit.faces.overlays import apply_overlays

        for r in swapped:
            changed |= apply_overlays(out, r.face, r.transform, overlays)
    info.mask = changed
    info.rim_change = roi_rim or 0.0
    n = len(swapped)
    info.message = f"swapped {n} face{'s' if n != 1 else ''}"
    if len(info.faces) > n:
        info.message += f"; {_skipped(info, params, max_turn)}, left unchanged"
    return _restore(out, src, image, changed, dtype), info


def _skipped(info: SwapInfo, params: FaceParams, max_turn: float) -> str:
    """Why faces were left unchanged, one clause: "face too small (31 px, under 40 px)", or counted
    when there are several ("2 faces under 40 px, 3 faces turned more than 0.25 ...")."""
    small = [r.face for r in info.faces if r.status == "too small"]
    turned = [r.face for r in info.faces if r.status == "turned"]
    parts = []
    if small:
        parts.append(f"face too small ({small[0].side:.0f} px, under {params.min_face} px)" if len(small) == 1
                     else f"{len(small)} faces under {params.min_face} px")
    if turned:
        parts.append(f"face turned too far to the side ({turn(turned[0]):.2f} eye distances, more than "
                     f"{max_turn:g})" if len(turned) == 1
                     else f"{len(turned)} faces turned more than {max_turn:g} eye distances to the side")
    return ", ".join(parts)  # the command line adds how to change the limits (cyclekit swap)


# How a swap tells a black-and-white photo (grey or toned) from a colour one: monochrome_tint.
GREY_TOLERANCE = 2.5 / 255.0  # a palette this close to grey is grey
MONO_TOLERANCE = 8.0 / 255.0  # how far a black-and-white photo's pixels stray from its palette (JPEG noise)
SAMPLE = 16384  # pixels of the photo, and of the face, that monochrome_tint looks at


def monochrome_tint(src: np.ndarray, region: np.ndarray) -> Optional[np.ndarray]:
    """For a black-and-white photo (grey or toned: sepia, a cool cast), its tint: ``256 x 3``, the
    mean colour less its own brightness at each 8-bit brightness; ``None`` for a colour photo.

    Monochrome means the colour follows the brightness: the whole photo's pixels and the
    ``region``'s own (HxW bool, the face to be pasted; up to :data:`SAMPLE` of each) lie within
    :data:`MONO_TOLERANCE` of their brightness's mean colour, 99 in 100 of them. A colour face in a grey room fails the
    second test and keeps its colour. A tint within :data:`GREY_TOLERANCE` of grey is grey (zeros).
    """
    step = max(1, int(np.sqrt(src.shape[0] * src.shape[1] / SAMPLE)))  # a 99th percentile needs no more
    sample = src[::step, ::step].reshape(-1, 3).astype(np.float64)
    level = _level(sample @ LUMA)
    count = np.bincount(level, minlength=256)
    seen = np.flatnonzero(count)
    grid = np.arange(256)
    tint = np.stack([np.interp(grid, seen, np.bincount(level, sample[:, c], 256)[seen] / count[seen] - seen / 255.0)
                     for c in range(3)], axis=1)

    def strays(pixels: np.ndarray) -> bool:
        if not len(pixels):
            return False
        y = pixels.astype(np.float64) @ LUMA
        return float(np.percentile(np.abs(pixels - y[:, None] - tint[_level(y)]).max(axis=1), 99)) > MONO_TOLERANCE

    if strays(sample):  # a colour photo: most stop here
        return None
    where = np.flatnonzero(region.ravel())
    if strays(src.reshape(-1, src.shape[-1])[where[::max(1, len(where) // SAMPLE)], :3]):
        return None
    return np.zeros_like(tint) if np.abs(tint).max() <= GREY_TOLERANCE else tint


def _level(y: np.ndarray) -> np.ndarray:
    """8-bit brightness levels of brightnesses ``y`` in [0, 1]: :func:`monochrome_tint`'s rows."""
    return np.clip(np.rint(y * 255.0), 0, 255).astype(np.int64)


def _restore(out: np.ndarray, src: np.ndarray, image: np.ndarray, changed: np.ndarray, dtype) -> np.ndarray:
    """Back to the input's dtype: the input with only the ``changed`` pixels replaced (alpha kept).

    A black-and-white photo stays black and white, and a toned one (sepia) keeps its tone: a
    model trained on colour faces tints the face it returns, so the pasted pixels keep only their
    brightness, coloured as the photo colours that brightness (:func:`monochrome_tint`).
    """
    vals = out[changed]  # (N, 3): only the pasted pixels are converted
    tint = monochrome_tint(src, changed)
    if tint is not None:
        y = vals.astype(np.float64) @ LUMA
        vals = np.clip(y[:, None] + tint[_level(y)], 0.0, 1.0).astype(vals.dtype)
    if dtype == np.uint8:
        vals = np.round(np.clip(vals, 0.0, 1.0) * 255.0).astype(np.uint8)
    final = np.array(image, copy=True)
    final[changed, :3] = vals.astype(final.dtype)
    return final


def side_by_side(before: np.ndarray, after: np.ndarray, gap: int = 4) -> np.ndarray:
    """``[before | after]`` with a white gap (float HxWxC)."""
    h = before.shape[0]
    sep = np.ones((h, gap, before.shape[2]), dtype=before.dtype) * (255 if before.dtype == np.uint8 else 1.0)
    return np.concatenate([before, sep.astype(before.dtype), after], axis=1)
