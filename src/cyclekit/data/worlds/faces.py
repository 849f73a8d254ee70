"""The "faces" world (gender-swap-like): a geometry change on cartoon portraits.

A scene is one identity: skin tone, face shape (egg-shaped oval with a random jaw and
elongation), head position, size and tilt, eye colour and gaze, hair colour, shirt colour and a
studio backdrop. Domain A ("male") draws short hair (a cap with a random, possibly slanted
hairline, and sideburns), a full beard, a moustache and goatee or stubble, thick straight
eyebrows and thin lips. Domain B ("female") draws long hair falling behind the head to the
shoulders with a swept fringe and locks framing the face, no beard, thinner arched eyebrows,
eyeliner with lashes, a light blush and full coloured lips. Everything else is the same.
"""
from __future__ import annotations

import numpy as np

from cyclekit.data.worlds.backdrop import paint_backdrop, sample_backdrop
from cyclekit.data.worlds.base import Canvas, Mask, World, hsv, lattice, lerp

SKIN = [(0.97, 0.82, 0.70), (0.88, 0.66, 0.50), (0.70, 0.48, 0.33), (0.45, 0.30, 0.21)]
HAIR = [(0.08, 0.07, 0.07), (0.22, 0.14, 0.09), (0.40, 0.26, 0.14), (0.55, 0.25, 0.12),
        (0.85, 0.70, 0.42), (0.62, 0.61, 0.60)]
HAIR_P = [0.25, 0.25, 0.2, 0.1, 0.15, 0.05]
EYES = [(0.36, 0.22, 0.12), (0.25, 0.45, 0.70), (0.30, 0.52, 0.32), (0.45, 0.48, 0.50),
        (0.50, 0.38, 0.18)]
LIPS = [(0.76, 0.12, 0.20), (0.86, 0.42, 0.52), (0.58, 0.10, 0.28), (0.90, 0.36, 0.30)]
DARK = (0.12, 0.08, 0.07)


class FacesWorld(World):
    name = "faces"
    summary = ("cartoon portraits: short hair, beard/stubble, thin lips (A) <-> long hair, no "
               "beard, full coloured lips, lashes (B), same identity")
    domains = ("male", "female")

    def sample(self, rng: np.random.Generator) -> dict:
        U = rng.uniform
        t = U(0, len(SKIN) - 1)
        skin = lerp(SKIN[int(t)], SKIN[min(int(t) + 1, len(SKIN) - 1)], t - int(t))
        hair = np.asarray(HAIR[int(rng.choice(len(HAIR), p=HAIR_P))]) * U(0.85, 1.15)
        return {
            "R": U(0.15, 0.185), "e": U(1.18, 1.32), "fx": U(0.44, 0.56), "fy": U(0.4, 0.46),
            "tilt": U(-0.12, 0.12), "jaw": U(0.3, 1.0),
            "skin": skin, "hair": np.clip(hair, 0, 1),
            "eye": np.asarray(EYES[int(rng.integers(len(EYES)))]) * U(0.85, 1.15),
            "eye_x": U(0.34, 0.41), "eye_y": U(-0.1, 0.0), "eye_h": U(0.08, 0.105),
            "gaze": (U(-0.04, 0.04), U(-0.015, 0.015)), "mouth_w": U(0.2, 0.28),
            "mouth_y": U(0.6, 0.7), "shirt": hsv(U(0, 1), U(0.25, 0.7), U(0.3, 0.8)),
            "shoulders": U(1.9, 2.4),
            "backdrop": sample_backdrop(rng, sat_hi=0.35, table_p=0.0),
            "hair_noise": lattice(rng, 60) * 0.07, "stubble": lattice(rng, 110),
            # domain A (male)
            "vol_a": U(0.05, 0.22), "hairline_a": U(-0.65, -0.45), "slope_a": U(-0.2, 0.2),
            "beard": int(rng.choice(3, p=[0.4, 0.35, 0.25])),  # stubble, full, moustache+goatee
            "stubble_op": U(0.3, 0.5),
            # domain B (female)
            "vol_b": U(0.12, 0.28), "hairline_b": U(-0.55, -0.35),
            "slope_b": rng.choice([-1, 1]) * U(0.25, 0.6), "length": U(1.7, 2.6),
            "width_b": U(1.12, 1.35), "lips": np.asarray(LIPS[int(rng.integers(len(LIPS)))]),
            "strands": U(0, 1),
        }

    def background(self, canvas: Canvas, scene: dict) -> None:
        paint_backdrop(canvas, scene["backdrop"])

    def foreground(self, canvas: Canvas, sc: dict, domain: str) -> None:  # noqa: C901
        R, e, fx, fy, th = sc["R"], sc["e"], sc["fx"], sc["fy"], sc["tilt"]
        c, s = np.cos(th), np.sin(th)
        skin, hair = sc["skin"], sc["hair"]
        male = domain == "A"

        def P(u: float, v: float) -> tuple[float, float]:  # face frame (units of R) -> image
            return (fx + R * (u * c - v * s), fy + R * (u * s + v * c))

        def ell(u, v, rx, ry, ang=0.0, soft=0.0) -> Mask:
            x, y = P(u, v)
            return canvas.ellipse(x, y, rx * R, ry * R, th + ang, soft=soft * R)

        def cap(p0, p1, r0, r1=None) -> Mask:
            return canvas.capsule(P(*p0), P(*p1), r0 * R, (r0 if r1 is None else r1) * R)

        def below(m: Mask, v: float, slope: float = 0.0) -> Mask:  # keep v > line
            px, py = P(0.0, v)
            return canvas.halfplane(m, px, py, -slope * c - s, -slope * s + c)

        def above(m: Mask, v: float, slope: float = 0.0) -> Mask:  # keep v < line
            px, py = P(0.0, v)
            return canvas.halfplane(m, px, py, slope * c + s, slope * s - c)

        hn = canvas.noise(sc["hair_noise"])

        def hair_tex(streaks: bool):
            def tex(w):
                sh = 1.0 + hn[w.sl]
                if streaks:
                    sh = sh + 0.09 * np.sin(2 * np.pi * ((w.x - fx) / (0.09 * R) + sc["strands"]))
                return hair * sh[..., None]
            return tex

        def skin_tex(w):
            u = ((w.x - fx) * c + (w.y - fy) * s) / R
            v = (-(w.x - fx) * s + (w.y - fy) * c) / (R * e)
            return skin * (1.04 - 0.12 * (u * u + v * v))[..., None]

        # long hair behind the head and shoulders
        length = sc["length"]
        if not male:
            top = ell(0, -0.1 * e, sc["width_b"], 0.92 * e + sc["vol_b"])
            back = canvas.capsule((fx, fy), (fx, fy + length * R), sc["width_b"] * R)
            canvas.paint(top | back, hair_tex(True))
            canvas.multiply(canvas.capsule((fx, fy), (fx, fy + length * R), 0.75 * R,
                                           0.6 * R), 0.7)  # shadow inside the hair

        # shoulders, neck, ears, face
        yt = fy + e * R + 0.5 * R
        canvas.paint(canvas.ellipse(fx, yt + 1.5 * R, sc["shoulders"] * R, 1.5 * R), sc["shirt"])
        neck = canvas.capsule((fx, fy + 0.4 * e * R), (fx, yt + 0.1 * R), 0.42 * R)
        canvas.paint(neck, skin * 0.86)
        canvas.paint(canvas.ellipse(fx, yt, 0.5 * R, 0.3 * R), skin * 0.86)  # neckline
        chin_shadow = canvas.ellipse(fx, fy + e * R, 0.6 * R, 0.35 * R, soft=0.2 * R)
        canvas.multiply(neck & chin_shadow, 0.75)
        for side in (-1, 1):
            canvas.paint(ell(side * 0.98, 0.05 * e, 0.17, 0.27), skin * 0.95)
            canvas.paint(ell(side * 1.0, 0.05 * e, 0.08, 0.15), skin * 0.78)
        j = sc["jaw"]
        a = 1.0 / np.sqrt(1.0 - (j / (1.0 + j)) ** 2)
        face = (above(ell(0, 0, 1.0, e), 0.08 * e)
                | below(ell(0, -j * e, a, (1.0 + j) * e), 0.0))
        canvas.paint(face, skin_tex)

        # beard (A)
        mv, mw = sc["mouth_y"] * e, sc["mouth_w"]
        if male:
            if sc["beard"] == 0:  # stubble: speckled, semi-transparent
                zone = below(face, 0.25 * e)
                st = canvas.noise(sc["stubble"])
                zone = Mask(zone.y0, zone.x0, zone.a * np.clip(0.85 + 0.2 * st[canvas.win(zone).sl],
                                                               0, 1))
                canvas.paint(zone, lerp(hair, skin * 0.5, 0.3), opacity=sc["stubble_op"])
            elif sc["beard"] == 1:  # full beard
                zone = below(face | ell(0, 0.52 * e, 0.98, 0.62 * e), 0.2 * e)
                canvas.paint(zone, hair_tex(False))
            else:  # moustache and goatee
                canvas.paint(ell(0, e * 0.96, 0.26, 0.2) | cap((-mw - 0.04, mv - 0.07),
                                                            (mw + 0.04, mv - 0.07), 0.06),
                             hair_tex(False))

        # eyes, lids, lashes, brows
        ex, ey, eh = sc["eye_x"], sc["eye_y"], sc["eye_h"]
        gx, gy = sc["gaze"]
        for side in (-1, 1):
            u0 = side * ex
            sclera = ell(u0, ey, 0.17, eh)
            canvas.paint(sclera, (0.97, 0.96, 0.94))
            canvas.paint(ell(u0 + gx, ey + gy, 0.075, 0.075) & sclera, sc["eye"])
            canvas.paint(ell(u0 + gx, ey + gy, 0.036, 0.036) & sclera, (0.03, 0.03, 0.03))
            canvas.paint(ell(u0 + gx - 0.025, ey + gy - 0.025, 0.016, 0.016), (1.0, 1.0, 1.0))
            lid = 0.013 if male else 0.024
            canvas.paint(cap((u0 - 0.18, ey), (u0, ey - eh - 0.01), lid)
                         | cap((u0, ey - eh - 0.01), (u0 + 0.18, ey), lid), DARK)
            if not male:  # lashes at the outer corner
                for t in (0.45, 0.7, 0.95):
                    bu, bv = u0 + side * 0.18 * t, ey - (eh + 0.01) * (1 - t)
                    canvas.paint(cap((bu, bv), (bu + side * 0.06, bv - 0.07), 0.012, 0.004), DARK)
            bv = ey - eh - 0.16
            brow = np.clip(hair * 0.8, 0, 0.6)
            if male:
                canvas.paint(cap((side * 0.16, bv + 0.01), (side * 0.58, bv - 0.02), 0.05, 0.04),
                             brow)
            else:
                mid = (side * 0.4, bv - 0.08)
                canvas.paint(cap((side * 0.2, bv - 0.02), mid, 0.024, 0.022)
                             | cap(mid, (side * 0.6, bv - 0.01), 0.022, 0.01), brow)
            if not male:  # blush
                canvas.paint(ell(side * 0.55, 0.38 * e, 0.18, 0.1, soft=0.06), (0.95, 0.45, 0.45),
                             opacity=0.22)

        # nose
        canvas.paint(cap((0.04, 0.0), (0.08, 0.3 * e), 0.025), skin * 0.82, opacity=0.6)
        canvas.paint(ell(0, 0.36 * e, 0.12, 0.075), skin * 0.92)
        for side in (-1, 1):
            canvas.paint(ell(side * 0.065, 0.4 * e, 0.032, 0.018), skin * 0.5)

        # mouth
        if male:
            canvas.paint(cap((-mw, mv), (mw, mv), 0.024), lerp(skin * 0.55, (0.5, 0.2, 0.2), 0.3))
            canvas.paint(cap((-0.6 * mw, mv + 0.055), (0.6 * mw, mv + 0.055), 0.014), skin * 0.82,
                         opacity=0.7)
        else:
            lips = sc["lips"]
            canvas.paint(ell(0, mv - 0.035, mw, 0.058) | ell(0, mv + 0.045, 0.85 * mw, 0.075), lips)
            canvas.paint(cap((-mw, mv), (mw, mv), 0.012), lips * 0.45)
            canvas.paint(ell(0.1 * mw, mv + 0.05, 0.25 * mw, 0.02), (1.0, 1.0, 1.0), opacity=0.35)

        # hair in front
        if male:
            capm = above(ell(0, -0.1 * e, 1.08, 0.92 * e + sc["vol_a"]), sc["hairline_a"] * e,
                         sc["slope_a"])
            burns = cap((-0.94, -0.5 * e), (-0.9, -0.05 * e), 0.075) | \
                cap((0.94, -0.5 * e), (0.9, -0.05 * e), 0.075)
            canvas.paint(capm | above(burns, -0.0), hair_tex(False))
        else:
            fringe = above(ell(0, -0.1 * e, 1.1, 0.92 * e + sc["vol_b"]), sc["hairline_b"] * e,
                           sc["slope_b"])
            locks = fringe
            for side in (-1, 1):
                x0, y0 = P(side * 0.88, -0.5 * e)
                end = (fx + side * (sc["width_b"] - 0.2) * R, fy + 0.8 * length * R)
                locks = locks | canvas.capsule((x0, y0), end, 0.2 * R, 0.27 * R)
            canvas.paint(locks, hair_tex(True))
