"""The "dusk" world (lighting / colour): a still life by day (A) <-> the same scene at dusk (B).

A scene is a studio backdrop with 2-4 flat or shaded objects. Domain B relights the whole
picture: the daylight is gone, a warm lamp high on the left lights what is near it, the rest
falls into a cool blue shade. Every pixel changes (do-nothing scores about 9.5 dB against the
truth); no outline does. The relighting is a fixed function of position and colour, so the
true translation can be learned from unpaired images.
"""
from __future__ import annotations

import numpy as np

from cyclekit.data.worlds.backdrop import paint_backdrop, sample_backdrop
from cyclekit.data.worlds.base import Canvas, World, hsv

LAMP = (0.22, 0.12)  # where the lamp hangs (normalised x, y)
WARM = np.array([1.0, 0.72, 0.42], np.float32)  # the lamp's colour
SHADE = np.array([0.05, 0.08, 0.2], np.float32)  # the blue of the unlit parts


class DuskWorld(World):
    name = "dusk"
    summary = "a still life in daylight (A) <-> the same scene lit by a warm lamp at dusk (B)"
    domains = ("day", "dusk")

    def sample(self, rng: np.random.Generator) -> dict:
        objs = []
        for _ in range(int(rng.integers(2, 5))):
            objs.append({"cx": rng.uniform(0.15, 0.85), "cy": rng.uniform(0.3, 0.85),
                         "rx": rng.uniform(0.07, 0.18), "ry": rng.uniform(0.07, 0.18),
                         "round": bool(rng.random() < 0.5), "angle": rng.uniform(0, np.pi),
                         "colour": hsv(rng.uniform(0, 1), rng.uniform(0.3, 0.9), rng.uniform(0.5, 0.95))})
        return {"objects": objs, "backdrop": sample_backdrop(rng, sat_hi=0.4, table_p=0.5)}

    def background(self, canvas: Canvas, scene: dict) -> None:
        paint_backdrop(canvas, scene["backdrop"])
        for o in scene["objects"]:
            if o["round"]:
                m = canvas.ellipse(o["cx"], o["cy"], o["rx"], o["ry"], o["angle"])
            else:
                m = canvas.box(o["cx"], o["cy"], o["rx"], o["ry"], o["angle"])
            canvas.paint(m, o["colour"])
            canvas.multiply(canvas.halfplane(m, o["cx"], o["cy"], 1.0, 1.5), 0.8)  # own shadow

    def foreground(self, canvas: Canvas, scene: dict, domain: str) -> None:
        if domain == "A":
            return
        x, y = canvas.grid()
        d2 = (x - LAMP[0]) ** 2 + (y - LAMP[1]) ** 2
        light = (0.95 * np.exp(-d2 / 0.18)).astype(np.float32)[..., None]
        img = canvas.img
        lum = img @ np.array([0.3, 0.55, 0.15], np.float32)
        dark = SHADE + 0.25 * lum[..., None] * np.array([0.35, 0.45, 1.0], np.float32)
        canvas.img = (img * WARM * light + dark * (1.0 - light)).astype(np.float32)
