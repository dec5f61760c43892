"""Procedural textures: the ten stuff classes and the surface patterns of objects.

Every function draws from the NumPy Generator it is given and nothing else, so a texture is a pure
function of that generator's state. Images are float32 [H, W, 3] in 0..1 (clipped by the caller).
Sizes in pixels are given for a 128-pixel image and scaled by `scale` = image_size / 128, so a
texture looks the same at every resolution.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

import numpy as np
from PIL import Image

F32 = np.float32


def value_noise(rng: np.random.Generator, h: int, w: int, cell_y: float, cell_x: float | None = None) -> np.ndarray:
    """Smooth noise in about 0..1, float32 [h, w]: a random grid of cell_y x cell_x pixels, bicubic-upsampled."""
    cell_x = cell_y if cell_x is None else cell_x
    gh, gw = max(2, int(np.ceil(h / cell_y)) + 1), max(2, int(np.ceil(w / cell_x)) + 1)
    grid = rng.random((gh, gw), dtype=F32)
    return np.asarray(Image.fromarray(grid).resize((w, h), Image.BICUBIC), dtype=F32)


def fbm(rng: np.random.Generator, h: int, w: int, cell: float, octaves: int = 3) -> np.ndarray:
    """Fractal noise: octaves of value noise, each half the cell and half the weight; about 0..1."""
    total, norm, weight = np.zeros((h, w), F32), 0.0, 1.0
    for _ in range(octaves):
        total += weight * value_noise(rng, h, w, max(cell, 1.0))
        norm += weight
        cell, weight = cell / 2, weight / 2
    return total / F32(norm)


def smoothstep(lo: float, hi: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0, 1)
    return t * t * (3 - 2 * t)


def jitter(rng: np.random.Generator, rgb: tuple[float, float, float], amount: float = 0.05) -> np.ndarray:
    """A base colour moved a little: a shared brightness factor and a small per-channel shift."""
    c = np.asarray(rgb, F32) * F32(rng.uniform(0.88, 1.08))
    return np.clip(c + rng.uniform(-amount, amount, 3).astype(F32), 0, 1)


def _tone(base: np.ndarray, tone: np.ndarray) -> np.ndarray:
    return base[None, None, :] * tone[..., None]


def _mix(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """a*(1-t) + b*t with a, b colours (3,) or images and t [h, w]."""
    return a + (b - a) * t[..., None]


@lru_cache(maxsize=64)
def _cached_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:h, 0:w].astype(F32)
    ys.flags.writeable = False
    xs.flags.writeable = False
    return ys, xs


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel row and column coordinates, float32 [h, w] each (shared, read-only)."""
    return _cached_grid(h, w)


# -- stuff ----------------------------------------------------------------------------------


def grass(rng, h, w, scale):
    base = jitter(rng, (0.22, 0.50, 0.13))
    blades = value_noise(rng, h, w, 7 * scale, 0.9 * scale)  # tall, thin streaks
    patches = fbm(rng, h, w, 24 * scale, 2)
    tone = 0.55 + 0.55 * blades + 0.3 * (patches - 0.5)
    img = _tone(base, tone)
    img += (np.asarray([0.10, 0.08, 0.0], F32) * (blades - 0.5)[..., None])
    return img


def water(rng, h, w, scale):
    base = jitter(rng, (0.10, 0.34, 0.70), 0.04)
    ys, xs = _grid(h, w)
    warp = fbm(rng, h, w, 20 * scale, 2)
    wavelength = rng.uniform(5.0, 8.0) * scale
    ripples = np.sin(2 * np.pi * (ys / wavelength + 1.8 * warp) + rng.uniform(0, 2 * np.pi)).astype(F32)
    depth = 0.85 + 0.25 * (fbm(rng, h, w, 40 * scale, 2) - 0.5)
    img = _tone(base, depth + 0.12 * ripples)
    glints = smoothstep(0.75, 0.98, ripples) * smoothstep(0.45, 0.75, value_noise(rng, h, w, 6 * scale))
    return _mix(img, np.asarray([0.85, 0.93, 1.0], F32), 0.6 * glints)


def sand(rng, h, w, scale):
    base = jitter(rng, (0.86, 0.75, 0.50), 0.04)
    ys, xs = _grid(h, w)
    angle = rng.uniform(-0.5, 0.5)
    wavelength = rng.uniform(14, 26) * scale
    dunes = np.sin(2 * np.pi * (ys * np.cos(angle) + xs * np.sin(angle)) / wavelength + 3.0 * fbm(rng, h, w, 32 * scale, 2))
    grain = rng.random((h, w), dtype=F32)
    return _tone(base, 0.93 + 0.05 * dunes.astype(F32) + 0.12 * (grain - 0.5))


def brick_wall(rng, h, w, scale):
    brick = jitter(rng, (0.60, 0.25, 0.16), 0.04)
    mortar = jitter(rng, (0.78, 0.75, 0.70), 0.03)
    bh = rng.uniform(7, 10) * scale
    bw = bh * rng.uniform(2.0, 2.6)
    gap = max(1.0, 1.2 * scale)
    ys, xs = _grid(h, w)
    ys, xs = ys + rng.uniform(0, bh), xs + rng.uniform(0, bw)
    row = np.floor(ys / bh)
    xs = xs + (row % 2) * (bw / 2)
    col = np.floor(xs / bw)
    tones = rng.uniform(0.78, 1.12, (int(h / bh) + 3, int(w / bw) + 4)).astype(F32)
    tone = tones[row.astype(np.intp), col.astype(np.intp)]
    grit = fbm(rng, h, w, 3 * scale, 2)
    img = _tone(brick, tone * (0.88 + 0.24 * grit))
    joint = ((ys - row * bh) < gap) | ((xs - col * bw) < gap)
    img[joint] = mortar * (0.9 + 0.2 * grit[joint, None])
    return img


def wood(rng, h, w, scale):
    base = jitter(rng, (0.56, 0.35, 0.18), 0.04)
    ph = rng.uniform(10, 15) * scale
    ys, xs = _grid(h, w)
    ys = ys + rng.uniform(0, ph)
    row = np.floor(ys / ph)
    tones = rng.uniform(0.78, 1.15, int(h / ph) + 3).astype(F32)
    streaks = value_noise(rng, h, w, 1.6 * scale, 26 * scale)  # long along x
    grain = np.sin(2 * np.pi * (ys / (2.2 * scale) + 2.5 * streaks)).astype(F32)
    img = _tone(base, tones[row.astype(np.intp)] * (0.9 + 0.08 * grain))
    seam = (ys - row * ph) < max(1.0, scale)
    img[seam] *= 0.45
    return img


def gravel(rng, h, w, scale):
    base = jitter(rng, (0.52, 0.50, 0.47), 0.03)
    cell = rng.uniform(3.5, 5.0) * scale
    ys, xs = _grid(h, w)
    ys = ys + (value_noise(rng, h, w, 4 * scale) - 0.5) * 1.6 * cell
    xs = xs + (value_noise(rng, h, w, 4 * scale) - 0.5) * 1.6 * cell
    gy, gx = ys / cell, xs / cell
    iy, ix = np.floor(gy), np.floor(gx)
    tones = rng.uniform(0.6, 1.35, (int(h / cell) + 6, int(w / cell) + 6)).astype(F32)
    tint = rng.uniform(-0.06, 0.06, (int(h / cell) + 6, int(w / cell) + 6)).astype(F32)
    r, c = (iy + 3).astype(np.intp), (ix + 3).astype(np.intp)
    fy, fx = gy - iy, gx - ix
    edge = np.minimum(np.minimum(fy, 1 - fy), np.minimum(fx, 1 - fx))  # 0 at a stone's border
    shade = 0.45 + 0.55 * smoothstep(0.0, 0.22, edge)
    img = _tone(base, tones[r, c] * shade)
    img[..., 0] += tint[r, c]
    return img


def sky(rng, h, w, scale):
    top = jitter(rng, (0.30, 0.55, 0.90), 0.04)
    bottom = jitter(rng, (0.62, 0.78, 0.96), 0.03)
    ys, _ = _grid(h, w)
    img = _mix(top, bottom, ys / max(1, h - 1))
    clouds = smoothstep(0.5, 0.72, fbm(rng, h, w, rng.uniform(24, 40) * scale, 3))
    return _mix(img, np.asarray([0.97, 0.97, 0.98], F32), 0.9 * clouds)


def snow(rng, h, w, scale):
    base = jitter(rng, (0.93, 0.95, 0.98), 0.02)
    shadow = np.asarray([0.70, 0.78, 0.90], F32)
    drifts = smoothstep(0.45, 0.85, fbm(rng, h, w, 30 * scale, 3))
    img = _mix(base, shadow, 0.45 * drifts)
    sparkle = (rng.random((h, w), dtype=F32) < 0.01).astype(F32)
    return img + 0.06 * sparkle[..., None] + 0.03 * (rng.random((h, w), dtype=F32)[..., None] - 0.5)


def lava(rng, h, w, scale):
    crust = jitter(rng, (0.20, 0.08, 0.06), 0.03)
    glow = jitter(rng, (1.00, 0.52, 0.08), 0.04)
    ridged = 1.0 - np.abs(2 * fbm(rng, h, w, rng.uniform(18, 28) * scale, 3) - 1)
    heat = smoothstep(0.78, 0.95, ridged)
    img = _mix(_tone(crust, 0.8 + 0.4 * value_noise(rng, h, w, 4 * scale)), glow, heat)
    return img + np.asarray([0.25, 0.05, 0.0], F32) * smoothstep(0.6, 0.8, ridged)[..., None]


def tiles(rng, h, w, scale):
    light = jitter(rng, (0.90, 0.87, 0.78), 0.03)
    dark = jitter(rng, (0.30, 0.34, 0.42), 0.03)
    grout = np.asarray([0.55, 0.55, 0.53], F32)
    size = rng.uniform(11, 17) * scale
    gap = max(1.0, 1.2 * scale)
    ys, xs = _grid(h, w)
    ys, xs = ys + rng.uniform(0, size), xs + rng.uniform(0, size)
    iy, ix = np.floor(ys / size), np.floor(xs / size)
    checker = ((iy + ix) % 2).astype(F32)
    img = _mix(light, dark, checker) * (0.95 + 0.1 * value_noise(rng, h, w, 30 * scale))[..., None]
    joint = ((ys - iy * size) < gap) | ((xs - ix * size) < gap)
    img[joint] = grout
    return img


STUFF_TEXTURES: dict[str, Callable[[np.random.Generator, int, int, float], np.ndarray]] = {
    "grass": grass,
    "water": water,
    "sand": sand,
    "brick wall": brick_wall,
    "wood": wood,
    "gravel": gravel,
    "sky": sky,
    "snow": snow,
    "lava": lava,
    "tiles": tiles,
}


# -- object surfaces ------------------------------------------------------------------------


def object_surface(rng: np.random.Generator, pattern: str, rgb: tuple[float, float, float], h: int, w: int, scale: float) -> np.ndarray:
    """The surface of one object, float32 [h, w, 3]: its colour (jittered) in `pattern`."""
    base = jitter(rng, rgb, 0.04)
    second = base * 0.55 if rng.random() < 0.5 else base * 0.5 + 0.5  # darker or lighter tone
    ys, xs = _grid(h, w)
    angle = rng.uniform(0, np.pi)
    u = ys * np.cos(angle) + xs * np.sin(angle)
    v = -ys * np.sin(angle) + xs * np.cos(angle)
    period = rng.uniform(4.5, 8.0) * scale
    shade = 0.93 + 0.14 * value_noise(rng, h, w, 10 * scale)
    if pattern == "plain":
        t = np.zeros((h, w), F32)
    elif pattern == "striped":
        t = ((u / period) % 1.0 < 0.5).astype(F32)
    elif pattern == "dotted":
        du, dv = (u / period) % 1.0 - 0.5, (v / period) % 1.0 - 0.5
        t = ((du * du + dv * dv) < 0.09).astype(F32)
    elif pattern == "checkered":
        t = ((np.floor(u / period) + np.floor(v / period)) % 2).astype(F32)
    elif pattern == "gradient":
        span = max(1.0, float(u.max() - u.min()))
        t = ((u - u.min()) / span).astype(F32)
        return _mix(base * 0.62, base * 0.6 + 0.4, t) * shade[..., None]
    else:
        raise ValueError(f"unknown pattern {pattern!r}")
    return _mix(base, second, t) * shade[..., None]
