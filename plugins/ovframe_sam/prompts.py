"""Prompts sampled from ground-truth segments, as SAM is trained and evaluated (the SAM paper, section 3
and appendix A): segments of a label map, a first prompt per segment (a point in it or its noisy box),
correction points in the error region of the previous mask, and the interior point of evaluation.

Coordinates are pixels (x, y) of the frame the label is in; boxes are (x0, y0, x1, y1) with x1, y1 the
last pixel inside (as segment_anything's batched_mask_to_box gives them).
"""

from __future__ import annotations

import numpy as np
import torch

from ovframe import IGNORE_INDEX

EIGHT = np.ones((3, 3), dtype=bool)


def segments_of(label: np.ndarray, mode: str, min_area: int) -> np.ndarray:
    """label int [H, W] -> bool [M, H, W]: the connected parts of each class's region (components, 8-connected)
    or each class's whole region (classes), at least min_area pixels; ignore pixels belong to none."""
    from scipy import ndimage

    out = []
    for c in np.unique(label):
        if c == IGNORE_INDEX:
            continue
        region = label == c
        if mode == "classes":
            parts = [region]
        else:
            labelled, n = ndimage.label(region, structure=EIGHT)
            parts = [labelled == i for i in range(1, n + 1)]
        out += [p for p in parts if p.sum() >= min_area]
    return np.stack(out) if out else np.zeros((0, *label.shape), dtype=bool)


def box_of(mask: np.ndarray) -> np.ndarray:
    """bool [H, W] (not empty) -> float [4] (x0, y0, x1, y1), x1/y1 inclusive."""
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float64)


def first_prompts(segments: np.ndarray, rng: np.random.Generator, box_prob: float, box_noise: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One prompt per segment: (is_box bool [M], points float [M, 2], boxes float [M, 4]).

    A point is a pixel of the segment drawn uniformly; a box is the segment's box with each corner moved by
    normal noise of std box_noise x the box side (at most 20 px), kept inside the image."""
    m, h, w = segments.shape
    is_box = rng.random(m) < box_prob
    points = np.zeros((m, 2))
    boxes = np.zeros((m, 4))
    for i, seg in enumerate(segments):
        ys, xs = np.nonzero(seg)
        j = rng.integers(len(xs))
        points[i] = xs[j], ys[j]
        box = box_of(seg)
        side = np.array([box[2] - box[0] + 1, box[3] - box[1] + 1] * 2)
        noisy = box + rng.normal(0.0, 1.0, 4) * np.minimum(box_noise * side, 20.0)
        noisy = np.clip(noisy, 0, [w - 1, h - 1, w - 1, h - 1])
        boxes[i] = [min(noisy[0], noisy[2]), min(noisy[1], noisy[3]), max(noisy[0], noisy[2]), max(noisy[1], noisy[3])]
    return is_box, points, boxes


def correction_points(predicted: torch.Tensor, target: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """bool [P, H, W] masks and targets -> points float [P, 2] (x, y) and labels int [P]: a pixel drawn
    uniformly from the error region, positive (1) where the mask missed the target, negative (0) where it
    spilled; a mask without error gets a positive point inside its target."""
    error = predicted ^ target
    region = torch.where(error.flatten(1).any(1)[:, None, None], error, target)
    weights = region.flatten(1).float()
    weights[weights.sum(1) == 0] = 1.0  # an empty target (not produced by segments_of): any pixel
    index = torch.multinomial(weights, 1, generator=generator).flatten()
    w = predicted.shape[-1]
    ys, xs = index // w, index % w
    labels = target.flatten(1).gather(1, index[:, None]).flatten().int()
    return torch.stack([xs, ys], dim=1).float(), labels


def interior_point(mask: np.ndarray) -> tuple[float, float]:
    """(x, y) of the pixel farthest from the segment's boundary (the SAM paper's evaluation point)."""
    from scipy import ndimage

    distance = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return float(x), float(y)
