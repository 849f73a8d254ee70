"""Which pixels of a face crop are the head (face and hair) and which are background.

A model trained on face crops changes the background inside the crop too (it brightens it, or
draws a pale fringe along the hair), and a paste-back mask that covers the whole crop blends that
over the photo as a halo around the head. :func:`head_mask` separates the head from its
surroundings with OpenCV's GrabCut (Rother et al., 2004: colour models of foreground and
background refined by graph cuts), seeded from the crop geometry every crop shares: the detector
box sits in the middle of the crop (``1 / (1 + 2 margin)`` of its side), the face is surely inside
it, the hair probably in an ellipse around it, and the outer ring of the crop is background.

No model file, no download; about 10-40 ms per face at the working size of 64 px.

:func:`on_backdrop` uses the mask the other way round: it puts a crop's head (and the neck and
shoulders below it) on the flat backdrop colour a model was trained on (:func:`backdrop_colour`
of its training crops), so a model trained in one studio sees the same kind of crop whatever
stands behind the person in the photo. It is given a second mask (``skull=True``) that takes the
top of the head for head whatever its colours, so dark hair in front of a dark room is shown to
the model; the swap still pastes only through the first.
"""
from __future__ import annotations

import numpy as np

from cyclekit.errors import require

WORK_SIZE = 64  # GrabCut runs on a copy this big (its cost grows with the pixels)
ITERATIONS = 4


def head_mask(crop: np.ndarray, margin: float, soft: float = 0.02, work: int = WORK_SIZE,
              skull: bool = False) -> np.ndarray:
    """Float32 ``size x size`` mask of the head in a face crop (1 head, 0 background).

    ``crop``: ``size x size x 3`` RGB, uint8 or float in [0, 1], made with ``margin`` (FaceParams).
    ``soft``: width of the edge ramp as a fraction of the crop side (a Gaussian blur), so the
    change fades over a few pixels where hair meets background instead of stopping at a hard line.
    ``work``: the side GrabCut runs at. In a photo, :func:`photo_head_mask` is the better choice.
    ``skull``: take the top of the head (brows to crown) for head whatever its colours: the mask a
    model *sees* a crop through (:func:`on_backdrop`), so it is shown the hair it learnt from even
    where the room behind is as dark as the hair. Without it, hair counts only where its colours
    set it apart from the background: the mask a swap *pastes* through, so a model's change to
    hair it could not tell from the room is not pasted (out of the studio it is blotchy).
    """
    from cyclekit.faces.detect import as_uint8_rgb

    cv2 = require("cv2", "faces", "the head mask")
    img = as_uint8_rgb(crop)  # grey, RGBA or float crops alike
    size = img.shape[0]
    n = min(size, work)
    small = cv2.resize(img, (n, n), interpolation=cv2.INTER_AREA) if n != size else img
    seeds = _seeds(n, margin, skull)
    prior = np.isin(seeds, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.float32)
    sure_face = float((seeds == cv2.GC_FGD).sum())
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        # GrabCut seeds its colour models with k-means on OpenCV's per-thread RNG: without a fixed
        # seed the same photo gets a different mask depending on what ran before in the thread
        cv2.setRNGSeed(0)
        cv2.grabCut(np.ascontiguousarray(small[:, :, ::-1]), seeds, None, bgd, fgd, ITERATIONS, cv2.GC_INIT_WITH_MASK)
        head = ((seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)).astype(np.float32)
    except cv2.error:  # a degenerate crop: fall back to the seeded head ellipse
        head = prior
    head = _largest_component(head, cv2)
    if not skull and head.sum() < 1.2 * sure_face:
        # GrabCut kept little more than the sure face (a flat or low-contrast crop, hair the colour
        # of the backdrop): losing the hair and forehead would be worse than a little backdrop.
        # (Not sooner: a short-haired head is half the prior, and the prior's backdrop in front of
        # a busy background is what a studio-trained model paints garbage into.)
        head = prior
    if n != size:
        head = cv2.resize(head, (size, size), interpolation=cv2.INTER_LINEAR)
    sigma = max(soft * size, 0.5)
    return np.clip(cv2.GaussianBlur(head, (0, 0), sigma), 0.0, 1.0).astype(np.float32)


WIDE_MARGIN = 0.8  # photo_head_mask's crop: the detector box widened by this much per side


def photo_head_mask(image: np.ndarray, t, margin: float, soft: float = 0.02, skull: bool = False) -> np.ndarray:
    """:func:`head_mask` of the face crop ``t`` (a :class:`~cyclekit.faces.align.CropTransform`
    made with ``margin``) of ``image``, found on a wider crop of the same face.

    :func:`head_mask` takes the crop's outer ring for sure background. With a margin of 0.4 a
    full head of hair, a raised or tilted head reaches that ring in many photos, and GrabCut then
    learns the hair's colour as background and cuts the hair off (the model saw a bald head on its
    backdrop and painted pale blotches into the face). The ring of a crop widened to
    :data:`WIDE_MARGIN` per side is background in nearly every photo; the mask found there, at
    the head's resolution GrabCut works at in the narrow crop, is mapped back into ``t``.
    """
    from cyclekit.faces.align import CropTransform, warp_crop

    cv2 = require("cv2", "faces", "the head mask")
    wide_margin = max(WIDE_MARGIN, margin)
    n = int(round(min(t.size, WORK_SIZE) * (1.0 + 2.0 * wide_margin) / (1.0 + 2.0 * margin)))
    box = t.box or t.side / (1.0 + 2.0 * margin)
    wide = CropTransform(center=t.center, side=box * (1.0 + 2.0 * wide_margin), angle=t.angle, size=n, box=box)
    mask = head_mask(warp_crop(image, wide), wide_margin, soft=0.0, work=n, skull=skull)
    # wide crop pixel -> photo -> crop pixel
    a, b = t.matrix[:, :2] @ wide.inverse[:, :2], t.matrix[:, :2] @ wide.inverse[:, 2] + t.matrix[:, 2]
    out = cv2.warpAffine(mask, np.hstack([a, b[:, None]]), (t.size, t.size), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    return np.clip(cv2.GaussianBlur(out, (0, 0), max(soft * t.size, 0.5)), 0.0, 1.0).astype(np.float32)


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


def on_backdrop(crop: np.ndarray, head: np.ndarray, colour, margin: float) -> np.ndarray:
    """``crop`` (float RGB in [0, 1]) with its background replaced by the flat ``colour`` (0-255 RGB):
    the model sees the head on the backdrop it was trained on. Kept: the ``head`` (its
    :func:`head_mask`) and the neck and shoulders below the chin (in a portrait they are the person,
    and the model saw them in training)."""
    n = crop.shape[0]
    box, c = n / (1.0 + 2.0 * margin), (n - 1) / 2.0
    yy, xx = np.mgrid[:n, :n].astype(np.float32)
    chin = c + 0.45 * box
    body = (yy > chin) & (np.abs(xx - c) < 0.4 * box + 1.2 * (yy - chin))
    keep = np.maximum(np.asarray(head, np.float32), body.astype(np.float32))
    flat = np.asarray(colour, np.float32).reshape(1, 1, 3) / 255.0
    # Background that already looks like the training backdrop stays as it is (the studio's own
    # gradient and shadows): replaced fully from 48 grey levels away from it, not at all within 12.
    cv2 = require("cv2", "faces", "the backdrop")
    far = np.abs(cv2.GaussianBlur(crop, (0, 0), max(1.0, 0.02 * n)) - flat).max(axis=2) * 255.0
    t = np.clip((far - 12.0) / 36.0, 0.0, 1.0)
    w = ((1.0 - keep) * t * t * (3.0 - 2.0 * t))[:, :, None]
    return (crop * (1.0 - w) + flat * w).astype(np.float32)


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


def _seeds(n: int, margin: float, skull: bool = False) -> np.ndarray:
    """GrabCut's initial labels: background ring, probable background, probable head (face and
    hair), sure face (and with ``skull`` the sure top of the head)."""
    cv2 = require("cv2", "faces", "the head mask")
    box = n / (1.0 + 2.0 * margin)  # the detector box side in crop pixels
    c = (n - 1) / 2.0
    yy, xx = np.mgrid[:n, :n].astype(np.float32)
    seeds = np.full((n, n), cv2.GC_PR_BGD, np.uint8)
    head = ((xx - c) / (0.75 * box)) ** 2 + ((yy - (c - 0.1 * box)) / (0.85 * box)) ** 2 < 1.0  # face + hair
    seeds[head] = cv2.GC_PR_FGD
    face = ((xx - c) / (0.38 * box)) ** 2 + ((yy - (c + 0.05 * box)) / (0.5 * box)) ** 2 < 1.0  # eyes to mouth
    # with skull: the top of the head too, brows to crown (hair or scalp in any head the eye line
    # aligns), which GrabCut otherwise gives to a background as dark as the hair
    top = ((xx - c) / (0.45 * box)) ** 2 + ((yy - (c - 0.2 * box)) / (0.6 * box)) ** 2 < 1.0
    seeds[(face | top) if skull else face] = cv2.GC_FGD
    ring = max(1, round(0.03 * n))
    seeds[:ring, :] = seeds[-ring:, :] = cv2.GC_BGD
    seeds[:, :ring] = seeds[:, -ring:] = cv2.GC_BGD
    return seeds


def _largest_component(mask: np.ndarray, cv2) -> np.ndarray:
    """Keep the connected region that holds the crop centre (stray background specks go)."""
    n, labels = cv2.connectedComponents((mask > 0.5).astype(np.uint8), connectivity=8)
    if n <= 2:
        return mask
    c = mask.shape[0] // 2
    keep = labels[c, c] if labels[c, c] else np.argmax(np.bincount(labels.ravel())[1:]) + 1
    return (labels == keep).astype(np.float32)
