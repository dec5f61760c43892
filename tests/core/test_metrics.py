"""The streaming confusion-matrix metrics against a per-class re-computation from the raw pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ovframe.metrics import ConfusionMatrix

K = 6


def reference(preds, labels, count: str, seen=None):
    """mIoU etc. straight from pixel sets, one class at a time (no confusion matrix)."""
    pred = np.concatenate([p.ravel() for p in preds])
    gt = np.concatenate([l.ravel() for l in labels])
    keep = gt != -1
    pred, gt = pred[keep], gt[keep]
    iou, acc, weight = {}, {}, {}
    for k in range(K):
        inter = np.sum((pred == k) & (gt == k))
        union = np.sum((pred == k) | (gt == k))
        in_gt = np.sum(gt == k)
        if (count == "gt" and in_gt > 0) or (count == "gt-or-pred" and union > 0):
            iou[k] = inter / union
        if in_gt > 0:
            acc[k] = inter / in_gt
        weight[k] = in_gt / gt.size
    out = {
        "mIoU": 100 * np.mean(list(iou.values())),
        "mACC": 100 * np.mean(list(acc.values())),
        "pACC": 100 * np.mean(pred == gt),
        "fwIoU": 100 * sum(weight[k] * iou.get(k, 0.0) for k in range(K)),
    }
    if seen is not None:
        s = [iou[k] for k in iou if seen[k]]
        u = [iou[k] for k in iou if not seen[k]]
        out["mIoU_seen"], out["mIoU_unseen"] = 100 * np.mean(s), 100 * np.mean(u)
        out["hIoU"] = 2 * out["mIoU_seen"] * out["mIoU_unseen"] / (out["mIoU_seen"] + out["mIoU_unseen"])
    return out


def random_images(seed, n=4):
    rng = np.random.default_rng(seed)
    preds, labels = [], []
    for _ in range(n):
        h, w = rng.integers(5, 20, size=2)
        label = rng.integers(-1, K - 1, size=(h, w))  # class K-1 never in ground truth
        pred = np.where(rng.random((h, w)) < 0.6, np.clip(label, 0, None), rng.integers(0, K, size=(h, w)))
        preds.append(pred)
        labels.append(label)
    return preds, labels


@pytest.mark.parametrize("count", ["gt-or-pred", "gt"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_a_per_class_recomputation(count, seed):
    preds, labels = random_images(seed)
    seen = [True, False, True, True, False, True]
    cm = ConfusionMatrix(K, count)
    for p, l in zip(preds, labels):
        cm.update(torch.from_numpy(p), torch.from_numpy(l))
    got = cm.summary(seen)
    want = reference(preds, labels, count, seen)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-9), key


def test_counting_rule_matters_for_classes_only_predicted():
    # class 2 is predicted but never in ground truth: it counts (IoU 0) only under gt-or-pred
    label = torch.tensor([[0, 0, 1, 1]])
    pred = torch.tensor([[0, 0, 1, 2]])
    a, b = ConfusionMatrix(3, "gt-or-pred"), ConfusionMatrix(3, "gt")
    a.update(pred, label)
    b.update(pred, label)
    assert a.summary()["mIoU"] == pytest.approx(100 * (1 + 0.5 + 0) / 3)
    assert b.summary()["mIoU"] == pytest.approx(100 * (1 + 0.5) / 2)


def test_merge_equals_one_matrix_over_all_images():
    preds, labels = random_images(7, n=6)
    whole, parts = ConfusionMatrix(K), [ConfusionMatrix(K), ConfusionMatrix(K)]
    for i, (p, l) in enumerate(zip(preds, labels)):
        whole.update(torch.from_numpy(p), torch.from_numpy(l))
        parts[i % 2].update(torch.from_numpy(p), torch.from_numpy(l))
    assert torch.equal(parts[0].merge(parts[1]).matrix, whole.matrix)


def test_out_of_range_labels_are_refused():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="label values"):
        cm.update(torch.tensor([[0, 1]]), torch.tensor([[0, 5]]))
    with pytest.raises(ValueError, match="differ in size"):
        cm.update(torch.tensor([[0, 1]]), torch.tensor([[0]]))


def test_per_class_rows():
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([[0, 1, 1]]), torch.tensor([[0, 1, 2]]))
    rows = cm.per_class_rows(["a", "b", "c"], [True, True, False])
    assert [(r["class"], r["split"], r["IoU"], r["gt_pixels"], r["pred_pixels"]) for r in rows] == [
        ("a", "seen", 100.0, 1, 1), ("b", "seen", 50.0, 1, 2), ("c", "unseen", 0.0, 1, 0),
    ]
