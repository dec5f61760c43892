"""Pictures of segmentations: the image with coloured regions and outlines, and a legend beside it."""

from __future__ import annotations

import colorsys
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .records import IGNORE_INDEX


def palette(num_classes: int) -> np.ndarray:
    """uint8 [K, 3]: well-separated, deterministic colours (golden-ratio hues, alternating lightness)."""
    colours = []
    for k in range(num_classes):
        hue = (k * 0.618033988749895) % 1.0
        light = (0.45, 0.6, 0.35)[k % 3]
        sat = (0.85, 0.65)[(k // 3) % 2]
        colours.append([round(255 * c) for c in colorsys.hls_to_rgb(hue, light, sat)])
    return np.asarray(colours, dtype=np.uint8)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _outlines(labels: np.ndarray) -> np.ndarray:
    edge = np.zeros(labels.shape, dtype=bool)
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    return edge


def overlay(
    image: np.ndarray,
    labels: np.ndarray,
    names: Sequence[str],
    *,
    alpha: float = 0.5,
    title: str | None = None,
    ground_truth: np.ndarray | None = None,
) -> Image.Image:
    """image uint8 [H, W, 3]; labels int [H, W] (IGNORE_INDEX pixels left uncoloured).

    Returns the overlay, then (if given) the ground truth, side by side, with a legend of the classes
    present, largest first, with their share of the pixels."""
    colours = palette(len(names))
    panels = [_blend(image, labels, colours, alpha)]
    if ground_truth is not None:
        panels.append(_blend(image, ground_truth, colours, alpha))
    h, w = labels.shape
    font_size = max(12, min(22, h // 24))
    font = _font(font_size)
    line = font_size + 6
    present, counts = np.unique(labels[labels != IGNORE_INDEX], return_counts=True)
    if ground_truth is not None:
        present = np.union1d(present, np.unique(ground_truth[ground_truth != IGNORE_INDEX]))
    share = {int(k): 0.0 for k in present}
    total = max(int((labels != IGNORE_INDEX).sum()), 1)
    for k, c in zip(*np.unique(labels[labels != IGNORE_INDEX], return_counts=True)):
        share[int(k)] = c / total
    order = sorted(share, key=lambda k: -share[k])
    legend_w = max(180, max((int(font.getlength(f"{names[k]}  100.0%")) for k in order), default=0) + line + 24)
    header = line + 6 if (title or ground_truth is not None) else 0
    canvas_h = max(h + header, len(order) * line + 16 + header)
    canvas = Image.new("RGB", (w * len(panels) + legend_w, canvas_h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, panel in enumerate(panels):
        canvas.paste(Image.fromarray(panel), (i * w, header))
    if header:
        captions = [title or "prediction"] + (["ground truth"] if ground_truth is not None else [])
        for i, caption in enumerate(captions):
            draw.text((i * w + 4, 3), caption, fill=(0, 0, 0), font=font)
    x0 = w * len(panels) + 10
    for row, k in enumerate(order):
        y = header + 8 + row * line
        draw.rectangle([x0, y, x0 + font_size, y + font_size], fill=tuple(int(c) for c in colours[k]), outline=(0, 0, 0))
        draw.text((x0 + font_size + 8, y - 1), f"{names[k]}  {100 * share[k]:.1f}%", fill=(0, 0, 0), font=font)
    return canvas


def _blend(image: np.ndarray, labels: np.ndarray, colours: np.ndarray, alpha: float) -> np.ndarray:
    out = image.astype(np.float32).copy()
    valid = labels != IGNORE_INDEX
    colour = colours[np.clip(labels, 0, len(colours) - 1)].astype(np.float32)
    out[valid] = (1 - alpha) * out[valid] + alpha * colour[valid]
    out[_outlines(labels)] = 255.0
    return out.clip(0, 255).astype(np.uint8)


def label_image(labels: np.ndarray, num_classes: int) -> Image.Image:
    """A PNG-ready label map: uint8 when the classes fit (255 = ignore), else 16-bit (65535 = ignore)."""
    if num_classes < 255:
        return Image.fromarray(np.where(labels == IGNORE_INDEX, 255, labels).astype(np.uint8))
    return Image.fromarray(np.where(labels == IGNORE_INDEX, 65535, labels).astype(np.uint16))
