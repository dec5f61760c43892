"""The fusers against a NumPy re-computation of the reference's formulas (reference/ovseg.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ovframe import Proposals, RegionScores, Vocabulary

N, K, H, W = 7, 4, 5, 6
VOCAB = Vocabulary(("a", "b", "c", "d"), (True, True, False, False))


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


@pytest.fixture
def inputs():
    rng = np.random.default_rng(0)
    mask_logits = rng.normal(0, 3, (N, H, W))
    class_logits = rng.normal(0, 2, (N, K + 1))
    clip_logits = rng.normal(0, 2, (N, K))
    valid = np.array([True, True, False, True, True, False, True])
    proposals = Proposals(torch.tensor(mask_logits, dtype=torch.float32), torch.tensor(class_logits, dtype=torch.float32))
    scores = RegionScores(torch.tensor(softmax(clip_logits), dtype=torch.float32), torch.tensor(valid))
    return proposals, scores, mask_logits, class_logits, softmax(clip_logits), valid


def fuser(name, **options):
    from ovframe import get_registry

    return get_registry().get("fuser", name).build(options)


def semseg(p, mask_logits):
    """semseg[k, h, w] = sum_q p[q, k] * sigmoid(mask[q, h, w]) (written as loops over q on purpose)."""
    out = np.zeros((K, H, W))
    for q in range(N):
        out += p[q][:, None, None] * sigmoid(mask_logits[q])[None]
    return out


def check(seg, want):
    np.testing.assert_allclose(seg.scores.numpy(), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(seg.labels.numpy(), want.argmax(0))


def test_proposal_only_drops_no_object_after_the_softmax(inputs):
    proposals, _, masks, cls, _, _ = inputs
    p = softmax(cls)[:, :K]  # rows sum to < 1
    check(fuser("proposal-only").fuse([proposals], None, VOCAB, return_scores=True)[0], semseg(p, masks))
    p2 = softmax(cls[:, :K])
    check(fuser("proposal-only", proposal_probs="softmax-over-classes").fuse([proposals], None, VOCAB, return_scores=True)[0], semseg(p2, masks))


@pytest.mark.parametrize("lam", [0.0, 0.45, 0.7, 1.0])
def test_geometric_ensemble(inputs, lam):
    proposals, scores, masks, cls, p_clip, valid = inputs
    p_prop = softmax(cls)[:, :K]
    clip = np.where(valid[:, None], p_clip, 1.0)  # invalid proposals: p_clip = 1 for every class
    want = semseg(p_prop ** (1 - lam) * clip**lam, masks)
    check(fuser("geometric-ensemble", lam=lam).fuse([proposals], [scores], VOCAB, return_scores=True)[0], want)


def test_geometric_ensemble_can_drop_invalid_regions(inputs):
    proposals, scores, masks, cls, p_clip, valid = inputs
    p = softmax(cls)[:, :K] ** 0.3 * p_clip**0.7 * valid[:, None]
    check(fuser("geometric-ensemble", lam=0.7, invalid_regions="drop").fuse([proposals], [scores], VOCAB, return_scores=True)[0], semseg(p, masks))


def test_seen_unseen_ensemble_weights_per_class(inputs):
    proposals, scores, masks, cls, p_clip, valid = inputs
    p_prop = softmax(cls)[:, :K]
    clip = np.where(valid[:, None], p_clip, 1.0)
    w = np.array([0.4, 0.4, 0.8, 0.8])  # α for seen a, b; β for unseen c, d
    want = semseg(p_prop ** (1 - w) * clip**w, masks)
    check(fuser("geometric-ensemble-seen-unseen", alpha=0.4, beta=0.8).fuse([proposals], [scores], VOCAB, return_scores=True)[0], want)
    with pytest.raises(ValueError, match="which classes are seen"):
        fuser("geometric-ensemble-seen-unseen").fuse([proposals], [scores], Vocabulary(("a", "b", "c", "d")))


def test_clip_only(inputs):
    proposals, scores, masks, _, p_clip, valid = inputs
    check(fuser("clip-only").fuse([proposals], [scores], VOCAB, return_scores=True)[0], semseg(p_clip * valid[:, None], masks))
    ones = np.where(valid[:, None], p_clip, 1.0)
    check(fuser("clip-only", invalid_regions="clip-ones").fuse([proposals], [scores], VOCAB, return_scores=True)[0], semseg(ones, masks))


def test_no_proposals_gives_a_map_of_zeros():
    empty = Proposals(torch.zeros(0, H, W), torch.zeros(0, K + 1))
    scores = RegionScores(torch.zeros(0, K), torch.zeros(0, dtype=torch.bool))
    seg = fuser("geometric-ensemble").fuse([empty], [scores], VOCAB, return_scores=True)[0]
    assert seg.scores.shape == (K, H, W) and not seg.scores.any()


@pytest.fixture
def mixed(inputs):
    """Rows 1, 4 and 5 carry no class opinion (NaN rows, as a `union` of SAM and MaskFormer gives)."""
    proposals, scores, masks, cls, p_clip, valid = inputs
    has = np.array([True, False, True, True, False, False, True])
    cls = np.where(has[:, None], cls, np.nan)
    mixed = Proposals(proposals.mask_logits, torch.tensor(cls, dtype=torch.float32))
    return mixed, scores, masks, cls, p_clip, valid, has


def test_rows_without_class_opinion_are_flagged(mixed):
    proposals, *_, has = mixed
    np.testing.assert_array_equal(proposals.has_classes.numpy(), has)
    assert not Proposals(torch.zeros(3, H, W)).has_classes.any()


@pytest.mark.parametrize("invalid_regions", ["clip-ones", "drop"])
def test_geometric_ensemble_uses_clip_alone_where_the_proposal_has_no_opinion(mixed, invalid_regions):
    proposals, scores, masks, cls, p_clip, valid, has = mixed
    lam = 0.7
    clip = np.where(valid[:, None], p_clip, 1.0)
    p = np.zeros((N, K))
    for q in range(N):
        p[q] = softmax(cls[q])[:K] ** (1 - lam) * clip[q] ** lam if has[q] else clip[q]
    if invalid_regions == "drop":
        p = p * valid[:, None]
    seg = fuser("geometric-ensemble", lam=lam, invalid_regions=invalid_regions).fuse([proposals], [scores], VOCAB, return_scores=True)[0]
    assert torch.isfinite(seg.scores).all()
    check(seg, semseg(p, masks))


def test_seen_unseen_ensemble_uses_clip_alone_where_the_proposal_has_no_opinion(mixed):
    proposals, scores, masks, cls, p_clip, valid, has = mixed
    clip = np.where(valid[:, None], p_clip, 1.0)
    w = np.array([0.4, 0.4, 0.8, 0.8])
    p = np.stack([softmax(cls[q])[:K] ** (1 - w) * clip[q] ** w if has[q] else clip[q] for q in range(N)])
    check(fuser("geometric-ensemble-seen-unseen").fuse([proposals], [scores], VOCAB, return_scores=True)[0], semseg(p, masks))


def test_proposal_only_ignores_rows_without_class_opinion(mixed):
    proposals, _, masks, cls, _, _, has = mixed
    p = np.stack([softmax(cls[q])[:K] if has[q] else np.zeros(K) for q in range(N)])
    check(fuser("proposal-only").fuse([proposals], None, VOCAB, return_scores=True)[0], semseg(p, masks))


def test_proposal_quality_scores_are_checked_against_the_proposal_count():
    masks = torch.zeros(3, H, W)
    assert Proposals(masks, quality={"predicted_iou": torch.ones(3)}).quality["predicted_iou"].shape == (3,)
    with pytest.raises(ValueError, match="quality"):
        Proposals(masks, quality={"predicted_iou": torch.ones(2)})


@pytest.mark.parametrize("name", ["geometric-ensemble", "geometric-ensemble-seen-unseen"])
def test_ensembles_take_class_agnostic_proposals_as_clip_only(inputs, name):
    """Swapping SAM (no class logits) into an ensemble recipe: every row has no proposal opinion."""
    proposals, scores, masks, _, p_clip, valid = inputs
    agnostic = Proposals(proposals.mask_logits)
    for invalid_regions, fill in (("clip-ones", 1.0), ("drop", 0.0)):
        seg = fuser(name, invalid_regions=invalid_regions).fuse([agnostic], [scores], VOCAB, return_scores=True)[0]
        check(seg, semseg(np.where(valid[:, None], p_clip, fill), masks))
