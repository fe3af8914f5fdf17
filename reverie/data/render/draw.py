"""Deterministic synthetic images of the built-in world, for training a small CLIP-like image tower.

Every object, material, property and result of :func:`reverie.data.world.build_world`
gets a fixed visual identity, derived from its name (stable hashes via hashlib, never
``hash()``), from the world's facts and from the looks in tables.py:

* a **material** is a slab filled with its own texture and palette (wood grain, brushed steel,
  ruled paper, translucent glass with highlight streaks, ...);
* an **object** is a silhouette chosen for its name (cup, bottle, spoon, shirt, ...) with
  name-hashed stretch and accent colour, filled with the texture of its material (objects made of
  two materials show one per half), so objects share texture with their material but differ in
  shape and marks;
* a **property** is a stroke icon on a round badge (crack lines for brittle, a spring for elastic);
* a **result** is a small scene on a rounded card (shards for shatters, a puddle for melts).

Each render varies that identity with a ``random.Random`` seeded from (type, name, seed, split):
position, rotation, scale, colour jitter, background, and a little noise or blur.  The two
splits are disjoint in style, so held-out renders test generalisation rather than memory:

* ``"train"``: solid / linear-gradient / radial-gradient backgrounds, rotation within +-20
  degrees, hue jitter within +-6 degrees, brightness 0.9-1.1, light pixel noise;
* ``"held-out"``: checkerboard / blocky-noise / two-tone / stripe backgrounds, rotation of
  20-35 degrees either way, hue jitter 4-12 degrees, brightness 0.82-0.92 or 1.08-1.18, and blur.

Images are drawn at twice the requested size and box-downsampled, for anti-aliasing.
"""

from __future__ import annotations

import colorsys
import hashlib
import math
import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from reverie.data.render.tables import (
    BRIGHT_SHINE,
    BROWN,
    DARK,
    DEEP_SHADE,
    FALLBACK_LAYERS,
    FIRE,
    FIRE_YELLOW,
    GENERIC_SHAPES,
    GLYPHS,
    GREEN,
    GREY,
    INK,
    LIGHT_WATER,
    MATERIAL_LOOKS,
    OBJECT_LOOKS,
    PALE,
    RED,
    RENDERED_TYPES,
    RUST,
    SHADE,
    SHINE,
    SPLITS,
    WATER,
    WHITE,
    YELLOW,
    Color,
)
from reverie.data.world import MATERIALS, OBJECTS, build_world

# --------------------------------------------------------------------------------------------
# Hashing and colour helpers
# --------------------------------------------------------------------------------------------


def _hash(*parts: object) -> int:
    data = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def _rand(*parts: object) -> random.Random:
    return random.Random(_hash(*parts))


def _hsv(h: float, s: float, v: float, a: int | None = None) -> Color:
    rgb = tuple(round(c * 255) for c in colorsys.hsv_to_rgb(h % 1.0, s, v))
    return rgb if a is None else rgb + (a,)


def _ell(cx: float, cy: float, rx: float, ry: float, n: int = 40) -> list[tuple[float, float]]:
    return [(cx + rx * math.cos(2 * math.pi * i / n), cy + ry * math.sin(2 * math.pi * i / n)) for i in range(n)]


def _arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float, n: int = 24) -> list[tuple[float, float]]:
    """Points along an ellipse from angle a0 to a1 (degrees; 90 points down, since y grows down)."""
    return [
        (
            cx + rx * math.cos(math.radians(a0 + (a1 - a0) * i / n)),
            cy + ry * math.sin(math.radians(a0 + (a1 - a0) * i / n)),
        )
        for i in range(n + 1)
    ]


class _Pen:
    """ImageDraw in unit coordinates ([0, 1] across the canvas), with a stretch and rotation about the centre."""

    def __init__(self, img: Image.Image, sx: float = 1.0, sy: float = 1.0, angle: float = 0.0, draw=None):
        self.img = img
        self.d = draw or ImageDraw.Draw(img)
        self.w = img.size[0]
        self.sx, self.sy, self.angle = sx, sy, angle
        self._c, self._s = math.cos(math.radians(angle)), math.sin(math.radians(angle))

    def rotated(self, angle: float) -> "_Pen":
        return _Pen(self.img, self.sx, self.sy, self.angle + angle, self.d)

    def _pts(self, pts) -> list[tuple[float, float]]:
        out = []
        for x, y in pts:
            # Rotate first (so rods lie diagonally), then the name-hashed stretch.
            x, y = x - 0.5, y - 0.5
            x, y = x * self._c - y * self._s, x * self._s + y * self._c
            out.append(((0.5 + x * self.sx) * self.w, (0.5 + y * self.sy) * self.w))
        return out

    def _px(self, width: float) -> int:
        return max(1, round(width * self.w))

    def poly(self, pts, fill=None, outline=None, width: float = 0.02) -> None:
        p = self._pts(pts)
        if fill is not None:
            self.d.polygon(p, fill=fill)
        if outline is not None:
            self.d.line(p + [p[0]], fill=outline, width=self._px(width), joint="curve")

    def ellipse(self, cx, cy, rx, ry, fill=None, outline=None, width: float = 0.02, n: int = 40) -> None:
        self.poly(_ell(cx, cy, rx, ry, n), fill, outline, width)

    def circle(self, cx, cy, r, fill=None, outline=None, width: float = 0.02) -> None:
        self.ellipse(cx, cy, r, r, fill, outline, width)

    def rect(self, x0, y0, x1, y1, fill=None, outline=None, width: float = 0.02) -> None:
        self.poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], fill, outline, width)

    def rrect(self, x0, y0, x1, y1, r, fill=None, outline=None, width: float = 0.02) -> None:
        pts = (
            _arc(x1 - r, y0 + r, r, r, 270, 360, 6)
            + _arc(x1 - r, y1 - r, r, r, 0, 90, 6)
            + _arc(x0 + r, y1 - r, r, r, 90, 180, 6)
            + _arc(x0 + r, y0 + r, r, r, 180, 270, 6)
        )
        self.poly(pts, fill, outline, width)

    def line(self, pts, fill, width: float = 0.02) -> None:
        self.d.line(self._pts(pts), fill=fill, width=self._px(width), joint="curve")

    def arc(self, cx, cy, rx, ry, a0, a1, fill, width: float = 0.02) -> None:
        self.line(_arc(cx, cy, rx, ry, a0, a1), fill, width)

    def arrow(self, x0, y0, x1, y1, fill, width: float = 0.03, head: float = 0.06) -> None:
        self.line([(x0, y0), (x1, y1)], fill, width)
        a = math.atan2(y1 - y0, x1 - x0)
        left = (x1 - head * math.cos(a - 0.5), y1 - head * math.sin(a - 0.5))
        right = (x1 - head * math.cos(a + 0.5), y1 - head * math.sin(a + 0.5))
        self.poly([(x1 + 0.01 * math.cos(a), y1 + 0.01 * math.sin(a)), left, right], fill)


# --------------------------------------------------------------------------------------------
# Material textures: each material is a stack of texture layers over a base colour
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _grid(t: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:t, 0:t].astype(np.float32) / t
    return xs, ys


def _smooth_noise(nr: np.random.Generator, t: int, cells: int) -> np.ndarray:
    small = (nr.random((cells, cells)) * 255).astype(np.uint8)
    big = Image.fromarray(small, "L").resize((t, t), Image.Resampling.BICUBIC)
    return np.asarray(big, np.float32) / 127.5 - 1.0


def _mix(arr: np.ndarray, color, m: np.ndarray) -> np.ndarray:
    m = np.clip(m, 0, 1)[..., None]
    return arr * (1 - m) + np.asarray(color[:3], np.float32) * m


def _dir(t: int, angle: float) -> np.ndarray:
    xs, ys = _grid(t)
    a = math.radians(angle)
    return xs * math.cos(a) + ys * math.sin(a)


def _t_grad(a, r, nr, c0, c1, angle=45.0):
    d = _dir(a.shape[0], angle)
    d = (d - d.min()) / (d.max() - d.min())
    return _mix(np.broadcast_to(np.asarray(c0, np.float32), a.shape).copy(), c1, d)


def _t_mottle(a, r, nr, amp=10.0, cells=6):
    return a + amp * _smooth_noise(nr, a.shape[0], cells)[..., None]


def _t_streaks(a, r, nr, color, n=2, width=(0.03, 0.06), alpha=0.6, angle=-40.0):
    d = _dir(a.shape[0], angle)
    lo, span = float(d.min()), float(d.max() - d.min())
    for i in range(n):  # evenly spread, so every crop of the texture shows some
        c = lo + (i + r.uniform(0.2, 0.8)) * span / n
        w = r.uniform(*width)
        a = _mix(a, color, alpha * np.exp(-(((d - c) / w) ** 2)))
    return a


def _t_grain(a, r, nr, color, freq=8.0, amp=0.5, strength=0.8):
    xs, ys = _grid(a.shape[0])
    v = np.sin(2 * math.pi * (ys * freq + amp * _smooth_noise(nr, a.shape[0], 4) + 0.05 * xs))
    fine = np.sin(2 * math.pi * (ys * freq * 5 + 0.3 * _smooth_noise(nr, a.shape[0], 8)))
    return _mix(a, color, strength * ((v + 1) / 2) ** 4 + 0.15 * (fine > 0.7))


def _t_brushed(a, r, nr, amp=10.0, vertical=False):
    t = a.shape[0]
    streak = nr.normal(0, amp, t).astype(np.float32)
    streak = streak[None, :, None] if vertical else streak[:, None, None]
    return a + streak + nr.normal(0, amp / 4, (t, t, 1)).astype(np.float32)


def _t_lines(a, r, nr, color, spacing=0.1, width=0.01, angle=0.0, offset=0.0, single=False):
    d = _dir(a.shape[0], angle) - offset
    m = (np.abs(d) < width / 2) if single else ((d % spacing) < width)
    return _mix(a, color, m.astype(np.float32))


def _t_corrugate(a, r, nr, amp=12.0, period=0.05):
    xs, _ = _grid(a.shape[0])
    return a + amp * np.sin(2 * math.pi * xs / period)[..., None]


def _draw_layer(a: np.ndarray, fn: Callable[[ImageDraw.ImageDraw, int], None]) -> np.ndarray:
    img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")
    fn(ImageDraw.Draw(img), img.size[0])
    return np.asarray(img, np.float32)


def _t_speckle(a, r, nr, colors, n=500, rmin=0.004, rmax=0.01):
    def fn(d, t):
        for _ in range(n):
            x, y, rad = r.uniform(0, t), r.uniform(0, t), r.uniform(rmin, rmax) * t
            d.ellipse((x - rad, y - rad, x + rad, y + rad), fill=tuple(r.choice(colors)))

    return _draw_layer(a, fn)


def _t_circles(a, r, nr, color, n=50, rmin=0.01, rmax=0.03, outline=False, width=0.008):
    def fn(d, t):
        for _ in range(n):
            x, y, rad = r.uniform(0, t), r.uniform(0, t), r.uniform(rmin, rmax) * t
            box = (x - rad, y - rad, x + rad, y + rad)
            if outline:
                d.ellipse(box, outline=tuple(color), width=max(1, round(width * t)))
            else:
                d.ellipse(box, fill=tuple(color))

    return _draw_layer(a, fn)


def _t_facets(a, r, nr, colors, cell=0.1, outline=None):
    def fn(d, t):
        c = cell * t
        k = int(t / c) + 2
        pts = [
            [(i * c + r.uniform(-0.3, 0.3) * c, j * c + r.uniform(-0.3, 0.3) * c) for i in range(k)] for j in range(k)
        ]
        for j in range(k - 1):
            for i in range(k - 1):
                p, q, s, u = pts[j][i], pts[j][i + 1], pts[j + 1][i + 1], pts[j + 1][i]
                for tri in ((p, q, s), (p, s, u)):
                    d.polygon(tri, fill=tuple(r.choice(colors)), outline=tuple(outline) if outline else None)

    return _draw_layer(a, fn)


def _t_knit(a, r, nr, color, cell=0.08):
    def fn(d, t):
        c = cell * t
        w = max(1, round(c / 5))
        for j in range(int(t / c) + 1):
            for i in range(int(t / c) + 1):
                x, y = i * c, j * c
                d.line(
                    [(x + c * 0.1, y + c * 0.1), (x + c / 2, y + c * 0.8), (x + c * 0.9, y + c * 0.1)],
                    fill=tuple(color),
                    width=w,
                )

    return _draw_layer(a, fn)


def _t_cracks(a, r, nr, color, n=6, width=0.01):
    def fn(d, t):
        for _ in range(n):
            x, y, ang = r.uniform(0, t), r.uniform(0, t), r.uniform(0, 2 * math.pi)
            pts = [(x, y)]
            for _ in range(r.randint(5, 9)):
                ang += r.uniform(-0.7, 0.7)
                x, y = x + math.cos(ang) * t * 0.07, y + math.sin(ang) * t * 0.07
                pts.append((x, y))
            d.line(pts, fill=tuple(color), width=max(1, round(width * t)), joint="curve")

    return _draw_layer(a, fn)


def _t_grid(a, r, nr, color, cell=0.25, width=0.025, light=None):
    xs, ys = _grid(a.shape[0])
    if light is not None:
        a = _mix(a, light, (((xs - width) % cell) < width) | (((ys - width) % cell) < width))
    return _mix(a, color, ((xs % cell) < width) | ((ys % cell) < width))


def _t_motif(a, r, nr, color, cell=0.25):
    def fn(d, t):
        c = cell * t
        dot = max(1, c * 0.07)
        for j in range(int(1 / cell) + 2):
            for i in range(int(1 / cell) + 2):
                x, y = (i + 0.5 * (j % 2)) * c, j * c
                for k in range(6):
                    px, py = x + 0.2 * c * math.cos(k * math.pi / 3), y + 0.2 * c * math.sin(k * math.pi / 3)
                    d.ellipse((px - dot, py - dot, px + dot, py + dot), fill=tuple(color))
                d.ellipse((x - dot, y - dot, x + dot, y + dot), fill=tuple(color))
                d.arc(
                    (x + 0.2 * c, y + 0.2 * c, x + 0.6 * c, y + 0.6 * c),
                    180,
                    330,
                    fill=tuple(color),
                    width=max(1, round(c * 0.05)),
                )

    return _draw_layer(a, fn)


def _t_barbs(a, r, nr, color, cell=0.33):
    def fn(d, t):
        c = cell * t
        w = max(1, round(t * 0.006))
        for j in range(int(1 / cell) + 2):
            for i in range(int(1 / cell) + 2):
                x0, y0 = i * c + (j % 2) * c / 2, j * c
                x1, y1 = x0 + 0.6 * c, y0 + 0.8 * c
                d.line([(x0, y0), (x1, y1)], fill=tuple(color), width=w + 1)
                for k in range(1, 9):
                    f = k / 9
                    px, py = x0 + f * (x1 - x0), y0 + f * (y1 - y0)
                    d.line([(px, py), (px - 0.18 * c, py + 0.02 * c)], fill=tuple(color), width=w)
                    d.line([(px, py), (px + 0.14 * c, py - 0.1 * c)], fill=tuple(color), width=w)

    return _draw_layer(a, fn)


def _t_stitch(a, r, nr, color, spacing=0.5, dash=0.03):
    def fn(d, t):
        w = max(1, round(t * 0.012))
        for i in range(int(1 / spacing) + 1):
            x = (i + 0.5) * spacing * t
            y = 0.0
            while y < t:
                d.line([(x, y), (x, y + dash * t)], fill=tuple(color), width=w)
                y += 2 * dash * t

    return _draw_layer(a, fn)


def _t_swirl(a, r, nr, color, n=8, width=0.012):
    def fn(d, t):
        for _ in range(n):
            x, y, rad = r.uniform(0, t), r.uniform(0, t), r.uniform(0.05, 0.15) * t
            a0 = r.uniform(0, 360)
            d.arc(
                (x - rad, y - rad, x + rad, y + rad),
                a0,
                a0 + r.uniform(120, 240),
                fill=tuple(color),
                width=max(1, round(width * t)),
            )

    return _draw_layer(a, fn)


def _t_blotch(a, r, nr, color, n=5, rmin=0.04, rmax=0.09, alpha=0.75):
    t = a.shape[0]
    mask = Image.new("L", (t, t), 0)
    d = ImageDraw.Draw(mask)
    for _ in range(n):
        x, y = r.uniform(0, t), r.uniform(0, t)
        for _ in range(4):
            rad = r.uniform(rmin, rmax) * t
            ox, oy = r.uniform(-rad, rad), r.uniform(-rad, rad)
            d.ellipse((x + ox - rad, y + oy - rad, x + ox + rad, y + oy + rad), fill=255)
    m = np.asarray(mask.filter(ImageFilter.GaussianBlur(t * 0.01)), np.float32) / 255
    return _mix(a, color, alpha * m * (0.7 + 0.3 * _smooth_noise(nr, t, 16)))


_LAYERS: dict[str, Callable] = {
    "grad": _t_grad,
    "mottle": _t_mottle,
    "streaks": _t_streaks,
    "grain": _t_grain,
    "brushed": _t_brushed,
    "lines": _t_lines,
    "corrugate": _t_corrugate,
    "speckle": _t_speckle,
    "circles": _t_circles,
    "facets": _t_facets,
    "knit": _t_knit,
    "cracks": _t_cracks,
    "grid": _t_grid,
    "motif": _t_motif,
    "barbs": _t_barbs,
    "stitch": _t_stitch,
    "swirl": _t_swirl,
    "blotch": _t_blotch,
}


def _look(material: str) -> tuple[Color, list[tuple[str, dict]], float]:
    if material in MATERIAL_LOOKS:
        return MATERIAL_LOOKS[material]
    # A material the tables do not know: a hashed colour and one hashed pattern.
    r = _rand("look", material)
    base = _hsv(r.random(), r.uniform(0.3, 0.8), r.uniform(0.4, 0.9))
    dark = tuple(int(c * 0.6) for c in base)
    kind = r.choice(FALLBACK_LAYERS)
    options: dict[str, dict] = {
        "mottle": dict(amp=20, cells=8),
        "speckle": dict(colors=[dark], n=600),
        "lines": dict(color=dark, angle=r.choice((0, 45, 90))),
        "circles": dict(color=dark, n=60),
        "swirl": dict(color=dark),
        "knit": dict(color=dark),
        "facets": dict(colors=[base, dark]),
    }
    return base, [(kind, options[kind])], 1.0


@lru_cache(maxsize=256)
def _texture(material: str, w: int) -> tuple[Image.Image, float]:
    """The material's texture, 1.5x the canvas so each render can crop it at a random offset."""
    t = w * 3 // 2
    base, layers, alpha = _look(material)
    r = _rand("texture", material)
    nr = np.random.default_rng(_hash("texture-np", material))
    a = np.empty((t, t, 3), np.float32)
    a[...] = np.asarray(base, np.float32)
    for kind, kw in layers:
        a = _LAYERS[kind](a, r, nr, **kw)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB"), alpha


# --------------------------------------------------------------------------------------------
# Object silhouettes
# --------------------------------------------------------------------------------------------

_FILL = 255  # a body in the mask


@dataclass
class _Ctx:
    m: _Pen  # mask (L): 255 body, 0 hole
    c: _Pen  # overlay clipped to the body (stripes, labels, shading)
    o: _Pen  # free overlay (strings, flames, wheels)
    acc: Color  # name-hashed accent colour
    r: random.Random

    def rotated(self, angle: float) -> "_Ctx":
        return _Ctx(self.m.rotated(angle), self.c.rotated(angle), self.o.rotated(angle), self.acc, self.r)


def _cup(
    k: _Ctx,
    w=0.42,
    h=0.6,
    taper=0.06,
    cy=0.54,
    handle=False,
    bail=False,
    ears=False,
    lip=False,
    plant=False,
    ribs=False,
    can=False,
    cork=False,
) -> None:
    cx = 0.45 if handle else 0.5
    x0, x1, y0, y1 = cx - w / 2, cx + w / 2, cy - h / 2, cy + h / 2
    ry = 0.03 + 0.06 * w
    k.m.poly([(x0, y0), (x1, y0), (x1 - taper, y1), (x0 + taper, y1)], _FILL)
    k.m.ellipse(cx, y1, w / 2 - taper, ry, _FILL)
    k.m.ellipse(cx, y0, w / 2, ry, _FILL)
    k.c.line([(x0 + 0.05, y0 + 0.08), (x0 + taper * 0.6 + 0.05, y1 - 0.05)], SHINE, 0.025)
    if can or cork:
        k.c.ellipse(cx, y0, w / 2 * 0.92, ry * 0.8, fill=SHINE, outline=SHADE, width=0.012)
    else:
        k.c.ellipse(cx, y0, w / 2 * 0.88, ry * 0.72, fill=(0, 0, 0, 120))
    if can:
        k.c.rect(x0, cy - 0.1, x1, cy + 0.12, fill=k.acc[:3] + (210,))
        k.c.ellipse(cx + 0.05, y0, 0.04, 0.015, fill=DEEP_SHADE)
        k.c.line([(x0, y1 - 0.06), (x1, y1 - 0.06)], SHADE, 0.012)
    if cork:
        k.c.ellipse(cx, y1, w / 2 - taper, ry, fill=(120, 20, 50, 170))
    if handle:
        k.m.ellipse(x1 + 0.04, cy - 0.02, 0.11, 0.14, outline=_FILL, width=0.06)
    if bail:
        k.o.arc(cx, y0, w / 2, w / 2 * 0.8, 180, 360, fill=INK, width=0.022)
        k.c.rect(x0, y0 + 0.12, x1, y0 + 0.16, fill=SHADE)
    if ears:
        k.m.rrect(x0 - 0.12, y0 + 0.04, x0 + 0.02, y0 + 0.1, 0.02, _FILL)
        k.m.rrect(x1 - 0.02, y0 + 0.04, x1 + 0.12, y0 + 0.1, 0.02, _FILL)
        k.o.ellipse(cx, y0 - 0.02, w / 2 * 0.95, ry, fill=_hsv(0, 0, 0.55, 255), outline=INK, width=0.012)
        k.o.circle(cx, y0 - ry - 0.03, 0.035, fill=INK)
    if lip:
        k.m.rect(x0 - 0.04, y0, x1 + 0.04, y0 + 0.1, _FILL)
        k.c.line([(x0 - 0.04, y0 + 0.1), (x1 + 0.04, y0 + 0.1)], DEEP_SHADE, 0.018)
    if plant:
        for dx, ang in ((-0.08, -60), (0.0, -90), (0.09, -118)):
            tip = (cx + dx + 0.2 * math.cos(math.radians(ang)), y0 - 0.01 + 0.2 * math.sin(math.radians(ang)))
            k.o.line([(cx + dx * 0.3, y0), tip], GREEN, 0.02)
            k.o.ellipse(tip[0], tip[1], 0.05, 0.03, fill=GREEN)
    if ribs:
        for i in range(4):
            y = y0 + 0.14 + i * 0.09
            k.c.line([(x0, y), (x1, y)], SHINE, 0.012)


def _vase(k: _Ctx) -> None:
    k.m.ellipse(0.5, 0.62, 0.25, 0.25, _FILL)
    k.m.poly([(0.41, 0.22), (0.59, 0.22), (0.62, 0.5), (0.38, 0.5)], _FILL)
    k.m.ellipse(0.5, 0.2, 0.13, 0.04, _FILL)
    k.c.ellipse(0.5, 0.2, 0.1, 0.025, fill=(0, 0, 0, 120))
    k.c.ellipse(0.5, 0.62, 0.25, 0.05, outline=k.acc[:3] + (220,), width=0.02)
    for ang, col in ((-100, (220, 60, 90, 255)), (-70, (250, 200, 50, 255))):
        tip = (0.5 + 0.18 * math.cos(math.radians(ang)), 0.18 + 0.16 * math.sin(math.radians(ang)))
        k.o.line([(0.5, 0.2), tip], GREEN, 0.018)
        k.o.circle(tip[0], tip[1], 0.045, fill=col)


def _bottle(k: _Ctx, body=0.34, ridges=False, label=False) -> None:
    x0, x1 = 0.5 - body / 2, 0.5 + body / 2
    k.m.rrect(x0, 0.38, x1, 0.9, 0.05, _FILL)
    k.m.poly([(x0, 0.42), (0.43, 0.25), (0.57, 0.25), (x1, 0.42)], _FILL)
    k.m.rect(0.43, 0.12, 0.57, 0.27, _FILL)
    k.o.rrect(0.42, 0.08, 0.58, 0.15, 0.015, fill=k.acc[:3] + (255,))
    k.c.line([(x0 + 0.05, 0.45), (x0 + 0.05, 0.84)], BRIGHT_SHINE, 0.025)
    if ridges:
        for i in range(5):
            k.c.line([(x0, 0.46 + 0.08 * i), (x1, 0.46 + 0.08 * i)], SHADE, 0.01)
    if label:
        k.c.rect(x0, 0.56, x1, 0.72, fill=(250, 250, 250, 230))
        k.c.line([(x0 + 0.05, 0.64), (x1 - 0.05, 0.64)], k.acc[:3] + (255,), 0.03)


def _teapot(k: _Ctx) -> None:
    k.m.ellipse(0.48, 0.6, 0.27, 0.22, _FILL)
    k.m.ellipse(0.48, 0.39, 0.16, 0.05, _FILL)
    k.m.circle(0.48, 0.32, 0.04, _FILL)
    k.m.poly([(0.68, 0.58), (0.72, 0.66), (0.9, 0.38), (0.86, 0.36)], _FILL)
    k.m.ellipse(0.2, 0.58, 0.1, 0.12, outline=_FILL, width=0.05)
    k.c.line([(0.33, 0.41), (0.63, 0.41)], DEEP_SHADE, 0.012)
    k.c.ellipse(0.48, 0.62, 0.27, 0.06, outline=k.acc[:3] + (230,), width=0.022)


def _bowl(k: _Ctx, w=0.74, depth=0.3, cy=0.42, foot=False, band=False) -> None:
    k.m.poly(_arc(0.5, cy, w / 2, depth, 0, 180), _FILL)
    k.m.ellipse(0.5, cy, w / 2, 0.07, _FILL)
    k.c.ellipse(0.5, cy, w / 2 * 0.9, 0.05, fill=(0, 0, 0, 110))
    if foot:
        k.m.rect(0.4, cy + depth - 0.02, 0.6, cy + depth + 0.05, _FILL)
    if band:
        k.c.line(_arc(0.5, cy, w / 2 * 0.98, depth * 0.6, 10, 170), k.acc[:3] + (235,), 0.03)


def _plate(k: _Ctx) -> None:
    k.m.ellipse(0.5, 0.52, 0.41, 0.27, _FILL)
    k.c.ellipse(0.5, 0.52, 0.27, 0.17, outline=SHADE, width=0.014)
    k.c.ellipse(0.5, 0.52, 0.36, 0.235, outline=k.acc[:3] + (230,), width=0.018)
    k.c.ellipse(0.5, 0.52, 0.27, 0.17, fill=(255, 255, 255, 40))


def _mirror(k: _Ctx) -> None:
    k.m.ellipse(0.5, 0.45, 0.25, 0.34, _FILL)
    k.o.ellipse(0.5, 0.45, 0.27, 0.36, outline=(150, 100, 50, 255), width=0.05)
    k.o.poly([(0.46, 0.8), (0.54, 0.8), (0.62, 0.9), (0.38, 0.9)], (150, 100, 50, 255))
    k.c.line([(0.34, 0.4), (0.48, 0.22)], BRIGHT_SHINE, 0.03)
    k.c.line([(0.4, 0.5), (0.56, 0.28)], BRIGHT_SHINE, 0.018)


def _pane(k: _Ctx) -> None:
    k.m.rect(0.16, 0.14, 0.84, 0.86, _FILL)
    white = (246, 246, 240, 255)
    k.o.rect(0.16, 0.14, 0.84, 0.86, outline=white, width=0.05)
    k.o.line([(0.5, 0.14), (0.5, 0.86)], white, 0.035)
    k.o.line([(0.16, 0.5), (0.84, 0.5)], white, 0.035)
    k.c.line([(0.22, 0.32), (0.34, 0.2)], BRIGHT_SHINE, 0.025)
    k.c.line([(0.58, 0.72), (0.72, 0.58)], BRIGHT_SHINE, 0.025)


def _tile(k: _Ctx) -> None:
    k.m.rect(0.2, 0.2, 0.8, 0.8, _FILL)
    acc = k.acc[:3] + (235,)
    k.c.poly([(0.5, 0.27), (0.73, 0.5), (0.5, 0.73), (0.27, 0.5)], outline=acc, width=0.025)
    k.c.circle(0.5, 0.5, 0.06, fill=acc)
    for x, y in ((0.2, 0.2), (0.8, 0.2), (0.2, 0.8), (0.8, 0.8)):
        k.c.circle(x, y, 0.1, fill=(255, 255, 255, 150))
    k.o.rect(0.2, 0.2, 0.8, 0.8, outline=(235, 235, 230, 255), width=0.02)


def _figure(k: _Ctx, kind="doll") -> None:
    if kind == "doll":
        k.m.circle(0.5, 0.24, 0.1, _FILL)
        k.m.poly([(0.44, 0.33), (0.56, 0.33), (0.7, 0.8), (0.3, 0.8)], _FILL)
        k.m.line([(0.44, 0.4), (0.31, 0.58)], _FILL, 0.05)
        k.m.line([(0.56, 0.4), (0.69, 0.58)], _FILL, 0.05)
        k.m.rect(0.43, 0.78, 0.47, 0.9, _FILL)
        k.m.rect(0.53, 0.78, 0.57, 0.9, _FILL)
        k.c.poly(_arc(0.5, 0.24, 0.11, 0.11, 180, 360), (110, 70, 40, 255))
        k.c.circle(0.46, 0.26, 0.012, INK)
        k.c.circle(0.54, 0.26, 0.012, INK)
        k.c.rect(0.3, 0.68, 0.7, 0.8, fill=k.acc[:3] + (220,))
    elif kind == "bear":
        for x in (0.36, 0.64):
            k.m.circle(x, 0.17, 0.065, _FILL)
            k.m.circle(x - 0.01 if x < 0.5 else x + 0.01, 0.84, 0.085, _FILL)
        k.m.circle(0.5, 0.3, 0.15, _FILL)
        k.m.ellipse(0.5, 0.63, 0.2, 0.23, _FILL)
        k.m.ellipse(0.29, 0.55, 0.07, 0.12, _FILL)
        k.m.ellipse(0.71, 0.55, 0.07, 0.12, _FILL)
        k.c.ellipse(0.5, 0.35, 0.065, 0.05, fill=BRIGHT_SHINE)
        k.c.circle(0.5, 0.33, 0.022, INK)
        k.c.circle(0.44, 0.26, 0.016, INK)
        k.c.circle(0.56, 0.26, 0.016, INK)
        k.c.ellipse(0.5, 0.65, 0.11, 0.13, fill=SHINE)
        k.o.poly([(0.5, 0.45), (0.4, 0.41), (0.4, 0.5)], k.acc[:3] + (255,))
        k.o.poly([(0.5, 0.45), (0.6, 0.41), (0.6, 0.5)], k.acc[:3] + (255,))
    elif kind == "statue":
        k.m.rect(0.3, 0.76, 0.7, 0.9, _FILL)
        k.m.circle(0.5, 0.2, 0.08, _FILL)
        k.m.poly([(0.37, 0.31), (0.63, 0.31), (0.59, 0.56), (0.41, 0.56)], _FILL)
        k.m.rect(0.41, 0.55, 0.48, 0.77, _FILL)
        k.m.rect(0.52, 0.55, 0.59, 0.77, _FILL)
        k.m.line([(0.61, 0.34), (0.74, 0.13)], _FILL, 0.05)
        k.m.line([(0.39, 0.34), (0.32, 0.54)], _FILL, 0.05)
        k.c.line([(0.3, 0.76), (0.7, 0.76)], DEEP_SHADE, 0.016)
        k.c.line([(0.3, 0.8), (0.7, 0.8)], SHINE, 0.012)
    else:  # gingerbread-like clay figure
        k.m.circle(0.5, 0.24, 0.12, _FILL)
        k.m.ellipse(0.5, 0.55, 0.14, 0.2, _FILL)
        k.m.line([(0.24, 0.44), (0.76, 0.44)], _FILL, 0.1)
        k.m.line([(0.44, 0.62), (0.33, 0.86)], _FILL, 0.1)
        k.m.line([(0.56, 0.62), (0.67, 0.86)], _FILL, 0.1)
        k.c.circle(0.45, 0.22, 0.018, INK)
        k.c.circle(0.55, 0.22, 0.018, INK)
        k.c.arc(0.5, 0.26, 0.06, 0.04, 20, 160, INK, 0.015)
        for y in (0.48, 0.58):
            k.c.circle(0.5, y, 0.022, k.acc[:3] + (255,))


def _duck(k: _Ctx) -> None:
    k.m.ellipse(0.46, 0.64, 0.3, 0.18, _FILL)
    k.m.poly([(0.16, 0.62), (0.14, 0.42), (0.3, 0.56)], _FILL)
    k.m.circle(0.64, 0.36, 0.13, _FILL)
    k.o.poly([(0.74, 0.35), (0.9, 0.39), (0.74, 0.44)], (245, 140, 30, 255))
    k.c.circle(0.67, 0.32, 0.02, INK)
    k.c.arc(0.44, 0.6, 0.16, 0.09, 20, 160, DEEP_SHADE, 0.02)


def _swan(k: _Ctx) -> None:
    k.m.rect(0.24, 0.8, 0.76, 0.88, _FILL)
    k.m.ellipse(0.45, 0.68, 0.28, 0.13, _FILL)
    k.m.line([(0.62, 0.66), (0.7, 0.5), (0.72, 0.38), (0.66, 0.26), (0.58, 0.22)], _FILL, 0.07)
    k.m.circle(0.58, 0.21, 0.06, _FILL)
    k.m.poly([(0.53, 0.19), (0.42, 0.24), (0.53, 0.25)], _FILL)
    k.c.arc(0.42, 0.64, 0.18, 0.08, 190, 340, SHADE, 0.018)
    k.c.line([(0.24, 0.8), (0.76, 0.8)], DEEP_SHADE, 0.014)


def _bunny(k: _Ctx) -> None:
    k.m.ellipse(0.5, 0.66, 0.22, 0.23, _FILL)
    k.m.circle(0.5, 0.36, 0.13, _FILL)
    k.m.poly(_ell(0.43, 0.14, 0.045, 0.13), _FILL)
    k.m.poly(_ell(0.58, 0.13, 0.045, 0.13), _FILL)
    k.c.ellipse(0.43, 0.15, 0.02, 0.09, fill=SHINE)
    k.c.ellipse(0.58, 0.14, 0.02, 0.09, fill=SHINE)
    k.c.circle(0.46, 0.34, 0.016, INK)
    k.c.circle(0.55, 0.34, 0.016, INK)
    k.o.poly([(0.5, 0.49), (0.38, 0.44), (0.38, 0.54)], k.acc[:3] + (255,))
    k.o.poly([(0.5, 0.49), (0.62, 0.44), (0.62, 0.54)], k.acc[:3] + (255,))


def _box(
    k: _Ctx,
    w=0.46,
    h=0.4,
    d=0.12,
    sleeve=False,
    letter=False,
    tape=False,
    label=False,
    wrapper=False,
    scrub=False,
    shine=False,
) -> None:
    x0, y0 = 0.5 - (w + d) / 2, 0.5 - (h - d) / 2
    x1, y1 = x0 + w, y0 + h
    front = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    top = [(x0, y0), (x0 + d, y0 - d), (x1 + d, y0 - d), (x1, y0)]
    side = [(x1, y0), (x1 + d, y0 - d), (x1 + d, y1 - d), (x1, y1)]
    for p in (front, top, side):
        k.m.poly(p, _FILL)
    k.c.poly(top, fill=SHINE)
    k.c.poly(side, fill=SHADE)
    if sleeve:
        f = x0 + 0.6 * w
        k.c.poly([(x0, y0), (f, y0), (f, y1), (x0, y1)], fill=k.acc[:3] + (235,))
        k.c.poly([(x0, y0), (x0 + d, y0 - d), (f + d, y0 - d), (f, y0)], fill=k.acc[:3] + (200,))
    if letter:
        acc = k.acc[:3] + (240,)
        cx = (x0 + x1) / 2
        k.c.line([(cx - 0.1, y1 - 0.07), (cx, y0 + 0.07), (cx + 0.1, y1 - 0.07)], acc, 0.04)
        k.c.line([(cx - 0.05, (y0 + y1) / 2 + 0.04), (cx + 0.05, (y0 + y1) / 2 + 0.04)], acc, 0.035)
    if tape:
        cx = (x0 + x1) / 2
        tape_c = (215, 185, 125, 220)
        k.c.poly([(cx - 0.035, y0), (cx + 0.035, y0), (cx + 0.035 + d, y0 - d), (cx - 0.035 + d, y0 - d)], tape_c)
        k.c.rect(cx - 0.035, y0, cx + 0.035, y0 + 0.14, fill=tape_c)
        k.c.line([(x0 + 0.04, y1 - 0.07), (x0 + 0.16, y1 - 0.07)], DEEP_SHADE, 0.015)
    if label:
        k.c.rrect(x0 + 0.04, y0 + 0.06, x1 - 0.04, y1 - 0.06, 0.03, fill=k.acc[:3] + (230,))
        k.c.ellipse((x0 + x1) / 2, y1 - 0.17, 0.09, 0.05, fill=(250, 250, 250, 255))
        k.c.line([(x0 + 0.07, y0 + 0.14), (x1 - 0.07, y0 + 0.14)], (255, 255, 255, 255), 0.035)
    if wrapper:
        f = x0 + 0.45 * w
        k.c.poly([(x0, y0), (f, y0), (f, y1), (x0, y1)], fill=k.acc[:3] + (240,))
        k.c.poly([(x0, y0), (x0 + d, y0 - d), (f + d, y0 - d), (f, y0)], fill=k.acc[:3] + (210,))
        k.c.line([(f, y0), (f, y1)], (230, 230, 235, 255), 0.02)
    if scrub:
        green = (60, 150, 70, 240)
        k.c.poly(top, fill=green)
        k.c.rect(x0, y0, x1, y0 + 0.07, fill=green)
        k.c.poly([(x1, y0), (x1 + d, y0 - d), (x1 + d, y0 - d + 0.07), (x1, y0 + 0.07)], (40, 110, 50, 240))
    if shine:
        k.c.line([(x0 + 0.05, y1 - 0.08), (x0 + 0.15, y0 + 0.05)], BRIGHT_SHINE, 0.025)


def _book(k: _Ctx, spiral=False) -> None:
    if spiral:  # a closed notebook with spiral rings
        k.m.rect(0.24, 0.18, 0.76, 0.86, _FILL)
        k.c.rect(0.24, 0.18, 0.76, 0.3, fill=k.acc[:3] + (220,))
        for i in range(7):
            x = 0.29 + i * 0.07
            k.o.ellipse(x, 0.18, 0.018, 0.04, outline=INK, width=0.012)
        return
    k.m.poly([(0.12, 0.3), (0.5, 0.36), (0.5, 0.8), (0.12, 0.74)], _FILL)
    k.m.poly([(0.5, 0.36), (0.88, 0.3), (0.88, 0.74), (0.5, 0.8)], _FILL)
    cover = k.acc[:3] + (255,)
    k.o.poly([(0.1, 0.74), (0.5, 0.8), (0.9, 0.74), (0.9, 0.78), (0.5, 0.85), (0.1, 0.78)], cover)
    k.c.line([(0.5, 0.36), (0.5, 0.8)], DEEP_SHADE, 0.015)
    for i in range(5):
        y = 0.42 + i * 0.065
        k.c.line([(0.17, y - 0.03), (0.45, y + 0.01)], (60, 60, 70, 200), 0.012)
        k.c.line([(0.55, y + 0.01), (0.83, y - 0.03)], (60, 60, 70, 200), 0.012)


def _newspaper(k: _Ctx) -> None:
    k.m.rect(0.2, 0.14, 0.8, 0.86, _FILL)
    k.c.rect(0.25, 0.19, 0.75, 0.27, fill=(30, 30, 35, 235))
    k.c.rect(0.25, 0.32, 0.48, 0.52, fill=(120, 120, 130, 220))
    for col_x in (0.25, 0.52):
        for i in range(7):
            y = (0.34 if col_x > 0.5 else 0.57) + i * 0.04
            if y < 0.82:
                k.c.line([(col_x, y), (col_x + 0.22, y)], (70, 70, 80, 200), 0.012)
    k.c.line([(0.5, 0.14), (0.5, 0.86)], SHADE, 0.01)


def _napkin(k: _Ctx) -> None:
    k.m.poly([(0.18, 0.24), (0.82, 0.24), (0.82, 0.8), (0.18, 0.8)], _FILL)
    k.c.poly([(0.18, 0.24), (0.82, 0.24), (0.18, 0.8)], fill=SHINE)
    k.c.line([(0.82, 0.24), (0.18, 0.8)], DEEP_SHADE, 0.014)
    k.c.rect(0.23, 0.29, 0.77, 0.75, outline=k.acc[:3] + (230,), width=0.015)


def _bag(k: _Ctx, kind="paper") -> None:
    if kind == "paper":
        k.m.rect(0.26, 0.3, 0.74, 0.86, _FILL)
        zig = [(0.26 + i * 0.04, 0.3 - (0.03 if i % 2 else 0.0)) for i in range(13)]
        k.m.poly(zig + [(0.74, 0.32), (0.26, 0.32)], _FILL)
        k.c.line([(0.32, 0.34), (0.32, 0.86)], SHADE, 0.012)
        k.c.line([(0.68, 0.34), (0.68, 0.86)], SHADE, 0.012)
        k.c.rect(0.26, 0.3, 0.74, 0.4, fill=SHADE)
    else:
        k.m.poly([(0.24, 0.36), (0.76, 0.36), (0.8, 0.86), (0.2, 0.86)], _FILL)
        for cx in (0.36, 0.64):
            k.m.rect(cx - 0.1, 0.16, cx + 0.1, 0.37, _FILL)
            k.m.ellipse(cx, 0.25, 0.05, 0.06, 0)
        k.m.rect(0.44, 0.14, 0.56, 0.36, 0)
        for i in range(3):
            k.c.line([(0.3 + i * 0.14, 0.45), (0.34 + i * 0.14, 0.8)], SHINE, 0.015)
        k.c.rect(0.34, 0.55, 0.66, 0.68, fill=k.acc[:3] + (200,))


def _plane(k: _Ctx) -> None:
    k.m.poly([(0.1, 0.56), (0.9, 0.28), (0.46, 0.62)], _FILL)
    k.m.poly([(0.46, 0.62), (0.9, 0.28), (0.4, 0.78)], _FILL)
    k.c.poly([(0.46, 0.62), (0.9, 0.28), (0.4, 0.78)], fill=SHADE)
    k.c.line([(0.9, 0.28), (0.44, 0.68)], DEEP_SHADE, 0.014)
    k.o.line([(0.06, 0.7), (0.24, 0.66)], GREY, 0.012)
    k.o.line([(0.08, 0.78), (0.28, 0.74)], GREY, 0.012)


def _car(k: _Ctx) -> None:
    k.m.rrect(0.1, 0.46, 0.9, 0.7, 0.05, _FILL)
    k.m.poly([(0.28, 0.47), (0.37, 0.28), (0.64, 0.28), (0.75, 0.47)], _FILL)
    k.c.poly([(0.33, 0.46), (0.4, 0.32), (0.49, 0.32), (0.49, 0.46)], (190, 225, 245, 240))
    k.c.poly([(0.53, 0.46), (0.53, 0.32), (0.62, 0.32), (0.7, 0.46)], (190, 225, 245, 240))
    k.c.circle(0.87, 0.54, 0.025, (255, 230, 90, 255))
    for x in (0.3, 0.7):
        k.o.circle(x, 0.71, 0.095, INK)
        k.o.circle(x, 0.71, 0.04, GREY)


def _axis_rect(u0, u1, v0, v1) -> list[tuple[float, float]]:
    """A rectangle along the local axis through the centre (u along, v across)."""
    return [(0.5 + u0, 0.5 + v0), (0.5 + u1, 0.5 + v0), (0.5 + u1, 0.5 + v1), (0.5 + u0, 0.5 + v1)]


def _spoon(k: _Ctx, width=0.05, head=0.1, long=False) -> None:
    k = k.rotated(-40)
    start = -0.46 if long else -0.4
    k.m.poly(_axis_rect(start, 0.12, -width / 2, width / 2), _FILL)
    k.m.ellipse(0.5 + 0.26, 0.5, head * 1.6, head, _FILL)
    k.c.ellipse(0.5 + 0.27, 0.5, head * 1.25, head * 0.7, fill=SHADE)
    k.c.line([(0.5 + start + 0.04, 0.5 - width / 4), (0.5 + 0.08, 0.5 - width / 4)], BRIGHT_SHINE, 0.012)


def _fork(k: _Ctx) -> None:
    k = k.rotated(-40)
    k.m.poly(_axis_rect(-0.42, 0.06, -0.03, 0.03), _FILL)
    k.m.poly([(0.56, 0.47), (0.64, 0.41), (0.64, 0.59), (0.56, 0.53)], _FILL)
    for i in range(4):
        v = -0.08 + i * 0.053
        k.m.poly(_axis_rect(0.13, 0.42, v - 0.014, v + 0.014), _FILL)
    k.c.line([(0.12, 0.49), (0.54, 0.49)], BRIGHT_SHINE, 0.012)


def _knife(k: _Ctx) -> None:
    k = k.rotated(-35)
    k.m.poly(_axis_rect(-0.44, -0.08, -0.045, 0.045), _FILL)
    k.m.poly([(0.42, 0.45), (0.94, 0.45), (0.8, 0.53), (0.42, 0.56)], _FILL)
    k.c.poly(_axis_rect(-0.44, -0.08, -0.045, 0.045), (35, 30, 30, 240))
    for u in (-0.36, -0.24, -0.14):
        k.c.circle(0.5 + u, 0.5, 0.013, BRIGHT_SHINE)
    k.c.line([(0.46, 0.53), (0.82, 0.515)], BRIGHT_SHINE, 0.01)


def _comb(k: _Ctx) -> None:
    k = k.rotated(-15)
    k.m.rrect(0.12, 0.34, 0.88, 0.44, 0.03, _FILL)
    for i in range(17):
        x = 0.15 + i * 0.043
        k.m.rect(x, 0.43, x + 0.022, 0.66 if i % 2 == 0 else 0.62, _FILL)
    k.c.line([(0.15, 0.37), (0.85, 0.37)], SHINE, 0.012)


def _pencil(k: _Ctx, crayon=False) -> None:
    k = k.rotated(-35)
    v = 0.08 if crayon else 0.055
    k.m.poly(_axis_rect(-0.38, 0.2, -v, v), _FILL)
    if crayon:
        k.m.poly([(0.7, 0.5 - v), (0.84, 0.5 - 0.03), (0.84, 0.5 + 0.03), (0.7, 0.5 + v)], _FILL)
        k.c.poly(_axis_rect(-0.38, 0.2, -v, v), k.acc[:3] + (150,))
        k.c.poly(_axis_rect(-0.3, 0.1, -v, v), (255, 255, 255, 150))
        k.c.line([(0.2, 0.5 - v), (0.2, 0.5 + v)], DEEP_SHADE, 0.014)
        k.c.line([(0.6, 0.5 - v), (0.6, 0.5 + v)], DEEP_SHADE, 0.014)
    else:
        k.m.poly([(0.7, 0.5 - v), (0.9, 0.5), (0.7, 0.5 + v)], _FILL)
        k.c.poly(_axis_rect(-0.38, 0.2, -v, v), k.acc[:3] + (170,))
        k.c.poly([(0.84, 0.5 - 0.018), (0.9, 0.5), (0.84, 0.5 + 0.018)], (30, 30, 30, 255))
        k.c.line([(0.12, 0.5), (0.7, 0.5)], SHADE, 0.012)
        k.o.poly(_axis_rect(-0.46, -0.39, -v, v), (240, 140, 160, 255))
        k.o.poly(_axis_rect(-0.4, -0.34, -v - 0.005, v + 0.005), (185, 185, 192, 255))


def _nail(k: _Ctx) -> None:
    k = k.rotated(50)
    k.m.poly(_axis_rect(-0.42, -0.37, -0.1, 0.1), _FILL)
    k.m.poly(_axis_rect(-0.38, 0.32, -0.03, 0.03), _FILL)
    k.m.poly([(0.82, 0.47), (0.94, 0.5), (0.82, 0.53)], _FILL)
    k.c.line([(0.14, 0.485), (0.8, 0.485)], BRIGHT_SHINE, 0.01)


def _bat(k: _Ctx) -> None:
    k = k.rotated(-35)
    k.m.ellipse(0.08, 0.5, 0.03, 0.05, _FILL)
    k.m.poly(
        [
            (0.08, 0.475),
            (0.42, 0.47),
            (0.7, 0.425),
            (0.92, 0.425),
            (0.92, 0.575),
            (0.7, 0.575),
            (0.42, 0.53),
            (0.08, 0.525),
        ],
        _FILL,
    )
    k.m.ellipse(0.92, 0.5, 0.03, 0.075, _FILL)
    for i in range(6):
        u = 0.12 + i * 0.035
        k.c.line([(u, 0.47), (u + 0.02, 0.53)], DEEP_SHADE, 0.012)
    k.c.line([(0.5, 0.47), (0.9, 0.44)], SHINE, 0.015)


def _log(k: _Ctx) -> None:
    k.m.rect(0.14, 0.36, 0.78, 0.66, _FILL)
    k.m.ellipse(0.14, 0.51, 0.06, 0.15, _FILL)
    k.m.ellipse(0.78, 0.51, 0.08, 0.15, _FILL)
    k.m.poly([(0.36, 0.37), (0.4, 0.22), (0.46, 0.22), (0.46, 0.37)], _FILL)
    for y in (0.42, 0.5, 0.58):
        k.c.line([(0.16, y), (0.7, y + 0.01)], DEEP_SHADE, 0.012)
    k.c.ellipse(0.78, 0.51, 0.08, 0.15, fill=(235, 200, 150, 240))
    for f in (0.3, 0.6, 0.9):
        k.c.ellipse(0.78, 0.51, 0.08 * f, 0.15 * f, outline=(140, 90, 50, 255), width=0.01)


def _icicle(k: _Ctx) -> None:
    k.m.rrect(0.16, 0.1, 0.84, 0.2, 0.03, _FILL)
    k.m.poly([(0.38, 0.18), (0.62, 0.18), (0.5, 0.88)], _FILL)
    k.m.poly([(0.2, 0.18), (0.36, 0.18), (0.28, 0.56)], _FILL)
    k.m.poly([(0.64, 0.18), (0.8, 0.18), (0.72, 0.66)], _FILL)
    k.o.ellipse(0.5, 0.94, 0.02, 0.03, fill=(140, 190, 235, 255))
    k.c.line([(0.46, 0.22), (0.5, 0.7)], BRIGHT_SHINE, 0.015)


def _candle(k: _Ctx) -> None:
    k.m.rect(0.38, 0.36, 0.62, 0.86, _FILL)
    k.m.ellipse(0.5, 0.36, 0.12, 0.035, _FILL)
    k.m.ellipse(0.5, 0.86, 0.12, 0.035, _FILL)
    k.c.ellipse(0.5, 0.36, 0.1, 0.025, fill=SHINE)
    k.c.poly([(0.38, 0.36), (0.42, 0.36), (0.42, 0.5), (0.4, 0.52), (0.38, 0.5)], BRIGHT_SHINE)
    k.o.line([(0.5, 0.36), (0.5, 0.3)], INK, 0.012)
    k.o.poly([(0.5, 0.1), (0.55, 0.22), (0.53, 0.29), (0.47, 0.29), (0.45, 0.22)], (245, 130, 30, 255))
    k.o.poly([(0.5, 0.17), (0.52, 0.24), (0.5, 0.28), (0.48, 0.24)], (255, 230, 90, 255))
    k.o.ellipse(0.5, 0.9, 0.2, 0.04, fill=k.acc[:3] + (255,))


def _board(k: _Ctx) -> None:
    k.m.rect(0.14, 0.2, 0.86, 0.8, _FILL)
    k.o.rect(0.14, 0.2, 0.86, 0.8, outline=(120, 76, 40, 255), width=0.05)
    for x, y, rot in ((0.3, 0.38, 0), (0.58, 0.34, 1), (0.42, 0.6, 2)):
        k.c.rect(
            x - 0.08, y - 0.07, x + 0.08, y + 0.08, fill=(250, 250, 235, 240) if rot != 1 else (250, 235, 120, 240)
        )
        k.c.line([(x - 0.05, y + 0.0), (x + 0.05, y + 0.0)], DEEP_SHADE, 0.01)
        k.c.line([(x - 0.05, y + 0.035), (x + 0.04, y + 0.035)], DEEP_SHADE, 0.01)
        k.c.circle(x, y - 0.05, 0.018, k.acc[:3] + (255,))
    k.c.circle(0.72, 0.62, 0.02, (200, 40, 40, 255))


def _pan(k: _Ctx) -> None:
    k.m.ellipse(0.4, 0.56, 0.3, 0.2, _FILL)
    k.m.poly([(0.66, 0.5), (0.94, 0.44), (0.95, 0.5), (0.68, 0.58)], _FILL)
    k.m.circle(0.9, 0.47, 0.014, 0)
    k.c.ellipse(0.4, 0.54, 0.25, 0.15, fill=(0, 0, 0, 120))
    k.c.ellipse(0.33, 0.5, 0.08, 0.04, fill=(255, 255, 255, 50))


def _gate(k: _Ctx) -> None:
    for i in range(7):
        x = 0.2 + i * 0.1
        k.m.rect(x - 0.018, 0.22, x + 0.018, 0.86, _FILL)
        k.m.poly([(x - 0.035, 0.23), (x, 0.13), (x + 0.035, 0.23)], _FILL)
    k.m.rect(0.16, 0.34, 0.84, 0.38, _FILL)
    k.m.rect(0.16, 0.74, 0.84, 0.78, _FILL)
    k.m.line(_arc(0.5, 0.36, 0.3, 0.1, 180, 360), _FILL, 0.025)


def _horseshoe(k: _Ctx) -> None:
    k.m.line(_arc(0.5, 0.46, 0.26, 0.3, 135, 405, 30), _FILL, 0.11)
    for a in range(160, 400, 40):
        x = 0.5 + 0.26 * math.cos(math.radians(a))
        y = 0.46 + 0.3 * math.sin(math.radians(a))
        k.c.circle(x, y, 0.016, DEEP_SHADE)


def _clip(k: _Ctx) -> None:
    k = k.rotated(25)
    path = (
        [(0.42, 0.64), (0.42, 0.3)]
        + _arc(0.5, 0.3, 0.08, 0.08, 180, 360, 10)
        + [(0.58, 0.3), (0.58, 0.74)]
        + _arc(0.47, 0.74, 0.11, 0.1, 0, 180, 10)
        + [(0.36, 0.74), (0.36, 0.22)]
        + _arc(0.51, 0.22, 0.15, 0.12, 180, 360, 12)
        + [(0.66, 0.22), (0.66, 0.66)]
    )
    k.m.line(path, _FILL, 0.035)


def _wrench(k: _Ctx) -> None:
    k = k.rotated(-35)
    k.m.poly(_axis_rect(-0.3, 0.3, -0.045, 0.045), _FILL)
    k.m.circle(0.88, 0.5, 0.11, _FILL)
    k.m.rect(0.88, 0.45, 1.0, 0.55, 0)
    k.m.circle(0.13, 0.5, 0.09, _FILL)
    k.m.poly(_ell(0.13, 0.5, 0.045, 0.045, 6), 0)
    k.c.line([(0.25, 0.5), (0.75, 0.5)], SHINE, 0.015)


def _wire(k: _Ctx) -> None:
    k.m.line([(0.06, 0.6), (0.24, 0.6)], _FILL, 0.03)
    k.m.line([(0.76, 0.4), (0.94, 0.4)], _FILL, 0.03)
    for i in range(8):
        k.m.ellipse(0.27 + i * 0.065, 0.5, 0.05, 0.17, outline=_FILL, width=0.028, n=24)
    k.o.poly(_axis_rect(-0.48, -0.42, 0.07, 0.13), (30, 30, 30, 255))


def _coin(k: _Ctx) -> None:
    k.m.circle(0.5, 0.5, 0.3, _FILL)
    k.c.circle(0.5, 0.5, 0.25, outline=DEEP_SHADE, width=0.014)
    k.c.ellipse(0.5, 0.47, 0.08, 0.1, outline=BRIGHT_SHINE, width=0.02)
    k.c.line([(0.42, 0.62), (0.58, 0.62)], BRIGHT_SHINE, 0.02)
    for i in range(24):
        a = 2 * math.pi * i / 24
        k.c.line(
            [(0.5 + 0.27 * math.cos(a), 0.5 + 0.27 * math.sin(a)), (0.5 + 0.3 * math.cos(a), 0.5 + 0.3 * math.sin(a))],
            SHADE,
            0.01,
        )


def _ring(k: _Ctx, kind="ring") -> None:
    if kind == "ring":
        k.m.ellipse(0.5, 0.58, 0.24, 0.24, outline=_FILL, width=0.07)
        k.o.poly([(0.5, 0.24), (0.58, 0.32), (0.5, 0.4), (0.42, 0.32)], k.acc[:3] + (255,))
        k.o.poly([(0.5, 0.26), (0.54, 0.32), (0.5, 0.36)], (255, 255, 255, 200))
        k.c.arc(0.5, 0.58, 0.2, 0.2, 120, 220, BRIGHT_SHINE, 0.015)
    else:
        pts = [
            (0.5 + (0.33 + 0.02 * math.sin(3 * a)) * math.cos(a), 0.5 + (0.22 + 0.02 * math.cos(2 * a)) * math.sin(a))
            for a in (2 * math.pi * i / 40 for i in range(40))
        ]
        k.m.poly(pts, outline=_FILL, width=0.035)


def _necklace(k: _Ctx) -> None:
    for i in range(23):
        t = math.pi * i / 22
        k.m.circle(0.5 + 0.3 * math.cos(t), 0.26 + 0.42 * math.sin(t), 0.026, _FILL)
    k.m.poly([(0.5, 0.7), (0.58, 0.8), (0.5, 0.92), (0.42, 0.8)], _FILL)
    k.c.circle(0.5, 0.81, 0.04, k.acc[:3] + (255,))


def _foil(k: _Ctx) -> None:
    r = random.Random(_hash("foil-shape", k.acc))
    pts = []
    for i in range(36):
        a = 2 * math.pi * i / 36
        rad = 0.36 / max(abs(math.cos(a)), abs(math.sin(a))) ** 0.5 * 0.8 + r.uniform(-0.04, 0.03)
        pts.append((0.5 + rad * math.cos(a), 0.5 + rad * math.sin(a)))
    k.m.poly(pts, _FILL)
    for _ in range(14):
        x, y = r.uniform(0.2, 0.8), r.uniform(0.2, 0.8)
        k.c.line(
            [(x, y), (x + r.uniform(-0.15, 0.15), y + r.uniform(-0.15, 0.15))],
            r.choice((BRIGHT_SHINE, DEEP_SHADE)),
            0.012,
        )


def _ladder(k: _Ctx) -> None:
    k = k.rotated(12)
    k.m.poly([(0.3, 0.9), (0.37, 0.9), (0.42, 0.1), (0.38, 0.1)], _FILL)
    k.m.poly([(0.63, 0.9), (0.7, 0.9), (0.62, 0.1), (0.58, 0.1)], _FILL)
    for i in range(6):
        y = 0.2 + i * 0.13
        k.m.rect(0.36, y, 0.64, y + 0.03, _FILL)
    k.c.line([(0.33, 0.88), (0.39, 0.14)], BRIGHT_SHINE, 0.01)


def _chair(k: _Ctx) -> None:
    k.m.rect(0.3, 0.12, 0.36, 0.56, _FILL)
    k.m.rect(0.64, 0.12, 0.7, 0.56, _FILL)
    k.m.rect(0.3, 0.14, 0.7, 0.22, _FILL)
    k.m.rect(0.3, 0.3, 0.7, 0.35, _FILL)
    k.m.poly([(0.26, 0.52), (0.74, 0.52), (0.78, 0.6), (0.22, 0.6)], _FILL)
    for x0 in (0.24, 0.7):
        k.m.rect(x0, 0.6, x0 + 0.06, 0.9, _FILL)
    for x0 in (0.32, 0.62):
        k.m.rect(x0, 0.6, x0 + 0.05, 0.8, _FILL)
    k.c.rect(0.22, 0.56, 0.78, 0.6, fill=SHADE)


def _table(k: _Ctx) -> None:
    k.m.poly([(0.18, 0.26), (0.82, 0.26), (0.92, 0.36), (0.08, 0.36)], _FILL)
    k.m.rect(0.08, 0.36, 0.92, 0.42, _FILL)
    for x0 in (0.12, 0.8):
        k.m.rect(x0, 0.42, x0 + 0.07, 0.86, _FILL)
    for x0 in (0.24, 0.7):
        k.m.rect(x0, 0.4, x0 + 0.05, 0.72, _FILL)
    k.c.rect(0.08, 0.36, 0.92, 0.42, fill=SHADE)
    k.c.poly([(0.18, 0.26), (0.82, 0.26), (0.92, 0.36), (0.08, 0.36)], fill=SHINE)


def _bench(k: _Ctx) -> None:
    k.m.poly([(0.16, 0.32), (0.84, 0.32), (0.92, 0.42), (0.08, 0.42)], _FILL)
    k.m.rect(0.08, 0.42, 0.92, 0.54, _FILL)
    k.m.rect(0.16, 0.54, 0.32, 0.84, _FILL)
    k.m.rect(0.68, 0.54, 0.84, 0.84, _FILL)
    k.c.poly([(0.16, 0.32), (0.84, 0.32), (0.92, 0.42), (0.08, 0.42)], fill=SHINE)
    k.c.rect(0.08, 0.5, 0.92, 0.54, fill=DEEP_SHADE)
    k.c.rect(0.16, 0.54, 0.32, 0.6, fill=SHADE)
    k.c.rect(0.68, 0.54, 0.84, 0.6, fill=SHADE)


def _shirt(k: _Ctx, kind="shirt") -> None:
    long = kind != "shirt"
    sleeve = (
        [(0.3, 0.2), (0.1, 0.76), (0.22, 0.8), (0.32, 0.42)]
        if long
        else [(0.3, 0.2), (0.1, 0.4), (0.2, 0.5), (0.3, 0.4)]
    )
    k.m.poly([(0.3, 0.18), (0.42, 0.14), (0.58, 0.14), (0.7, 0.18), (0.7, 0.86), (0.3, 0.86)], _FILL)
    k.m.poly(sleeve, _FILL)
    k.m.poly([(1 - x, y) for x, y in sleeve], _FILL)
    if kind == "shirt":
        k.c.poly([(0.42, 0.14), (0.5, 0.26), (0.58, 0.14)], DEEP_SHADE)
        for i in range(5):
            k.c.circle(0.5, 0.32 + i * 0.11, 0.014, INK)
        k.c.rect(0.56, 0.34, 0.65, 0.43, outline=SHADE, width=0.01)
    elif kind == "sweater":
        k.c.ellipse(0.5, 0.15, 0.09, 0.04, fill=DEEP_SHADE)
        k.c.rect(0.3, 0.78, 0.7, 0.86, fill=SHADE)
        k.c.rect(0.3, 0.42, 0.7, 0.5, fill=(245, 245, 240, 220))
        for x in range(7):
            k.c.circle(0.33 + x * 0.057, 0.46, 0.012, k.acc[:3] + (255,))
    else:  # jacket
        k.c.poly([(0.42, 0.14), (0.5, 0.36), (0.38, 0.3)], DEEP_SHADE)
        k.c.poly([(0.58, 0.14), (0.5, 0.36), (0.62, 0.3)], DEEP_SHADE)
        k.o.line([(0.5, 0.36), (0.5, 0.86)], (200, 200, 208, 255), 0.018)
        k.c.line([(0.34, 0.6), (0.44, 0.58)], DEEP_SHADE, 0.012)
        k.c.line([(0.56, 0.58), (0.66, 0.6)], DEEP_SHADE, 0.012)


def _sock(k: _Ctx) -> None:
    pts = [
        (0.36, 0.12),
        (0.58, 0.12),
        (0.58, 0.54),
        (0.78, 0.6),
        (0.86, 0.7),
        (0.8, 0.8),
        (0.54, 0.8),
        (0.4, 0.74),
        (0.36, 0.62),
    ]
    k.m.poly(pts, _FILL)
    acc = k.acc[:3] + (230,)
    k.c.rect(0.3, 0.1, 0.64, 0.2, fill=acc)
    k.c.circle(0.39, 0.74, 0.08, acc)
    k.c.circle(0.86, 0.72, 0.1, acc)
    for x in (0.42, 0.47, 0.52):
        k.c.line([(x, 0.12), (x, 0.2)], SHADE, 0.01)


def _mitten(k: _Ctx) -> None:
    k.m.ellipse(0.54, 0.42, 0.18, 0.28, _FILL)
    k.m.poly(_ell(0.34, 0.5, 0.07, 0.13), _FILL)
    k.m.poly([(0.3, 0.58), (0.4, 0.42), (0.46, 0.62)], _FILL)
    k.m.rect(0.36, 0.64, 0.7, 0.86, _FILL)
    k.c.rect(0.36, 0.66, 0.7, 0.86, fill=k.acc[:3] + (220,))
    for x in range(6):
        k.c.line([(0.39 + x * 0.055, 0.66), (0.39 + x * 0.055, 0.86)], SHADE, 0.01)
    k.c.circle(0.56, 0.38, 0.05, (250, 250, 250, 200))


def _boot(k: _Ctx) -> None:
    for dx, shade in ((0.0, None), (0.26, SHADE)):
        x = 0.18 + dx
        pts = [(x, 0.14), (x + 0.17, 0.14), (x + 0.17, 0.62), (x + 0.26, 0.68), (x + 0.28, 0.86), (x, 0.86)]
        k.m.poly(pts, _FILL)
        k.c.rect(x, 0.8, x + 0.3, 0.86, fill=(20, 20, 20, 200))
        k.c.rect(x, 0.14, x + 0.17, 0.2, fill=k.acc[:3] + (220,))
        if shade:
            k.c.poly(pts, shade)


def _shoe(k: _Ctx) -> None:
    pts = [(0.1, 0.6), (0.14, 0.42), (0.36, 0.42), (0.52, 0.5), (0.78, 0.56), (0.9, 0.64), (0.88, 0.74), (0.1, 0.74)]
    k.m.poly(pts, _FILL)
    k.c.rect(0.06, 0.7, 0.94, 0.74, fill=(25, 22, 20, 230))
    k.c.ellipse(0.25, 0.44, 0.1, 0.03, fill=(0, 0, 0, 170))
    for i in range(3):
        x = 0.42 + i * 0.06
        k.c.line([(x, 0.47), (x + 0.05, 0.54)], (240, 235, 220, 255), 0.012)
        k.c.line([(x + 0.05, 0.47), (x, 0.54)], (240, 235, 220, 255), 0.012)


def _belt(k: _Ctx) -> None:
    k = k.rotated(-20)
    k.m.poly([(0.08, 0.45), (0.76, 0.45), (0.76, 0.55), (0.08, 0.55)], _FILL)
    k.m.poly([(0.08, 0.45), (0.02, 0.5), (0.08, 0.55)], _FILL)
    for x in (0.14, 0.2, 0.26):
        k.c.circle(x, 0.5, 0.011, (20, 15, 10, 255))
    buckle = (205, 175, 80, 255)
    k.o.rect(0.76, 0.4, 0.9, 0.6, outline=buckle, width=0.025)
    k.o.line([(0.76, 0.5), (0.88, 0.5)], buckle, 0.015)


def _scarf(k: _Ctx) -> None:
    k.m.line(_arc(0.5, 0.3, 0.2, 0.14, 180, 360), _FILL, 0.12)
    k.m.poly([(0.24, 0.3), (0.36, 0.3), (0.4, 0.82), (0.28, 0.84)], _FILL)
    k.m.poly([(0.64, 0.3), (0.76, 0.3), (0.68, 0.76), (0.56, 0.74)], _FILL)
    acc = k.acc[:3] + (230,)
    for y in (0.5, 0.62):
        k.c.rect(0.2, y, 0.8, y + 0.04, fill=acc)
    for x in (0.29, 0.33, 0.37):
        k.o.line([(x, 0.84), (x, 0.92)], acc[:3] + (255,), 0.012)
    for x in (0.58, 0.62, 0.66):
        k.o.line([(x, 0.75), (x, 0.83)], acc[:3] + (255,), 0.012)


def _towel(k: _Ctx) -> None:
    k.o.line([(0.08, 0.2), (0.92, 0.2)], GREY, 0.03)
    k.m.rect(0.22, 0.18, 0.78, 0.86, _FILL)
    k.c.rect(0.22, 0.18, 0.78, 0.3, fill=SHADE)
    acc = k.acc[:3] + (230,)
    k.c.rect(0.22, 0.68, 0.78, 0.72, fill=acc)
    k.c.rect(0.22, 0.75, 0.78, 0.77, fill=acc)


def _sheet(k: _Ctx) -> None:
    pts = [(0.1, 0.18), (0.9, 0.18)] + [(0.9 - 0.8 * i / 16, 0.8 + 0.04 * math.sin(i * math.pi / 2)) for i in range(17)]
    k.m.poly(pts, _FILL)
    for x in (0.3, 0.5, 0.7):
        k.c.line([(x, 0.3), (x + 0.03, 0.8)], SHADE, 0.016)
        k.c.line([(x + 0.05, 0.3), (x + 0.07, 0.78)], BRIGHT_SHINE, 0.012)
    k.c.rect(0.1, 0.18, 0.9, 0.26, fill=k.acc[:3] + (150,))


def _blanket(k: _Ctx) -> None:
    for i, y in enumerate((0.28, 0.44, 0.6)):
        dx = 0.02 * (i % 2)
        k.m.rrect(0.16 + dx, y, 0.84 + dx, y + 0.17, 0.06, _FILL)
        k.c.line([(0.2 + dx, y + 0.165), (0.8 + dx, y + 0.165)], DEEP_SHADE, 0.014)
        k.c.rect(0.78 + dx, y, 0.84 + dx, y + 0.17, fill=k.acc[:3] + (230,))


def _cushion(k: _Ctx) -> None:
    pts = []
    for i in range(48):
        a = 2 * math.pi * i / 48
        c, s = math.cos(a), math.sin(a)
        rad = 0.33 / (abs(c) ** 4 + abs(s) ** 4) ** 0.25
        pts.append((0.5 + rad * c, 0.5 + rad * s * 0.8))
    k.m.poly(pts, _FILL)
    k.o.poly(pts, outline=k.acc[:3] + (255,), width=0.02)
    k.c.circle(0.5, 0.5, 0.03, DEEP_SHADE)
    for x, y in ((0.26, 0.32), (0.74, 0.32), (0.26, 0.68), (0.74, 0.68)):
        k.c.line([(0.5, 0.5), (x, y)], SHADE, 0.01)


def _pillow(k: _Ctx) -> None:
    top = [(0.12 + 0.76 * i / 12, 0.28 + 0.05 * math.sin(math.pi * i / 12)) for i in range(13)]
    bot = [(0.88 - 0.76 * i / 12, 0.74 - 0.05 * math.sin(math.pi * i / 12)) for i in range(13)]
    k.m.poly(top + bot, _FILL)
    k.c.poly(
        [(x, y + 0.04) for x, y in top[2:11]] + [(x, y - 0.04) for x, y in bot[2:11]], outline=BRIGHT_SHINE, width=0.012
    )
    k.c.line([(0.5, 0.3), (0.5, 0.72)], SHADE, 0.014)


def _bread(k: _Ctx) -> None:
    k.m.rect(0.24, 0.42, 0.76, 0.84, _FILL)
    k.m.circle(0.35, 0.38, 0.15, _FILL)
    k.m.circle(0.65, 0.38, 0.15, _FILL)
    k.m.rect(0.34, 0.24, 0.66, 0.44, _FILL)
    crust = (150, 90, 38, 255)
    k.c.rect(0.24, 0.42, 0.76, 0.84, outline=crust, width=0.05)
    k.c.circle(0.35, 0.38, 0.15, outline=crust, width=0.05)
    k.c.circle(0.65, 0.38, 0.15, outline=crust, width=0.05)
    k.c.rect(0.3, 0.4, 0.7, 0.78, fill=(250, 235, 200, 90))


def _irregular(seed: str, rx: float, ry: float, amp: float) -> list[tuple[float, float]]:
    r = _rand("irregular", seed)
    p1, p2, p3 = r.uniform(0, 6.3), r.uniform(0, 6.3), r.uniform(0, 6.3)
    pts = []
    for i in range(48):
        a = 2 * math.pi * i / 48
        f = 1 + amp * (0.6 * math.sin(2 * a + p1) + 0.4 * math.sin(3 * a + p2) + 0.3 * math.sin(5 * a + p3))
        pts.append((0.5 + rx * f * math.cos(a), 0.52 + ry * f * math.sin(a)))
    return pts


def _pebble(k: _Ctx) -> None:
    k.m.poly(_irregular("pebble", 0.36, 0.24, 0.08), _FILL)
    k.c.ellipse(0.4, 0.42, 0.12, 0.05, fill=(255, 255, 255, 70))
    k.c.ellipse(0.5, 0.68, 0.3, 0.08, fill=SHADE)


def _blob(k: _Ctx) -> None:
    k.m.poly(_irregular("clay", 0.32, 0.28, 0.18), _FILL)
    for rad in (0.04, 0.08, 0.12):
        k.c.arc(0.55, 0.45, rad, rad * 0.8, 200, 470, SHADE, 0.012)


def _crystal(k: _Ctx) -> None:
    def cube(cx, cy, s):
        top = [(cx, cy - s), (cx + s, cy - s / 2), (cx, cy), (cx - s, cy - s / 2)]
        left = [(cx - s, cy - s / 2), (cx, cy), (cx, cy + s), (cx - s, cy + s / 2)]
        right = [(cx, cy), (cx + s, cy - s / 2), (cx + s, cy + s / 2), (cx, cy + s)]
        for p in (top, left, right):
            k.m.poly(p, _FILL)
        k.c.poly(top, fill=SHINE)
        k.c.poly(right, fill=SHADE)
        k.c.line([(cx, cy), (cx, cy + s)], BRIGHT_SHINE, 0.01)

    cube(0.66, 0.62, 0.14)
    cube(0.42, 0.5, 0.24)


def _soap(k: _Ctx) -> None:
    k.m.rrect(0.18, 0.36, 0.82, 0.72, 0.1, _FILL)
    k.c.rrect(0.18, 0.36, 0.82, 0.5, 0.08, fill=SHINE)
    k.c.ellipse(0.5, 0.46, 0.15, 0.06, outline=DEEP_SHADE, width=0.014)
    for x, y, rad in ((0.3, 0.28, 0.05), (0.42, 0.22, 0.035), (0.64, 0.26, 0.06), (0.76, 0.18, 0.03)):
        k.o.circle(x, y, rad, outline=(255, 255, 255, 240), width=0.012)


def _lollipop(k: _Ctx) -> None:
    k.o.rect(0.48, 0.5, 0.52, 0.92, fill=(248, 248, 240, 255))
    k.m.circle(0.5, 0.36, 0.25, _FILL)
    spiral = [(0.5 + 0.012 * t * math.cos(t), 0.36 + 0.012 * t * math.sin(t)) for t in (i * 0.25 for i in range(80))]
    k.c.line(spiral, k.acc[:3] + (230,), 0.035)


def _ball(
    k: _Ctx, r=0.3, ry=None, cy=0.5, swirl=False, bands=False, string=False, scores=False, navel=False, apple=False
) -> None:
    ry = ry or r
    if apple:
        k.m.circle(0.42, 0.55, 0.25, _FILL)
        k.m.circle(0.58, 0.55, 0.25, _FILL)
        k.c.poly(_ell(0.5, 0.55, 0.34, 0.26), (200, 20, 30, 130))
        k.o.line([(0.5, 0.34), (0.53, 0.18)], BROWN, 0.025)
        k.o.ellipse(0.61, 0.24, 0.07, 0.03, fill=GREEN)
    else:
        k.m.ellipse(0.5, cy, r, ry, _FILL)
    k.c.ellipse(0.5 - r * 0.4, cy - ry * 0.45, r * 0.22, ry * 0.14, fill=(255, 255, 255, 150))
    if swirl:
        acc = k.acc[:3] + (230,)
        k.c.arc(0.5, cy, r * 0.6, r * 0.3, 200, 360, acc, 0.04)
        k.c.arc(0.5, cy, r * 0.5, r * 0.6, 0, 160, acc, 0.04)
    if bands:
        acc = k.acc[:3] + (235,)
        k.c.arc(0.5 - r, cy, r * 0.8, ry * 1.2, -70, 70, acc, 0.05)
        k.c.arc(0.5 + r, cy, r * 0.8, ry * 1.2, 110, 250, acc, 0.05)
    if string:
        k.o.poly([(0.5, cy + ry - 0.01), (0.46, cy + ry + 0.05), (0.54, cy + ry + 0.05)], k.acc[:3] + (255,))
        k.o.line([(0.5, cy + ry + 0.05), (0.46, 0.8), (0.54, 0.88), (0.5, 0.96)], INK, 0.012)
    if scores:
        for dx in (-0.12, 0.0, 0.12):
            k.c.line([(0.5 + dx - 0.04, cy - 0.1), (0.5 + dx + 0.04, cy + 0.06)], (250, 232, 190, 255), 0.025)
        k.c.ellipse(0.5, cy + ry * 0.7, r, ry * 0.35, fill=SHADE)
    if navel:
        k.c.circle(0.56, cy - 0.1, 0.02, (120, 90, 30, 255))
        k.o.ellipse(0.55, cy - r - 0.02, 0.05, 0.02, fill=GREEN)


def _lemon(k: _Ctx) -> None:
    k.m.ellipse(0.5, 0.52, 0.32, 0.22, _FILL)
    k.m.poly([(0.16, 0.47), (0.08, 0.52), (0.16, 0.57)], _FILL)
    k.m.poly([(0.84, 0.47), (0.92, 0.52), (0.84, 0.57)], _FILL)
    k.c.poly(_ell(0.5, 0.52, 0.45, 0.25), (255, 230, 40, 150))
    k.c.ellipse(0.4, 0.44, 0.1, 0.04, fill=(255, 255, 255, 130))
    k.o.ellipse(0.7, 0.28, 0.08, 0.035, fill=GREEN)


def _carton(k: _Ctx) -> None:
    k.m.poly([(0.1, 0.5), (0.9, 0.5), (0.84, 0.74), (0.16, 0.74)], _FILL)
    for i in range(4):
        k.m.circle(0.2 + i * 0.2, 0.5, 0.09, _FILL)
    for i in range(3):
        x = 0.3 + i * 0.2
        k.c.line([(x, 0.5), (x - 0.01, 0.74)], DEEP_SHADE, 0.014)
    k.c.rect(0.1, 0.5, 0.9, 0.54, fill=SHADE)
    k.o.poly([(0.12, 0.4), (0.88, 0.4), (0.9, 0.3), (0.1, 0.3)], outline=INK, width=0.01)


def _boa(k: _Ctx) -> None:
    r = _rand("boa")
    for i in range(26):
        x = 0.12 + i * 0.03
        y = 0.5 + 0.2 * math.sin(2 * math.pi * (x - 0.12) * 1.3)
        k.m.circle(x, y, 0.075, _FILL)
        for _ in range(3):
            a = r.uniform(0, 2 * math.pi)
            k.c.line([(x, y), (x + 0.07 * math.cos(a), y + 0.07 * math.sin(a))], SHADE, 0.008)


_SHAPES: dict[str, Callable[..., None]] = {
    "cup": _cup,
    "vase": _vase,
    "bottle": _bottle,
    "teapot": _teapot,
    "bowl": _bowl,
    "plate": _plate,
    "mirror": _mirror,
    "pane": _pane,
    "tile": _tile,
    "figure": _figure,
    "duck": _duck,
    "swan": _swan,
    "bunny": _bunny,
    "box": _box,
    "book": _book,
    "newspaper": _newspaper,
    "napkin": _napkin,
    "bag": _bag,
    "plane": _plane,
    "car": _car,
    "spoon": _spoon,
    "fork": _fork,
    "knife": _knife,
    "comb": _comb,
    "pencil": _pencil,
    "nail": _nail,
    "bat": _bat,
    "log": _log,
    "icicle": _icicle,
    "candle": _candle,
    "board": _board,
    "pan": _pan,
    "gate": _gate,
    "horseshoe": _horseshoe,
    "clip": _clip,
    "wrench": _wrench,
    "wire": _wire,
    "coin": _coin,
    "ring": _ring,
    "necklace": _necklace,
    "foil": _foil,
    "ladder": _ladder,
    "chair": _chair,
    "table": _table,
    "bench": _bench,
    "shirt": _shirt,
    "sock": _sock,
    "mitten": _mitten,
    "boot": _boot,
    "shoe": _shoe,
    "belt": _belt,
    "scarf": _scarf,
    "towel": _towel,
    "sheet": _sheet,
    "blanket": _blanket,
    "cushion": _cushion,
    "pillow": _pillow,
    "bread": _bread,
    "pebble": _pebble,
    "blob": _blob,
    "crystal": _crystal,
    "soap": _soap,
    "lollipop": _lollipop,
    "ball": _ball,
    "lemon": _lemon,
    "carton": _carton,
    "boa": _boa,
}


# --------------------------------------------------------------------------------------------
# Sprites: the canonical (un-jittered) drawing of one entity
# --------------------------------------------------------------------------------------------


@dataclass
class _Sprite:
    parts: list[tuple[Image.Image, str]]  # (mask, material): regions filled with a material texture
    overlay: Image.Image  # RGBA drawn over the parts

    def compose(self, w: int, rng: random.Random | None) -> Image.Image:
        fg = Image.new("RGBA", (w, w), (0, 0, 0, 0))
        for mask, material in self.parts:
            tex, _ = _texture(material, w)
            span = tex.size[0] - w
            ox, oy = (rng.randrange(span + 1), rng.randrange(span + 1)) if rng else (span // 2, span // 2)
            fg.paste(tex.crop((ox, oy, ox + w, oy + w)), (0, 0), mask)
        fg.alpha_composite(self.overlay)
        return fg


def _object_info(name: str) -> tuple[str, ...]:
    for obj in OBJECTS:
        if obj[0] == name:
            return obj[1]
    return (sorted(MATERIALS)[_hash("material-of", name) % len(MATERIALS)],)


def _object_sprite(name: str, w: int) -> _Sprite:
    materials = _object_info(name)
    r = _rand("shape", name)
    stretch = r.uniform(-0.07, 0.07)
    acc = _hsv(r.random(), r.uniform(0.6, 0.9), r.uniform(0.7, 0.95), 255)
    mask = Image.new("L", (w, w), 0)
    clipped = Image.new("RGBA", (w, w), (0, 0, 0, 0))
    free = Image.new("RGBA", (w, w), (0, 0, 0, 0))
    sx, sy = 1 + stretch, 1 - stretch
    k = _Ctx(_Pen(mask, sx, sy), _Pen(clipped, sx, sy), _Pen(free, sx, sy), acc, r)
    if name in OBJECT_LOOKS:
        shape, kw = OBJECT_LOOKS[name]
    else:
        shape, kw = GENERIC_SHAPES[_hash("generic-shape", name) % len(GENERIC_SHAPES)], {}
    _SHAPES[shape](k, **kw)

    # Clip the body marks to the body, then outline the body in a dark shade of its material.
    clip_alpha = ImageChops.multiply(clipped.getchannel("A"), mask)
    clipped.putalpha(clip_alpha)
    base = _look(materials[0])[0]
    edge = ImageChops.subtract(mask.filter(ImageFilter.MaxFilter(3 if w < 96 else 5)), mask)
    overlay = Image.new("RGBA", (w, w), tuple(int(c * 0.4) for c in base) + (0,))
    overlay.putalpha(edge.point(lambda v: min(255, v) * 220 // 255))
    overlay.alpha_composite(clipped)
    overlay.alpha_composite(free)

    parts = []
    if len(materials) == 1:
        regions = [mask]
    else:  # one vertical band per material ("two halves")
        cols = np.arange(w) * len(materials) // w
        m = np.asarray(mask)
        regions = [
            Image.fromarray(np.where(cols[None, :] == i, m, 0).astype(np.uint8), "L") for i in range(len(materials))
        ]
    for region, material in zip(regions, materials, strict=True):
        alpha = _look(material)[2]
        parts.append((region if alpha >= 1 else region.point(lambda v, a=alpha: int(v * a)), material))
    return _Sprite(parts, overlay)


def _material_sprite(name: str, w: int) -> _Sprite:
    r = _rand("slab", name)
    hw, hh, rad = r.uniform(0.33, 0.38), r.uniform(0.26, 0.34), r.uniform(0.02, 0.08)
    mask = Image.new("L", (w, w), 0)
    bevel = Image.new("RGBA", (w, w), (0, 0, 0, 0))
    m, b = _Pen(mask), _Pen(bevel)
    x0, y0, x1, y1 = 0.5 - hw, 0.5 - hh, 0.5 + hw, 0.5 + hh
    m.rrect(x0, y0, x1, y1, rad, _FILL)
    # Bevel: a lit top-left rim and a shaded bottom-right rim make the swatch read as a slab.
    b.poly(
        [(x0, y0), (x1, y0), (x1 - 0.04, y0 + 0.04), (x0 + 0.04, y0 + 0.04), (x0 + 0.04, y1 - 0.04), (x0, y1)],
        (255, 255, 255, 90),
    )
    b.poly(
        [(x1, y1), (x0, y1), (x0 + 0.04, y1 - 0.04), (x1 - 0.04, y1 - 0.04), (x1 - 0.04, y0 + 0.04), (x1, y0)],
        (0, 0, 0, 90),
    )
    bevel.putalpha(ImageChops.multiply(bevel.getchannel("A"), mask))
    base, _, alpha = _look(name)
    edge = ImageChops.subtract(mask.filter(ImageFilter.MaxFilter(3 if w < 96 else 5)), mask)
    overlay = Image.new("RGBA", (w, w), tuple(int(c * 0.4) for c in base) + (0,))
    overlay.putalpha(edge)
    overlay.alpha_composite(bevel)
    part = mask if alpha >= 1 else mask.point(lambda v: int(v * alpha))
    return _Sprite([(part, name)], overlay)


# --- property icons and result scenes -------------------------------------------------------


def _flame(p: _Pen, cx: float, cy: float, s: float, outer=FIRE, inner=FIRE_YELLOW) -> None:
    p.poly(
        [
            (cx, cy - s),
            (cx + 0.45 * s, cy - 0.1 * s),
            (cx + 0.4 * s, cy + 0.4 * s),
            (cx, cy + 0.55 * s),
            (cx - 0.4 * s, cy + 0.4 * s),
            (cx - 0.45 * s, cy - 0.1 * s),
        ],
        outer,
    )
    p.poly(
        [(cx, cy - 0.35 * s), (cx + 0.22 * s, cy + 0.15 * s), (cx, cy + 0.45 * s), (cx - 0.22 * s, cy + 0.15 * s)],
        inner,
    )


def _water(p: _Pen, y: float, x0=0.14, x1=0.86, y1=0.86, fill=True) -> None:
    wave = [(x0 + (x1 - x0) * i / 24, y + 0.02 * math.sin(i * math.pi / 3)) for i in range(25)]
    if fill:
        p.poly(wave + [(x1, y1), (x0, y1)], LIGHT_WATER)
    p.line(wave, WATER, 0.025)


def _drop(p: _Pen, cx: float, cy: float, s: float, fill=WATER) -> None:
    p.poly([(cx, cy - s)] + _arc(cx, cy + 0.3 * s, 0.6 * s, 0.6 * s, -20, 200, 10), fill)


def _magnet(p: _Pen, cx: float, cy: float, s: float) -> None:
    p.line(_arc(cx, cy, s, s, 0, 180), RED, 0.06 * s / 0.2)
    p.rect(cx - s - 0.03 * s / 0.2, cy - 0.25 * s, cx - s + 0.03 * s / 0.2, cy, fill=PALE)
    p.rect(cx + s - 0.03 * s / 0.2, cy - 0.25 * s, cx + s + 0.03 * s / 0.2, cy, fill=PALE)


def _slash(p: _Pen, cx=0.5, cy=0.5, r=0.3) -> None:
    p.circle(cx, cy, r, outline=RED, width=0.035)
    p.line([(cx - r * 0.7, cy - r * 0.7), (cx + r * 0.7, cy + r * 0.7)], RED, 0.035)


def _bolt(p: _Pen, cx: float, cy: float, s: float, fill=YELLOW) -> None:
    p.poly(
        [
            (cx + 0.1 * s, cy - s),
            (cx - 0.35 * s, cy + 0.1 * s),
            (cx, cy + 0.1 * s),
            (cx - 0.1 * s, cy + s),
            (cx + 0.35 * s, cy - 0.1 * s),
            (cx, cy - 0.1 * s),
        ],
        fill,
        outline=INK,
        width=0.012,
    )


def _hammer(p: _Pen, cx: float, cy: float) -> None:
    p.line([(cx, cy), (cx + 0.16, cy - 0.16)], BROWN, 0.035)
    p.poly([(cx - 0.06, cy - 0.06), (cx + 0.02, cy - 0.14), (cx + 0.07, cy - 0.09), (cx - 0.01, cy - 0.01)], DARK)


def _bubbles(p: _Pen, spots) -> None:
    for x, y, rad in spots:
        p.circle(x, y, rad, fill=(255, 255, 255, 150), outline=WATER, width=0.012)
        p.circle(x - rad * 0.35, y - rad * 0.35, rad * 0.2, WHITE)


def _bulb(p: _Pen, cx: float, cy: float, lit: bool) -> None:
    p.circle(cx, cy, 0.09, fill=YELLOW if lit else (150, 150, 150, 255), outline=INK, width=0.012)
    p.rect(cx - 0.045, cy + 0.08, cx + 0.045, cy + 0.13, fill=GREY)
    if lit:
        for a in range(0, 360, 45):
            ca, sa = math.cos(math.radians(a)), math.sin(math.radians(a))
            if sa < 0.5:
                p.line([(cx + 0.12 * ca, cy + 0.12 * sa), (cx + 0.17 * ca, cy + 0.17 * sa)], FIRE, 0.015)


def _battery(p: _Pen, cx: float, cy: float) -> None:
    p.rect(cx - 0.1, cy - 0.06, cx + 0.1, cy + 0.06, fill=DARK)
    p.rect(cx + 0.1, cy - 0.025, cx + 0.13, cy + 0.025, fill=GREY)
    p.rect(cx - 0.1, cy - 0.06, cx - 0.02, cy + 0.06, fill=(200, 140, 40, 255))


def _p_icon(name: str, p: _Pen, h: Color) -> bool:
    """Draw the icon of a property; False if it has no hand-made icon."""
    if name == "brittle":
        p.poly([(0.28, 0.3), (0.72, 0.3), (0.72, 0.7), (0.28, 0.7)], PALE, outline=INK, width=0.015)
        p.line([(0.45, 0.3), (0.52, 0.42), (0.44, 0.5), (0.55, 0.6), (0.5, 0.7)], INK, 0.025)
        p.line([(0.44, 0.5), (0.3, 0.54)], INK, 0.018)
        p.line([(0.55, 0.6), (0.7, 0.56)], INK, 0.018)
    elif name == "elastic":
        zig = [(0.3 + 0.4 * i / 10, 0.5 + (0.08 if i % 2 else -0.08)) for i in range(11)]
        p.line([(0.24, 0.5)] + zig[1:-1] + [(0.76, 0.5)], h, 0.03)
        p.arrow(0.28, 0.68, 0.16, 0.68, INK, 0.02, 0.05)
        p.arrow(0.72, 0.68, 0.84, 0.68, INK, 0.02, 0.05)
    elif name == "flexible":
        p.line(_arc(0.5, 0.72, 0.3, 0.34, 200, 340), h, 0.06)
        p.arrow(0.2, 0.66, 0.2, 0.76, INK, 0.02, 0.05)
        p.arrow(0.8, 0.66, 0.8, 0.76, INK, 0.02, 0.05)
    elif name == "malleable":
        p.poly(
            [(0.26, 0.56), (0.42, 0.56), (0.5, 0.64), (0.58, 0.56), (0.74, 0.56), (0.74, 0.74), (0.26, 0.74)],
            GREY,
            outline=INK,
            width=0.012,
        )
        _hammer(p, 0.5, 0.48)
    elif name == "sturdy":
        p.rect(0.3, 0.3, 0.7, 0.68, fill=DARK)
        p.line([(0.2, 0.72), (0.8, 0.72)], INK, 0.04)
        p.rect(0.34, 0.34, 0.66, 0.4, fill=h)
    elif name == "flammable":
        _flame(p, 0.5, 0.5, 0.3)
    elif name == "non-flammable":
        _flame(p, 0.5, 0.52, 0.24, (165, 165, 170, 255), (205, 205, 210, 255))
        _slash(p)
    elif name == "magnetic":
        _magnet(p, 0.5, 0.44, 0.14)
        for rad in (0.22, 0.28):
            p.arc(0.5, 0.44, rad, rad, 10, 170, h, 0.012)
        p.line([(0.5, 0.66), (0.5, 0.78)], DARK, 0.03)
    elif name == "non-magnetic":
        _magnet(p, 0.5, 0.46, 0.13)
        _slash(p)
    elif name == "buoyant":
        _water(p, 0.58)
        p.rrect(0.36, 0.36, 0.64, 0.62, 0.04, fill=h, outline=INK, width=0.012)
        p.arrow(0.5, 0.34, 0.5, 0.22, INK, 0.02, 0.05)
    elif name == "hollow":
        _water(p, 0.56)
        p.circle(0.5, 0.52, 0.14, fill=WHITE, outline=h, width=0.045)
    elif name == "dense":
        _water(p, 0.32, y1=0.8)
        p.rect(0.38, 0.6, 0.62, 0.78, fill=DARK)
        p.arrow(0.5, 0.38, 0.5, 0.56, INK, 0.025, 0.05)
    elif name == "meltable":
        p.poly(
            [(0.32, 0.28), (0.68, 0.28), (0.68, 0.52), (0.6, 0.6), (0.52, 0.52), (0.44, 0.62), (0.32, 0.52)],
            h,
            outline=INK,
            width=0.012,
        )
        _drop(p, 0.44, 0.7, 0.05, h)
        p.ellipse(0.5, 0.78, 0.2, 0.04, fill=h)
    elif name == "heat-sensitive":
        p.rrect(0.44, 0.22, 0.52, 0.62, 0.04, fill=WHITE, outline=INK, width=0.012)
        p.circle(0.48, 0.68, 0.07, RED)
        p.rect(0.465, 0.4, 0.495, 0.64, fill=RED)
        p.circle(0.68, 0.34, 0.06, YELLOW)
        for a in range(0, 360, 60):
            p.line(
                [
                    (0.68 + 0.08 * math.cos(math.radians(a)), 0.34 + 0.08 * math.sin(math.radians(a))),
                    (0.68 + 0.12 * math.cos(math.radians(a)), 0.34 + 0.12 * math.sin(math.radians(a))),
                ],
                FIRE,
                0.012,
            )
    elif name == "soluble":
        p.poly([(0.3, 0.44), (0.7, 0.44), (0.67, 0.76), (0.33, 0.76)], LIGHT_WATER)
        p.line([(0.3, 0.28), (0.33, 0.76), (0.67, 0.76), (0.7, 0.28)], INK, 0.018)
        p.rect(0.44, 0.5, 0.54, 0.6, fill=WHITE, outline=INK, width=0.01)
        for x, y in ((0.38, 0.66), (0.58, 0.68), (0.6, 0.54), (0.45, 0.7), (0.52, 0.66)):
            p.circle(x, y, 0.012, WHITE)
    elif name == "absorbent":
        p.rrect(0.28, 0.5, 0.72, 0.72, 0.03, fill=YELLOW, outline=INK, width=0.012)
        for x in (0.36, 0.5, 0.64):
            p.circle(x, 0.6, 0.025, (200, 160, 30, 255))
        for x, y in ((0.38, 0.32), (0.52, 0.24), (0.62, 0.36)):
            _drop(p, x, y, 0.05)
        p.arrow(0.5, 0.36, 0.5, 0.48, INK, 0.015, 0.04)
    elif name == "waterproof":
        p.poly(_arc(0.5, 0.5, 0.26, 0.2, 180, 360), h)
        p.line([(0.5, 0.5), (0.5, 0.74)], INK, 0.02)
        p.arc(0.46, 0.74, 0.04, 0.04, 0, 180, INK, 0.02)
        for x, y in ((0.2, 0.62), (0.8, 0.58), (0.28, 0.24), (0.72, 0.22)):
            _drop(p, x, y, 0.045)
    elif name == "corrodible":
        p.rect(0.26, 0.3, 0.74, 0.7, fill=GREY, outline=INK, width=0.012)
        for x, y, rad in ((0.38, 0.42, 0.07), (0.6, 0.58, 0.09), (0.62, 0.38, 0.04)):
            p.circle(x, y, rad, RUST)
        _drop(p, 0.36, 0.22, 0.05)
    elif name == "transparent":
        p.rect(0.46, 0.24, 0.54, 0.76, fill=(200, 230, 250, 200), outline=WATER, width=0.012)
        for y in (0.36, 0.5, 0.64):
            p.arrow(0.2, y, 0.8, y, FIRE, 0.018, 0.04)
    elif name == "opaque":
        p.rect(0.5, 0.24, 0.6, 0.76, fill=DARK)
        for y in (0.36, 0.5, 0.64):
            p.arrow(0.2, y, 0.48, y, FIRE, 0.018, 0.04)
        p.rect(0.62, 0.3, 0.8, 0.7, fill=(60, 60, 70, 90))
    elif name == "conductive":
        p.line([(0.18, 0.62), (0.82, 0.62)], (190, 110, 60, 255), 0.03)
        _bolt(p, 0.5, 0.42, 0.2)
    elif name == "insulating":
        p.line([(0.18, 0.6), (0.82, 0.6)], (190, 110, 60, 255), 0.03)
        p.rrect(0.38, 0.5, 0.62, 0.7, 0.05, fill=h, outline=INK, width=0.012)
        _bolt(p, 0.28, 0.36, 0.12)
        p.line([(0.38, 0.3), (0.5, 0.42)], RED, 0.025)
        p.line([(0.5, 0.3), (0.38, 0.42)], RED, 0.025)
    elif name == "slippery":
        p.ellipse(0.5, 0.68, 0.28, 0.06, fill=LIGHT_WATER)
        p.line([(0.26, 0.56), (0.74, 0.48)], h, 0.05)
        for y in (0.34, 0.42):
            p.line([(0.22, y + 0.06), (0.56, y)], INK, 0.012)
        p.arc(0.74, 0.42, 0.08, 0.08, 180, 360, INK, 0.018)
    elif name == "foamy":
        _bubbles(p, ((0.4, 0.56, 0.1), (0.58, 0.46, 0.12), (0.62, 0.66, 0.07), (0.38, 0.36, 0.06), (0.52, 0.28, 0.04)))
    elif name == "soft":
        for x, y, rad in ((0.38, 0.56, 0.12), (0.5, 0.5, 0.14), (0.62, 0.56, 0.12)):
            p.circle(x, y, rad, h)
        p.rect(0.26, 0.56, 0.74, 0.68, fill=h)
        p.arrow(0.5, 0.22, 0.5, 0.4, INK, 0.025, 0.05)
    elif name == "moldable":
        p.poly(_irregular("moldable", 0.22, 0.18, 0.15), fill=h)
        for rad in (0.03, 0.07, 0.11):
            p.arc(0.5, 0.52, rad, rad * 0.8, 200, 470, INK, 0.012)
        p.arc(0.5, 0.52, 0.3, 0.28, 200, 300, INK, 0.018)
    elif name == "perishable":
        p.circle(0.42, 0.46, 0.16, fill=WHITE, outline=INK, width=0.02)
        p.line([(0.42, 0.46), (0.42, 0.36)], INK, 0.02)
        p.line([(0.42, 0.46), (0.5, 0.5)], INK, 0.02)
        p.circle(0.66, 0.66, 0.1, h)
        p.circle(0.68, 0.64, 0.04, (110, 80, 40, 255))
    elif name == "shrinkable":
        p.rect(0.24, 0.24, 0.76, 0.76, outline=INK, width=0.012)
        p.rect(0.42, 0.42, 0.58, 0.58, fill=h)
        for sx, sy in ((-1, -1), (1, -1), (-1, 1), (1, 1)):
            p.arrow(0.5 + 0.24 * sx, 0.5 + 0.24 * sy, 0.5 + 0.12 * sx, 0.5 + 0.12 * sy, INK, 0.018, 0.04)
    elif name == "lightweight":
        p.line([(0.34, 0.7), (0.62, 0.3)], INK, 0.015)
        for i in range(1, 8):
            f = i / 8
            x, y = 0.34 + f * 0.28, 0.7 - f * 0.4
            p.line([(x, y), (x - 0.08, y - 0.02)], h, 0.018)
            p.line([(x, y), (x + 0.06, y + 0.05)], h, 0.018)
        p.arc(0.7, 0.6, 0.08, 0.05, 180, 400, WATER, 0.012)
    elif name == "juicy":
        _drop(p, 0.5, 0.46, 0.2, h)
        for x, y in ((0.28, 0.32), (0.72, 0.3), (0.74, 0.64), (0.26, 0.66)):
            _drop(p, x, y, 0.04, h)
    else:
        return False
    return True


def _r_scene(name: str, p: _Pen, h: Color) -> bool:
    """Draw the scene of a result; False if it has no hand-made scene."""
    floor = lambda y=0.78: p.line([(0.12, y), (0.88, y)], INK, 0.02)  # noqa: E731
    if name == "shatters":
        floor()
        for x, y, s, a in (
            (0.26, 0.74, 0.07, 10),
            (0.4, 0.72, 0.09, 80),
            (0.55, 0.74, 0.06, 150),
            (0.68, 0.71, 0.08, 220),
            (0.8, 0.74, 0.05, 300),
            (0.48, 0.6, 0.05, 40),
        ):
            p.poly(
                [(x + s * math.cos(math.radians(a + k)), y + s * math.sin(math.radians(a + k))) for k in (0, 140, 250)],
                PALE,
                outline=WATER,
                width=0.01,
            )
        for a in (220, 270, 320):
            p.line(
                [
                    (0.5 + 0.1 * math.cos(math.radians(a)), 0.62 + 0.1 * math.sin(math.radians(a))),
                    (0.5 + 0.18 * math.cos(math.radians(a)), 0.62 + 0.18 * math.sin(math.radians(a))),
                ],
                INK,
                0.012,
            )
    elif name == "cracks":
        p.rect(0.2, 0.52, 0.8, 0.76, fill=PALE, outline=INK, width=0.012)
        for a in (200, 240, 300, 340, 20):
            p.line(
                [
                    (0.5, 0.54),
                    (0.5 + 0.2 * math.cos(math.radians(a)) * 1.2, 0.64 + 0.1 * math.sin(math.radians(a)) + 0.05),
                ],
                INK,
                0.014,
            )
        _hammer(p, 0.5, 0.44)
    elif name == "snaps":
        p.poly([(0.14, 0.62), (0.44, 0.56), (0.46, 0.6), (0.43, 0.63), (0.16, 0.7)], h)
        p.poly([(0.56, 0.56), (0.86, 0.62), (0.84, 0.7), (0.57, 0.63), (0.54, 0.6)], h)
        for a in (-60, -90, -120):
            p.line(
                [
                    (0.5 + 0.06 * math.cos(math.radians(a)), 0.5 + 0.06 * math.sin(math.radians(a))),
                    (0.5 + 0.14 * math.cos(math.radians(a)), 0.5 + 0.14 * math.sin(math.radians(a))),
                ],
                INK,
                0.014,
            )
    elif name == "bounces":
        floor()
        pts = _arc(0.38, 0.77, 0.2, 0.5, 180, 360, 12) + _arc(0.68, 0.77, 0.1, 0.26, 180, 300, 8)
        for x, y in pts[::2]:
            p.circle(x, y, 0.012, INK)
        p.circle(0.74, 0.56, 0.07, h)
    elif name == "stretches and springs back":
        p.ellipse(0.5, 0.4, 0.32, 0.07, outline=h, width=0.03)
        p.arrow(0.3, 0.56, 0.16, 0.56, INK, 0.02, 0.04)
        p.arrow(0.7, 0.56, 0.84, 0.56, INK, 0.02, 0.04)
        p.ellipse(0.5, 0.72, 0.12, 0.07, outline=h, width=0.03)
        p.arc(0.5, 0.62, 0.22, 0.1, 20, 160, INK, 0.012)
    elif name == "bends":
        p.line(_arc(0.5, 0.78, 0.34, 0.4, 200, 340), h, 0.05)
        p.circle(0.18, 0.68, 0.05, DARK)
        p.circle(0.82, 0.68, 0.05, DARK)
    elif name == "dents":
        p.poly(
            [(0.32, 0.26), (0.68, 0.26), (0.68, 0.78), (0.32, 0.78), (0.32, 0.6), (0.42, 0.52), (0.32, 0.44)],
            GREY,
            outline=INK,
            width=0.012,
        )
        p.ellipse(0.5, 0.26, 0.18, 0.04, fill=(200, 200, 205, 255))
        p.arrow(0.14, 0.52, 0.28, 0.52, RED, 0.025, 0.05)
    elif name == "lands with a thud":
        floor(0.76)
        p.rect(0.34, 0.44, 0.66, 0.76, fill=DARK)
        for x0, x1 in ((0.3, 0.16), (0.7, 0.84)):
            p.line([(x0, 0.72), (x1, 0.62)], INK, 0.018)
            p.line([(x0, 0.76), (x1, 0.74)], INK, 0.018)
        p.arrow(0.5, 0.2, 0.5, 0.38, INK, 0.025, 0.05)
    elif name == "burns":
        p.rrect(0.24, 0.64, 0.76, 0.78, 0.05, fill=BROWN)
        for x, s in ((0.38, 0.18), (0.52, 0.26), (0.64, 0.16)):
            _flame(p, x, 0.5, s)
    elif name == "does not burn":
        p.rect(0.34, 0.3, 0.66, 0.56, fill=GREY, outline=INK, width=0.012)
        _flame(p, 0.5, 0.7, 0.12)
        p.line([(0.66, 0.34), (0.72, 0.42), (0.84, 0.24)], (40, 160, 60, 255), 0.035)
    elif name == "is attracted to the magnet":
        _magnet(p, 0.3, 0.5, 0.13)
        p.rect(0.66, 0.44, 0.8, 0.56, fill=GREY, outline=INK, width=0.01)
        p.arrow(0.64, 0.5, 0.48, 0.5, INK, 0.02, 0.04)
        for y in (0.34, 0.66):
            p.line([(0.5, y), (0.64, y)], h, 0.012)
    elif name == "is not attracted to the magnet":
        _magnet(p, 0.28, 0.5, 0.12)
        p.circle(0.76, 0.5, 0.07, h)
        p.line([(0.48, 0.42), (0.6, 0.58)], RED, 0.03)
        p.line([(0.6, 0.42), (0.48, 0.58)], RED, 0.03)
    elif name == "floats":
        _water(p, 0.56, x0=0.1, x1=0.9, y1=0.88)
        p.ellipse(0.5, 0.5, 0.16, 0.09, fill=h, outline=INK, width=0.012)
    elif name == "sinks":
        _water(p, 0.22, x0=0.1, x1=0.9, y1=0.88)
        p.ellipse(0.5, 0.78, 0.14, 0.07, fill=DARK)
        _bubbles(p, ((0.46, 0.6, 0.025), (0.54, 0.48, 0.02), (0.48, 0.36, 0.015)))
        p.arrow(0.7, 0.4, 0.7, 0.7, INK, 0.02, 0.04)
    elif name == "melts":
        p.ellipse(0.5, 0.74, 0.3, 0.07, fill=h)
        p.poly([(0.42, 0.74), (0.44, 0.58), (0.56, 0.6), (0.58, 0.74)], h)
        _drop(p, 0.66, 0.56, 0.05, h)
        for x in (0.3, 0.5, 0.7):
            p.line([(x, 0.38), (x + 0.03, 0.32), (x, 0.26), (x + 0.03, 0.2)], FIRE, 0.014)
    elif name == "dissolves":
        p.poly([(0.3, 0.38), (0.7, 0.38), (0.67, 0.8), (0.33, 0.8)], LIGHT_WATER)
        p.line([(0.3, 0.22), (0.33, 0.8), (0.67, 0.8), (0.7, 0.22)], INK, 0.018)
        for x, y in ((0.4, 0.5), (0.55, 0.6), (0.45, 0.7), (0.6, 0.45), (0.5, 0.55)):
            p.circle(x, y, 0.008, WHITE)
        p.arc(0.5, 0.6, 0.1, 0.06, 0, 300, WATER, 0.012)
    elif name == "gets soggy":
        p.poly(
            [(0.2, 0.4), (0.8, 0.4), (0.74, 0.56), (0.5, 0.7), (0.26, 0.56)],
            (200, 180, 140, 255),
            outline=INK,
            width=0.012,
        )
        for x in (0.34, 0.5, 0.64):
            _drop(p, x, 0.8, 0.04)
        p.ellipse(0.5, 0.5, 0.16, 0.05, fill=(120, 100, 70, 150))
    elif name == "gets soaked":
        for x in (0.2, 0.34, 0.48, 0.62, 0.76):
            p.line([(x + 0.04, 0.16), (x, 0.34)], WATER, 0.014)
        p.ellipse(0.5, 0.62, 0.22, 0.15, fill=h, outline=INK, width=0.012)
        p.ellipse(0.5, 0.62, 0.22, 0.15, fill=(30, 60, 120, 110))
        for x, y in ((0.42, 0.58), (0.58, 0.66)):
            _drop(p, x, y, 0.035)
    elif name == "stays dry":
        p.poly(_arc(0.5, 0.42, 0.3, 0.18, 180, 360), h)
        p.line([(0.5, 0.42), (0.5, 0.6)], INK, 0.018)
        p.ellipse(0.5, 0.7, 0.16, 0.09, fill=(230, 200, 140, 255), outline=INK, width=0.012)
        for x, y in ((0.14, 0.4), (0.86, 0.44), (0.16, 0.66), (0.84, 0.7)):
            _drop(p, x, y, 0.035)
    elif name == "rusts":
        p.rect(0.24, 0.36, 0.76, 0.74, fill=GREY, outline=INK, width=0.012)
        for x, y, rad in ((0.36, 0.48, 0.09), (0.6, 0.62, 0.11), (0.66, 0.44, 0.06), (0.4, 0.66, 0.05)):
            p.circle(x, y, rad, RUST)
        for x in (0.3, 0.5, 0.7):
            _drop(p, x, 0.2, 0.04)
    elif name == "lets the light through":
        p.circle(0.18, 0.5, 0.08, YELLOW)
        p.rect(0.46, 0.26, 0.52, 0.74, fill=(200, 230, 250, 220), outline=WATER, width=0.01)
        for y in (0.38, 0.5, 0.62):
            p.line([(0.28, y), (0.86, y)], FIRE_YELLOW, 0.02)
        p.rect(0.6, 0.3, 0.86, 0.7, fill=(255, 240, 150, 90))
    elif name == "blocks the light":
        p.circle(0.18, 0.5, 0.08, YELLOW)
        p.rect(0.46, 0.26, 0.54, 0.74, fill=DARK)
        for y in (0.38, 0.5, 0.62):
            p.line([(0.28, y), (0.45, y)], FIRE_YELLOW, 0.02)
        p.rect(0.56, 0.26, 0.88, 0.74, fill=(40, 40, 50, 150))
    elif name == "conducts electricity":
        _battery(p, 0.28, 0.68)
        p.line([(0.41, 0.68), (0.72, 0.68), (0.72, 0.56)], (190, 110, 60, 255), 0.02)
        _bulb(p, 0.72, 0.42, True)
    elif name == "blocks electricity":
        _battery(p, 0.28, 0.68)
        p.line([(0.41, 0.68), (0.72, 0.68), (0.72, 0.56)], (190, 110, 60, 255), 0.02)
        p.rect(0.5, 0.64, 0.6, 0.72, fill=h)
        _bulb(p, 0.72, 0.42, False)
        p.line([(0.62, 0.3), (0.82, 0.5)], RED, 0.025)
        p.line([(0.82, 0.3), (0.62, 0.5)], RED, 0.025)
    elif name == "makes you slip":
        floor(0.8)
        p.ellipse(0.5, 0.8, 0.2, 0.03, fill=LIGHT_WATER)
        p.circle(0.34, 0.36, 0.06, INK)
        p.line([(0.38, 0.42), (0.56, 0.56)], INK, 0.03)
        p.line([(0.56, 0.56), (0.74, 0.44)], INK, 0.025)
        p.line([(0.56, 0.56), (0.7, 0.66)], INK, 0.025)
        p.line([(0.46, 0.48), (0.4, 0.62)], INK, 0.025)
    elif name == "makes bubbles":
        p.rrect(0.34, 0.64, 0.66, 0.8, 0.06, fill=h)
        _bubbles(
            p,
            (
                (0.4, 0.52, 0.06),
                (0.56, 0.46, 0.08),
                (0.66, 0.3, 0.05),
                (0.42, 0.3, 0.04),
                (0.3, 0.4, 0.035),
                (0.54, 0.2, 0.03),
            ),
        )
    elif name == "squashes":
        p.ellipse(0.5, 0.72, 0.3, 0.07, fill=h, outline=INK, width=0.012)
        for x in (0.36, 0.5, 0.64):
            p.arrow(x, 0.3, x, 0.56, INK, 0.02, 0.04)
        p.line([(0.2, 0.24), (0.8, 0.24)], INK, 0.03)
    elif name == "changes shape":
        p.rect(0.16, 0.4, 0.34, 0.6, fill=h)
        p.arrow(0.38, 0.5, 0.56, 0.5, INK, 0.02, 0.04)
        p.poly(
            [
                (
                    0.72 + 0.12 * math.cos(math.radians(a)) * (1 if i % 2 == 0 else 0.45),
                    0.5 + 0.12 * math.sin(math.radians(a)) * (1 if i % 2 == 0 else 0.45),
                )
                for i, a in enumerate(range(-90, 270, 36))
            ],
            h,
        )
    elif name == "hardens":
        p.poly(_arc(0.5, 0.72, 0.32, 0.46, 180, 360) + [(0.82, 0.8), (0.18, 0.8)], (170, 80, 50, 255))
        p.poly(_arc(0.5, 0.72, 0.2, 0.3, 180, 360), (60, 30, 20, 255))
        p.poly([(0.44, 0.72), (0.56, 0.72), (0.58, 0.56), (0.42, 0.56)], h)
        for x in (0.4, 0.6):
            p.line([(x, 0.5), (x + 0.02, 0.46), (x, 0.42)], FIRE, 0.012)
    elif name == "rots":
        p.circle(0.5, 0.6, 0.18, (130, 90, 40, 255))
        for x, y, rad in ((0.44, 0.56, 0.04), (0.58, 0.66, 0.05), (0.56, 0.5, 0.03)):
            p.circle(x, y, rad, (100, 140, 60, 255))
        for x, y in ((0.3, 0.3), (0.66, 0.26), (0.74, 0.38)):
            p.circle(x, y, 0.015, INK)
            p.ellipse(x, y - 0.02, 0.015, 0.008, fill=(200, 200, 220, 255))
        p.line([(0.46, 0.36), (0.48, 0.3), (0.46, 0.24)], (100, 140, 60, 255), 0.012)
    elif name == "shrinks":
        p.poly([(0.2, 0.24), (0.8, 0.24), (0.8, 0.8), (0.2, 0.8)], outline=GREY, width=0.012)
        p.poly([(0.4, 0.44), (0.6, 0.44), (0.6, 0.62), (0.4, 0.62)], h)
        p.line([(0.36, 0.44), (0.4, 0.44)], h, 0.02)
        p.line([(0.6, 0.44), (0.64, 0.44)], h, 0.02)
        for sx in (-1, 1):
            p.arrow(0.5 + 0.27 * sx, 0.52, 0.5 + 0.15 * sx, 0.52, INK, 0.018, 0.04)
    elif name == "blows away":
        for y, ln in ((0.34, 0.4), (0.5, 0.5), (0.66, 0.36)):
            p.line([(0.14, y), (0.14 + ln, y)], WATER, 0.015)
            p.arc(0.14 + ln, y - 0.04, 0.04, 0.04, 90, 360, WATER, 0.015)
        p.poly([(0.7, 0.3), (0.86, 0.38), (0.78, 0.54), (0.64, 0.46)], h)
        p.arrow(0.62, 0.6, 0.82, 0.68, INK, 0.018, 0.04)
    elif name == "leaks juice":
        p.circle(0.5, 0.38, 0.16, FIRE)
        p.circle(0.56, 0.32, 0.03, (255, 200, 150, 255))
        for y in (0.62, 0.7):
            _drop(p, 0.5, y, 0.03, FIRE_YELLOW)
        p.ellipse(0.5, 0.8, 0.2, 0.04, fill=FIRE_YELLOW)
    else:
        return False
    return True


def _generic_icon(name: str, p: _Pen, h: Color) -> None:
    """Two or three hashed stroke glyphs for entities without a hand-made drawing."""
    r = _rand("glyph", name)
    for _ in range(r.randint(2, 3)):
        g = r.choice(GLYPHS)
        cx, cy, s = r.uniform(0.36, 0.64), r.uniform(0.36, 0.64), r.uniform(0.1, 0.18)
        col = r.choice((h, INK, DARK))
        if g == "circle":
            p.circle(cx, cy, s, outline=col, width=0.03)
        elif g == "triangle":
            p.poly([(cx, cy - s), (cx + s, cy + s), (cx - s, cy + s)], col)
        elif g == "square":
            p.rect(cx - s, cy - s, cx + s, cy + s, outline=col, width=0.03)
        elif g == "zigzag":
            p.line([(cx - s + 2 * s * i / 6, cy + (s / 2 if i % 2 else -s / 2)) for i in range(7)], col, 0.025)
        elif g == "wave":
            p.line([(cx - s + 2 * s * i / 12, cy + 0.4 * s * math.sin(i * math.pi / 3)) for i in range(13)], col, 0.025)
        elif g == "arrow":
            p.arrow(cx - s, cy, cx + s, cy, col, 0.025, 0.05)
        elif g == "dots":
            for i in range(4):
                p.circle(cx - s + 2 * s * i / 3, cy, 0.02, col)
        else:
            p.line([(cx - s, cy - s), (cx + s, cy + s)], col, 0.03)
            p.line([(cx + s, cy - s), (cx - s, cy + s)], col, 0.03)


def _icon_sprite(name: str, type_: str, w: int) -> _Sprite:
    """A property on a round badge, or a result on a rounded card, tinted by a name-hashed hue."""
    r = _rand("icon", type_, name)
    hue = r.random()
    h = _hsv(hue, 0.75, 0.85, 255)
    img = Image.new("RGBA", (w, w), (0, 0, 0, 0))
    p = _Pen(img)
    if type_ == "property":
        p.circle(0.5, 0.5, 0.44, fill=_hsv(hue, 0.18, 0.97, 255), outline=_hsv(hue, 0.6, 0.55, 255), width=0.03)
        drawn = _p_icon(name, p, h)
    else:
        p.rrect(
            0.06, 0.1, 0.94, 0.9, 0.08, fill=_hsv(hue, 0.25, 0.95, 255), outline=_hsv(hue, 0.6, 0.5, 255), width=0.03
        )
        drawn = _r_scene(name, p, h)
    if not drawn:
        _generic_icon(name, p, h)
    return _Sprite([], img)


@lru_cache(maxsize=1024)
def _sprite(name: str, type_: str, w: int) -> _Sprite:
    if type_ == "object":
        return _object_sprite(name, w)
    if type_ == "material":
        return _material_sprite(name, w)
    return _icon_sprite(name, type_, w)


# --------------------------------------------------------------------------------------------
# Per-render variation (the split decides the style family)
# --------------------------------------------------------------------------------------------


def _bg_color(rng: random.Random) -> np.ndarray:
    return np.asarray(_hsv(rng.random(), rng.uniform(0.05, 0.55), rng.uniform(0.3, 0.95)), np.float32)


def _background(rng: random.Random, nr: np.random.Generator, split: str, w: int) -> np.ndarray:
    c0, c1 = _bg_color(rng), _bg_color(rng)
    xs, ys = _grid(w)
    if split == "train":
        kind = rng.choice(("solid", "linear", "radial"))
        if kind == "solid":
            t: np.ndarray = np.zeros((w, w), np.float32)
        elif kind == "linear":
            d = _dir(w, rng.uniform(0, 360))
            t = (d - d.min()) / (d.max() - d.min())
        else:
            cx, cy = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8)
            t = np.clip(np.hypot(xs - cx, ys - cy) / 0.8, 0, 1)
    else:
        kind = rng.choice(("checker", "noise", "two-tone", "stripes"))
        if kind == "checker":
            n = rng.randint(3, 9)
            t = ((np.floor(xs * n) + np.floor(ys * n)) % 2).astype(np.float32)
        elif kind == "noise":
            n = rng.randint(4, 16)
            small = Image.fromarray((nr.random((n, n)) * 255).astype(np.uint8), "L")
            t = np.asarray(small.resize((w, w), Image.Resampling.NEAREST), np.float32) / 255
            t = np.clip(t + nr.normal(0, 0.08, (w, w)).astype(np.float32), 0, 1)
        elif kind == "two-tone":
            d = _dir(w, rng.uniform(0, 360))
            t = (d > rng.uniform(float(d.min()) + 0.3, float(d.max()) - 0.3)).astype(np.float32)
        else:
            d = _dir(w, rng.uniform(0, 180))
            t = ((d * rng.randint(3, 8)) % 1.0 < 0.5).astype(np.float32)
    return c0 * (1 - t[..., None]) + c1 * t[..., None]


def _color_matrix(hue_deg: float, sat: float, bright: float) -> np.ndarray:
    """Hue rotation about the grey axis, then saturation and brightness, as one 3x3 matrix."""
    a = math.radians(hue_deg)
    c, s = math.cos(a), math.sin(a)
    k, q = (1 - c) / 3, math.sqrt(1 / 3) * s
    hue = np.array([[c + k, k - q, k + q], [k + q, c + k, k - q], [k - q, k + q, c + k]], np.float32)
    lum = np.array([0.299, 0.587, 0.114], np.float32)
    satm = sat * np.eye(3, dtype=np.float32) + (1 - sat) * np.outer(np.ones(3, np.float32), lum)
    return bright * satm @ hue


def _jitter(fg: Image.Image, rng: random.Random, split: str) -> Image.Image:
    if split == "train":
        hue, sat, bright = rng.uniform(-6, 6), rng.uniform(0.9, 1.1), rng.uniform(0.9, 1.1)
    else:
        hue = rng.uniform(4, 12) * rng.choice((-1, 1))
        sat = rng.uniform(0.8, 1.2)
        bright = rng.uniform(0.82, 0.92) if rng.random() < 0.5 else rng.uniform(1.08, 1.18)
    a = np.asarray(fg, np.float32).copy()
    a[..., :3] = a[..., :3] @ _color_matrix(hue, sat, bright).T
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGBA")


def _place(fg: Image.Image, rng: random.Random, split: str) -> Image.Image:
    """Rotate, scale and shift the sprite with one affine warp (premultiplied, so edges stay clean)."""
    w = fg.size[0]
    angle = rng.uniform(-20, 20) if split == "train" else rng.uniform(20, 35) * rng.choice((-1, 1))
    scale = rng.uniform(0.65, 1.0)
    room = max(0.0, (1.0 - 0.85 * scale) / 2) + 0.03
    tx, ty = rng.uniform(-room, room) * w, rng.uniform(-room, room) * w
    a = math.radians(angle)
    ca, sa = math.cos(a) / scale, math.sin(a) / scale
    c = w / 2
    # Output pixel -> input pixel: p_in = c + R(-angle) (p_out - c - t) / scale.
    ox, oy = c + tx, c + ty
    data = (ca, sa, c - ca * ox - sa * oy, -sa, ca, c + sa * ox - ca * oy)
    out = fg.convert("RGBa").transform((w, w), Image.Transform.AFFINE, data, resample=Image.Resampling.BILINEAR)
    return out.convert("RGBA")


def _finish(img: Image.Image, rng: random.Random, nr: np.random.Generator, split: str) -> Image.Image:
    if split == "train":
        sigma = rng.uniform(1, 4) if rng.random() < 0.5 else 0.0
    else:
        if rng.random() < 0.5:
            img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 0.8) * img.size[0] / 64))
        sigma = rng.uniform(2, 6)
    if sigma:
        a = np.asarray(img, np.float32) + nr.normal(0, sigma, (img.size[1], img.size[0], 3)).astype(np.float32)
        img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")
    return img


# --------------------------------------------------------------------------------------------
# Public interface
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _world_types() -> dict[str, str]:
    entities, _ = build_world()
    return {e.name: e.type for e in entities}


def _check(name: str, type_: str, split: str, size: int) -> None:
    if type_ not in RENDERED_TYPES:
        raise ValueError(f"cannot render type {type_!r}: rendered types are {', '.join(RENDERED_TYPES)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 16:
        raise ValueError(f"size must be an integer of at least 16 pixels, got {size!r}")
    known = _world_types().get(name)
    if known is not None and known != type_:
        raise ValueError(f"{name!r} is a world {known}, not a {type_}")


def render(name: str, type_: str, seed: int, split: str = "train", size: int = 64) -> Image.Image:
    """One RGB render (size x size) of the entity; same (name, type_, seed, split, size) -> identical pixels.

    Names outside the world still render, from hashed generic shapes, textures or glyphs.
    """
    _check(name, type_, split, size)
    w = 2 * int(size)  # drawn at 2x, then box-downsampled
    rng = _rand("render", type_, name, seed, split)  # not size: the same seed looks alike at every size
    nr = np.random.default_rng(rng.getrandbits(63))
    fg = _sprite(name, type_, w).compose(w, rng)
    fg = _place(_jitter(fg, rng, split), rng, split)
    bg = Image.fromarray(np.clip(_background(rng, nr, split, w), 0, 255).astype(np.uint8), "RGB").convert("RGBA")
    bg.alpha_composite(fg)
    return _finish(bg.convert("RGB").reduce(2), rng, nr, split)


def _plain_render(name: str, type_: str, size: int = 32) -> Image.Image:
    """The entity's identity alone: canonical pose, fixed texture crop, grey background, no jitter."""
    w = 2 * size
    bg = Image.new("RGBA", (w, w), (128, 128, 128, 255))
    bg.alpha_composite(_sprite(name, type_, w).compose(w, None))
    return bg.convert("RGB").reduce(2)


@lru_cache(maxsize=1)
def _rendered() -> tuple[tuple[str, str], ...]:
    entities, _ = build_world()
    return tuple((e.name, e.type) for e in entities if e.type in RENDERED_TYPES)


def rendered_entities() -> list[tuple[str, str]]:
    """(name, type) of every world entity of a RENDERED_TYPE, in build_world()'s order."""
    return list(_rendered())


def render_set(
    per_entity: int, split: str = "train", size: int = 64, seed: int = 0, names: list[str] | None = None
) -> tuple[list[Image.Image], list[str]]:
    """per_entity renders of each rendered entity (or of `names` only), and the entity name of each image.

    Images are grouped by entity (in `names` order if given, else build_world()'s); render i of an
    entity uses seed ``seed * 1_000_003 + i``, so different ``seed`` values give disjoint renders.
    """
    if per_entity < 0:
        raise ValueError(f"per_entity must be >= 0, got {per_entity}")
    entities = rendered_entities()
    if names is not None:
        types = dict(entities)
        unknown = [n for n in names if n not in types]
        if unknown:
            raise ValueError(f"not rendered world entities: {unknown}")
        entities = [(n, types[n]) for n in names]
    images: list[Image.Image] = []
    labels: list[str] = []
    for name, type_ in entities:
        for i in range(per_entity):
            images.append(render(name, type_, seed * 1_000_003 + i, split, size))
            labels.append(name)
    return images, labels
