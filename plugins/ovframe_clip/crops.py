"""Region crops for CLIP, as the reference prepares them (reference/ovseg.md, "Region crops"), made for
a whole chunk of regions at once.

For a proposal with binary mask m (sigmoid(logits) > mask_thr) in an image I (float, 0-255):
    box        tight box of m: x0 = first column with a region pixel, x1 = last + 1 (y likewise)
    expand     about the centre: cx = (x0 + x1) / 2, w = (x1 - x0) * ratio; l = trunc(cx - w/2), r = trunc(cx + w/2)
    clamp      l, t >= 0; r <= W, b <= H
    crop       I[:, t:b, l:r] * m + (1 - m) * fill          fill = 255 * CLIP mean, or 0; or no masking at all
    normalise  (crop - 255 * mean) / (255 * std)
    resize     bicubic to S x S (align_corners=False, no antialiasing; the box is stretched, aspect ratio
               not kept); the region mask is resized with nearest
A proposal is invalid when its binary mask is empty or its box has no area (expand_ratio < 1 on a thin mask).

How a chunk is made (no loop over regions): the images of a batch are stacked once, already as
(I - fill) / std, and the binary masks of their proposals into one bool stack (both padded to the
largest image). Regions are taken in groups of similar box size; for a group, every region's source
rows (its box rows, or only the 4·S rows the resize reads when the box is taller) are cut at the
group's largest box width with one indexing of an `unfold` view of each stack (no per-pixel index
tensors), and multiplied by their mask: the reference's normalise(I·m + (1 - m)·fill) is
m·(I - fill)/std + (fill - mean)/std, and the constant (0 for the mean fill) is added after the resize,
which is linear with weights summing to 1. The bicubic resize is separable (height, then width, or the
other way round when that is cheaper), with PyTorch's cubic kernel (A = -0.75), source index
(align_corners=False) and taps clamped to the box: a batched product with the banded interpolation
matrices for short inputs, four weighted row gathers for long ones. It equals
`F.interpolate(..., mode="bicubic")` of the reference crop up to float32 rounding (|difference| <
1e-4 on normalised values, ~2e-5 measured; tests/clip/test_clip_crops.py); the nearest-resized masks
read the very pixels `F.interpolate(mode="nearest")` reads, so they are identical.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

CUBIC_A = -0.75
WINDOW_PIXELS = 1 << 20
"""Pixels cut at once (a group of regions): 12 MB of float32 RGB, small enough to stay in cache."""

GROUP_MIN, GROUP_WASTE = 8, 1.25
"""A group of regions holds at least GROUP_MIN (per-group work is not free), then ends where padding its
boxes to one size would cut GROUP_WASTE times their pixels."""

DENSE_ROWS = 160
"""Inputs up to this many rows are resized by a matrix product (fast for short inputs), longer by tap gathers."""

_THRESHOLDS: dict[tuple[float, str], float] = {}


def logit_threshold(mask_thr: float, device: torch.device | str = "cpu") -> float:
    """The float32 x where the device's float32 sigmoid crosses mask_thr (bisection over float32 values),
    so that `logits > x` is `sigmoid(logits) > mask_thr` without a float copy of the logits. They agree
    except within a few float32 steps of x, where float32 sigmoid itself is not monotone (and its result
    depends on the kernel's vector lanes): tests/clip/test_clip_crops.py."""
    device = torch.device(device)
    key = (float(mask_thr), device.type)
    if key not in _THRESHOLDS:
        thr = torch.tensor(mask_thr, dtype=torch.float32, device=device)

        def above(bits: int) -> bool:
            x = torch.tensor([bits] * 64, dtype=torch.int32).view(torch.float32).to(device)  # the vector kernel
            return bool(x.sigmoid()[0] > thr)

        def to_bits(x: float) -> int:  # float32 values ordered like integers (negative ones mirrored)
            b = int(torch.tensor([x], dtype=torch.float32).view(torch.int32)[0])
            return b if b >= 0 else -(b & 0x7FFFFFFF)

        def from_bits(k: int) -> int:
            return k if k >= 0 else (-k) | -0x80000000

        lo, hi = to_bits(-100.0), to_bits(100.0)  # sigmoid(-100) = 0 <= thr < 1 = sigmoid(100)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if above(from_bits(mid)):
                hi = mid
            else:
                lo = mid
        _THRESHOLDS[key] = float(torch.tensor([from_bits(lo)], dtype=torch.int32).view(torch.float32)[0])
    return _THRESHOLDS[key]


def binarize(mask_logits: torch.Tensor, mask_thr: float, out: torch.Tensor | None = None) -> torch.Tensor:
    """float [N, H, W] logits -> bool [N, H, W]: sigmoid(logits) > mask_thr; NaN logits are background."""
    return torch.gt(mask_logits.float(), logit_threshold(mask_thr, mask_logits.device), out=out)


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


def cubic_taps(sizes: torch.Tensor, out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """int64 [B] input lengths -> (int64 [B, out, 4] input index of each tap, float32 [B, out, 4] its weight):
    PyTorch's bicubic resize (align_corners=False source index, cubic kernel A = -0.75, taps clamped to
    [0, size - 1])."""
    device = sizes.device
    scale = sizes.to(torch.float32) / out
    src = scale[:, None] * (torch.arange(out, device=device, dtype=torch.float32) + 0.5) - 0.5  # [B, out]
    base = src.floor()
    t = src - base
    a = CUBIC_A

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    weights = torch.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], dim=-1)
    taps = base.long()[..., None] + torch.arange(-1, 3, device=device)
    return torch.minimum(taps.clamp(min=0), (sizes - 1)[:, None, None]), weights


def nearest_index(sizes: torch.Tensor, out: int) -> torch.Tensor:
    """int64 [B] -> int64 [B, out]: the source of each output of F.interpolate(mode="nearest")."""
    scale = sizes.to(torch.float32) / out
    src = (torch.arange(out, device=sizes.device, dtype=torch.float32)[None] * scale[:, None]).floor().long()
    return torch.minimum(src, (sizes - 1)[:, None])


@dataclass
class RegionStore:
    """The images and binary masks of a batch, stacked so that one indexing reaches any of them.

    images: float [I, 3, H, W], each image as the cropper's `prepare` leaves it, zero-padded to the
            largest image of the batch
    masks:  bool [M, H, W], the binary masks of all proposals of the batch, image after image
    """

    images: torch.Tensor
    masks: torch.Tensor

    @staticmethod
    def stack_images(images: Sequence[torch.Tensor], device: torch.device | str) -> torch.Tensor:
        h = max(int(im.shape[1]) for im in images)
        w = max(int(im.shape[2]) for im in images)
        if all(tuple(im.shape[1:]) == (h, w) for im in images):
            return torch.stack([im.to(device, non_blocking=True) for im in images])
        out = torch.zeros(len(images), 3, h, w, dtype=images[0].dtype, device=device)
        for i, im in enumerate(images):
            out[i, :, : im.shape[1], : im.shape[2]] = im.to(device, non_blocking=True)
        return out


@dataclass
class RegionPlan:
    """The valid proposals of a batch of images, in (image, proposal) order, and their boxes (on the host).

    valid:      per image bool [N_i]
    image:      int64 [R], the image of each region
    proposal:   int64 [R], its index among the image's proposals
    row:        int64 [R], its row among all proposals of the batch (image after image): its mask in the store
    boxes:      int64 [R, 4], (l, t, r, b)
    """

    valid: list[torch.Tensor]
    image: torch.Tensor
    proposal: torch.Tensor
    row: torch.Tensor
    boxes: torch.Tensor

    def __len__(self) -> int:
        return int(self.image.shape[0])

    @property
    def items(self) -> list[tuple[int, int]]:
        """(image index, proposal index) of each region."""
        return list(zip(self.image.tolist(), self.proposal.tolist()))

    def chunks(self, size: int) -> Iterator[range]:
        for start in range(0, len(self), size):
            yield range(start, min(start + size, len(self)))


def plan_regions(binaries: Sequence[torch.Tensor], expand_ratio: float) -> RegionPlan:
    """bool [N_i, H_i, W_i] per image -> the plan. One device-to-host copy for the whole batch."""
    counts = [int(b.shape[0]) for b in binaries]
    found = [region_boxes(b, expand_ratio) for b in binaries if b.shape[0]]
    if found:
        packed = torch.cat([torch.cat([bx, v[:, None].long()], dim=1) for bx, v in found]).cpu()
    else:
        packed = torch.zeros(0, 5, dtype=torch.int64)
    boxes_all, valid_all = packed[:, :4], packed[:, 4].bool()
    image_of = torch.repeat_interleave(torch.arange(len(binaries)), torch.tensor(counts, dtype=torch.int64))
    first_row = torch.tensor([0, *counts], dtype=torch.int64).cumsum(0)[:-1]
    rows = torch.nonzero(valid_all).flatten()
    return RegionPlan(
        valid=list(torch.split(valid_all, counts)),
        image=image_of[rows],
        proposal=rows - first_row[image_of[rows]],
        row=rows,
        boxes=boxes_all[rows],
    )


@dataclass
class Cropper:
    """Makes the CLIP inputs of regions: normalised crops [3, S, S] and region masks [S, S]."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    fill: str | None  # "mean", "zero", or None: keep the background (no masking)

    def crop(self, store: RegionStore, plan: RegionPlan, chunk: range) -> tuple[torch.Tensor, torch.Tensor]:
        """The regions `chunk` of `plan` -> float [B, 3, S, S], bool [B, S, S] (on the store's device)."""
        device = store.images.device
        s = self.size
        select = torch.arange(chunk.start, chunk.stop)
        boxes = plan.boxes[select]
        order = torch.argsort((boxes[:, 3] - boxes[:, 1]) * (boxes[:, 2] - boxes[:, 0]), descending=True)
        regions = torch.empty(len(select), 3, s, s, device=device)
        masks = torch.ones(len(select), s, s, dtype=torch.bool, device=device)
        for group in _groups(boxes[order], 4 * s):
            idx = order[group]
            g_regions, g_masks = self._crop_group(store, plan, select[idx])
            idx = idx.to(device, non_blocking=True)
            regions[idx] = g_regions
            if g_masks is not None:
                masks[idx] = g_masks
        return regions, masks

    def _crop_group(self, store: RegionStore, plan: RegionPlan, which: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        device = store.images.device
        s, n = self.size, len(which)
        height, width = store.images.shape[2:]
        boxes_host = plan.boxes[which]
        hb = int((boxes_host[:, 3] - boxes_host[:, 1]).max())
        wb = int((boxes_host[:, 2] - boxes_host[:, 0]).max())
        boxes = boxes_host.to(device, non_blocking=True)
        image = plan.image[which].to(device, non_blocking=True)[:, None]
        row = plan.row[which].to(device, non_blocking=True)[:, None]
        l, t, r, b = boxes.unbind(1)
        h, w = b - t, r - l
        left = torch.clamp(l, max=width - wb)[:, None]  # the cut is wb wide and stays in the image
        row_taps, row_weights = cubic_taps(h, s)  # [B, S, 4], in box rows
        if hb <= 4 * s:  # cut the box's rows (hb of them, from a top that keeps them in the image)
            top = torch.clamp(t, max=height - hb)
            source_rows = top[:, None] + torch.arange(hb, device=device)  # [B, hb]
            row_taps = row_taps + (t - top)[:, None, None]
        else:  # a tall box: cut only the 4·S rows the resize reads
            source_rows = (t[:, None, None] + row_taps).flatten(1)  # [B, 4S]
            row_taps = torch.arange(4 * s, device=device).view(1, s, 4).expand(n, s, 4)
        cut = store.images.unfold(3, wb, 1)[image, :, source_rows, left]  # [B, L, 3, wb], prepared
        if self.fill is not None:
            cut = cut.mul_(store.masks.unfold(2, wb, 1)[row, source_rows, left][:, :, None])  # m·(I - fill)/std
        col_taps, col_weights = cubic_taps(w, s)
        col_taps = col_taps + (l - left[:, 0])[:, None, None]
        if wb < source_rows.shape[1]:  # resize the columns first: the first pass then makes the smaller intermediate
            by_cols = _resize_rows(cut.permute(0, 3, 2, 1), col_taps, col_weights)  # [B, S(v), 3, L]
            regions = _resize_rows(by_cols.permute(0, 3, 2, 1), row_taps, row_weights).permute(0, 2, 1, 3)  # [B, 3, S(u), S(v)]
        else:
            by_rows = _resize_rows(cut, row_taps, row_weights)  # [B, S(u), 3, wb]
            regions = _resize_rows(by_rows.permute(0, 3, 2, 1), col_taps, col_weights).permute(0, 2, 3, 1)  # [B, 3, S(u), S(v)]
        if self.fill is None:
            return regions, None
        if self.fill != "mean":  # + (fill - mean)/std, which is 0 for the mean fill
            regions = regions + self._background(device)
        ny = t[:, None] + nearest_index(h, s)  # [B, S]
        nx = l[:, None] + nearest_index(w, s)
        return regions, store.masks[row[:, :, None], ny[:, :, None], nx[:, None, :]]

    def _consts(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """255 x (mean, std, fill) as float [3, 1, 1]; no fill: the mean."""
        mean = torch.tensor(self.mean, dtype=torch.float32, device=device).view(3, 1, 1) * 255.0
        std = torch.tensor(self.std, dtype=torch.float32, device=device).view(3, 1, 1) * 255.0
        fill = torch.zeros_like(mean) if self.fill == "zero" else mean
        return mean, std, fill

    def prepare(self, images: Sequence[torch.Tensor], device: torch.device | str) -> torch.Tensor:
        """Images (uint8 or 0-255 float [3, H, W]) -> the store's float [I, 3, H, W]: (I - fill) / std, so
        that a masked, normalised crop is m·stored + (fill - mean)/std, as the reference's
        normalise(I·m + (1 - m)·fill)."""
        stacked = RegionStore.stack_images(images, device)
        mean, std, fill = self._consts(stacked.device)
        return (stacked.float() - fill) / std

    def _background(self, device: torch.device) -> torch.Tensor:
        mean, std, fill = self._consts(device)
        return ((fill - mean) / std)[None]  # [1, 3, 1, 1]

    def crop_batch(
        self, images: Sequence[torch.Tensor], binaries: Sequence[torch.Tensor], boxes: Sequence[tuple[int, int, int, int]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One crop per (image [3, H, W] 0-255, bool mask [H, W], box) -> float [B, 3, S, S], bool [B, S, S]."""
        n = len(images)
        device = binaries[0].device if n else torch.device("cpu")
        if not n:
            return torch.zeros(0, 3, self.size, self.size, device=device), torch.zeros(0, self.size, self.size, dtype=torch.bool, device=device)
        stacked = self.prepare(images, device)
        masks = torch.zeros(n, *stacked.shape[2:], dtype=torch.bool, device=device)
        for i, m in enumerate(binaries):
            masks[i, : m.shape[0], : m.shape[1]] = m
        plan = RegionPlan(
            valid=[torch.ones(1, dtype=torch.bool)] * n,
            image=torch.arange(n),
            proposal=torch.zeros(n, dtype=torch.int64),
            row=torch.arange(n),
            boxes=torch.tensor([list(b) for b in boxes], dtype=torch.int64).view(n, 4),
        )
        return self.crop(RegionStore(stacked, masks), plan, range(n))


def _resize_rows(planes: torch.Tensor, taps: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """float [B, L, C, X] -> [B, S, C, X]: output row u of region b is Σ_k weights[b, u, k] · row taps[b, u, k]
    (taps/weights [B, S, 4]). Short inputs go through one batched matrix product with the (banded)
    interpolation matrices; long ones through four row gathers and multiply-adds, which skip the zeros."""
    n, length, c, x = planes.shape
    out = taps.shape[1]
    if length <= DENSE_ROWS:
        matrix = torch.zeros(n, out, length, device=planes.device).scatter_add_(2, taps, weights)
        return torch.bmm(matrix, planes.reshape(n, length, c * x)).view(n, out, c, x)
    flat = planes.reshape(n * length, c * x)
    offset = (torch.arange(n, device=planes.device) * length)[:, None]
    result = None
    for k in range(4):
        rows = flat.index_select(0, (taps[:, :, k] + offset).flatten()).view(n, out, c, x)
        w = weights[:, :, k, None, None]
        result = rows.mul_(w) if result is None else result.addcmul_(rows, w)
    return result


def _groups(boxes: torch.Tensor, tall: int) -> Iterator[slice]:
    """Consecutive runs of boxes (sorted by area, largest first) cut at one size: a run of at least
    GROUP_MIN boxes ends when padding to its largest height (at most `tall` rows are cut) and width would
    cut GROUP_WASTE times the pixels the boxes hold; any run ends before it passes WINDOW_PIXELS."""
    hs = (boxes[:, 3] - boxes[:, 1]).clamp(max=tall).tolist()
    ws = (boxes[:, 2] - boxes[:, 0]).tolist()
    start, hmax, wmax, area = 0, 0, 0, 0
    for i, (h, w) in enumerate(zip(hs, ws)):
        hmax2, wmax2, area2 = max(hmax, h), max(wmax, w), area + h * w
        padded = (i - start + 1) * hmax2 * wmax2
        wasteful = i - start >= GROUP_MIN and padded > GROUP_WASTE * area2
        if i > start and (wasteful or padded > WINDOW_PIXELS):
            yield slice(start, i)
            start, hmax2, wmax2, area2 = i, h, w, h * w
        hmax, wmax, area = hmax2, wmax2, area2
    if start < len(hs):
        yield slice(start, len(hs))
