"""From a labelled Sample to a training example: augment, then one binary mask per class present.

The reference's semantic mapper, in order: random short-side resize (a choice of sizes, long side capped),
random crop (retried while one class covers more than `single_category_max_area` of it), SSD colour
augmentation, random horizontal flip, padding to the crop size (image with 128, label with ignore).
Every random decision is drawn from the `random.Random` it is given, so an example is a pure function
of its seed (what makes exact resume and 1-vs-N-process runs see the same data).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ovframe import IGNORE_INDEX

from .config import TrainProposalsConfig


@dataclass(frozen=True)
class Example:
    """image float [3, S, S] (0-255, not normalised), label int64 [S, S] (training class ids, IGNORE_INDEX),
    labels int64 [M], masks bool [M, S, S] (one per class present)."""

    image: torch.Tensor
    label: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor


def resized_shape(h: int, w: int, short: int, max_size: int) -> tuple[int, int]:
    """detectron2's ResizeShortestEdge output size; a side is at least 1 pixel (detectron2 gives 0 for a
    sliver such as 1 x 4000 once the long side is capped, and then fails)."""
    scale = short / min(h, w)
    newh, neww = (short, scale * w) if h < w else (scale * h, short)
    if max(newh, neww) > max_size:
        scale = max_size / max(newh, neww)
        newh, neww = newh * scale, neww * scale
    return max(1, int(newh + 0.5)), max(1, int(neww + 0.5))


def resize(image: torch.Tensor, label: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    if tuple(image.shape[-2:]) == size:
        return image, label
    image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    label = F.interpolate(label[None, None].float(), size=size, mode="nearest")[0, 0].long()
    return image, label


def crop_box(label: torch.Tensor, crop: int, max_area: float, rng: random.Random) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a random crop, retried up to 10 times while one class dominates."""
    h, w = label.shape
    ch, cw = min(crop, h), min(crop, w)
    for _ in range(10 if max_area < 1.0 else 1):
        top, left = rng.randint(0, h - ch), rng.randint(0, w - cw)
        if max_area >= 1.0:
            break
        window = label[top : top + ch, left : left + cw]
        _, counts = torch.unique(window[window != IGNORE_INDEX], return_counts=True)
        if len(counts) > 1 and counts.max().item() < max_area * counts.sum().item():
            break
    return top, left, ch, cw


def color_aug_ssd(image: torch.Tensor, rng: random.Random) -> torch.Tensor:
    """SSD photometric distortion on a float RGB image (0-255), each step with probability 1/2:
    brightness +-32; then contrast x[0.5, 1.5] before or after saturation x[0.5, 1.5] and hue +-18 (OpenCV
    hue units, 2 degrees each)."""
    img = image
    if rng.randrange(2):
        img = (img + rng.uniform(-32, 32)).clamp(0, 255)

    def contrast(x: torch.Tensor) -> torch.Tensor:
        return (x * rng.uniform(0.5, 1.5)).clamp(0, 255) if rng.randrange(2) else x

    def saturation(x: torch.Tensor) -> torch.Tensor:
        if not rng.randrange(2):
            return x
        v = x.max(dim=0, keepdim=True).values  # HSV saturation scaled, hue and value kept
        return (v - rng.uniform(0.5, 1.5) * (v - x)).clamp(0, 255)

    def hue(x: torch.Tensor) -> torch.Tensor:
        if not rng.randrange(2):
            return x
        from torchvision.transforms.functional import adjust_hue

        return adjust_hue(x / 255.0, rng.randint(-18, 18) * 2 / 360.0) * 255.0

    if rng.randrange(2):
        img = hue(saturation(contrast(img)))
    else:
        img = contrast(hue(saturation(img)))
    return img


def targets_of(label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """label [H, W] -> (classes present [M], masks bool [M, H, W]); ignore pixels belong to no mask."""
    classes = torch.unique(label)
    classes = classes[classes != IGNORE_INDEX]
    return classes.long(), label[None] == classes[:, None, None]


class SemanticMapper:
    """Makes training Examples. `class_map` [K_dataset] maps dataset labels to training classes (-1: not
    trained on, e.g. unseen classes, which become ignore)."""

    def __init__(self, cfg: TrainProposalsConfig, class_map: torch.Tensor):
        self.cfg = cfg
        self.class_map = class_map.long()
        crop = cfg.crop_size
        self.min_sizes = list(cfg.min_size_train or [int(x * 0.1 * crop) for x in range(5, 21)])
        self.max_size = cfg.max_size_train or 4 * crop

    def remap(self, label: torch.Tensor) -> torch.Tensor:
        out = torch.full_like(label, IGNORE_INDEX)
        valid = (label >= 0) & (label < len(self.class_map))
        out[valid] = self.class_map[label[valid]]
        return out

    def __call__(self, image: torch.Tensor, label: torch.Tensor, rng: random.Random) -> Example:
        cfg = self.cfg
        label = self.remap(label)
        img = image.float()
        h, w = label.shape
        img, label = resize(img, label, resized_shape(h, w, rng.choice(self.min_sizes), self.max_size))
        top, left, ch, cw = crop_box(label, cfg.crop_size, cfg.single_category_max_area, rng)
        img, label = img[:, top : top + ch, left : left + cw], label[top : top + ch, left : left + cw]
        if cfg.color_aug:
            img = color_aug_ssd(img, rng)
        if cfg.flip and rng.random() < 0.5:
            img, label = img.flip(-1), label.flip(-1)
        pad = (0, cfg.crop_size - cw, 0, cfg.crop_size - ch)
        img = F.pad(img, pad, value=128.0)
        label = F.pad(label, pad, value=IGNORE_INDEX)
        labels, masks = targets_of(label)
        return Example(img.contiguous(), label.contiguous(), labels, masks)
