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
(I - fill) / std with the three channels of an image row next to each other, and the binary masks of
their proposals into one bool stack (both padded to the largest image). The reference's
normalise(I·m + (1 - m)·fill) is m·(I - fill)/std + (fill - mean)/std, and the constant (0 for the
mean fill) is added after the resize, which is linear with weights summing to 1. A bicubic resize
without antialiasing reads 4 taps per output per axis (PyTorch's cubic kernel, A = -0.75; source index
with align_corners=False; taps clamped to the box), so a region needs only its box rows, or the 4·S rows
the resize reads when the box is taller. Regions are taken in groups of similar box width; for a group:
    cut       each region's rows, at the group's widest box width, as contiguous row segments of the
              stacks (one `index_select` of an `unfold` view each; rows are not padded between regions),
              and multiplied by their mask: every pixel the resize reads is masked once, at the cut
    height    output row u = Σ_i w_i · cut row tap_i: one weighted-sum `embedding_bag` for the group
    width     the same on the transposed result, or for narrow cuts a batched product with the banded
              interpolation matrices (no transposition)
and the region masks are read at the pixels `F.interpolate(mode="nearest")` reads (identical). The
crops equal `F.interpolate(..., mode="bicubic")` of the reference crop up to float32 rounding
(|difference| < 1e-4 on normalised values, ~2e-5 measured; tests/clip/test_clip_crops.py). Box sizes
are on the host (the plan), so the hot path has no device-to-host copy; a chunk is a few tensor
operations per group (docs/performance.md, "Batched crops and the text cache").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F

CUBIC_A = -0.75
WINDOW_PIXELS = 1 << 19
"""Pixels cut at once (a group of regions) on a CPU: 6 MB of float32 RGB, so that the passes over a cut
find it in cache."""

GROUP_SLACK = 1 << 16
"""A group of regions ends where padding their cuts to its widest would add more than GROUP_SLACK pixels
(a group's fixed cost, ~30 small tensor operations, is worth about that many pixels of work on a CPU)."""

ACCELERATOR_SCALE = 32
"""On other devices (a GPU) WINDOW_PIXELS and GROUP_SLACK are this many times larger: a group's fixed
cost there is ~30 kernel launches, worth far more pixels, and memory is not a cache (not measured: no GPU
was at hand)."""

DENSE_COLUMNS = 128
"""Cuts up to this many columns are resized across by a matrix product (no transposition; its cost grows
with the width), wider ones by a weighted sum of the transposed rows."""

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
class _Chunk:
    """The regions of a chunk, on the store's device: what their groups take their rows from."""

    boxes: torch.Tensor  # int64 [B, 4]
    image: torch.Tensor  # int64 [B], the image of each region in the store
    row: torch.Tensor  # int64 [B], its mask in the store
    row_taps: torch.Tensor  # int64 [B, S, 4], box rows
    row_weights: torch.Tensor  # float [B, S, 4]
    col_taps: torch.Tensor  # int64 [B, S, 4], box columns
    col_weights: torch.Tensor  # float [B, S, 4]

    def select(self, which: torch.Tensor) -> "_Chunk":
        return _Chunk(*(getattr(self, f).index_select(0, which) for f in self.__dataclass_fields__))


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
        s, count = self.size, len(chunk)
        boxes_host = plan.boxes[chunk.start : chunk.stop]
        boxes = boxes_host.to(device, non_blocking=True)
        l, t, r, b = boxes.unbind(1)
        h, w = b - t, r - l
        part = _Chunk(
            boxes,
            plan.image[chunk.start : chunk.stop].to(device, non_blocking=True),
            plan.row[chunk.start : chunk.stop].to(device, non_blocking=True),
            *cubic_taps(h, s),
            *cubic_taps(w, s),
        )
        rows = store.images.permute(0, 2, 1, 3).contiguous()  # [I, H, 3, W]: no copy when made by prepare()
        masks = store.masks.contiguous()  # no copy when made by the classifier's plan()
        regions = torch.empty(count, 3, s, s, device=device)
        heights = (boxes_host[:, 3] - boxes_host[:, 1]).clamp(max=4 * s)  # rows cut per region
        widths = boxes_host[:, 2] - boxes_host[:, 0]
        order = torch.argsort(widths, descending=True)
        scale = 1 if device.type == "cpu" else ACCELERATOR_SCALE
        for group in _groups(widths[order], heights[order], WINDOW_PIXELS * scale, GROUP_SLACK * scale):
            which = order[group]
            crops = self._crop_group(rows, masks, part.select(which.to(device, non_blocking=True)), heights[which], int(widths[which[0]]))
            regions.index_copy_(0, which.to(device, non_blocking=True), crops)
        if self.fill is None:
            return regions, torch.ones(count, s, s, dtype=torch.bool, device=device)
        if self.fill != "mean":  # + (fill - mean)/std, which is 0 for the mean fill
            regions += self._background(device)
        height, width = masks.shape[1:]
        ny = (part.row[:, None] * height + t[:, None] + nearest_index(h, s)).flatten()  # [B·S], rows of the mask stack
        nx = l[:, None, None] + nearest_index(w, s)[:, None, :]  # [B, 1, S]
        mask_rows = masks.view(-1, width).index_select(0, ny).view(count, s, width)
        return regions, mask_rows.gather(2, nx.expand(count, s, s))

    def _crop_group(self, rows: torch.Tensor, masks: torch.Tensor, g: _Chunk, heights: torch.Tensor, wb: int) -> torch.Tensor:
        """The regions of `g`, `heights` rows (on the host) and `wb` columns cut of each, from the store's
        rows [I, H, 3, W] and masks [M, H, W] -> float [n, 3, S(u), S(v)] (normalised, without the constant
        (fill - mean)/std; strided)."""
        device = rows.device
        s, n = self.size, len(heights)
        height, width = masks.shape[1:]
        total = int(heights.sum())  # rows cut
        first = (heights.cumsum(0) - heights).to(device, non_blocking=True)  # each region's first cut row
        l, t, r, b = g.boxes.unbind(1)
        tall = b - t > 4 * s  # only the 4·S rows the resize reads are cut, in the order of its taps
        left = torch.clamp(l, max=width - wb)  # the cut is wb wide and stays in the image row
        region = torch.repeat_interleave(torch.arange(n, device=device), heights.to(device, non_blocking=True), output_size=total)
        line = torch.arange(total, device=device) - first[region]  # the cut row's index in its region
        cut_rows = t[region] + torch.where(tall[region], g.row_taps.flatten(1)[region, line], line)  # [total], image rows
        taps = first[:, None, None] + torch.where(tall[:, None, None], torch.arange(4 * s, device=device).view(1, s, 4), g.row_taps)
        # the cut: [total, 3, wb], one contiguous segment of a store row per (cut row, channel)
        starts = ((g.image[region] * height + cut_rows)[:, None] * 3 + torch.arange(3, device=device)) * width + left[region, None]
        cut = rows.view(-1).unfold(0, wb, 1).index_select(0, starts.flatten()).view(total, 3, wb)
        if self.fill is not None:  # m·(I - fill)/std: every pixel the resize reads is masked once, here
            mask_starts = (g.row[region] * height + cut_rows) * width + left[region]
            taken = masks.view(-1).unfold(0, wb, 1).index_select(0, mask_starts)
            cut.mul_(taken[:, None, :])
        # height: output row u of region k is Σ_i row_weights[k, u, i] · cut row taps[k, u, i]
        by_rows = _weighted_rows(cut.view(total, 3 * wb), taps, g.row_weights)  # [n·S(u), 3·wb]
        # width: output column v is Σ_j col_weights[k, v, j] · column col_taps[k, v, j]
        col_taps = g.col_taps + (l - left)[:, None, None]
        if wb <= DENSE_COLUMNS:  # a batched product with the banded interpolation matrices: [n, S(u)·3, wb] @ [n, wb, S(v)]
            matrix = torch.zeros(n, s, wb, device=device).scatter_add_(2, col_taps, g.col_weights)
            return torch.bmm(by_rows.view(n, s * 3, wb), matrix.transpose(1, 2)).view(n, s, 3, s).transpose(1, 2)
        # the same weighted sum of rows as for the height, on the transposed [n·wb, S(u)·3]
        columns = by_rows.view(n, s * 3, wb).transpose(1, 2).reshape(n * wb, s * 3)
        col_taps = col_taps + wb * torch.arange(n, device=device)[:, None, None]
        return _weighted_rows(columns, col_taps, g.col_weights).view(n, s, s, 3).permute(0, 3, 2, 1)

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
        n, _, h, w = stacked.shape
        out = torch.empty(n, h, 3, w, device=stacked.device).permute(0, 2, 1, 3)  # the channels of a row together
        return torch.sub(stacked, fill, out=out).div_(std)

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


def _weighted_rows(table: torch.Tensor, taps: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """float [R, D], int64 [B, S, 4] row indices into it, float [B, S, 4] -> [B·S, D]: output row (b, u) is
    Σ_k weights[b, u, k] · table[taps[b, u, k]]: one weighted-sum `embedding_bag` (gathers and sums rows
    without materialising the 4 taps)."""
    count = taps.numel()
    offsets = torch.arange(0, count, 4, device=table.device)
    return F.embedding_bag(taps.reshape(count), table, offsets, mode="sum", per_sample_weights=weights.reshape(count))


def _groups(widths: torch.Tensor, heights: torch.Tensor, window: int, slack: int) -> Iterator[slice]:
    """Consecutive runs of regions (sorted by box width, widest first) cut at one width: a run ends where
    padding its regions to its first width would add more than `slack` pixels, or before it passes
    `window` pixels. Rows are not padded (each region cuts its own)."""
    start, rows, area = 0, 0, 0
    for i, (w, h) in enumerate(zip(widths.tolist(), heights.tolist())):
        if i == start:
            wmax = w
        padded = (rows + h) * wmax
        if i > start and (padded - area - h * w > slack or padded > window):
            yield slice(start, i)
            start, wmax, rows, area = i, w, 0, 0
        rows, area = rows + h, area + h * w
    if start < len(widths):
        yield slice(start, len(widths))
