"""Skin tone: a swap shows the model each face at the average colour of its training faces.

A gender-swap model trained in one studio has seen one light, one camera and mostly one range of
skin. On a face darker, brighter or lit more warmly than its training faces it is too gentle (a
woman from another camera stays a woman) or paints pale, blotchy skin. So the faces quickstart
records the average colour of the middle of the face (cheeks, nose and mouth) over its training
crops as the release's ``face_tone``, and a swap:

1. measures the same region of the person's crop (:func:`skin_colour`);
2. moves the whole crop's colours so that region has the training colour (:class:`ToneMove`), so
   the model sees a face of the colour it knows;
3. moves the model's change on that crop back to the person's colours and adds it to the
   person's own crop (detail mode, :meth:`ToneMove.change_back`), or moves the model's output
   back (:meth:`ToneMove.undo`, when the output itself is pasted): both land the same change;
4. takes out the model's mean change of colour over that region (:func:`keep_skin_colour`).
   The model learned skin brightness as a mark of gender (men -> women lightened the skin by 9-18
   grey levels on London men and by up to 24 on darker skin, a pale mask against the neck and
   ears), and its mean change of hue, moved back to a skin far from the training tone, is a cast
   (a dark-skinned woman turned into a man came out grey-green: BENCHMARKS.md, session 31). The
   local changes (brows, lips, stubble, shading) stay; the judge's verdicts did not move.
5. outside the middle of the face keeps only the change's brightness and its colour along the
   skin's hue (:func:`keep_natural_hue`): no magenta, green or teal casts on hair, forehead, jaw
   and neck (any model, with or without ``face_tone``).

The pasted change is the model's change on a face it knows; the person keeps their own skin tone
and light. ``benchmarks/bench_faces_wild.py`` and ``bench_faces_model.py`` measure it (``--no-tone``).

"""
from __future__ import annotations

from typing import Iterable, Optional

import numpy as np

from cyclekit.io.images import LUMA

MAX_SHIFT = 0.35  # per channel, in [0, 1] units: a move this large already turns a dark face mid-grey


def skin_region(size: int, margin: float) -> np.ndarray:
    """Boolean ``size x size`` ellipse over cheeks, nose and mouth of an eye-aligned face crop.

    The crop's centre is the detector box's centre (about the nose), and the box side is
    ``size / (1 + 2 * margin)`` (:mod:`cyclekit.faces.align`); the ellipse is 0.56 x 0.6 box
    sides, a little below the centre: skin, with the eyes, brows and hair outside it.
    """
    box, c = size / (1.0 + 2.0 * margin), (size - 1) / 2.0
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    return ((xx - c) / (0.28 * box)) ** 2 + ((yy - (c + 0.08 * box)) / (0.30 * box)) ** 2 <= 1.0


def skin_colour(crop: np.ndarray, margin: float) -> np.ndarray:
    """Mean RGB (in [0, 1]) of :func:`skin_region` in a float ``SxSx3`` crop."""
    return np.asarray(crop, np.float32)[skin_region(crop.shape[0], margin)].mean(axis=0)


def training_tone(colours: Iterable[np.ndarray]) -> Optional[list[int]]:
    """The release's ``face_tone``: the mean of the training crops' :func:`skin_colour`, 0-255 RGB."""
    colours = list(colours)
    if not colours:
        return None
    return [int(round(v)) for v in np.mean(colours, axis=0) * 255.0]


class ToneMove:
    """Moving a crop's :func:`skin_colour` to ``tone`` (0-255 RGB), and back.

    Per channel a straight line through black (to darken) or through white (to lighten), so no
    pixel clips: a bright face keeps its dark hair and a dark face its white shirt. The move is
    at most :data:`MAX_SHIFT` per channel. :meth:`undo` is its exact inverse.
    """

    def __init__(self, crop: np.ndarray, margin: float, tone) -> None:
        self.have = skin_colour(crop, margin)
        self.want = np.clip(np.asarray(tone, np.float32) / 255.0, self.have - MAX_SHIFT, self.have + MAX_SHIFT)

    def _line(self, x: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        darker = x * (dst / np.maximum(src, 1e-6))
        lighter = 1.0 - (1.0 - x) * ((1.0 - dst) / np.maximum(1.0 - src, 1e-6))
        return np.clip(np.where(self.want < self.have, darker, lighter), 0.0, 1.0).astype(np.float32)

    def apply(self, crop: np.ndarray) -> np.ndarray:
        return self._line(crop, self.have, self.want)

    def undo(self, crop: np.ndarray) -> np.ndarray:
        return self._line(crop, self.want, self.have)

    def change_back(self, given: np.ndarray, made: np.ndarray, person: Optional[np.ndarray] = None) -> np.ndarray:
        """A model's change (``made`` less ``given``, the crop it was shown) in the person's own colours.

        The model changed the face at the tone; a darkening move scaled every difference by
        ``want / have``, so the change taken as it is would land that much too weak on the
        person's own crop (and a lightening move likewise). Moved back through :meth:`undo`,
        the change is the one the model's output moved back (``detail=False``) makes. ``person``
        (``size x size`` in [0, 1]) is where the crop was moved; elsewhere (a background the model
        saw as shot) the change is taken as it is.
        """
        back = self.undo(made) - self.undo(given)
        if person is None:
            return back
        keep = np.asarray(person, np.float32)[:, :, None]
        return (keep * back + (1.0 - keep) * (np.asarray(made, np.float32) - given)).astype(np.float32)


def to_tone(crop: np.ndarray, margin: float, tone) -> np.ndarray:
    """``crop`` (float RGB in [0, 1]) with its :func:`skin_colour` moved to ``tone`` (:class:`ToneMove`)."""
    return ToneMove(crop, margin, tone).apply(crop)


def keep_skin_colour(crop: np.ndarray, new: np.ndarray, margin: float) -> np.ndarray:
    """``new`` (the crop to paste for ``crop``) less its mean change of colour over :func:`skin_region`,
    per channel: the person keeps their skin's brightness and hue, the change its local detail."""
    region = skin_region(crop.shape[0], margin)
    change = (np.asarray(new, np.float32) - crop)[region].mean(axis=0)
    return (np.asarray(new, np.float32) - change).astype(np.float32)


def outside_weight(size: int, margin: float) -> np.ndarray:
    """``size x size`` weight in [0, 1]: 0 over :func:`skin_region` (cheeks, nose, mouth), 1 away from
    it (forehead, eyes, temples, jaw, neck, hair, ears), rising over a few pixels outside its edge."""
    import cv2

    region = skin_region(size, margin).astype(np.float32)
    return 1.0 - np.maximum(region, cv2.GaussianBlur(region, (0, 0), size / 32.0))  # the edge fades outwards


def keep_natural_hue(crop: np.ndarray, new: np.ndarray, margin: float, strength: float = 1.0) -> np.ndarray:
    """``new`` (the crop to paste for ``crop``) whose change, outside the middle of the face
    (:func:`outside_weight`), keeps its brightness and its colour along the skin's own hue, and
    loses any other colour: no green, blue or magenta cast on forehead, jaw, neck or hair.

    Skin and natural hair colours lie on one warm axis (black, brown, blond; pale, tanned), the
    skin's hue taken from :func:`skin_region`. A model shown a face unlike its training faces
    paints casts off that axis (a magenta sheen on a man's short dark hair when it lightens it,
    London 008_08; a green cast on a dark-skinned woman's forehead and jaw, 025_03; teal streaks
    in long hair: BENCHMARKS.md, session 32); a small change of hue on a dark pixel is a large one
    of colour. The change along the axis stays (black hair lightened to brown, a darker jaw), but
    never makes a pixel bluer than grey unless it was, once the paste scales it by ``strength``.
    The middle of the face keeps its whole change (lips, stubble); around the eyes a coloured eye
    shadow keeps only its brightness. A grey skin has no hue: outside the middle only brightness
    is pasted.
    """
    new = np.asarray(new, np.float32)
    change = new - crop
    colour = change - (change @ LUMA)[:, :, None]
    skin = skin_colour(crop, margin)
    axis = skin - float(skin @ LUMA)
    length = float(np.linalg.norm(axis))
    along = 0.0
    if length > 0.02:  # the skin has a hue
        unit = axis / length
        was = (crop - (crop @ LUMA)[:, :, None]) @ unit  # each pixel's place on the axis
        pasted = strength * (colour @ unit)  # as the paste will scale it
        moved = np.maximum(was + pasted, np.minimum(was, 0.0)) - was  # never bluer than grey
        along = (moved / strength)[:, :, None] * unit
    weight = outside_weight(crop.shape[0], margin)[:, :, None]
    return (new - weight * (colour - along)).astype(np.float32)
