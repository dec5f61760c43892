"""Which proposals a fuser needs the region classifier's opinion of (the `skip` option).

Per image, from what is known before any CLIP forward (masks, and the most a proposal can weigh in
the fused map, `strength` [N]: max_k of its weight when its region score is 1):
    groups    greedy by weight (`leader: weightiest`, binary mask area · strength) or by mask area
              (`largest`): the first ungrouped proposal in that order leads a group and takes every
              ungrouped proposal whose binary mask overlaps its own at IoU >= share_iou
    top area  pixels where a member of the group has the strongest strength · sigmoid(mask)
    selection the leader of each group that passes the criteria (top area above min_top_area,
              area at least min_area, no-object probability at most max_no_object, among the top_k by
              objectness) is classified and the other members take its scores; the other groups get
              no region opinion
Masks are compared on a grid of at most GRID_PIXELS pixels (every s-th row and column), which bounds
the cost for large images. Proposals with an empty mask are always "classified": the classifier
marks them invalid without a forward, and the fuser treats them as the reference does.
"""

from __future__ import annotations

import math

import torch

from ovframe import Proposals, RegionSelection

from .config import SkipConfig

GRID_PIXELS = 1 << 14


def _grid(mask_logits: torch.Tensor) -> torch.Tensor:
    h, w = mask_logits.shape[1:]
    step = max(1, math.ceil(math.sqrt(h * w / GRID_PIXELS)))
    return mask_logits[:, ::step, ::step].flatten(1)


def group_by_overlap(binary: torch.Tensor, iou_thr: float | bool, order: torch.Tensor | None = None) -> torch.Tensor:
    """bool [N, P] masks -> int64 [N]: the index of each proposal's group leader, the first member in
    descending `order` [N] (default: mask area; ties by index); iou_thr False: every proposal is a group
    of its own."""
    n = binary.shape[0]
    leader = torch.arange(n)
    if iou_thr is False or n == 0:
        return leader
    b = binary.float()
    area = b.sum(1)
    inter = b @ b.T
    iou = (inter / (area[:, None] + area[None, :] - inter).clamp(min=1.0)).cpu()
    area = area.cpu()
    leader = torch.full((n,), -1, dtype=torch.int64)
    for q in torch.argsort(area if order is None else order.cpu(), descending=True, stable=True).tolist():
        if leader[q] >= 0:
            continue
        leader[q] = q
        if area[q] > 0:
            leader[(iou[q] >= iou_thr) & (leader < 0)] = q
    return leader


def select(proposals: Proposals, strength: torch.Tensor, config: SkipConfig) -> RegionSelection:
    """strength float [N]: the largest weight each proposal can have for any class."""
    n = len(proposals)
    logits = _grid(proposals.mask_logits.float())
    binary = logits > 0  # sigmoid > 0.5; NaN is background
    area = binary.sum(dim=1).cpu()
    order = area * strength.cpu().float() if config.leader == "weightiest" else None
    leader = group_by_overlap(binary, config.share_iou, order)
    empty = area == 0
    keep = torch.ones(n, dtype=torch.bool)  # per group leader
    if config.min_top_area is not False and n > 0:
        soft = torch.nan_to_num(logits.sigmoid(), nan=0.0) * strength.to(logits.device, torch.float32)[:, None]
        top = torch.bincount(soft.argmax(dim=0).cpu(), minlength=n)
        group_top = torch.zeros(n, dtype=torch.int64).index_add_(0, leader, top)
        keep &= group_top > config.min_top_area * logits.shape[1]
    if config.min_area is not None:
        keep &= area >= config.min_area * logits.shape[1]
    no_object = _no_object(proposals)
    if config.max_no_object is not None:
        keep &= no_object <= config.max_no_object
    is_leader = leader == torch.arange(n)
    if config.top_k is not None:
        candidates = torch.nonzero(is_leader & keep & ~empty).flatten()
        order = candidates[torch.argsort(no_object[candidates], stable=True)]
        keep &= ~torch.isin(torch.arange(n), order[config.top_k :])
    keep = keep[leader]
    classify = (is_leader & keep) | empty
    source = torch.where(keep, leader, torch.full_like(leader, -1))
    device = proposals.mask_logits.device
    return RegionSelection(classify.to(device), source.to(device), config.certify)


def _no_object(proposals: Proposals) -> torch.Tensor:
    """float [N]: the generator's no-object probability (0 for rows without a class opinion)."""
    if proposals.class_logits is None:
        return torch.zeros(len(proposals))
    has = proposals.has_classes
    logits = torch.where(has[:, None], proposals.class_logits, torch.zeros_like(proposals.class_logits))
    return (logits.float().softmax(dim=-1)[:, -1] * has).cpu()
