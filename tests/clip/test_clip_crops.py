"""The batched region crops against the reference's per-region procedure, written here with
F.interpolate one region at a time (reference/ovseg.md, "Region crops"), and the exact binarisation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ovframe_clip import crops
from ovframe_clip.crops import Cropper, RegionStore, binarize, logit_threshold, plan_regions

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
TOLERANCE = 1e-4  # float32 rounding of a different order of operations, on normalised values (~2e-5 seen)


def reference_crop(image, binary, box, fill, size):
    l, t, r, b = box
    crop = image.float()[:, t:b, l:r]
    m = binary[t:b, l:r].float()
    mean = torch.tensor(MEAN).view(3, 1, 1) * 255
    std = torch.tensor(STD).view(3, 1, 1) * 255
    if fill is not None:
        crop = crop * m + (1 - m) * (mean if fill == "mean" else torch.zeros(3, 1, 1))
    crop = (crop - mean) / std
    region = F.interpolate(crop[None], size=(size, size), mode="bicubic")[0]
    mask = F.interpolate(m[None, None], size=(size, size), mode="nearest")[0, 0] > 0.5
    return region, mask if fill is not None else torch.ones_like(mask)


def scenes(seed: int):
    """Images of different sizes; masks from blobs to single pixels, at the borders, very tall and wide."""
    g = torch.Generator().manual_seed(seed)
    sizes = [(40, 56), (210, 30), (9, 170), (64, 64)]
    images, logits = [], []
    for h, w in sizes:
        images.append(torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g))
        masks = torch.full((7, h, w), -6.0)
        for q in range(5):
            y0, x0 = int(torch.randint(0, h, (1,), generator=g)), int(torch.randint(0, w, (1,), generator=g))
            y1 = y0 + 1 + int(torch.randint(0, h - y0, (1,), generator=g))
            x1 = x0 + 1 + int(torch.randint(0, w - x0, (1,), generator=g))
            masks[q, y0:y1, x0:x1] = torch.randn(y1 - y0, x1 - x0, generator=g) * 4
        masks[5] = -6.0
        masks[5, -1, -1] = 6.0  # one pixel in the corner
        masks[6] = 6.0  # the whole image
        logits.append(masks)
    return images, logits


GROUPINGS = {
    "default": {},
    "one region per group": {"WINDOW_PIXELS": 1},
    "one group per chunk": {"WINDOW_PIXELS": 1 << 40, "GROUP_SLACK": float("inf")},
}


@pytest.mark.parametrize("fill", ["mean", "zero", None])
@pytest.mark.parametrize("size,ratio", [(32, 1.0), (24, 1.5), (40, 0.8)])
@pytest.mark.parametrize("grouping", list(GROUPINGS))
def test_batched_crops_equal_the_per_region_reference(fill, size, ratio, grouping, monkeypatch):
    """Whatever the groups (regions of different heights share a group: tall ones cut only their tap rows)."""
    for name, value in GROUPINGS[grouping].items():
        monkeypatch.setattr(crops, name, value)
    images, logits = scenes(size)
    cropper = Cropper(size, MEAN, STD, fill)
    store_images = cropper.prepare(images, "cpu")
    masks = torch.zeros(sum(len(x) for x in logits), *store_images.shape[2:], dtype=torch.bool)
    binaries, start = [], 0
    for x in logits:
        binaries.append(binarize(x, 0.5, out=masks[start : start + len(x), : x.shape[1], : x.shape[2]]))
        start += len(x)
    plan = plan_regions(binaries, ratio)
    assert len(plan) > 15
    store = RegionStore(store_images, masks)
    got = [cropper.crop(store, plan, chunk) for chunk in plan.chunks(9)]
    regions = torch.cat([r for r, _ in got])
    region_masks = torch.cat([m for _, m in got])
    tall = wide = 0
    for j, ((i, q), box) in enumerate(zip(plan.items, plan.boxes.tolist())):
        want, want_mask = reference_crop(images[i], binaries[i][q], box, fill, size)
        torch.testing.assert_close(regions[j], want, rtol=0, atol=TOLERANCE)
        assert torch.equal(region_masks[j], want_mask)
        tall += box[3] - box[1] > 4 * size
        wide += box[2] - box[0] > crops.DENSE_COLUMNS
    assert tall, "the cases include boxes taller than 4·S (only the rows the resize reads are cut)"
    assert wide and wide < len(plan), "both ways across: the matrix product and the transposed weighted sum"
    # a store laid out otherwise than prepare() lays it out crops the same (copied first)
    other = RegionStore(store_images.contiguous(), masks.transpose(1, 2).contiguous().transpose(1, 2))
    assert not other.masks.is_contiguous()
    again = cropper.crop(other, plan, range(len(plan)))
    assert torch.equal(again[0], cropper.crop(store, plan, range(len(plan)))[0]) and torch.equal(again[1], torch.cat([m for _, m in got]))


def test_crop_batch_of_single_masks_matches_the_classifier_path():
    images, logits = scenes(3)
    cropper = Cropper(32, MEAN, STD, "mean")
    binary = logits[0][0] > 0
    box = (int(binary.any(0).nonzero().min()), int(binary.any(1).nonzero().min()),
           int(binary.any(0).nonzero().max()) + 1, int(binary.any(1).nonzero().max()) + 1)
    regions, masks = cropper.crop_batch([images[0].float(), images[0]], [binary, binary], [box, box])
    want, want_mask = reference_crop(images[0], binary, box, "mean", 32)
    for k in range(2):
        torch.testing.assert_close(regions[k], want, rtol=0, atol=TOLERANCE)
        assert torch.equal(masks[k], want_mask)


@pytest.mark.parametrize("thr", [0.5, 0.4, 0.35, 0.01, 0.99])
def test_binarize_is_sigmoid_above_the_threshold(thr):
    """Exactly, except within 1e-5 of the boundary: float32 sigmoid rounds to one of two values there,
    and which one depends on the kernel's vector lanes (it is not even monotone)."""
    boundary = logit_threshold(thr)
    values = torch.cat([
        boundary + torch.linspace(-1e-3, 1e-3, 20_001),
        torch.linspace(-30, 30, 100_001),
        torch.tensor([float("nan"), float("inf"), -float("inf")]),
    ])
    logits = values.view(1, 1, -1)
    differ = (binarize(logits, thr) != (logits.sigmoid() > thr)).flatten()
    assert not differ[(values - boundary).abs() > 1e-5].any()
