"""The "zebra" world (horse2zebra-like): a texture change on an animal silhouette.

A scene is one horse-like animal (barrel, chest and rump ellipses, a tapered neck and head,
ears, mane, tail and four two-segment legs; facing left or right; random size, stride and
position) standing on grass under a sky with clouds and distant hills. Domain A paints a plain
coat (bay, chestnut, dark brown, dun or grey) lit from above, with a darker mane and tail;
domain B paints the same silhouette with black-and-white stripes that follow each body part
(vertical, wavy on the body; across the neck and head; horizontal on the legs), a dark muzzle
and a striped mane. Sky, grass, hills, clouds and the animal's ground shadow are identical.
"""
from __future__ import annotations

import numpy as np

from cyclekit.data.worlds.base import Canvas, World, hsv, lattice, lerp

COATS = [(0.45, 0.27, 0.14), (0.62, 0.33, 0.15), (0.30, 0.20, 0.13), (0.72, 0.58, 0.38),
         (0.56, 0.55, 0.53), (0.74, 0.73, 0.70)]
BLACK = np.array((0.07, 0.07, 0.08), np.float32)
WHITE = np.array((0.94, 0.93, 0.89), np.float32)
HOOF = (0.14, 0.12, 0.11)


def _horse(rng: np.random.Generator) -> dict:
    """Random animal geometry (normalised image coordinates)."""
    f = float(rng.choice([-1.0, 1.0]))
    s = rng.uniform(0.9, 1.25)
    rx, ry = 0.2 * s, rng.uniform(0.085, 0.1) * s
    leg = rng.uniform(0.19, 0.23) * s
    g = rng.uniform(0.82, 0.94)  # ground line (near hooves)
    by = g - 0.3 * ry - leg
    rel = {  # x relative to the body centre, before facing
        "neck_top": (rx + rng.uniform(0.0, 0.05) * s, by - ry - rng.uniform(0.11, 0.16) * s),
    }
    nt = rel["neck_top"]
    head_dx, head_dy = rng.uniform(0.09, 0.12) * s, rng.uniform(0.06, 0.1) * s
    xmin = -(rx + 0.09 * s)
    xmax = nt[0] + head_dx + 0.03 * s
    lo, hi = 0.03 - xmin, 0.97 - xmax
    bx = rng.uniform(lo, hi) if hi > lo else 0.5 * (lo + hi)
    if f < 0:
        bx = 1.0 - bx

    def P(dx: float, y: float) -> tuple[float, float]:
        return (bx + f * dx, y)

    neck_top = P(nt[0], nt[1])
    muzzle = (neck_top[0] + f * head_dx, neck_top[1] + head_dy)
    legs = []
    for dx, far in ((0.62 * rx, False), (-0.62 * rx, False), (0.48 * rx, True), (-0.76 * rx, True)):
        hip = P(dx, by + 0.2 * ry)
        hoof_y = g - (0.015 * s if far else 0.0)
        stride = rng.uniform(-0.05, 0.05) * s
        knee = (hip[0] + 0.5 * stride + f * rng.uniform(-0.01, 0.015) * s,
                hip[1] + 0.55 * (hoof_y - hip[1]))
        legs.append({"hip": hip, "knee": knee, "hoof": (hip[0] + stride, hoof_y), "far": far})
    return {
        "f": f, "s": s, "bx": bx, "by": by, "rx": rx, "ry": ry, "g": g,
        "neck_base": P(0.72 * rx, by - 0.25 * ry), "neck_top": neck_top, "muzzle": muzzle,
        "withers": P(0.45 * rx, by - 0.95 * ry),
        "tail0": P(-0.98 * rx, by - 0.6 * ry),
        "tail1": P(-(rx + rng.uniform(0.02, 0.07) * s),
                   by + 0.4 * ry + rng.uniform(0.08, 0.13) * s),
        "legs": legs,
    }


class ZebraWorld(World):
    name = "zebra"
    summary = "a horse on grass under a sky: plain coat (A) <-> black-and-white stripes (B)"
    domains = ("horse", "zebra")

    def sample(self, rng: np.random.Generator) -> dict:
        h = _horse(rng)
        horizon = rng.uniform(0.38, min(0.6, h["g"] - 0.2))
        sky_hue = rng.uniform(0.54, 0.63)
        grass_hue = rng.uniform(0.2, 0.33)
        clouds = []
        for _ in range(int(rng.integers(0, 4))):
            cx, cy = rng.uniform(0.0, 1.0), rng.uniform(0.05, horizon - 0.1)
            w = rng.uniform(0.08, 0.2)
            clouds.append([(cx + rng.uniform(-w, w), cy + rng.uniform(-0.03, 0.02),
                            rng.uniform(0.4, 0.7) * w, rng.uniform(0.15, 0.3) * w)
                           for _ in range(int(rng.integers(3, 6)))])
        coat = np.clip(np.asarray(COATS[int(rng.integers(len(COATS)))]) * rng.uniform(0.85, 1.15)
                       + rng.uniform(-0.03, 0.03, 3), 0, 1)
        return {
            "horse": h, "horizon": horizon, "clouds": clouds,
            "sky_top": hsv(sky_hue, rng.uniform(0.35, 0.65), rng.uniform(0.7, 0.95)),
            "sky_low": hsv(sky_hue, rng.uniform(0.05, 0.25), rng.uniform(0.88, 1.0)),
            "hills": (rng.uniform(0.02, 0.08), rng.uniform(0.8, 2.5), rng.uniform(0, 1),
                      hsv(rng.uniform(0.3, 0.5), rng.uniform(0.2, 0.4), rng.uniform(0.45, 0.65))),
            "grass_far": hsv(grass_hue, rng.uniform(0.35, 0.6), rng.uniform(0.6, 0.8)),
            "grass_near": hsv(grass_hue + rng.uniform(-0.02, 0.03), rng.uniform(0.55, 0.8),
                              rng.uniform(0.35, 0.55)),
            "patches": lattice(rng, 7) * rng.uniform(0.05, 0.1),
            "blades": lattice(rng, 48, 140) * rng.uniform(0.05, 0.1),
            "coat": coat, "mane": coat * rng.uniform(0.25, 0.5),
            "coat_noise": lattice(rng, 9) * 0.04,
            "period": rng.uniform(0.045, 0.065) * h["s"],
            "phases": rng.uniform(0, 1, 5), "wave": rng.uniform(0.15, 0.4),
        }

    def background(self, canvas: Canvas, scene: dict) -> None:
        x, y = canvas.grid()
        hz = scene["horizon"]
        t = np.clip(y / hz, 0, 1)[..., None]
        sky = scene["sky_top"] + t * (scene["sky_low"] - scene["sky_top"])
        amp, freq, ph, hill = scene["hills"]
        hill_y = hz - amp * (0.5 + 0.5 * np.sin(2 * np.pi * (x * freq + ph)))
        img = sky + np.clip((y - hill_y) * canvas.S + 0.5, 0, 1)[..., None] * (hill - sky)
        tg = np.clip((y - hz) / (1.0 - hz), 0, 1)[..., None]
        grass = scene["grass_far"] + np.sqrt(tg) * (scene["grass_near"] - scene["grass_far"])
        grass = grass * (1.0 + canvas.noise(scene["patches"], scene["blades"]))[..., None]
        canvas.img[:] = img + np.clip((y - hz) * canvas.S + 0.5, 0, 1)[..., None] * (grass - img)
        for cloud in scene["clouds"]:
            m = canvas.ellipse(*cloud[0], soft=0.01)
            for e in cloud[1:]:
                m = m | canvas.ellipse(*e, soft=0.01)
            canvas.paint(m, (1.0, 1.0, 1.0), opacity=0.85)
        h = scene["horse"]
        canvas.multiply(canvas.ellipse(h["bx"], h["g"], 1.2 * h["rx"], 0.03 * h["s"],
                                       soft=0.025 * h["s"]), 0.6)

    def foreground(self, canvas: Canvas, scene: dict, domain: str) -> None:
        h = scene["horse"]
        s, rx, ry, f = h["s"], h["rx"], h["ry"], h["f"]
        top, g = h["by"] - ry, h["g"]
        k = np.float32(canvas.S / (2 * np.pi * 1.2))  # stripe edge sharpness per unit period
        noise = canvas.noise(scene["coat_noise"]) if domain == "A" else None
        ph = scene["phases"]

        def shade(w):
            return 1.12 - 0.38 * np.clip((w.y - top) / (g - top), 0, 1)

        def coat(colour, dim=1.0):
            def tex(w):
                return colour * (dim * shade(w) * (1.0 + noise[w.sl]))[..., None]
            return tex

        def stripes(phase_fn, period, dim=1.0):
            def tex(w):
                a = np.clip(0.5 + np.sin(2 * np.pi * phase_fn(w)) * (k * period), 0, 1)
                col = BLACK + a[..., None] * (WHITE - BLACK)
                return col * (dim * (0.8 + 0.2 * shade(w)))[..., None]
            return tex

        def along(p0, p1, period, phase):  # stripes across the p0->p1 axis
            d = np.subtract(p1, p0)
            d = d / np.hypot(*d)
            return lambda w: ((w.x - p0[0]) * d[0] + (w.y - p0[1]) * d[1]) / period + phase

        P = scene["period"]
        if domain == "A":
            body_t, neck_t, head_t = coat(scene["coat"]), coat(scene["coat"]), coat(scene["coat"])
            mane_t, muzzle_c = coat(scene["mane"]), lerp(scene["coat"], (0.1, 0.08, 0.07), 0.5)
            leg_t = {False: coat(scene["coat"]), True: coat(scene["coat"], 0.8)}
            tail_t = mane_t
        else:
            wave = scene["wave"]
            body_t = stripes(lambda w: (w.x - h["bx"]) / P + ph[0]
                             + wave * np.sin(2 * np.pi * (w.y - h["by"]) / (3.0 * ry)), P)
            neck_t = stripes(along(h["neck_base"], h["neck_top"], 0.8 * P, ph[1]), 0.8 * P)
            head_t = stripes(along(h["neck_top"], h["muzzle"], 0.6 * P, ph[2]), 0.6 * P)
            mane_t = neck_t
            leg_t = {far: stripes(lambda w: w.y / (0.55 * P) + ph[3], 0.55 * P, 0.8 if far else 1.0)
                     for far in (False, True)}
            tail_t = stripes(along(h["tail0"], h["tail1"], 0.7 * P, ph[4]), 0.7 * P)
            muzzle_c = (0.16, 0.15, 0.15)

        def draw_leg(L):
            leg = (canvas.capsule(L["hip"], L["knee"], 0.034 * s, 0.022 * s)
                   | canvas.capsule(L["knee"], L["hoof"], 0.019 * s, 0.016 * s))
            canvas.paint(leg, leg_t[L["far"]])
            canvas.paint(canvas.capsule((L["hoof"][0], L["hoof"][1] - 0.025 * s), L["hoof"],
                                        0.019 * s, 0.02 * s), HOOF)

        for L in h["legs"]:
            if L["far"]:
                draw_leg(L)
        canvas.paint(canvas.capsule(h["tail0"], h["tail1"], 0.016 * s, 0.028 * s), tail_t)
        bx, by = h["bx"], h["by"]
        chest = canvas.ellipse(bx + f * 0.62 * rx, by - 0.05 * ry, 0.42 * rx, 1.0 * ry, f * 0.2)
        rump = canvas.ellipse(bx - f * 0.62 * rx, by - 0.1 * ry, 0.42 * rx, 1.05 * ry, -f * 0.15)
        body = canvas.ellipse(bx, by, rx, ry) | chest | rump
        canvas.paint(body, body_t)
        for L in h["legs"]:
            if not L["far"]:
                draw_leg(L)
        nt, mz = h["neck_top"], h["muzzle"]
        canvas.paint(canvas.capsule(h["neck_base"], nt, 0.06 * s, 0.036 * s), neck_t)
        mane0 = (nt[0] - f * 0.028 * s, nt[1] - 0.004 * s)
        canvas.paint(canvas.capsule(mane0, h["withers"], 0.014 * s, 0.02 * s), mane_t)
        ear0 = (nt[0] - f * 0.012 * s, nt[1] - 0.02 * s)
        canvas.paint(canvas.capsule(ear0, (ear0[0] - f * 0.008 * s, ear0[1] - 0.045 * s),
                                    0.013 * s, 0.004 * s), head_t)
        canvas.paint(canvas.capsule(nt, mz, 0.036 * s, 0.026 * s), head_t)
        canvas.paint(canvas.ellipse(mz[0], mz[1], 0.03 * s, 0.024 * s), muzzle_c)
        eye = (nt[0] + f * 0.022 * s, nt[1] + 0.008 * s)
        canvas.paint(canvas.circle(eye[0], eye[1], 0.008 * s), (0.05, 0.04, 0.04))
