"""The "shapes" world (toy geometry change): flat squares (A) <-> circles (B).

1-3 flat-coloured shapes on a backdrop of any hue; each square (any rotation) becomes a circle
with the same centre, area and colour. Cheap, and the smallest possible geometry change.
"""
from __future__ import annotations

import numpy as np

from cyclekit.data.worlds.backdrop import paint_backdrop, sample_backdrop
from cyclekit.data.worlds.base import Canvas, World, hsv


class ShapesWorld(World):
    name = "shapes"
    summary = "1-3 flat-coloured squares (A) <-> circles of the same area and colour (B)"
    domains = ("square", "circle")

    def sample(self, rng: np.random.Generator) -> dict:
        n = int(rng.integers(1, 4))
        shapes: list[dict] = []
        for _ in range(n):
            h = rng.uniform(0.1, 0.18)  # half side of the square
            r = h * 2.0 / np.sqrt(np.pi)  # circle of the same area
            for _try in range(40):
                cx, cy = rng.uniform(r + 0.03, 1 - r - 0.03, 2)
                if all(np.hypot(cx - s["cx"], cy - s["cy"]) > r + s["r"] + 0.02 for s in shapes):
                    break
            shapes.append({"cx": cx, "cy": cy, "h": h, "r": r, "angle": rng.uniform(0, np.pi / 2),
                           "colour": hsv(rng.uniform(0, 1), rng.uniform(0.55, 0.95),
                                         rng.uniform(0.55, 0.95))})
        return {"shapes": shapes, "backdrop": sample_backdrop(rng, sat_hi=0.3, table_p=0.0)}

    def background(self, canvas: Canvas, scene: dict) -> None:
        paint_backdrop(canvas, scene["backdrop"])

    def foreground(self, canvas: Canvas, scene: dict, domain: str) -> None:
        for s in scene["shapes"]:
            if domain == "A":
                m = canvas.box(s["cx"], s["cy"], s["h"], s["h"], s["angle"])
            else:
                m = canvas.circle(s["cx"], s["cy"], s["r"])
            canvas.paint(m, s["colour"])
