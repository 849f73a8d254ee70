"""Which pixels of a face crop are the head (face and hair) and which are background.

A model trained on face crops changes the background inside the crop too (it brightens it, or
draws a pale fringe along the hair), and a paste-back mask that covers the whole crop blends that
over the photo as a halo around the head. :func:`photo_head_masks` finds the person in the photo
with a learned segmenter (:mod:`cyclekit.faces.person`, MediaPipe's selfie segmentation, run on a
crop of the face widened to :data:`WIDE_MARGIN` per side) and gives two masks of the crop:

* the mask a swap *pastes* through: the person within the head's ellipse (face, hair and the top
  of the neck), the same ellipse in every crop, since every crop puts the detector box in its middle
  (``1 / (1 + 2 margin)`` of its side);
* the mask a model *sees* a crop through (:func:`on_backdrop`): the whole person, head, hair, neck
  and shoulders, on the flat backdrop colour a model was trained on (:func:`backdrop_colour` of its
  training crops), so a model trained in one studio sees the same kind of crop whatever stands
  behind the person in the photo.

Until session 27 GrabCut (colour models seeded from that geometry) made both: it gave dark hair in
front of a dark room to the background, kept strips of bookcase and curtain beside the head and
found no shoulders, and its blurred 64 px edge showed the model a dark aura around the head.
"""
from __future__ import annotations

import numpy as np

from cyclekit.errors import require

WIDE_MARGIN = 0.8  # the segmenter's crop: the detector box widened by this much per side
HEAD = (0.75, 0.85, -0.1)  # the head's ellipse in box sides: half-width, half-height, centre offset (up)
# The head zone's edge: 1 inside, 0 from EDGE ellipse radii out, over a ramp of RAMP radii; the ramp
# widens to NECK_RAMP from half-way down, so the paste fades out from the chin down the neck.
EDGE, RAMP, NECK_RAMP = 1.06, 0.12, 0.35


def person_in_crop(image: np.ndarray, t, margin: float) -> np.ndarray:
    """Float32 ``t.size x t.size`` probability that each pixel of the face crop ``t`` (a
    :class:`~cyclekit.faces.align.CropTransform` made with ``margin``) of ``image`` (RGB, uint8 or
    float in [0, 1]) shows the person.

    The segmenter runs on a crop of the same face widened to :data:`WIDE_MARGIN` per side at its
    256 px (a head-and-shoulders framing like the selfies it learnt from, the face box about 100 px
    wide); the result is mapped back into ``t``.
    """
    from cyclekit.faces.align import CropTransform, warp_crop
    from cyclekit.faces.detect import as_uint8_rgb
    from cyclekit.faces.person import SIDE, person_segmenter

    cv2 = require("cv2", "faces", "the head mask")
    kind = np.asarray(image).dtype
    if kind != np.uint8 and not np.issubdtype(kind, np.floating):
        raise ValueError(f"the head mask takes uint8 or float [0, 1] pixels, got {kind}")
    box = t.box or t.side / (1.0 + 2.0 * margin)
    wide = CropTransform(center=t.center, side=box * (1.0 + 2.0 * max(WIDE_MARGIN, margin)), angle=t.angle,
                         size=SIDE, box=box)
    # the crop first, then one conversion of its pixels (grey, RGBA, uint8 or float alike)
    person = person_segmenter()(as_uint8_rgb(warp_crop(image, wide)).astype(np.float32) / 255.0)
    shrink = wide.scale / t.scale  # wide crop pixels per face crop pixel
    if shrink > 1.0:  # averaged before it is resampled smaller, so a small crop's mask does not alias
        person = cv2.GaussianBlur(person, (0, 0), 0.5 * shrink)
    # wide crop pixel -> photo -> crop pixel
    a, b = t.matrix[:, :2] @ wide.inverse[:, :2], t.matrix[:, :2] @ wide.inverse[:, 2] + t.matrix[:, 2]
    return cv2.warpAffine(person, np.hstack([a, b[:, None]]), (t.size, t.size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)


def head_zone(n: int, margin: float) -> np.ndarray:
    """Float32 ``n x n`` weight of the head's ellipse (:data:`HEAD`) in a face crop: what of the
    person a swap pastes (no shoulders, no long hair below the jaw). Its edge is a ramp over 12% of
    the ellipse's radius, widening to 35% below the middle of the face: the paste fades out between
    the chin and the neck, where a model turning women into men draws a jaw shadow that a short
    ramp cut into a grey band across the neck (London 001_03, session 30)."""
    box, c = n / (1.0 + 2.0 * margin), (n - 1) / 2.0
    yy, xx = np.mgrid[:n, :n].astype(np.float32)
    w, h, dy = HEAD
    cy = c + dy * box
    r = np.sqrt(((xx - c) / (w * box)) ** 2 + ((yy - cy) / (h * box)) ** 2)
    down = np.clip((yy - cy) / (0.5 * h * box), 0.0, 1.0)  # 0 above the ellipse's centre, 1 from half-way down
    return np.clip((EDGE - r) / (RAMP + (NECK_RAMP - RAMP) * down), 0.0, 1.0).astype(np.float32)


def photo_head_masks(image: np.ndarray, t, margin: float, soft: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """``(pasted, seen)``: the two float32 masks of the face crop ``t`` of ``image`` (module
    docstring), from one run of the segmenter. ``soft`` is the width of the pasted mask's edge ramp
    as a fraction of the crop side (a Gaussian blur); the seen mask is eroded by a pixel and gets
    half that ramp, so the room behind the person does not blur into the backdrop around the head
    (a dark aura no training crop had)."""
    cv2 = require("cv2", "faces", "the head mask")
    person = person_in_crop(image, t, margin)
    pasted = cv2.GaussianBlur(person * head_zone(t.size, margin), (0, 0), max(soft * t.size, 0.5))
    inner = cv2.erode(person, np.ones((3, 3), np.uint8))
    seen = cv2.GaussianBlur(inner, (0, 0), max(0.5 * soft * t.size, 0.5))
    return np.clip(pasted, 0.0, 1.0).astype(np.float32), np.clip(seen, 0.0, 1.0).astype(np.float32)


def photo_head_mask(image: np.ndarray, t, margin: float, soft: float = 0.02, seen: bool = False) -> np.ndarray:
    """One of :func:`photo_head_masks`: the mask a swap pastes through, or with ``seen`` the one a
    model is shown the crop through (the whole person)."""
    return photo_head_masks(image, t, margin, soft)[1 if seen else 0]


def backdrop_colour(crops) -> list[int]:
    """The training backdrop a face model knows: the median over ``crops`` (RGB face crops, float in
    [0, 1] as :func:`cyclekit.io.images.load_image` reads them) of each crop's outer ring (3% of its
    side), as ``[r, g, b]`` in 0-255."""
    rings = []
    for crop in crops:
        a = np.asarray(crop, np.float32)[:, :, :3] * 255.0
        r = max(1, round(0.03 * a.shape[0]))
        ring = np.concatenate([a[:r].reshape(-1, 3), a[-r:].reshape(-1, 3), a[:, :r].reshape(-1, 3), a[:, -r:].reshape(-1, 3)])
        rings.append(np.median(ring, axis=0))
    if not rings:
        raise ValueError("backdrop_colour needs at least one crop")
    return [int(round(v)) for v in np.median(np.stack(rings), axis=0)]


def on_backdrop(crop: np.ndarray, head: np.ndarray, colour) -> np.ndarray:
    """``crop`` (float RGB in [0, 1]) with its background replaced by the flat ``colour`` (0-255 RGB):
    the model sees the person (``head``: the seen mask of :func:`photo_head_masks`, head, neck and
    shoulders) on the backdrop it was trained on."""
    n = crop.shape[0]
    keep = np.asarray(head, np.float32)
    flat = np.asarray(colour, np.float32).reshape(1, 1, 3) / 255.0
    # Background that already looks like the training backdrop stays as it is (the studio's own
    # gradient and shadows): replaced fully from 48 grey levels away from it, not at all within 12.
    cv2 = require("cv2", "faces", "the backdrop")
    far = np.abs(cv2.GaussianBlur(crop, (0, 0), max(1.0, 0.02 * n)) - flat).max(axis=2) * 255.0
    t = np.clip((far - 12.0) / 36.0, 0.0, 1.0)
    w = ((1.0 - keep) * t * t * (3.0 - 2.0 * t))[:, :, None]
    return (crop * (1.0 - w) + flat * w).astype(np.float32)


def toned_on_backdrop(crop: np.ndarray, toned: np.ndarray, head: np.ndarray, colour) -> np.ndarray:
    """The person of ``toned`` (``crop`` moved to a skin tone, :mod:`cyclekit.faces.tone`) on
    ``crop``'s own background as :func:`on_backdrop` leaves it: the tone moves the person only. A
    studio background near the backdrop colour stays as shot, not tinted by the person's move."""
    keep = np.asarray(head, np.float32)[:, :, None]
    return (keep * toned + (1.0 - keep) * on_backdrop(crop, head, colour)).astype(np.float32)


def backdrop_guard(given: np.ndarray, new: np.ndarray, colour) -> np.ndarray:
    """Float32 ``size x size`` weight in [0, 1]: 0 where the model painted the backdrop over the person.

    A model trained on heads on a flat backdrop narrows a jaw, a cheek or a neck, and shortens long
    hair, by painting that backdrop colour over them; pasted into a photo, where the neck, the
    shoulders or another background stand behind them and not the studio grey, that paint shows as
    a pale band along the face or pale, pink-white strands through the hair. Pixels of ``given``
    (the crop the model saw, float RGB in [0, 1]) at least 48 grey levels from ``colour`` (0-255
    RGB) that came out of the model (``new``) within 20 levels of it get weight 0, with linear
    ramps in between (12-48 levels from the backdrop in ``given``, 20-56 in ``new``) and only as far
    as the model moved the pixel towards the backdrop (full from 24 levels closer, none under 8: a
    pale shirt or blond hair the model left alone is not paint), slightly
    blurred: the paste keeps the photo's own pixels there (a woman made a man keeps her long hair
    rather than getting grey streaks in it). The background itself (already the backdrop in
    ``given``) keeps weight 1."""
    cv2 = require("cv2", "faces", "the backdrop guard")
    given = np.ascontiguousarray(given, np.float32)
    flat = np.asarray(colour, np.float32).reshape(1, 1, 3) / 255.0
    was_d = np.abs(given - flat).max(axis=2) * 255.0
    now_d = np.abs(np.asarray(new, np.float32) - flat).max(axis=2) * 255.0
    was = np.clip((was_d - 12.0) / 36.0, 0.0, 1.0)
    now = np.clip((now_d - 20.0) / 36.0, 0.0, 1.0)
    moved = np.clip((was_d - now_d - 8.0) / 16.0, 0.0, 1.0)
    guard = 1.0 - was * (1.0 - now) * moved
    sigma = max(0.7, 0.01 * guard.shape[0])
    return np.clip(cv2.GaussianBlur(guard, (0, 0), sigma), 0.0, 1.0)


MASK_MEMORY = 0.6  # share of the previous video frame's mask kept: an edge does not flicker


def temporal_blend(previous: list, fresh: list) -> list:
    """Per-face masks (crop coordinates) of a video frame averaged with the same faces' masks of
    the previous frame (:data:`MASK_MEMORY` of them kept). ``previous`` lines up with ``fresh``
    face by face; a face whose entry is None or of another size, or a list of another length
    (no memory yet), takes its fresh mask. The video path smooths head masks and backdrop guards
    with it, keyed by face track."""
    if len(previous) != len(fresh):
        return list(fresh)
    return [f if p is None or p.shape != f.shape else MASK_MEMORY * p + (1.0 - MASK_MEMORY) * f
            for p, f in zip(previous, fresh)]
