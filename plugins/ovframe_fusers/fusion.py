"""MaskFormer's semantic fusion, chunked over classes so that memory does not grow with K.

    scores[k, x] = Σ_q weights[q, k] · sigmoid(mask_logits[q, x])      labels[x] = argmax_k scores[k, x]

The K x H x W score volume is never held at once (unless the caller asks for it): classes are taken
`chunk` at a time, each chunk's scores are resized to the output size when it differs from the
masks' (bilinear, align_corners=False: resizing is per class, so chunking changes nothing), and a
running maximum and arg-maximum over the chunks gives the labels. Ties go to the lower class index,
as `argmax` does. Memory: O(N·h·w) for the soft masks plus O(chunk·H·W); time: linear in K. When no
resize happens (`resolution: original`, where the masks are at the image's full size), pixels are
taken in bands of CHUNK_ELEMENTS / max(N, K), so the soft masks are never held whole either: O(N·band).

NaN mask logits are background (weight 0), as for the region classifiers.
"""

from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F

CHUNK_ELEMENTS = 1 << 22
"""Score elements per class chunk (16 MiB of float32) when no chunk size is given."""


def soft_masks(mask_logits: torch.Tensor) -> torch.Tensor:
    """float [N, h, w] logits -> float32 [N, h*w] sigmoid, NaN -> 0."""
    return torch.nan_to_num(mask_logits.float().sigmoid(), nan=0.0).flatten(1)


def class_chunks(k: int, pixels: int, chunk: int | None) -> Iterator[tuple[int, int]]:
    size = chunk or max(1, CHUNK_ELEMENTS // max(1, pixels))
    for start in range(0, k, size):
        yield start, min(k, start + size)


def _resize(scores: torch.Tensor, hw: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """float [B, h*w] -> [B, H, W] (bilinear when the size differs)."""
    scores = scores.view(-1, *hw)
    if tuple(size) != tuple(hw):
        scores = F.interpolate(scores[None], size=tuple(size), mode="bilinear", align_corners=False)[0]
    return scores


class _Chunks:
    """The masks of one image, ready for per-class-chunk scores at the output size."""

    def __init__(self, mask_logits: torch.Tensor, size: tuple[int, int] | None, k: int, chunk: int | None):
        self.hw = (int(mask_logits.shape[1]), int(mask_logits.shape[2]))
        self.size = self.hw if size is None else (int(size[0]), int(size[1]))
        self.device = mask_logits.device
        self.sig = soft_masks(mask_logits)
        self.ranges = list(class_chunks(k, self.size[0] * self.size[1], chunk))

    def scores(self, weights: torch.Tensor, start: int, end: int) -> torch.Tensor:
        """float [B, H, W]: Σ_q weights[q, start:end] · sigmoid(mask_q), at the output size."""
        return _resize(weights[:, start:end].to(self.device, torch.float32).T @ self.sig, self.hw, self.size)

    def full(self, value: float, dtype=torch.float32) -> torch.Tensor:
        return torch.full(self.size, value, dtype=dtype, device=self.device)


class _RunningMax:
    """The maximum over class chunks and its class (ties to the lower class, as argmax)."""

    def __init__(self, chunks: "_Chunks | _Band"):
        self.best = chunks.full(-torch.inf)
        self.arg = chunks.full(0, torch.int64)

    def update(self, scores: torch.Tensor, start: int) -> None:
        """In place (at a large output size a chunk is one class of 12 M pixels: no array is made per chunk
        that need not be)."""
        if len(scores) == 1:
            top = scores[0]
            better = top > self.best
            self.arg.masked_fill_(better, start)
        else:
            top, idx = scores.max(dim=0)
            better = top > self.best
            torch.where(better, idx.add_(start), self.arg, out=self.arg)
        torch.where(better, top, self.best, out=self.best)


def fuse_masks(
    weights: torch.Tensor,
    mask_logits: torch.Tensor,
    size: tuple[int, int] | None = None,
    return_scores: bool = False,
    chunk: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """weights float [N, K] (>= 0), mask_logits [N, h, w] -> labels int64 [H, W], scores float [K, H, W]
    or None, and confidence float [H, W] (the label's score over the sum of the class scores; 0 where
    all are 0). (H, W) = `size`, default (h, w)."""
    n, k = weights.shape
    hw = (int(mask_logits.shape[1]), int(mask_logits.shape[2]))
    if size is not None and tuple(size) != hw:
        chunks = _Chunks(mask_logits, size, k, chunk)
        scores = torch.empty(k, *chunks.size, device=chunks.device) if return_scores else None
        labels, confidence = _fuse(chunks, weights, scores)
        return labels, scores, confidence
    # no resize: pixel bands, so that no [N, H*W] copy of the soft masks is held at once
    flat = mask_logits.flatten(1)
    pixels = flat.shape[1]
    labels = torch.empty(pixels, dtype=torch.int64, device=mask_logits.device)
    confidence = torch.empty(pixels, device=mask_logits.device)
    scores = torch.empty(k, pixels, device=mask_logits.device) if return_scores else None
    band = max(1, CHUNK_ELEMENTS // max(n, k, 1))
    for p0 in range(0, pixels, band):
        part = slice(p0, min(pixels, p0 + band))
        labels[part], confidence[part] = _fuse(_Band(flat[:, part], k, chunk), weights, None if scores is None else scores[:, part])
    return labels.view(hw), None if scores is None else scores.view(k, *hw), confidence.view(hw)


def _fuse(chunks: "_Chunks | _Band", weights: torch.Tensor, scores: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels and confidence over the class chunks of `chunks`; the scores written into `scores` when given."""
    top, total = _RunningMax(chunks), chunks.full(0.0)
    for start, end in chunks.ranges:
        s = chunks.scores(weights, start, end)
        if scores is not None:
            scores[start:end] = s
        top.update(s, start)
        total += s[0] if len(s) == 1 else s.sum(dim=0)
    confidence = top.best / total.clamp_min(torch.finfo(torch.float32).tiny) if weights.shape[1] else total
    return top.arg, confidence


class _Band:
    """A band of pixels of one image's masks (no resize): float [N, P] logits -> class chunks of scores [B, P]."""

    def __init__(self, logits: torch.Tensor, k: int, chunk: int | None):
        self.device = logits.device
        self.sig = soft_masks(logits)
        self.pixels = int(logits.shape[1])
        self.ranges = list(class_chunks(k, self.pixels, chunk))

    def scores(self, weights: torch.Tensor, start: int, end: int) -> torch.Tensor:
        return weights[:, start:end].to(self.device, torch.float32).T @ self.sig

    def full(self, value: float, dtype=torch.float32) -> torch.Tensor:
        return torch.full((self.pixels,), value, dtype=dtype, device=self.device)


def certify(
    known: torch.Tensor,
    low: torch.Tensor,
    high: torch.Tensor,
    mask_logits: torch.Tensor,
    size: tuple[int, int] | None = None,
    chunk: int | None = None,
) -> torch.Tensor:
    """Pixels whose label is proven whatever the unknown proposals turn out to be.

    known: bool [N]; low, high: float [N, K] with low <= true weight <= high (equal on known rows).
    The lower scores L = Σ low·σ and upper scores U = Σ high·σ bound the true scores class by class
    (all terms are >= 0, and the bilinear resize has non-negative weights). A pixel is certain when
    the best lower score beats every other class's upper score by more than float32 rounding can
    explain (all terms are non-negative, so a relative margin of 4·N·ε covers both sums).
    Returns bool [H, W]."""
    n, k = low.shape
    chunks = _Chunks(mask_logits, size, k, chunk)
    lower = _RunningMax(chunks)
    up1, up2, arg_up1 = chunks.full(-torch.inf), chunks.full(-torch.inf), chunks.full(-1, torch.int64)
    for start, end in chunks.ranges:
        lower.update(chunks.scores(low, start, end), start)
        # running top-2 of the upper scores (values, and the class of the first)
        two = chunks.scores(high, start, end).topk(min(2, end - start), dim=0)
        c1 = two.values[0]
        c2 = two.values[1] if end - start > 1 else chunks.full(-torch.inf)
        up2 = torch.maximum(torch.minimum(up1, c1), torch.maximum(up2, c2))
        arg_up1 = torch.where(c1 > up1, two.indices[0] + start, arg_up1)
        up1 = torch.maximum(up1, c1)
    rival = torch.where(arg_up1 == lower.arg, up2, up1)
    margin = 4.0 * max(n, 1) * torch.finfo(torch.float32).eps
    return lower.best > rival * (1.0 + margin) + torch.finfo(torch.float32).tiny
