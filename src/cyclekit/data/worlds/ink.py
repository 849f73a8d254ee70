"""The "ink" world (texture / style): coloured shapes on a light backdrop (A) <-> the same
picture as a hatched drawing in light ink on dark paper (B).

Domain B changes the style of every pixel (do-nothing scores about 6 dB): the backdrop
becomes near-black paper with a faint grain, each shape becomes diagonal hatching in a light
tint of its colour (denser for darker shapes) inside a bright outline. The hatching runs at a
fixed angle and period in image coordinates, so it is a texture to synthesise, not to copy.
"""
from __future__ import annotations

import numpy as np

from cyclekit.data.worlds.backdrop import paint_backdrop, sample_backdrop
from cyclekit.data.worlds.base import Canvas, Mask, World, hsv, lattice

PAPER = np.array([0.06, 0.06, 0.09], np.float32)
PERIOD = 0.055  # hatching period (normalised units: about 3.5 px at 64 px)


class InkWorld(World):
    name = "ink"
    summary = "flat coloured shapes on a light backdrop (A) <-> light hatching on dark paper (B)"
    domains = ("paint", "ink")

    def sample(self, rng: np.random.Generator) -> dict:
        shapes = []
        for _ in range(int(rng.integers(2, 5))):
            shapes.append({"cx": rng.uniform(0.15, 0.85), "cy": rng.uniform(0.15, 0.85),
                           "r": rng.uniform(0.08, 0.2), "kind": int(rng.integers(3)),
                           "angle": rng.uniform(0, np.pi),
                           "colour": hsv(rng.uniform(0, 1), rng.uniform(0.4, 0.9), rng.uniform(0.35, 0.9))})
        return {"shapes": shapes, "backdrop": sample_backdrop(rng, sat_hi=0.2, table_p=0.0),
                "grain": lattice(rng, 24) * 0.02}

    @staticmethod
    def _mask(canvas: Canvas, s: dict) -> Mask:
        if s["kind"] == 0:
            return canvas.circle(s["cx"], s["cy"], s["r"])
        if s["kind"] == 1:
            return canvas.box(s["cx"], s["cy"], s["r"] * 0.85, s["r"] * 0.85, s["angle"])
        a = s["angle"] + np.arange(3) * 2 * np.pi / 3
        return canvas.polygon([(s["cx"] + s["r"] * 1.2 * np.cos(t), s["cy"] + s["r"] * 1.2 * np.sin(t)) for t in a])

    def background(self, canvas: Canvas, scene: dict) -> None:
        return None  # the backdrop itself differs between the domains

    def foreground(self, canvas: Canvas, scene: dict, domain: str) -> None:
        if domain == "A":
            paint_backdrop(canvas, scene["backdrop"])
            for s in scene["shapes"]:
                canvas.paint(self._mask(canvas, s), s["colour"])
            return
        canvas.img[:] = PAPER * (1.0 + canvas.noise(scene["grain"]))[..., None]
        for s in scene["shapes"]:
            m = self._mask(canvas, s)
            tint = 0.55 + 0.45 * s["colour"]
            duty = 0.25 + 0.5 * (1.0 - float(s["colour"].max()))  # darker shape: thicker lines

            def hatch(w, tint=tint, duty=duty):
                phase = ((w.x + w.y) / PERIOD) % 1.0
                line = np.clip((duty - np.abs(phase - 0.5) * 2 + 0.5 * duty) * 6, 0, 1)
                return PAPER + line[..., None] * (tint - PAPER)

            canvas.paint(m, hatch)
            inner = Mask(m.y0, m.x0, np.clip((m.a - 0.5) * 2, 0, 1))
            edge = Mask(m.y0, m.x0, m.a * (1 - _erode(inner.a, max(1, canvas.S // 64))))
            canvas.paint(edge, tint * 0.5 + 0.5)


def _erode(a: np.ndarray, k: int) -> np.ndarray:
    """Grey erosion by a (2k+1) square: the inside of a mask, ``k`` pixels in from its edge."""
    out = a.copy()
    for dy in range(-k, k + 1):
        for dx in range(-k, k + 1):
            out = np.minimum(out, np.roll(np.roll(a, dy, 0), dx, 1))
    return out
