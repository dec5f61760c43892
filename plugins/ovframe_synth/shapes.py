"""The five object shapes, rasterised with anti-aliasing.

A shape of nominal size r has an area of about 2 r^2 whatever its kind (a circle of radius 0.80 r, a
square of circumradius r ...), so "small" and "large" mean the same thing for every shape. Shapes are
drawn by Pillow at SUPERSAMPLE times the resolution and box-filtered down: the result is a coverage
map in 0..1; the object's label is coverage >= 0.5, its colour is blended in with the coverage as alpha.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SUPERSAMPLE = 4

_T = np.linspace(0.0, 2.0 * np.pi, 48, endpoint=False)
_HEART = np.stack(
    [16 * np.sin(_T) ** 3, -(13 * np.cos(_T) - 5 * np.cos(2 * _T) - 2 * np.cos(3 * _T) - np.cos(4 * _T)) - 2.54], axis=1
) * np.sqrt(2.0 / 565.5)  # area 2 (r = 1), centred on its bounding box


def _regular(n: int, radius: float, inner: float | None = None) -> np.ndarray:
    """Vertices of a regular n-gon (or an n-pointed star with `inner` radius), first vertex up."""
    if inner is None:
        angles = -np.pi / 2 + 2 * np.pi * np.arange(n) / n
        return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    angles = -np.pi / 2 + np.pi * np.arange(2 * n) / n
    radii = np.where(np.arange(2 * n) % 2 == 0, radius, inner)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


# unit outlines (r = 1) as (x, y) rows; y points down (image coordinates)
OUTLINES: dict[str, np.ndarray] = {
    "square": _regular(4, 1.0),
    "triangle": _regular(3, 1.241),
    "star": _regular(5, 1.167, 0.5835),
    "heart": _HEART,
}
CIRCLE_RADIUS = 0.798
MAX_TILT = {"heart": np.deg2rad(25.0)}  # hearts stay roughly upright; other shapes turn freely
EXTENT = 1.25  # every outline fits in a disc of radius EXTENT * r


@dataclass(frozen=True)
class Raster:
    """A shape rasterised in its own window of the image plane.

    coverage: float32 [h, w] in 0..1, for rows y0..y0+h and columns x0..x0+w of the image plane (the
        window may reach outside the image; the caller clips).
    """

    y0: int
    x0: int
    coverage: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        return self.coverage >= 0.5


def rasterise(shape: str, cy: float, cx: float, r: float, angle: float) -> Raster:
    """The coverage of `shape` of size r centred at (cy, cx) (pixel centres at integer + 0.5), turned by angle."""
    half = EXTENT * r + 1.0
    y0, x0 = int(np.floor(cy - half)), int(np.floor(cx - half))
    h, w = int(np.ceil(cy + half)) - y0, int(np.ceil(cx + half)) - x0
    canvas = Image.new("L", (w * SUPERSAMPLE, h * SUPERSAMPLE), 0)
    draw = ImageDraw.Draw(canvas)
    s = SUPERSAMPLE
    if shape == "circle":
        rc = CIRCLE_RADIUS * r
        draw.ellipse([(cx - rc - x0) * s, (cy - rc - y0) * s, (cx + rc - x0) * s - 1, (cy + rc - y0) * s - 1], fill=255)
    else:
        c, si = np.cos(angle), np.sin(angle)
        unit = OUTLINES[shape]
        xs = (unit[:, 0] * c - unit[:, 1] * si) * r + cx - x0
        ys = (unit[:, 0] * si + unit[:, 1] * c) * r + cy - y0
        draw.polygon([(float(x * s), float(y * s)) for x, y in zip(xs, ys)], fill=255)
    coverage = np.asarray(canvas.reduce(s), dtype=np.float32) / 255.0
    return Raster(y0, x0, coverage)


def tilt_range(shape: str) -> float:
    """Largest rotation (radians, either way) a shape is drawn with."""
    return float(MAX_TILT.get(shape, np.pi))
