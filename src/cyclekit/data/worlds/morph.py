"""The "morph" world (geometry): discs (A) <-> plus signs (B) of the same centre, span and colour.

1-3 large flat-coloured shapes on a quiet backdrop. Each disc becomes an upright cross whose
arms span the disc's diameter: the four quadrants between the arms must be erased (the
backdrop painted back) and the arm tips drawn beyond the disc's edge. Where the shapes are, the
outline is entirely new (do-nothing scores about 22 dB, and only because the backdrop is
shared); a recipe that only recolours or blurs the input cannot score well.
"""
from __future__ import annotations

import numpy as np

from cyclekit.data.worlds.backdrop import paint_backdrop, sample_backdrop
from cyclekit.data.worlds.base import Canvas, World, hsv

ARM = 0.28  # half width of the cross's arms, as a fraction of its half span


class MorphWorld(World):
    name = "morph"
    summary = "1-3 flat-coloured discs (A) <-> upright crosses of the same span and colour (B)"
    domains = ("disc", "cross")

    def sample(self, rng: np.random.Generator) -> dict:
        shapes: list[dict] = []
        for _ in range(int(rng.integers(1, 4))):
            r = rng.uniform(0.17, 0.26)
            for _try in range(40):
                cx, cy = rng.uniform(r + 0.04, 1 - r - 0.04, 2)
                if all(max(abs(cx - s["cx"]), abs(cy - s["cy"])) > r + s["r"] + 0.03 for s in shapes):
                    break
            else:
                continue
            shapes.append({"cx": cx, "cy": cy, "r": r,
                           "colour": hsv(rng.uniform(0, 1), rng.uniform(0.5, 0.95), rng.uniform(0.45, 0.95))})
        return {"shapes": shapes, "backdrop": sample_backdrop(rng, sat_hi=0.25, table_p=0.0)}

    def background(self, canvas: Canvas, scene: dict) -> None:
        paint_backdrop(canvas, scene["backdrop"])

    def foreground(self, canvas: Canvas, scene: dict, domain: str) -> None:
        for s in scene["shapes"]:
            cx, cy, r = s["cx"], s["cy"], s["r"]
            if domain == "A":
                m = canvas.circle(cx, cy, r)
            else:
                m = canvas.box(cx, cy, r, r * ARM) | canvas.box(cx, cy, r * ARM, r)
            canvas.paint(m, s["colour"])
