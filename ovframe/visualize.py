"""Pictures of segmentations: the input beside the prediction (and the ground truth), with a legend.

Colours follow the class *name*, not its position in the vocabulary: "lava" has the same colour in
every run whatever else is asked for (unless two names of one vocabulary want the same colour; then
one of them takes the next free one). The palette is designed for distinctness: colours picked one by
one, each the farthest in CIELAB from those already picked, among vivid, mid-light sRGB colours; names
hash into its first PRIMARY colours.
"""

from __future__ import annotations

import hashlib
import math
from functools import lru_cache
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .records import IGNORE_INDEX

PRIMARY = 24
"""The most distinct colours of the palette: every name hashes to one of them; names a vocabulary
cannot fit there (collisions of more than PRIMARY names) take the further, less distinct colours."""

NEUTRAL = {"others": (128, 128, 128)}
"""Names with a fixed colour: the catch-all class of a one-class vocabulary is grey."""

OUTLINE = (255, 255, 255)


def _srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """uint8-range sRGB [..., 3] -> CIELAB (D65) [..., 3]."""
    c = rgb.astype(np.float64) / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    xyz = c @ np.array([[0.4124, 0.2126, 0.0193], [0.3576, 0.7152, 0.1192], [0.1805, 0.0722, 0.9505]])
    xyz /= np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


@lru_cache(maxsize=8)
def distinct_colours(n: int) -> np.ndarray:
    """uint8 [n, 3]: greedy farthest-point colours in CIELAB (each prefix is itself a good palette).

    Candidates are the sRGB grid in steps of 17 with lightness 30-88 and chroma >= 25 (no greys,
    nothing close to the white outlines or black text)."""
    axis = np.arange(0, 256, 17)
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    lab = _srgb_to_lab(grid)
    keep = (lab[:, 0] >= 30) & (lab[:, 0] <= 88) & (np.hypot(lab[:, 1], lab[:, 2]) >= 25)
    grid, lab = grid[keep], lab[keep]
    first = int(np.argmax(np.hypot(lab[:, 1], lab[:, 2])))  # the most saturated colour
    picked = [first]
    nearest = np.linalg.norm(lab - lab[first], axis=1)
    for _ in range(1, min(n, len(grid))):
        k = int(np.argmax(nearest))
        picked.append(k)
        nearest = np.minimum(nearest, np.linalg.norm(lab - lab[k], axis=1))
    colours = grid[picked]
    if n > len(colours):  # more classes than candidates: repeat (never happens for real vocabularies)
        colours = np.resize(colours, (n, 3))
    return colours.astype(np.uint8)


def _name_hash(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.strip().lower().encode("utf-8")).digest()[:8], "big")


def class_colours(names: Sequence[str]) -> np.ndarray:
    """uint8 [K, 3], one colour per name, fixed by the name (see _class_colours)."""
    return _class_colours(tuple(names)).copy()


@lru_cache(maxsize=32)
def _class_colours(names: tuple[str, ...]) -> np.ndarray:
    """Each name hashes to one of the PRIMARY most distinct colours and keeps it whenever it is free, so
    "lava" is the same colour in every vocabulary. Names are placed in the order of their hashes (the
    order of the vocabulary does not matter); a name whose colour is taken takes the next free primary
    colour, and past PRIMARY names, a free colour further down the palette."""
    palette = distinct_colours(max(256, len(names) + PRIMARY))
    out = np.zeros((len(names), 3), dtype=np.uint8)
    taken: set[int] = set()
    for i in sorted(range(len(names)), key=lambda i: (_name_hash(names[i]), names[i])):
        if names[i] in NEUTRAL:
            out[i] = NEUTRAL[names[i]]
            continue
        slot = _free_slot(_name_hash(names[i]), taken, len(palette))
        taken.add(slot)
        out[i] = palette[slot]
    return out


def _free_slot(h: int, taken: set[int], size: int) -> int:
    for j in range(PRIMARY):
        if (h + j) % PRIMARY not in taken:
            return (h + j) % PRIMARY
    for j in range(size - PRIMARY):
        if PRIMARY + (h + j) % (size - PRIMARY) not in taken:
            return PRIMARY + (h + j) % (size - PRIMARY)
    raise AssertionError("the palette has a colour per name")


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def display_scale(h: int, w: int, *, min_side: int = 384, max_side: int = 1024) -> float:
    """How much a panel is scaled for viewing: small images up by a whole factor (pixels stay crisp),
    large ones down so the long side is at most `max_side`."""
    if min(h, w) < min_side:
        factor = min(math.ceil(min_side / min(h, w)), max(1, max_side // max(h, w)))
        return float(max(factor, 1))
    if max(h, w) > max_side:
        return max_side / max(h, w)
    return 1.0


def _outlines(labels: np.ndarray) -> np.ndarray:
    edge = np.zeros(labels.shape, dtype=bool)
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    return edge


def _blend(image: np.ndarray, labels: np.ndarray, colours: np.ndarray, alpha: float) -> np.ndarray:
    out = image.astype(np.float32).copy()
    valid = labels != IGNORE_INDEX
    colour = colours[np.clip(labels, 0, len(colours) - 1)].astype(np.float32)
    out[valid] = (1 - alpha) * out[valid] + alpha * colour[valid]
    out[_outlines(labels)] = OUTLINE
    return out.clip(0, 255).astype(np.uint8)


def _resize(array: np.ndarray, size: tuple[int, int], labels: bool) -> np.ndarray:
    """Resize to (W, H): nearest for label maps, Lanczos (down) or nearest (whole-factor up) for images."""
    h, w = array.shape[:2]
    if (w, h) == size:
        return array
    if labels:
        index = Image.fromarray(array.astype(np.int32))
        return np.asarray(index.resize(size, Image.NEAREST)).astype(array.dtype)
    method = Image.NEAREST if size[0] >= w else Image.LANCZOS
    return np.asarray(Image.fromarray(array).resize(size, method))


def overlay(
    image: np.ndarray,
    labels: np.ndarray,
    names: Sequence[str],
    *,
    alpha: float = 0.55,
    title: str | None = None,
    ground_truth: np.ndarray | None = None,
    show_input: bool = True,
) -> Image.Image:
    """image uint8 [H, W, 3]; labels int [H, W] (IGNORE_INDEX pixels left uncoloured).

    Returns one picture: the input, the prediction and (if given) the ground truth side by side (one
    above the other for images more than twice as wide as tall), scaled for viewing (display_scale),
    captioned (a prediction shown alone has no caption: the page or viewer around it names it), with a
    legend of the classes present, largest first, with their share of the labelled pixels."""
    colours = class_colours(names)
    h, w = labels.shape
    scale = display_scale(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    shown = _resize(image, size, labels=False)
    panels: list[tuple[str, np.ndarray]] = [("input", shown)] if show_input else []
    panels.append(("prediction", _blend(shown, _resize(labels, size, labels=True), colours, alpha)))
    if ground_truth is not None:
        panels.append(("ground truth", _blend(shown, _resize(ground_truth, size, labels=True), colours, alpha)))
    pw, ph = size

    font_size = int(np.clip(ph / 20, 14, 28))
    font = _font(font_size)
    line = font_size + font_size // 2
    valid = labels[labels != IGNORE_INDEX]
    share = {int(k): c / max(valid.size, 1) for k, c in zip(*np.unique(valid, return_counts=True))}
    if ground_truth is not None:
        for k in np.unique(ground_truth[ground_truth != IGNORE_INDEX]):
            share.setdefault(int(k), 0.0)
    order = sorted(share, key=lambda k: (-share[k], names[k]))
    entries = [f"{names[k]}  {100 * share[k]:.1f}%" for k in order]
    legend_w = max([int(font.getlength(e)) for e in entries] + [int(font.getlength("prediction")) + 8]) + line + 2 * font_size
    legend_top = line + font_size // 2  # the legend starts level with the pictures under their captions ...
    header = legend_top if len(panels) > 1 else 0  # ... and below a viewer's toolbar when the picture is alone
    title_h = line if title else 0
    gap = max(4, font_size // 3)
    n = len(panels)
    stacked = pw > 2 * ph  # a wide image: panels one above the other, so the picture stays readable
    block_w, block_h = (pw, n * (header + ph) + (n - 1) * gap) if stacked else (n * pw + (n - 1) * gap, header + ph)
    canvas_w = block_w + gap + legend_w
    canvas_h = title_h + max(block_h, legend_top + len(order) * line + font_size)
    canvas = Image.new("RGB", (canvas_w, canvas_h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((4, 2), title, fill=(0, 0, 0), font=font)
    for i, (caption, panel) in enumerate(panels):
        x, y = (0, title_h + i * (header + ph + gap)) if stacked else (i * (pw + gap), title_h)
        if header:
            draw.text((x + 4, y + 2), caption, fill=(60, 60, 60), font=font)
        canvas.paste(Image.fromarray(panel), (x, y + header))
    x0 = block_w + gap + font_size // 2
    for row, (k, entry) in enumerate(zip(order, entries)):
        y = title_h + legend_top + row * line
        box = [x0, y + 2, x0 + font_size, y + 2 + font_size]
        draw.rectangle(box, fill=tuple(int(c) for c in colours[k]), outline=(0, 0, 0))
        draw.text((x0 + font_size + font_size // 2, y), entry, fill=(0, 0, 0), font=font)
    return canvas


def label_image(labels: np.ndarray, num_classes: int) -> Image.Image:
    """A PNG-ready label map: uint8 when the classes fit (255 = ignore), else 16-bit (65535 = ignore)."""
    if num_classes < 255:
        return Image.fromarray(np.where(labels == IGNORE_INDEX, 255, labels).astype(np.uint8))
    return Image.fromarray(np.where(labels == IGNORE_INDEX, 65535, labels).astype(np.uint16))
