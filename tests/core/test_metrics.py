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


def test_a_class_in_neither_ground_truth_nor_prediction_is_not_averaged():
    """Class 3 appears nowhere: under both rules it is left out of mIoU (not an IoU of 0) and its
    IoU is NaN; class 2, only predicted, counts as 0 under the default rule alone."""
    label = torch.tensor([[0, 0, 1, 1, -1]])
    pred = torch.tensor([[0, 0, 1, 2, 3]])  # the ignore pixel's prediction (3) does not count either
    default, gt_only = ConfusionMatrix(4), ConfusionMatrix(4, "gt")
    for cm in (default, gt_only):
        cm.update(pred, label)
    assert default.count == "gt-or-pred"  # reference/ovseg.md: classes present in ground truth or prediction
    assert np.isnan(default.per_class()["iou"][3]) and np.isnan(gt_only.per_class()["iou"][3])
    assert default.summary()["mIoU"] == pytest.approx(100 * (1 + 0.5 + 0) / 3)
    assert gt_only.summary()["mIoU"] == pytest.approx(100 * (1 + 0.5) / 2)


def test_the_evaluator_counts_classes_by_the_reference_rule_by_default(tmp_path, toy_registry):
    """An evaluation run with nothing said about counting, on data where the rule matters (class c is
    only predicted, class d appears nowhere): mIoU over the classes present in ground truth or prediction,
    recomputed here from the run's own confusion matrix."""
    from PIL import Image
    from safetensors.torch import load_file
    from support import write

    from ovframe.recipes import load_recipe
    from ovframe.runner import run_recipe

    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "labels").mkdir()
    (data / "classes.txt").write_text("a\nb\nc\nd\n")
    label = np.zeros((16, 16), dtype=np.uint8)
    label[:, 8:] = 1  # a on the left (black), b on the right (white)
    for i in range(2):
        Image.fromarray(np.stack([label * 255] * 3, -1)).save(data / "images" / f"i{i}.png")
        Image.fromarray(label).save(data / "labels" / f"i{i}.png")
    f = write(
        tmp_path / "r.yaml",
        f"name: r\noutput_dir: {tmp_path / 'runs'}\ndevice: cpu\ndataset: {{plugin: folder, root: {data}}}\n"
        "proposals: {plugin: grid, cells: 3}\nclassifier: {plugin: mean-colour, colours: {a: [0, 0, 0], "
        "b: [255, 255, 255], c: [128, 128, 128], d: [255, 0, 0]}}\nfuser: clip-only\n",
    )
    metrics = run_recipe(load_recipe(f, registry=toy_registry), toy_registry)
    m = load_file(tmp_path / "runs" / "r" / "confusion.safetensors")["confusion"].double().numpy()
    tp, gt, pred = np.diag(m), m.sum(1), m.sum(0)
    present = (gt + pred) > 0
    assert present.tolist() == [True, True, True, False] and gt[2] == 0 < pred[2]  # the data the rule is about
    assert metrics["mIoU"] == pytest.approx(100 * np.mean(tp[present] / (gt + pred - tp)[present]))


def test_a_large_vocabulary_counts_the_same_without_a_k_by_k_temporary():
    """K = 300 on a 10 x 12 image takes the sparse update; a NumPy count is the reference."""
    rng = np.random.default_rng(5)
    k = 300
    label = rng.integers(-1, k, size=(10, 12))
    prediction = rng.integers(0, k, size=(10, 12))
    cm = ConfusionMatrix(k)
    cm.update(torch.tensor(prediction), torch.tensor(label))
    cm.update(torch.tensor(prediction), torch.tensor(label))
    want = np.zeros((k, k), dtype=np.int64)
    keep = label != -1
    np.add.at(want, (label[keep], prediction[keep]), 2)
    np.testing.assert_array_equal(cm.matrix.numpy(), want)
