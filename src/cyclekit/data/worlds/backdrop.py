"""Studio-like backdrops (wall gradient, optional table, noise, faint pattern, vignette).

Backdrops are painted identically in both domains of a scene; only their parameters are random.
"""
from __future__ import annotations

import numpy as np

from cyclekit.data.worlds.base import Canvas, hsv, lattice


def sample_backdrop(rng: np.random.Generator, hue_lo: float = 0.0, hue_hi: float = 1.0,
                    sat_hi: float = 0.45, table_p: float = 0.6) -> dict:
    """Random backdrop parameters with hues in [hue_lo, hue_hi] (or neutral grey, 25%)."""

    def colour(v_lo: float, v_hi: float) -> np.ndarray:
        if rng.random() < 0.25:
            return hsv(rng.uniform(hue_lo, hue_hi), rng.uniform(0.0, 0.08), rng.uniform(v_lo, v_hi))
        return hsv(rng.uniform(hue_lo, hue_hi), rng.uniform(0.1, sat_hi), rng.uniform(v_lo, v_hi))

    wall0 = colour(0.5, 0.95)
    bd = {
        "wall0": wall0,
        "wall1": np.clip(wall0 * rng.uniform(0.6, 1.2) + rng.uniform(-0.06, 0.06, 3), 0, 1),
        "angle": rng.uniform(0, 2 * np.pi),
        "coarse": lattice(rng, 5) * rng.uniform(0.02, 0.06),
        "fine": lattice(rng, 28) * rng.uniform(0.0, 0.03),
        "vignette": rng.uniform(0.0, 0.3),
        "table": None,
        "stripes": None,
    }
    if rng.random() < table_p:
        top = colour(0.35, 0.85)
        bd["table"] = {
            "y": rng.uniform(0.5, 0.75),
            "top": top,
            "bottom": np.clip(top * rng.uniform(0.7, 1.15), 0, 1),
            "grain": lattice(rng, 40, 6) * rng.uniform(0.0, 0.05),
        }
    if rng.random() < 0.35:
        bd["stripes"] = (rng.uniform(0, np.pi), rng.uniform(0.04, 0.12), rng.uniform(0.02, 0.05),
                         rng.uniform(0, 1))
    return bd


def paint_backdrop(canvas: Canvas, bd: dict) -> None:
    S = canvas.S
    x, y = canvas.grid()
    img = canvas.gradient(bd["wall0"], bd["wall1"], bd["angle"])
    shade = 1.0 + canvas.noise(bd["coarse"], bd["fine"])
    if bd["stripes"] is not None:
        ang, period, amp, phase = bd["stripes"]
        shade += amp * np.sin(2 * np.pi * ((x * np.cos(ang) + y * np.sin(ang)) / period + phase))
    if bd["vignette"] > 0:
        v = np.float32(2.0 * bd["vignette"])
        shade *= 1.0 - v * ((x - 0.5) ** 2 + (y - 0.5) ** 2)
    tb = bd["table"]
    if tb is not None:
        # rows at or below the table edge get the table (its grain streaks run sideways)
        r0 = min(int(np.floor(tb["y"] * S - 0.5)), S - 1)
        t = np.clip((y[r0:] - tb["y"]) / max(1.0 - tb["y"], 1e-3), 0, 1)[..., None]
        table = (tb["top"] + t * (tb["bottom"] - tb["top"])) \
            * (1.0 + canvas.noise(tb["grain"], shape=(S - r0, S)))[..., None]
        edge = np.clip((y[r0:] - tb["y"]) * S + 0.5, 0, 1)[..., None]
        img[r0:] += edge * (table - img[r0:])
        # a soft contact shadow where the wall meets the table
        r1 = max(int((tb["y"] - 0.06) * S), 0)
        yy = y[r1:r0 + 1]
        img[r1:r0 + 1] *= (1.0 - 0.12 * np.exp(-((yy - tb["y"]) / 0.02) ** 2)
                           * (yy < tb["y"]))[..., None]
    img *= shade[..., None]
    canvas.img = img
