"""The "appear" world (an object appears / disappears): bare heads (A) <-> heads wearing a hat
and dark glasses (B).

A scene is one cartoon head (skin-toned oval with eyes, brows and a mouth, on a neck and
shirt) in front of a studio backdrop. Domain B adds two accessories that hide part of the
scene: a hat (crown + brim, dark felt of a random hue, with a band) that covers the top of the
head and the backdrop above it, and sunglasses (two dark lenses joined by a bridge) over the
eyes. A -> B must *draw* new objects with new outlines where the backdrop and the skin were
(like a beard or long hair in a gender swap); B -> A must remove them and invent the forehead,
hair-free scalp and backdrop they hid. Head, eyes and everything else are identical.
"""
from __future__ import annotations

import numpy as np

from cyclekit.data.worlds.backdrop import paint_backdrop, sample_backdrop
from cyclekit.data.worlds.base import Canvas, World, hsv, lerp

SKIN = [(0.97, 0.82, 0.70), (0.88, 0.66, 0.50), (0.70, 0.48, 0.33), (0.45, 0.30, 0.21)]


class AppearWorld(World):
    name = "appear"
    summary = "bare cartoon heads (A) <-> the same heads wearing a dark hat and sunglasses (B)"
    domains = ("bare", "hat_glasses")

    def sample(self, rng: np.random.Generator) -> dict:
        U = rng.uniform
        t = U(0, len(SKIN) - 1)
        skin = lerp(SKIN[int(t)], SKIN[min(int(t) + 1, len(SKIN) - 1)], t - int(t))
        return {
            "cx": U(0.4, 0.6), "cy": U(0.5, 0.6), "R": U(0.15, 0.2), "e": U(1.15, 1.3),
            "skin": skin, "eye": hsv(U(0, 1), U(0.3, 0.7), U(0.2, 0.5)),
            "shirt": hsv(U(0, 1), U(0.3, 0.8), U(0.3, 0.85)),
            "mouth": U(0.25, 0.4),
            # the hat: dark felt of any hue, a band of a lighter shade, height and brim width
            "hat": hsv(U(0, 1), U(0.2, 0.6), U(0.12, 0.3)), "band": U(1.6, 2.4),
            "crown_h": U(0.7, 1.0), "brim": U(1.35, 1.6),
            "lens": U(0.28, 0.36),
            "backdrop": sample_backdrop(rng, sat_hi=0.35, table_p=0.0),
        }

    def background(self, canvas: Canvas, sc: dict) -> None:
        """Backdrop, shoulders and the bare head: shared by both domains."""
        paint_backdrop(canvas, sc["backdrop"])
        cx, cy, R, e = sc["cx"], sc["cy"], sc["R"], sc["e"]
        canvas.paint(canvas.ellipse(cx, cy + 2.6 * R, 2.2 * R, 1.3 * R), sc["shirt"])
        canvas.paint(canvas.box(cx, cy + 1.2 * R, 0.35 * R, 0.5 * R), sc["skin"] * 0.9)
        canvas.paint(canvas.ellipse(cx, cy, R, R * e), sc["skin"])
        for side in (-1, 1):
            ex, ey = cx + side * 0.4 * R, cy - 0.1 * R
            canvas.paint(canvas.ellipse(ex, ey, 0.16 * R, 0.1 * R), (0.96, 0.96, 0.94))
            canvas.paint(canvas.circle(ex, ey, 0.08 * R), sc["eye"])
            canvas.paint(canvas.capsule((ex - 0.18 * R, ey - 0.25 * R),
                                        (ex + 0.18 * R, ey - 0.27 * R), 0.04 * R), sc["skin"] * 0.45)
        mw, my = sc["mouth"] * R, cy + 0.55 * R
        canvas.paint(canvas.capsule((cx - mw, my), (cx + mw, my), 0.05 * R), sc["skin"] * 0.55)

    def foreground(self, canvas: Canvas, sc: dict, domain: str) -> None:
        if domain == "A":
            return  # nothing: the bare head is all background
        cx, cy, R, e = sc["cx"], sc["cy"], sc["R"], sc["e"]
        hat, top = sc["hat"], cy - R * e
        brim_y = cy - 0.45 * R * e
        # crown: a box from the brim up to above the head, the band just above the brim
        ch = sc["crown_h"] * R
        canvas.paint(canvas.box(cx, brim_y - ch / 2 - 0.02, 0.9 * R, ch / 2 + 0.02), hat)
        canvas.paint(canvas.ellipse(cx, brim_y - ch - 0.02, 0.9 * R, 0.12 * R), hat * 1.15)
        canvas.paint(canvas.box(cx, brim_y - 0.12 * R, 0.9 * R, 0.08 * R),
                     np.clip(hat * sc["band"], 0, 1))
        canvas.paint(canvas.ellipse(cx, brim_y, sc["brim"] * R, 0.13 * R), hat * 0.85)
        del top
        # sunglasses: two dark lenses and a bridge over the eyes
        ey, lr = cy - 0.1 * R, sc["lens"] * R
        for side in (-1, 1):
            canvas.paint(canvas.ellipse(cx + side * 0.42 * R, ey, lr, 0.8 * lr), (0.06, 0.06, 0.08))
        canvas.paint(canvas.capsule((cx - 0.2 * R, ey - 0.05 * R), (cx + 0.2 * R, ey - 0.05 * R),
                                    0.035 * R), (0.1, 0.1, 0.12))
