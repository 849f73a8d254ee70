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
