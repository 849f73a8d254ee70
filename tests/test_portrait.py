"""Head-and-shoulders portraits: a crop that runs past the photo's edge repeats the photo's own
border, never a mirror image of the face. Made from a London Set photo (CC BY 4.0; see
tests/fixtures/london/README.md)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cv2")

from cyclekit.faces.align import crop_transform, warp_crop  # noqa: E402
from cyclekit.faces.detect import Face  # noqa: E402
from cyclekit.faces.params import FaceParams  # noqa: E402
from cyclekit.io.images import load_image  # noqa: E402

PHOTO = Path(__file__).parent / "fixtures" / "london" / "004_03.jpg"


def portrait() -> np.ndarray:
    """A narrow portrait: the square photo's middle 60% of the width, with 60% more height below
    (the last rows repeated, like shoulders running out of the frame)."""
    img = load_image(PHOTO, 3)
    h, w = img.shape[:2]
    narrow = img[:, int(0.2 * w):int(0.8 * w)]
    below = np.repeat(narrow[-1:], int(0.6 * h), axis=0)
    out = np.concatenate([narrow, below], axis=0)
    out[:, :2] = (0.9, 0.1, 0.1)  # a thin red frame on the left: what lies past it must be red too
    return out


def test_crop_past_the_edge_repeats_the_border_not_the_face():
    img = portrait()
    h, w = img.shape[:2]
    face = Face(box=(w * 0.15, h * 0.1, w * 0.7, w * 0.7))  # a wide face box near the top
    t = crop_transform(face, FaceParams(margin=0.4, size=96, align=False))
    crop = warp_crop(img, t)
    # crop columns that lie left of the photo: their image x < 0
    xs = t.to_image(np.stack([np.arange(96), np.full(96, 48)], axis=1))[:, 0]
    outside = np.nonzero(xs < -4)[0]
    assert len(outside) >= 5, "the test needs a crop that runs past the left edge"
    for col in outside:
        for row in range(10, 86, 15):
            y = t.to_image(np.array([[col, row]]))[0, 1]
            if 1 <= y < h - 1:
                edge = img[int(round(y)), 0]
                assert np.abs(crop[row, col] - edge).max() < 0.08  # the border's own colour


class _Brighten:
    """A stand-in model that brightens the whole crop, background included (the halo case)."""

    def __init__(self, size: int, amount: float = 0.3, centre_only: bool = False) -> None:
        import torch

        from cyclekit.config import ModelConfig

        self.cfg = ModelConfig(image_size=size, face_margin=0.4)
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
        self.weight = ((xx ** 2 + yy ** 2) < 0.15).float() if centre_only else torch.ones(size, size)
        self.amount = amount

    def __call__(self, x):
        return (x + 2 * self.amount * self.weight).clamp(-1, 1)


def _eyes_face(img):
    import csv

    rows = {r["file"]: r for r in csv.DictReader(open(PHOTO.parent / "eyes.csv"))}
    r = rows[PHOTO.name]
    eyes = np.array([[float(r["left_x"]), float(r["left_y"])], [float(r["right_x"]), float(r["right_y"])]])
    d = np.linalg.norm(eyes[1] - eyes[0])
    cx, cy = eyes.mean(axis=0)
    return Face(box=(cx - 1.1 * d, cy - 0.9 * d, 2.2 * d, 2.2 * d), eyes=eyes)


def test_a_brightened_background_leaves_no_halo():
    from cyclekit.faces.pipeline import swap_image

    img = load_image(PHOTO, 3)
    face = _eyes_face(img)
    params = FaceParams(margin=0.4, size=64, align=True)
    # the whole round crop pasted (--mask round): rim matching removes the halo
    _, plain = swap_image(img, _Brighten(64), params=params, faces=[face], match=False, mask="round")
    _, matched = swap_image(img, _Brighten(64), params=params, faces=[face], mask="round")
    assert plain.rim_change > 0.02 and matched.rim_change < plain.rim_change / 5, (plain.rim_change, matched.rim_change)
    out, _ = swap_image(img, _Brighten(64, centre_only=True), params=params, faces=[face])
    cx, cy = face.eyes.mean(axis=0).astype(int)
    assert (out[cy, cx] - img[cy, cx]).mean() > 0.2  # a change of the face itself is kept


def test_the_head_mask_keeps_the_backdrop():
    """The default --mask head pastes the face and hair only: a model that brightens the studio
    backdrop inside the crop changes it far less than the whole round crop does, the face still changes."""
    from cyclekit.faces.evaluate_swap import backdrop_change, crop_region
    from cyclekit.faces.pipeline import swap_image
    from cyclekit.faces.segment import photo_head_mask

    img = load_image(PHOTO, 3)
    face = _eyes_face(img)
    params = FaceParams(margin=0.4, size=64, align=True)
    changes = {}
    for mask in ("round", "head"):
        out, info = swap_image(img, _Brighten(64), params=params, faces=[face], match=False, mask=mask)
        changes[mask] = backdrop_change(img * 255, out * 255, crop_region(img.shape, info.faces[0].transform))
        cx, cy = face.eyes.mean(axis=0).astype(int)
        assert (out[cy, cx] - img[cy, cx]).mean() > 0.2, mask  # the face itself is brightened either way
    assert changes["round"] > 8 and changes["head"] < changes["round"] / 5, changes  # measured 15.3 / 0.6
    # the mask itself: the crop centre is head, the crop corners are backdrop
    m = photo_head_mask(img, crop_transform(face, params), params.margin)
    assert m.shape == (64, 64) and m[32, 32] > 0.99 and max(m[2, 2], m[2, -3]) < 0.05


def test_video_head_masks_are_smoothed_face_by_face():
    from cyclekit.faces.segment import MASK_MEMORY, temporal_blend

    a, b = np.zeros((8, 8), np.float32), np.ones((8, 8), np.float32)
    (m,) = temporal_blend([a], [b])
    assert np.allclose(m, 1.0 - MASK_MEMORY)  # the edge moves part of the way each frame
    assert temporal_blend([a], [b, b])[0] is b  # a face came or went: start afresh
    assert temporal_blend([a], [np.ones((16, 16), np.float32)])[0].shape == (16, 16)
    # faces line up by track: one with no memory (None) starts afresh, the other keeps its own
    c = np.full((8, 8), 0.5, np.float32)
    first, second = temporal_blend([None, a], [b, c])
    assert first is b and np.allclose(second, (1.0 - MASK_MEMORY) * 0.5)
