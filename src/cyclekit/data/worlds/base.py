"""Drawing kit shared by the synthetic worlds: a supersampled float canvas and soft masks.

A world draws at ``ss`` times the output size into a float32 RGB canvas in [0, 1] and the
canvas is reduced to the output size with Pillow's LANCZOS filter, which antialiases edges
and fine textures. Coordinates are normalised: ``(x, y)`` in [0, 1] with y pointing down, so a
scene looks the same at every output size.

Shapes are :class:`Mask` objects: an alpha window (float32 in [0, 1]) placed at a pixel
offset, computed from an approximate signed distance so edges are soft over about one
supersampled pixel. Only the window around a shape is ever computed, which keeps a 64 px
scene (256 px supersampled) at a few milliseconds.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import Callable, Sequence, Union

import numpy as np
from PIL import Image

Colour = Union[Sequence[float], np.ndarray]


def supersampling(size: int) -> int:
    """Supersampling factor for an output size: 4x up to 48 px, 3x up to 96 px, 2x above."""
    return 4 if size <= 48 else 3 if size <= 96 else 2


def hsv(h: float, s: float, v: float) -> np.ndarray:
    """An RGB colour (float32, [0, 1]) from hue/saturation/value in [0, 1] (hue wraps)."""
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32)


def lerp(a: Colour, b: Colour, t: float) -> np.ndarray:
    a = np.asarray(a, dtype=np.float32)
    return a + (np.asarray(b, dtype=np.float32) - a) * np.float32(t)


def lattice(rng: np.random.Generator, rows: int, cols: int | None = None) -> np.ndarray:
    """Random lattice values (standard normal) for :meth:`Canvas.noise`; drawn at scene time."""
    return rng.standard_normal((rows, cols or rows)).astype(np.float32)


@dataclass
class Win:
    """Where a texture is evaluated: broadcastable pixel-centre coordinates and the slices."""

    x: np.ndarray  # (1, w) normalised x
    y: np.ndarray  # (h, 1) normalised y
    sl: tuple  # (slice_y, slice_x) into the full canvas


@dataclass
class Mask:
    """Soft alpha ``a`` (h, w) whose top-left pixel sits at (y0, x0) on the canvas."""

    y0: int
    x0: int
    a: np.ndarray

    @property
    def y1(self) -> int:
        return self.y0 + self.a.shape[0]

    @property
    def x1(self) -> int:
        return self.x0 + self.a.shape[1]

    def _in(self, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
        """This mask's alpha resampled into the window [y0:y1, x0:x1] (zeros outside)."""
        out = np.zeros((max(y1 - y0, 0), max(x1 - x0, 0)), np.float32)
        ya, yb = max(self.y0, y0), min(self.y1, y1)
        xa, xb = max(self.x0, x0), min(self.x1, x1)
        if ya < yb and xa < xb:
            out[ya - y0:yb - y0, xa - x0:xb - x0] = self.a[ya - self.y0:yb - self.y0,
                                                           xa - self.x0:xb - self.x0]
        return out

    def __or__(self, other: "Mask") -> "Mask":
        if other.a.size == 0:
            return self
        if self.a.size == 0:
            return other
        y0, x0 = min(self.y0, other.y0), min(self.x0, other.x0)
        y1, x1 = max(self.y1, other.y1), max(self.x1, other.x1)
        return Mask(y0, x0, np.maximum(self._in(y0, x0, y1, x1), other._in(y0, x0, y1, x1)))

    def __and__(self, other: "Mask") -> "Mask":
        return Mask(self.y0, self.x0, self.a * other._in(self.y0, self.x0, self.y1, self.x1))

    def __sub__(self, other: "Mask") -> "Mask":
        return Mask(self.y0, self.x0,
                    self.a * (1.0 - other._in(self.y0, self.x0, self.y1, self.x1)))

    def __mul__(self, k: float) -> "Mask":
        return Mask(self.y0, self.x0, self.a * np.float32(k))


class Canvas:
    """A float RGB canvas at ``size * ss`` pixels with soft-shape primitives."""

    def __init__(self, size: int, ss: int | None = None):
        self.size = size
        self.ss = ss or supersampling(size)
        self.S = S = size * self.ss
        self.img = np.zeros((S, S, 3), np.float32)
        self.cover = None  # (S, S) union of everything painted while tracking
        self._tracking = False
        self._c = ((np.arange(S, dtype=np.float32) + 0.5) / S)

    def copy(self) -> "Canvas":
        c = Canvas.__new__(Canvas)
        c.__dict__.update(self.__dict__)
        c.img = self.img.copy()
        c.tracking = self._tracking
        return c

    @property
    def tracking(self) -> bool:
        return self._tracking

    @tracking.setter
    def tracking(self, on: bool) -> None:
        """Start (or stop) recording painted coverage, e.g. after the shared background."""
        self._tracking = bool(on)
        self.cover = np.zeros((self.S, self.S), np.float32) if on else None

    # -- geometry --------------------------------------------------------------------------
    def _window(self, x0: float, y0: float, x1: float, y1: float):
        S = self.S
        i0 = int(np.clip(np.floor(y0 * S) - 1, 0, S))
        i1 = int(np.clip(np.ceil(y1 * S) + 1, 0, S))
        j0 = int(np.clip(np.floor(x0 * S) - 1, 0, S))
        j1 = int(np.clip(np.ceil(x1 * S) + 1, 0, S))
        i1, j1 = max(i1, i0), max(j1, j0)
        return i0, j0, self._c[None, j0:j1], self._c[i0:i1, None]

    def _alpha(self, sdf: np.ndarray, soft: float = 0.0) -> np.ndarray:
        """Coverage from a signed distance in normalised units (positive inside), ramping over
        one supersampled pixel plus ``soft`` (normalised units, for shadows and glows)."""
        k = np.float32(1.0 / (soft + 1.0 / self.S))
        return np.clip(sdf * k + np.float32(0.5), 0.0, 1.0).astype(np.float32)

    def full(self) -> Mask:
        return Mask(0, 0, np.ones((self.S, self.S), np.float32))

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, angle: float = 0.0,
                soft: float = 0.0) -> Mask:
        c, s = np.cos(angle), np.sin(angle)
        ex, ey = np.hypot(rx * c, ry * s) + soft, np.hypot(rx * s, ry * c) + soft
        i0, j0, x, y = self._window(cx - ex, cy - ey, cx + ex, cy + ey)
        dx, dy = x - cx, y - cy
        u, v = dx * c + dy * s, -dx * s + dy * c
        f = (u / rx) ** 2 + (v / ry) ** 2 - 1.0
        g = 2.0 * np.sqrt((u / rx ** 2) ** 2 + (v / ry ** 2) ** 2)
        return Mask(i0, j0, self._alpha(-f / np.maximum(g, 1e-6), soft))

    def circle(self, cx: float, cy: float, r: float, soft: float = 0.0) -> Mask:
        return self.ellipse(cx, cy, r, r, soft=soft)

    def capsule(self, p0: Sequence[float], p1: Sequence[float], r0: float,
                r1: float | None = None) -> Mask:
        """A (tapered) stroke from p0 to p1 with radius r0 at p0 and r1 at p1."""
        r1 = r0 if r1 is None else r1
        rm = max(r0, r1)
        (ax, ay), (bx, by) = p0, p1
        i0, j0, x, y = self._window(min(ax, bx) - rm, min(ay, by) - rm,
                                    max(ax, bx) + rm, max(ay, by) + rm)
        dx, dy = bx - ax, by - ay
        t = np.clip(((x - ax) * dx + (y - ay) * dy) / max(dx * dx + dy * dy, 1e-12), 0.0, 1.0)
        d = np.hypot(x - ax - t * dx, y - ay - t * dy)
        return Mask(i0, j0, self._alpha(r0 + (r1 - r0) * t - d))

    def box(self, cx: float, cy: float, hx: float, hy: float, angle: float = 0.0) -> Mask:
        c, s = np.cos(angle), np.sin(angle)
        ex, ey = abs(hx * c) + abs(hy * s), abs(hx * s) + abs(hy * c)
        i0, j0, x, y = self._window(cx - ex, cy - ey, cx + ex, cy + ey)
        dx, dy = x - cx, y - cy
        u, v = dx * c + dy * s, -dx * s + dy * c
        return Mask(i0, j0, self._alpha(np.minimum(hx - np.abs(u), hy - np.abs(v))))

    def polygon(self, pts: Sequence[Sequence[float]]) -> Mask:
        """A filled polygon (hard edge at the supersampled resolution; the reduction smooths it)."""
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        i0, j0, x, y = self._window(min(xs), min(ys), max(xs), max(ys))
        h, w = y.shape[0], x.shape[1]
        if h == 0 or w == 0:
            return Mask(i0, j0, np.zeros((h, w), np.float32))
        im = Image.new("L", (w, h), 0)
        from PIL import ImageDraw

        ImageDraw.Draw(im).polygon([(px * self.S - j0, py * self.S - i0) for px, py in pts],
                                   fill=255)
        return Mask(i0, j0, np.asarray(im, np.float32) / 255.0)

    def halfplane(self, m: Mask, px: float, py: float, nx: float, ny: float) -> Mask:
        """``m`` cut to the side of the line through (px, py) that the normal (nx, ny) points to."""
        i0, j0 = m.y0, m.x0
        x = self._c[None, j0:m.x1]
        y = self._c[i0:m.y1, None]
        n = np.hypot(nx, ny)
        return Mask(i0, j0, m.a * self._alpha(((x - px) * nx + (y - py) * ny) / n))

    # -- painting --------------------------------------------------------------------------
    def win(self, m: Mask) -> Win:
        return Win(self._c[None, m.x0:m.x1], self._c[m.y0:m.y1, None],
                   (slice(m.y0, m.y1), slice(m.x0, m.x1)))

    def paint(self, m: Mask, colour: Union[Colour, Callable[[Win], np.ndarray]],
              opacity: float = 1.0) -> None:
        """Alpha-composite ``colour`` (an RGB triple, or a function of the window giving an
        (h, w, 3) or (h, w, 1) array) over the canvas through mask ``m``."""
        if m.a.size == 0:
            return
        w = self.win(m)
        region = self.img[w.sl]
        col = colour(w) if callable(colour) else np.asarray(colour, np.float32)
        a = m.a if opacity == 1.0 else m.a * np.float32(opacity)
        region += a[..., None] * (col - region)
        if self.tracking:
            np.maximum(self.cover[w.sl], a, out=self.cover[w.sl])

    def multiply(self, m: Mask, factor: float | Colour) -> None:
        """Darken (or tint) through ``m``: shadows."""
        if m.a.size == 0:
            return
        w = self.win(m)
        f = np.asarray(factor, np.float32)
        self.img[w.sl] *= 1.0 - m.a[..., None] * (1.0 - f)
        if self.tracking:
            np.maximum(self.cover[w.sl], m.a, out=self.cover[w.sl])

    # -- full-canvas fields ----------------------------------------------------------------
    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        return self._c[None, :], self._c[:, None]

    def noise(self, *lats: np.ndarray, shape: tuple[int, int] | None = None) -> np.ndarray:
        """Smooth noise over the canvas (or ``shape`` = (rows, cols) pixels): the sum of the
        lattices, each upsampled bicubically (coarse ones first to the finest lattice's grid,
        so the whole field costs one full-size resize)."""
        rows, cols = shape or (self.S, self.S)
        big = max(lats, key=lambda a: a.size)
        acc = np.array(big, np.float32)
        for lat in lats:
            if lat is big:
                continue
            im = Image.fromarray(np.ascontiguousarray(lat, np.float32), mode="F")
            acc += np.asarray(im.resize(big.shape[::-1], Image.Resampling.BICUBIC), np.float32)
        im = Image.fromarray(acc, mode="F")
        return np.asarray(im.resize((cols, rows), Image.Resampling.BICUBIC), np.float32)

    def gradient(self, c0: Colour, c1: Colour, angle: float) -> np.ndarray:
        """A linear gradient (S, S, 3) from c0 to c1 along ``angle`` across the canvas."""
        x, y = self.grid()
        c, s = np.cos(angle), np.sin(angle)
        tx, ty = (x - 0.5) * np.float32(c), (y - 0.5) * np.float32(s)
        lo = float(min(tx.min(), tx.max()) + min(ty.min(), ty.max()))
        hi = float(max(tx.min(), tx.max()) + max(ty.min(), ty.max()))
        k = np.float32(1.0 / max(hi - lo, 1e-6))
        c0 = np.asarray(c0, np.float32)
        dc = np.asarray(c1, np.float32) - c0
        return c0 + (tx - lo)[..., None] * (k * dc) + ty[..., None] * (k * dc)

    # -- output ----------------------------------------------------------------------------
    def render(self) -> np.ndarray:
        """The canvas reduced to ``size`` x ``size`` uint8 RGB with LANCZOS."""
        u8 = (np.clip(self.img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        if self.ss == 1:
            return u8
        im = Image.fromarray(u8, "RGB").resize((self.size, self.size), Image.Resampling.LANCZOS)
        return np.asarray(im)

    def coverage(self) -> np.ndarray:
        """Boolean (size, size): output pixels touched by anything painted while tracking."""
        n, k = self.size, self.ss
        if self.cover is None:
            return np.zeros((n, n), bool)
        return self.cover.reshape(n, k, n, k).max(axis=(1, 3)) > 1e-3


class World:
    """A family of random scenes, each drawable in domain "A" and domain "B".

    Subclasses draw every random number in :meth:`sample` (so a scene is fully fixed by its
    seed) and then draw deterministically: :meth:`background` paints what both domains share,
    :meth:`foreground` paints the domain-specific object(s).
    """

    name: str = ""
    summary: str = ""
    domains: tuple[str, str] = ("A", "B")  # human names of domain A and domain B

    def sample(self, rng: np.random.Generator) -> dict:
        raise NotImplementedError

    def background(self, canvas: Canvas, scene: dict) -> None:
        raise NotImplementedError

    def foreground(self, canvas: Canvas, scene: dict, domain: str) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"World({self.name!r}: {self.domains[0]} <-> {self.domains[1]})"
