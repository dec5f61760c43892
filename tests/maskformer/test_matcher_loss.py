"""The Hungarian matcher and the set loss, against brute force and a NumPy recomputation of the formulas."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from ovframe_maskformer.loss import SetCriterion
from ovframe_maskformer.matcher import hungarian_match


def np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def np_focal(logit, target, alpha=0.25, gamma=2.0):
    """Mean over pixels of the sigmoid focal loss of one mask (RetinaNet's formula)."""
    p = np_sigmoid(logit)
    ce = -(target * np.log(p) + (1 - target) * np.log(1 - p))
    p_t = p * target + (1 - p) * (1 - target)
    a_t = alpha * target + (1 - alpha) * (1 - target)
    return float(np.mean(a_t * ce * (1 - p_t) ** gamma))


def np_dice(logit, target):
    p = np_sigmoid(logit)
    return float(1 - (2 * np.sum(p * target) + 1) / (np.sum(p) + np.sum(target) + 1))


def np_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def np_cost(logits, masks, labels, tmasks, w=(1.0, 20.0, 1.0)):
    """Cost [Q, M]; targets at twice the prediction's resolution are subsampled (nearest)."""
    tm = tmasks[:, ::2, ::2]
    probs = np_softmax(logits)
    cost = np.zeros((len(logits), len(labels)))
    for i in range(len(logits)):
        for j in range(len(labels)):
            cost[i, j] = (
                -w[0] * probs[i, labels[j]]
                + w[1] * np_focal(masks[i].ravel(), tm[j].ravel())
                + w[2] * np_dice(masks[i].ravel(), tm[j].ravel())
            )
    return cost


def brute_force_min(cost):
    q, m = cost.shape
    return min(sum(cost[p[j], j] for j in range(m)) for p in itertools.permutations(range(q), m))


@pytest.mark.parametrize("case", range(12))
def test_matcher_finds_the_brute_force_optimum(case):
    g = torch.Generator().manual_seed(case)
    q = 3 + case % 4
    m = 1 + case % q
    k = 4
    logits = torch.randn(1, q, k + 1, generator=g) * 3
    masks = torch.randn(1, q, 4, 5, generator=g) * 2
    labels = torch.randint(0, k, (m,), generator=g)
    tmasks = torch.rand(m, 8, 10, generator=g) > 0.5
    (rows, cols), = hungarian_match(logits, masks, [{"labels": labels, "masks": tmasks}])
    cost = np_cost(logits[0].double().numpy(), masks[0].double().numpy(), labels.numpy(), tmasks.double().numpy())
    assert len(rows) == len(cols) == m
    assert sorted(cols.tolist()) == list(range(m))  # every target matched once
    assert len(set(rows.tolist())) == m  # to distinct queries
    got = sum(cost[i, j] for i, j in zip(rows.tolist(), cols.tolist()))
    assert got == pytest.approx(brute_force_min(cost), abs=1e-5)


def test_matcher_handles_an_image_without_targets():
    out = hungarian_match(torch.randn(1, 3, 5), torch.randn(1, 3, 4, 4), [{"labels": torch.zeros(0, dtype=torch.long), "masks": torch.zeros(0, 8, 8)}])
    assert len(out[0][0]) == 0


def test_set_loss_matches_numpy():
    g = torch.Generator().manual_seed(7)
    b, q, k = 2, 5, 3
    logits = torch.randn(b, q, k + 1, generator=g)
    masks = torch.randn(b, q, 6, 6, generator=g)
    targets = [
        {"labels": torch.tensor([0, 2]), "masks": torch.rand(2, 6, 6, generator=g) > 0.5},
        {"labels": torch.tensor([1]), "masks": torch.rand(1, 6, 6, generator=g) > 0.3},
    ]
    crit = SetCriterion(no_object_weight=0.1)
    parts = crit.layer_loss(logits, masks, targets, num_masks=3.0)
    indices = hungarian_match(logits, masks, targets)

    # cross-entropy, no-object weighted 0.1, weighted mean over all queries of the batch
    num, den = 0.0, 0.0
    focal, dice = 0.0, 0.0
    for bi, (rows, cols) in enumerate(indices):
        lab = np.full(q, k)
        lab[rows.numpy()] = targets[bi]["labels"][cols].numpy()
        lp = np.log(np_softmax(logits[bi].double().numpy()))
        for i in range(q):
            w = 0.1 if lab[i] == k else 1.0
            num += -w * lp[i, lab[i]]
            den += w
        for i, j in zip(rows.tolist(), cols.tolist()):
            t = targets[bi]["masks"][j].double().numpy().ravel()
            x = masks[bi, i].double().numpy().ravel()
            focal += np_focal(x, t)
            dice += np_dice(x, t)
    assert parts["ce"].item() == pytest.approx(num / den, rel=1e-5)
    assert parts["focal"].item() == pytest.approx(focal / 3.0, rel=1e-5)
    assert parts["dice"].item() == pytest.approx(dice / 3.0, rel=1e-5)


def test_deep_supervision_sums_every_layer_with_weights_1_20_1():
    g = torch.Generator().manual_seed(3)
    outputs = {"pred_logits": torch.randn(3, 1, 4, 3, generator=g), "pred_masks": torch.randn(3, 1, 4, 5, 5, generator=g)}
    targets = [{"labels": torch.tensor([0, 1]), "masks": torch.rand(2, 5, 5, generator=g) > 0.5}]
    crit = SetCriterion()
    total, _ = crit(outputs, targets)
    expected = 0.0
    for layer in range(3):
        p = crit.layer_loss(outputs["pred_logits"][layer], outputs["pred_masks"][layer], targets, 2.0)
        expected += p["ce"].item() + 20 * p["focal"].item() + p["dice"].item()
    assert total.item() == pytest.approx(expected, rel=1e-6)
    last_only, _ = SetCriterion(deep_supervision=False)(outputs, targets)
    p = crit.layer_loss(outputs["pred_logits"][2], outputs["pred_masks"][2], targets, 2.0)
    assert last_only.item() == pytest.approx(p["ce"].item() + 20 * p["focal"].item() + p["dice"].item(), rel=1e-6)


def test_excluded_pixels_count_in_neither_the_loss_nor_the_matching():
    """With targets' "valid" maps (ignore_pixels: excluded), the mask terms are the NumPy formulas over the
    valid pixels only, and what the network predicts on the other pixels changes nothing."""
    g = torch.Generator().manual_seed(11)
    b, q, k = 2, 4, 3
    logits = torch.randn(b, q, k + 1, generator=g)
    masks = torch.randn(b, q, 6, 6, generator=g)
    valid = [torch.rand(6, 6, generator=g) > 0.3 for _ in range(b)]
    targets = [
        {"labels": torch.tensor([0, 2]), "masks": (torch.rand(2, 6, 6, generator=g) > 0.5) & valid[0], "valid": valid[0].float()},
        {"labels": torch.tensor([1]), "masks": (torch.rand(1, 6, 6, generator=g) > 0.4) & valid[1], "valid": valid[1].float()},
    ]
    crit = SetCriterion()
    parts = crit.layer_loss(logits, masks, targets, num_masks=3.0)
    indices = hungarian_match(logits, masks, targets)
    focal = dice = 0.0
    for bi, (rows, cols) in enumerate(indices):
        keep = valid[bi].numpy().ravel()
        for i, j in zip(rows.tolist(), cols.tolist()):
            t = targets[bi]["masks"][j].double().numpy().ravel()[keep]
            x = masks[bi, i].double().numpy().ravel()[keep]
            focal += np_focal(x, t)
            dice += np_dice(x, t)
    assert parts["focal"].item() == pytest.approx(focal / 3.0, rel=1e-5)
    assert parts["dice"].item() == pytest.approx(dice / 3.0, rel=1e-5)

    scrambled = masks.clone()
    for bi in range(b):
        scrambled[bi][:, ~valid[bi]] = torch.randn(q, int((~valid[bi]).sum()), generator=g) * 10
    again = crit.layer_loss(logits, scrambled, targets, num_masks=3.0)
    assert [(r.tolist(), c.tolist()) for r, c in hungarian_match(logits, scrambled, targets)] == [(r.tolist(), c.tolist()) for r, c in indices]
    for key in ("focal", "dice"):
        assert again[key].item() == pytest.approx(parts[key].item(), rel=1e-6)
    # all pixels valid: the reference loss exactly
    full = [{**t, "valid": torch.ones(6, 6)} for t in targets]
    plain = [{k: v for k, v in t.items() if k != "valid"} for t in targets]
    for key, value in crit.layer_loss(logits, masks, full, 3.0).items():
        assert value.item() == pytest.approx(crit.layer_loss(logits, masks, plain, 3.0)[key].item(), rel=1e-6)
