"""SAM's training loss (the SAM paper, section 3): focal + dice on the masks (20:1), MSE between the
predicted IoU and the IoU each predicted mask actually has.

For a prompt with S candidate masks (multimask output) only the mask with the lowest mask loss is
backpropagated; the IoU head is supervised on all S. Per prompt:

    focal_s = mean over pixels of the sigmoid focal loss (alpha 0.25, gamma 2) of mask s
    dice_s  = 1 - (2 |sigmoid(m_s) t| + 1) / (|sigmoid(m_s)| + |t| + 1)
    mask    = min_s (focal_weight * focal_s + dice_weight * dice_s)
    iou     = mean_s (iou_pred_s - IoU(m_s > 0, t))^2
The batch loss is the sum over prompts divided by the number of prompts (over all processes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0


def focal_per_mask(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """logits [..., P] (P pixels), target [..., P] in {0, 1} -> mean focal loss over pixels [...]."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = prob * target + (1 - prob) * (1 - target)
    alpha = FOCAL_ALPHA * target + (1 - FOCAL_ALPHA) * (1 - target)
    return (alpha * ce * (1 - p_t) ** FOCAL_GAMMA).mean(-1)


def dice_per_mask(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """logits, target [..., P] -> dice loss [...]."""
    prob = logits.sigmoid()
    return 1 - (2 * (prob * target).sum(-1) + 1) / (prob.sum(-1) + target.sum(-1) + 1)


def mask_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of the binary masks (logit > 0) with the targets: logits, target [..., P] -> [...]."""
    pred = logits > 0
    t = target > 0.5
    inter = (pred & t).sum(-1).float()
    union = (pred | t).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter))


def sam_loss(
    logits: torch.Tensor, iou_pred: torch.Tensor, target: torch.Tensor, focal_weight: float, dice_weight: float
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """logits [P, S, H, W], iou_pred [P, S], target [P, H, W] ->
    (mask loss summed over prompts, IoU-MSE summed over prompts, per prompt: {"best": [P] chosen s, "iou": [P] its IoU})."""
    p, s = logits.shape[:2]
    flat = logits.flatten(2)
    t = target.float().flatten(1)[:, None].expand(-1, s, -1)
    per_mask = focal_weight * focal_per_mask(flat, t) + dice_weight * dice_per_mask(flat, t)  # [P, S]
    best = per_mask.detach().argmin(dim=1)
    mask = per_mask.gather(1, best[:, None]).sum()
    actual = mask_iou(flat.detach(), t)
    iou = ((iou_pred - actual) ** 2).mean(1).sum()
    return mask, iou, {"best": best, "iou": actual.gather(1, best[:, None]).flatten()}
