"""Region crops for CLIP, exactly as the reference prepares them (reference/ovseg.md, "Region crops").

For a proposal with binary mask m (sigmoid(logits) > mask_thr) in an image I (float, 0-255):
    box        tight box of m: x0 = first column with a region pixel, x1 = last + 1 (y likewise)
    expand     about the centre: cx = (x0 + x1) / 2, w = (x1 - x0) * ratio; l = trunc(cx - w/2), r = trunc(cx + w/2)
    clamp      l, t >= 0; r <= W, b <= H
    crop       I[:, t:b, l:r] * m + (1 - m) * fill          fill = 255 * CLIP mean, or 0; or no masking at all
    normalise  (crop - 255 * mean) / (255 * std)
    resize     bicubic to S x S (align_corners=False; the box is stretched, aspect ratio not kept);
               the region mask is resized with nearest
A proposal is invalid when its binary mask is empty or its box has no area (expand_ratio < 1 on a thin mask).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F


def binarize(mask_logits: torch.Tensor, mask_thr: float) -> torch.Tensor:
    """float [N, H, W] logits -> bool [N, H, W]; NaN logits are background."""
    return mask_logits.float().sigmoid() > mask_thr


def region_boxes(binary: torch.Tensor, expand_ratio: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """bool [N, H, W] -> (int64 [N, 4] boxes (l, t, r, b), exclusive right/bottom; bool [N] valid)."""
    n, h, w = binary.shape
    any_x = binary.any(dim=1)  # [N, W]
    any_y = binary.any(dim=2)  # [N, H]
    nonempty = any_x.any(dim=1)
    x0 = any_x.to(torch.uint8).argmax(dim=1)
    x1 = w - any_x.flip(1).to(torch.uint8).argmax(dim=1)
    y0 = any_y.to(torch.uint8).argmax(dim=1)
    y1 = h - any_y.flip(1).to(torch.uint8).argmax(dim=1)
    box = torch.stack([x0, y0, x1, y1], dim=1).float()  # float32, as the reference's box tensor
    if expand_ratio != 1.0:
        cx = 0.5 * (box[:, 0] + box[:, 2])
        cy = 0.5 * (box[:, 1] + box[:, 3])
        bw = (box[:, 2] - box[:, 0]) * expand_ratio
        bh = (box[:, 3] - box[:, 1]) * expand_ratio
        box = torch.stack([cx - 0.5 * bw, cy - 0.5 * bh, cx + 0.5 * bw, cy + 0.5 * bh], dim=1)
    box = box.trunc().long()
    l = box[:, 0].clamp(min=0)
    t = box[:, 1].clamp(min=0)
    r = box[:, 2].clamp(max=w)
    b = box[:, 3].clamp(max=h)
    boxes = torch.stack([l, t, r, b], dim=1)
    valid = nonempty & (r > l) & (b > t)
    return boxes, valid


@dataclass
class Cropper:
    """Makes the CLIP inputs of regions: normalised crops [3, S, S] and region masks [S, S]."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    fill: str | None  # "mean", "zero", or None: keep the background (no masking)

    def _consts(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        mean = torch.tensor(self.mean, dtype=torch.float32, device=device).view(3, 1, 1) * 255.0
        std = torch.tensor(self.std, dtype=torch.float32, device=device).view(3, 1, 1) * 255.0
        fill = None
        if self.fill == "mean":
            fill = mean
        elif self.fill == "zero":
            fill = torch.zeros_like(mean)
        return mean, std, fill

    def crop_batch(
        self, images: Sequence[torch.Tensor], binaries: Sequence[torch.Tensor], boxes: Sequence[tuple[int, int, int, int]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One crop per (float image [3, H, W] 0-255, bool mask [H, W], box) -> float [B, 3, S, S], bool [B, S, S]."""
        device = images[0].device
        mean, std, fill = self._consts(device)
        regions, masks = [], []
        for image, binary, (l, t, r, b) in zip(images, binaries, boxes):
            crop = image[:, t:b, l:r]
            m = binary[t:b, l:r].to(crop.dtype)
            if fill is not None:
                crop = crop * m + (1 - m) * fill
                masks.append(F.interpolate(m[None, None], size=(self.size, self.size), mode="nearest")[0, 0] > 0.5)
            else:
                masks.append(torch.ones(self.size, self.size, dtype=torch.bool, device=device))
            crop = (crop - mean) / std
            regions.append(F.interpolate(crop[None], size=(self.size, self.size), mode="bicubic")[0])
        return torch.stack(regions), torch.stack(masks)


@dataclass
class RegionPlan:
    """The valid proposals of a batch of images, in (image, proposal) order, and their boxes."""

    valid: list[torch.Tensor]  # per image bool [N_i]
    items: list[tuple[int, int]]  # (image index, proposal index) of each valid proposal
    boxes: list[tuple[int, int, int, int]]  # (l, t, r, b) of each item

    def chunks(self, size: int) -> Iterator[range]:
        for start in range(0, len(self.items), size):
            yield range(start, min(start + size, len(self.items)))


def plan_regions(binaries: Sequence[torch.Tensor], expand_ratio: float) -> RegionPlan:
    """bool [N_i, H_i, W_i] per image -> the plan of what to crop."""
    valid, items, boxes = [], [], []
    for i, binary in enumerate(binaries):
        if binary.shape[0] == 0:
            valid.append(torch.zeros(0, dtype=torch.bool))
            continue
        b, v = region_boxes(binary, expand_ratio)
        v = v.cpu()
        valid.append(v)
        b = b.cpu().tolist()
        for q in torch.nonzero(v).flatten().tolist():
            items.append((i, q))
            boxes.append(tuple(b[q]))
    return RegionPlan(valid, items, boxes)
