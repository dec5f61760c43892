"""Hungarian matching of predicted masks to ground-truth masks (MaskFormer).

Cost of pairing query i with target j, for one image:
    class: -softmax(logits_i)[label_j]
    mask:  sigmoid focal loss of mask_i against target_j, averaged over pixels (alpha 0.25, gamma 2)
    dice:  1 - (2 |m_i t_j| + 1) / (|m_i| + |t_j| + 1), with m_i = sigmoid(mask logits)
    C = w_class * class + w_mask * mask + w_dice * dice     (reference weights 1 / 20 / 1)
Targets are resized (nearest) to the prediction's resolution. scipy's linear_sum_assignment solves it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0


def pairwise_focal_cost(logits: torch.Tensor, targets: torch.Tensor, alpha: float = FOCAL_ALPHA, gamma: float = FOCAL_GAMMA,
                        valid: torch.Tensor | None = None) -> torch.Tensor:
    """logits [N, P], binary targets [M, P] -> [N, M] mean focal loss over the P pixels (or over the
    pixels where `valid` [P] is 1)."""
    prob = logits.sigmoid()
    pos = alpha * (1 - prob) ** gamma * F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    neg = (1 - alpha) * prob**gamma * F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    if valid is None:
        return (pos @ targets.t() + neg @ (1 - targets).t()) / logits.shape[1]
    return ((pos * valid) @ targets.t() + (neg * valid) @ (1 - targets).t()) / valid.sum().clamp(min=1)


def pairwise_dice_cost(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """logits [N, P], binary targets [M, P] -> [N, M] dice loss (predictions outside `valid` [P] not counted)."""
    prob = logits.sigmoid() if valid is None else logits.sigmoid() * valid
    numerator = 2 * prob @ targets.t()
    denominator = prob.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)


def matching_cost(
    logits: torch.Tensor,
    masks: torch.Tensor,
    labels: torch.Tensor,
    target_masks: torch.Tensor,
    weights: tuple[float, float, float] = (1.0, 20.0, 1.0),
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """One image: logits [Q, K+1], mask logits [Q, h, w], labels [M], target masks [M, H, W] -> cost [Q, M].
    valid [H, W]: the pixels the mask costs count (None: all)."""
    logits, masks = logits.float(), masks.float()
    cost_class = -logits.softmax(-1)[:, labels]
    tgt = F.interpolate(target_masks[:, None].float(), size=masks.shape[-2:], mode="nearest")[:, 0]
    out, tgt = masks.flatten(1), tgt.flatten(1)
    if valid is not None:
        valid = F.interpolate(valid[None, None].float(), size=masks.shape[-2:], mode="nearest").flatten()
    w_class, w_mask, w_dice = weights
    return (w_class * cost_class + w_mask * pairwise_focal_cost(out, tgt, valid=valid)
            + w_dice * pairwise_dice_cost(out, tgt, valid=valid))


@torch.no_grad()
def hungarian_match(
    logits: torch.Tensor,
    masks: torch.Tensor,
    targets: list[dict[str, torch.Tensor]],
    weights: tuple[float, float, float] = (1.0, 20.0, 1.0),
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Batch: logits [B, Q, K+1], masks [B, Q, h, w], targets[b] = {"labels": [M_b], "masks": [M_b, H, W],
    optionally "valid": [H, W] (the pixels the mask costs count)}.

    Returns per image (query indices, target indices), int64, each of length min(Q, M_b), sorted by query."""
    out = []
    for b, target in enumerate(targets):
        if len(target["labels"]) == 0:
            empty = torch.zeros(0, dtype=torch.int64)
            out.append((empty, empty))
            continue
        cost = matching_cost(logits[b], masks[b], target["labels"], target["masks"], weights, target.get("valid"))
        rows, cols = linear_sum_assignment(cost.cpu().numpy())
        out.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
    return out
