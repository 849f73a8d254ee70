"""The "fruit" world (apple2orange-like): colour and texture swap on round fruits.

A scene is 1-3 round fruits (a two-lobed apple silhouette, lit like a sphere from one
direction, with a soft contact shadow) on a cool-hued studio backdrop. Domain A paints each
fruit as a glossy red or green apple with a sharp specular highlight; domain B paints the same
silhouette as a matte orange with a dimpled skin and a dim, broad highlight. The orange's
shade is a monotonic function of the apple's colour (deep red -> deep orange, yellow-green ->
light orange), so both directions are (nearly) functions of the input: a small CycleGAN can
learn them. The stem, leaf, shadow and backdrop are identical in both domains, and the backdrop
avoids red/orange/green hues so that the colour change is local to the fruit.
"""
from __future__ import annotations

import numpy as np

from cyclekit.data.worlds.backdrop import paint_backdrop, sample_backdrop
from cyclekit.data.worlds.base import Canvas, World, lattice, lerp

RED = ((0.52, 0.02, 0.05), (0.72, 0.10, 0.08))
GREEN = ((0.36, 0.68, 0.14), (0.58, 0.82, 0.24))
ORANGE = ((0.97, 0.38, 0.02), (1.00, 0.58, 0.08))
STEM = (0.36, 0.23, 0.11)
LEAF = (0.15, 0.42, 0.12)


def apple_colour(q: float) -> np.ndarray:
    """q in [0, 0.4]: red apples; q in [0.6, 1]: green apples."""
    return lerp(*RED, q / 0.4) if q < 0.5 else lerp(*GREEN, (q - 0.6) / 0.4)


def orange_colour(q: float) -> np.ndarray:
    return lerp(*ORANGE, q)


class FruitWorld(World):
    name = "fruit"
    summary = ("1-3 round fruits on a studio backdrop: glossy red/green apples (A) <-> dimpled "
               "oranges (B)")
    domains = ("apple", "orange")

    def sample(self, rng: np.random.Generator) -> dict:
        n = int(rng.choice([1, 2, 3], p=[0.4, 0.35, 0.25]))
        r_lo, r_hi = {1: (0.24, 0.32), 2: (0.18, 0.24), 3: (0.145, 0.19)}[n]
        fruits: list[dict] = []
        for _ in range(n):
            r = rng.uniform(r_lo, r_hi)
            for _try in range(40):
                cx = rng.uniform(1.05 * r + 0.03, 1 - 1.05 * r - 0.03)
                cy = rng.uniform(r + 0.12, 1 - r - 0.04)
                if all(np.hypot(cx - f["cx"], cy - f["cy"]) > 0.95 * (r + f["r"]) for f in fruits):
                    break
            red = rng.random() < 0.55
            fruits.append({
                "cx": cx, "cy": cy, "r": r,
                "q": rng.uniform(0.0, 0.4) if red else rng.uniform(0.6, 1.0),
                "tilt": rng.uniform(-0.3, 0.3),
                "lobe": rng.uniform(0.10, 0.20),
                "stem": rng.uniform(0.16, 0.3),
                "stem_bend": rng.uniform(-0.35, 0.35),
                "leaf": rng.random() < 0.6,
                "leaf_side": rng.choice([-1.0, 1.0]),
                "leaf_angle": rng.uniform(0.25, 0.8),
                "leaf_len": rng.uniform(0.28, 0.42),
            })
        fruits.sort(key=lambda f: f["cy"])  # far (higher) fruits first
        lx = rng.choice([-1.0, 1.0]) * rng.uniform(0.25, 0.6)
        ly = -rng.uniform(0.3, 0.65)
        light = np.array([lx, ly, np.sqrt(max(1 - lx * lx - ly * ly, 0.05))])
        return {
            "fruits": fruits,
            "light": light / np.linalg.norm(light),
            "backdrop": sample_backdrop(rng, 0.45, 0.8, sat_hi=0.4, table_p=0.7),
            "dimples": lattice(rng, 96),
            "dimple_amp": rng.uniform(0.05, 0.08),
        }

    def background(self, canvas: Canvas, scene: dict) -> None:
        paint_backdrop(canvas, scene["backdrop"])
        lx = scene["light"][0]
        for f in scene["fruits"]:  # contact shadows, opposite the light
            r = f["r"]
            m = canvas.ellipse(f["cx"] - 0.35 * lx * r, f["cy"] + 0.8 * r, 1.0 * r, 0.28 * r,
                               soft=0.35 * r)
            canvas.multiply(m, 0.55)

    def _outline(self, canvas: Canvas, f: dict):
        c, s = np.cos(f["tilt"]), np.sin(f["tilt"])
        r, lobe = f["r"], f["lobe"]
        rx, ry = (1.0 - lobe) * r, 0.92 * r
        left = canvas.ellipse(f["cx"] - lobe * r * c, f["cy"] - lobe * r * s, rx, ry, f["tilt"])
        right = canvas.ellipse(f["cx"] + lobe * r * c, f["cy"] + lobe * r * s, rx, ry, f["tilt"])
        return left | right

    def foreground(self, canvas: Canvas, scene: dict, domain: str) -> None:
        lx, ly, lz = scene["light"]
        dimples = canvas.noise(scene["dimples"]) * scene["dimple_amp"] if domain == "B" else None
        for f in scene["fruits"]:
            cx, cy, r = f["cx"], f["cy"], f["r"]
            colour = apple_colour(f["q"]) if domain == "A" else orange_colour(f["q"])
            hx, hy = 0.5 * lx, 0.5 * ly  # highlight position on the unit disc

            def body(w, cx=cx, cy=cy, r=r, colour=colour):
                u = (w.x - cx) / (1.0 * r)
                v = (w.y - cy) / (0.92 * r)
                z = np.sqrt(np.clip(1.0 - u * u - v * v, 0.0, 1.0))
                ndl = np.clip(u * lx + v * ly + z * lz, 0.0, 1.0)
                shade = (0.5 + 0.5 * ndl) * (0.8 + 0.2 * z)
                d2 = (u - hx) ** 2 + (v - hy) ** 2
                if domain == "A":  # glossy apple: sharp white highlight
                    out = colour * shade[..., None]
                    return out + (0.75 * np.exp(-d2 / (2 * 0.11 ** 2)))[..., None]
                tex = 1.0 + dimples[w.sl]  # matte, dimpled orange skin
                out = colour * (shade * tex)[..., None]
                return out + (0.14 * np.exp(-d2 / (2 * 0.26 ** 2)))[..., None]

            canvas.paint(self._outline(canvas, f), body)

            # stem and leaf: identical in both domains
            c, s = np.cos(f["tilt"]), np.sin(f["tilt"])
            top = (cx + 0.80 * r * s, cy - 0.80 * r * c)
            ang = f["tilt"] + f["stem_bend"]
            tip = (top[0] + f["stem"] * r * np.sin(ang), top[1] - f["stem"] * r * np.cos(ang))
            canvas.paint(canvas.capsule(top, tip, 0.045 * r, 0.03 * r), STEM)
            if f["leaf"]:
                la = ang + f["leaf_side"] * (np.pi / 2 - f["leaf_angle"])
                ll = f["leaf_len"] * r
                mid = (tip[0] + 0.9 * ll * np.sin(la), tip[1] - 0.9 * ll * np.cos(la))
                leaf = canvas.ellipse(mid[0], mid[1], 0.36 * ll, ll, la)
                canvas.paint(leaf, LEAF)
                end = (tip[0] + 1.7 * ll * np.sin(la), tip[1] - 1.7 * ll * np.cos(la))
                canvas.paint(canvas.capsule(tip, end, 0.035 * ll, 0.01 * ll), (0.3, 0.58, 0.22))
