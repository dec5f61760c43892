"""Streaming semantic-segmentation metrics from a confusion matrix.

The matrix counts pixels by (ground truth, prediction); ignore pixels are excluded. From it:

    IoU_k = TP_k / (GT_k + P_k - TP_k)          over classes counted (see `count`)
    mIoU  = mean IoU_k;  fwIoU = sum_k (GT_k / sum GT) IoU_k
    mACC  = mean over classes with GT_k > 0 of TP_k / GT_k;  pACC = sum TP / sum GT

`count="gt-or-pred"` (the default, as in reference/ovseg.md) averages IoU over classes present in
ground truth or prediction; `count="gt"` only over classes present in ground truth (detectron2's
SemSegEvaluator does this).
"""

from __future__ import annotations

import math
from typing import Any, Literal, Sequence

import numpy as np
import torch

from .records import IGNORE_INDEX

Count = Literal["gt-or-pred", "gt"]


class ConfusionMatrix:
    def __init__(self, num_classes: int, count: Count = "gt-or-pred"):
        self.num_classes = num_classes
        self.count = count
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)  # [gt, pred]

    def update(self, prediction: torch.Tensor, label: torch.Tensor) -> None:
        """Add one image: prediction and label int64 [H, W]; label IGNORE_INDEX pixels are skipped."""
        if prediction.shape != label.shape:
            raise ValueError(f"prediction {tuple(prediction.shape)} and label {tuple(label.shape)} differ in size")
        k = self.num_classes
        label = label.reshape(-1).to(torch.int64).cpu()
        prediction = prediction.reshape(-1).to(torch.int64).cpu()
        keep = label != IGNORE_INDEX
        label, prediction = label[keep], prediction[keep]
        if label.numel() and (int(label.min()) < 0 or int(label.max()) >= k):
            raise ValueError(f"label values must be in [0, {k}) or {IGNORE_INDEX}, got {int(label.min())}..{int(label.max())}")
        if prediction.numel() and (int(prediction.min()) < 0 or int(prediction.max()) >= k):
            raise ValueError(f"predictions must be in [0, {k})")
        cells = label * k + prediction
        if k * k <= 4 * cells.numel():
            self.matrix += torch.bincount(cells, minlength=k * k).reshape(k, k)
        else:  # a large vocabulary: add only the cells this image touches (no K x K temporary)
            touched, counts = torch.unique(cells, return_counts=True)
            self.matrix.view(-1).index_add_(0, touched, counts)

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        if other.num_classes != self.num_classes:
            raise ValueError("cannot merge confusion matrices of different sizes")
        self.matrix += other.matrix
        return self

    def all_reduce(self) -> None:
        """Sum the matrices of all processes (torch.distributed must be initialised)."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.matrix, op=dist.ReduceOp.SUM)

    def per_class(self) -> dict[str, np.ndarray]:
        m = self.matrix.double().numpy()
        tp = np.diag(m)
        gt = m.sum(axis=1)
        pred = m.sum(axis=0)
        union = gt + pred - tp
        counted = (gt > 0) if self.count == "gt" else (union > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(counted, tp / union, np.nan)
            acc = np.where(gt > 0, tp / gt, np.nan)
        return {"iou": iou, "acc": acc, "gt_pixels": gt, "pred_pixels": pred, "counted": counted}

    def summary(self, seen: Sequence[bool] | None = None) -> dict[str, float]:
        """mIoU, fwIoU, mACC, pACC in percent; with `seen`, also mIoU over seen and unseen classes and
        their harmonic mean hIoU. A metric with nothing to average is NaN."""
        pc = self.per_class()
        iou, acc, gt = pc["iou"], pc["acc"], pc["gt_pixels"]
        total = gt.sum()
        out = {
            "mIoU": _mean(iou),
            "fwIoU": 100.0 * float(np.nansum(iou * gt / total)) if total else math.nan,
            "mACC": _mean(acc),
            "pACC": 100.0 * float(np.diag(self.matrix.numpy()).sum() / total) if total else math.nan,
        }
        if seen is not None:
            seen_mask = np.asarray(seen, dtype=bool)
            out["mIoU_seen"] = _mean(iou[seen_mask])
            out["mIoU_unseen"] = _mean(iou[~seen_mask])
            s, u = out["mIoU_seen"], out["mIoU_unseen"]
            out["hIoU"] = 2 * s * u / (s + u) if (s + u) > 0 else math.nan
        return out

    def per_class_rows(self, names: Sequence[str], seen: Sequence[bool] | None = None) -> list[dict[str, Any]]:
        pc = self.per_class()
        rows = []
        for k, name in enumerate(names):
            rows.append(
                {
                    "class": name,
                    "split": ("" if seen is None else "seen" if seen[k] else "unseen"),
                    "IoU": _pct(pc["iou"][k]),
                    "ACC": _pct(pc["acc"][k]),
                    "gt_pixels": int(pc["gt_pixels"][k]),
                    "pred_pixels": int(pc["pred_pixels"][k]),
                }
            )
        return rows


def _mean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return 100.0 * float(values.mean()) if values.size else math.nan


def _pct(value: float) -> float | str:
    return "" if np.isnan(value) else round(100.0 * float(value), 4)
