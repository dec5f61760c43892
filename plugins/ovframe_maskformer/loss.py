"""MaskFormer's set loss: match, then cross-entropy + sigmoid focal + dice on the matched pairs, per decoder layer.

Per layer (each layer is matched on its own, as the reference does):
    ce    = cross_entropy(logits [B*Q, K+1], labels; class weights 1 ... 1, no_object_weight), weighted mean;
            unmatched queries are labelled "no object" (index K)
    focal = sum over matched pairs of mean-over-pixels focal loss / num_masks   (alpha 0.25, gamma 2)
    dice  = sum over matched pairs of dice loss / num_masks
    loss += class_weight * ce + mask_weight * focal + dice_weight * dice
Predicted masks are upsampled (bilinear) to the targets' resolution. num_masks is the number of target
masks in the batch averaged over processes (at least 1), so that DDP's gradient average equals the
single-process gradient of the whole batch.
With targets[b]["valid"] [H, W] (train-proposals' `ignore_pixels: excluded`), the focal and dice terms
and the matching costs count only those pixels; without it every pixel counts, ignore ones as background.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .matcher import FOCAL_ALPHA, FOCAL_GAMMA, hungarian_match


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: float, alpha: float = FOCAL_ALPHA, gamma: float = FOCAL_GAMMA,
                       valid: torch.Tensor | None = None) -> torch.Tensor:
    """logits, targets [M, P] -> sum over masks of the mean over pixels (those where valid [M, P] is 1), / num_masks."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    if valid is None:
        return loss.mean(1).sum() / num_masks
    return ((loss * valid).sum(1) / valid.sum(1).clamp(min=1)).sum() / num_masks


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: float, valid: torch.Tensor | None = None) -> torch.Tensor:
    """logits, targets [M, P] -> sum over masks of 1 - (2|p t| + 1) / (|p| + |t| + 1), / num_masks
    (predictions outside valid [M, P] not counted)."""
    prob = logits.sigmoid() if valid is None else logits.sigmoid() * valid
    numerator = 2 * (prob * targets).sum(-1)
    denominator = prob.sum(-1) + targets.sum(-1)
    return (1 - (numerator + 1) / (denominator + 1)).sum() / num_masks


def count_masks(targets: list[dict[str, torch.Tensor]]) -> float:
    """Target masks in the batch, averaged over processes when distributed, at least 1."""
    n = torch.tensor([float(sum(len(t["labels"]) for t in targets))], dtype=torch.float64)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(n)
        n /= torch.distributed.get_world_size()
    return max(float(n.item()), 1.0)


@dataclass(frozen=True)
class SetCriterion:
    no_object_weight: float = 0.1
    class_weight: float = 1.0
    mask_weight: float = 20.0
    dice_weight: float = 1.0
    deep_supervision: bool = True

    def layer_loss(
        self, logits: torch.Tensor, masks: torch.Tensor, targets: list[dict[str, torch.Tensor]], num_masks: float
    ) -> dict[str, torch.Tensor]:
        """logits [B, Q, K+1], masks [B, Q, h, w] -> {"ce", "focal", "dice"} (unweighted)."""
        logits, masks = logits.float(), masks.float()
        indices = hungarian_match(logits, masks, targets, (self.class_weight, self.mask_weight, self.dice_weight))
        k = logits.shape[-1] - 1
        labels = torch.full(logits.shape[:2], k, dtype=torch.int64, device=logits.device)
        for b, (q, j) in enumerate(indices):
            labels[b, q.to(logits.device)] = targets[b]["labels"][j].to(logits.device)
        class_weights = torch.ones(k + 1, device=logits.device)
        class_weights[-1] = self.no_object_weight
        ce = F.cross_entropy(logits.transpose(1, 2), labels, class_weights)
        src = [masks[b, q] for b, (q, _) in enumerate(indices)]
        tgt = [targets[b]["masks"][j] for b, (_, j) in enumerate(indices)]
        src_masks, tgt_masks = torch.cat(src), torch.cat(tgt).to(masks)
        if src_masks.shape[0] == 0:
            zero = masks.sum() * 0.0  # keeps the graph connected (DDP wants every parameter used)
            return {"ce": ce, "focal": zero, "dice": zero}
        src_masks = F.interpolate(src_masks[:, None], size=tgt_masks.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        src_masks, tgt_masks = src_masks.flatten(1), tgt_masks.flatten(1)
        valid = None
        if "valid" in targets[0]:  # one row per matched mask: the valid pixels of its image
            valid = torch.cat([targets[b]["valid"][None].expand(len(j), -1, -1) for b, (_, j) in enumerate(indices)]).flatten(1).to(src_masks)
        return {
            "ce": ce,
            "focal": sigmoid_focal_loss(src_masks, tgt_masks, num_masks, valid=valid),
            "dice": dice_loss(src_masks, tgt_masks, num_masks, valid=valid),
        }

    def __call__(self, outputs: dict[str, torch.Tensor], targets: list[dict[str, torch.Tensor]]) -> tuple[torch.Tensor, dict[str, float]]:
        """outputs of MaskFormerModel (all layers) -> (total loss, {part: value of the last layer, ...})."""
        num_masks = count_masks(targets)
        layers = range(outputs["pred_logits"].shape[0]) if self.deep_supervision else [outputs["pred_logits"].shape[0] - 1]
        total = outputs["pred_masks"].new_zeros(())
        parts: dict[str, float] = {}
        for layer in layers:
            lp = self.layer_loss(outputs["pred_logits"][layer], outputs["pred_masks"][layer], targets, num_masks)
            total = total + self.class_weight * lp["ce"] + self.mask_weight * lp["focal"] + self.dice_weight * lp["dice"]
            parts = {f"loss_{k}": float(v.detach()) for k, v in lp.items()}  # the last layer's, for the log
        return total, parts
