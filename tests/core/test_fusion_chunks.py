"""Fusion chunked over classes against the unchunked computation, and the fusers' region selection
(`skip`): exact labels when certified, the documented approximation otherwise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ovframe import Proposals, RegionScores, Vocabulary
from ovframe.pipeline import Pipeline
from ovframe.records import resize_scores
from ovframe_fusers.fusion import certify, fuse_masks


def unchunked(weights, mask_logits, size=None):
    scores = torch.einsum("qk,qhw->khw", weights, mask_logits.sigmoid())
    if size is not None:
        scores = resize_scores(scores, size)
    return scores


@pytest.mark.parametrize("size", [None, (23, 31), (7, 9)])
def test_chunked_labels_equal_the_unchunked_argmax(size):
    g = torch.Generator().manual_seed(0)
    n, k, h, w = 9, 37, 15, 18
    weights = torch.rand(n, k, generator=g) ** 3
    logits = torch.randn(n, h, w, generator=g) * 3
    want = unchunked(weights, logits, size)
    for chunk in (1, 3, 8, 37, 100):
        labels, scores, confidence = fuse_masks(weights, logits, size, return_scores=True, chunk=chunk)
        assert torch.equal(labels, want.argmax(0)), chunk
        torch.testing.assert_close(scores, want, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(confidence, want.max(0).values / want.sum(0), rtol=1e-5, atol=1e-6)
        labels_only, none, _ = fuse_masks(weights, logits, size, chunk=chunk)
        assert none is None and torch.equal(labels_only, labels)


@pytest.mark.parametrize("elements", [1, 100, 1000])
def test_pixel_bands_equal_the_unchunked_argmax(monkeypatch, elements):
    """Without a resize the pixels go in bands (here of 1 / 2 / 27 pixels, and class chunks within them)."""
    from ovframe_fusers import fusion

    monkeypatch.setattr(fusion, "CHUNK_ELEMENTS", elements)
    g = torch.Generator().manual_seed(2)
    weights = torch.rand(9, 37, generator=g) ** 3
    logits = torch.randn(9, 15, 18, generator=g) * 3
    logits[0, :2] = float("nan")
    want = unchunked(weights, torch.nan_to_num(logits, nan=-torch.inf))
    for chunk in (None, 5):
        labels, scores, confidence = fuse_masks(weights, logits, return_scores=True, chunk=chunk)
        assert torch.equal(labels, want.argmax(0)) and labels.shape == (15, 18)
        torch.testing.assert_close(scores, want, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(confidence, want.max(0).values / want.sum(0), rtol=1e-5, atol=1e-6)
        assert torch.equal(fuse_masks(weights, logits, (15, 18), chunk=chunk)[0], labels)


def test_ties_go_to_the_lower_class_as_argmax_does():
    weights = torch.tensor([[0.5, 0.5, 0.5, 0.2]])  # classes 0, 1, 2 tie everywhere
    logits = torch.zeros(1, 3, 4)
    for chunk in (1, 2, 4):
        labels, _, _ = fuse_masks(weights, logits, chunk=chunk)
        assert not labels.any()


def test_nan_masks_weigh_nothing():
    weights = torch.tensor([[1.0, 0.0], [0.0, 0.5]])
    logits = torch.stack([torch.full((2, 2), float("nan")), torch.zeros(2, 2)])
    labels, scores, _ = fuse_masks(weights, logits, return_scores=True, chunk=1)
    assert torch.isfinite(scores).all() and (labels == 1).all()


def test_certified_pixels_cannot_change_whatever_the_unknown_scores():
    g = torch.Generator().manual_seed(1)
    n, k, h, w = 8, 6, 12, 12
    logits = torch.randn(n, h, w, generator=g) * 4
    true = torch.rand(n, k, generator=g)
    known = torch.tensor([True, True, True, False, True, False, True, True])
    low = torch.where(known[:, None], true, torch.zeros(n, k))
    high = torch.where(known[:, None], true, torch.rand(n, k, generator=g) * 0.3 + true)
    for size in (None, (17, 9)):
        certain = certify(known, low, high, logits, size, chunk=2)
        assert 0 < certain.float().mean() < 1
        for trial in range(20):  # any weights inside the bounds give the certified labels
            t = torch.rand(n, k, generator=g)
            weights = torch.where(known[:, None], true, low + t * (high - low))
            labels, _, _ = fuse_masks(weights, logits, size)
            reference, _, _ = fuse_masks(low + (high - low) * (trial % 2), logits, size)
            assert torch.equal(labels[certain], reference[certain])


# -- the pipeline asks the classifier only about what the fuser selects ---------------------------

class CountingClassifier:
    """Region scores from a fixed table; counts the regions it would run CLIP on (non-empty masks)."""

    name, needs_text = "counting", False

    def __init__(self, tables):
        self.tables, self.asked = tables, 0

    def classify(self, samples, proposals, text, vocabulary):
        out = []
        for sample, props in zip(samples, proposals):
            table = self.tables[sample.id]
            rows = [int(torch.nonzero((table["masks"] == m).flatten(1).all(1))[0]) for m in props.mask_logits]
            valid = (props.mask_logits > 0).flatten(1).any(1)
            self.asked += int(valid.sum())
            out.append(RegionScores(table["probs"][rows], valid))
        return out


class GivenProposals:
    name, needs_text = "given", True

    def __init__(self, tables):
        self.tables = tables

    def test_size(self, h, w):
        return None

    def propose(self, samples, text):
        return [Proposals(self.tables[s.id]["masks"], self.tables[s.id]["class_logits"]) for s in samples]


def world(seed: int, images: int = 4, n: int = 16, k: int = 12, size: int = 24):
    """Proposals as MaskFormer's are: objects, their near-duplicates, and "no object" ones (a quarter)."""
    from ovframe import Sample

    g = torch.Generator().manual_seed(seed)
    samples, tables = [], {}
    objects, junk = 3 * n // 8, n // 4
    for i in range(images):
        base = torch.zeros(objects, size, size)
        for q in range(objects):
            y, x = torch.randint(0, size - 6, (2,), generator=g).tolist()
            base[q, y : y + 8, x : x + 8] = 1
        duplicates = base * 14 - 7 + torch.randn(objects, size, size, generator=g) * 0.5
        noise = torch.randn(junk, size, size, generator=g) - 6
        for q in range(junk):  # a small confident blob, but the generator says "no object"
            y, x = torch.randint(0, size - 4, (2,), generator=g).tolist()
            noise[q, y : y + 4, x : x + 4] = 3.0
        class_logits = torch.randn(n, k + 1, generator=g) * 2
        class_logits[-junk:, -1] = 30.0  # confidently "no object": p_proposal ~ 1e-13
        tables[f"i{i}"] = {
            "masks": torch.cat([base * 16 - 8, duplicates, noise]),
            "class_logits": class_logits,
            "probs": torch.softmax(torch.randn(n, k, generator=g) * 3, dim=1),
        }
        samples.append(Sample(torch.zeros(3, size, size, dtype=torch.uint8), None, f"i{i}"))
    return samples, tables, Vocabulary(tuple(f"c{j}" for j in range(k)))


def pipeline(tables, skip):
    from ovframe import get_registry

    fuser = get_registry().get("fuser", "geometric-ensemble").build({"lam": 0.7, "skip": skip})
    return Pipeline(text_encoder=_NoText(), proposals=GivenProposals(tables), classifier=CountingClassifier(tables), fuser=fuser)


class _NoText:
    name = "none"

    def encode(self, vocabulary):
        return None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_certified_skipping_gives_the_labels_of_classifying_everything(seed):
    samples, tables, vocab = world(seed)
    full = pipeline(tables, None)
    want = [s.labels for s in full.segment(samples, vocab)]
    exact = pipeline(tables, {"certify": True, "share_iou": 0.5, "min_top_area": 0.01})
    got = [s.labels for s in exact.segment(samples, vocab)]
    for a, b in zip(want, got):
        assert torch.equal(a, b)
    assert exact.stats["regions_classified"] == exact.classifier.asked < full.classifier.asked == 4 * 16
    # what certification may skip here: the "no object" proposals, whose weight is below any margin
    assert exact.classifier.asked >= 4 * 12


def test_uncertified_skipping_shares_duplicates_and_drops_what_is_nowhere_strongest():
    samples, tables, vocab = world(3)
    fast = pipeline(tables, {"certify": False, "share_iou": 0.5, "min_top_area": 0.0})
    fast.segment(samples, vocab)
    assert fast.classifier.asked <= 4 * 10  # at most one per pair of duplicates, and some "no object" ones
    # the same labels as fusing with the shared scores written out by hand
    sel = fast.fuser.select_regions([Proposals(tables["i0"]["masks"], tables["i0"]["class_logits"])], vocab)[0]
    probs = tables["i0"]["probs"]
    shared = torch.where((sel.source >= 0)[:, None], probs[sel.source.clamp(min=0)], torch.zeros_like(probs))
    shared = torch.where(sel.classify[:, None], probs, shared)
    p_prop = torch.softmax(tables["i0"]["class_logits"], 1)[:, :-1]
    want = unchunked(p_prop**0.3 * shared**0.7, tables["i0"]["masks"]).argmax(0)
    assert torch.equal(fast.segment(samples[:1], vocab)[0].labels, want)
    assert (sel.source[~sel.classify] >= -1).all() and sel.classify.sum() < len(sel.classify)
    np.testing.assert_array_equal((sel.source[sel.classify & (sel.source >= 0)]).numpy(), torch.nonzero(sel.classify & (sel.source >= 0)).flatten().numpy())


def brute_force_groups(masks, class_logits, iou_thr, lam, leader):
    """Group leaders recomputed pixel by pixel: greedy from the weightiest (area x max_k
    p_proposal^(1-λ)) or the largest proposal down, joining the ungrouped ones at IoU >= iou_thr."""
    binary = (masks > 0).flatten(1).numpy()
    area = binary.sum(1)
    p_prop = np.exp(class_logits.double().numpy())
    p_prop = p_prop / p_prop.sum(1, keepdims=True)
    key = area * (p_prop[:, :-1] ** (1 - lam)).max(1) if leader == "weightiest" else area.astype(float)
    lead = [-1] * len(area)
    for q in sorted(range(len(area)), key=lambda q: (-key[q], q)):
        if lead[q] >= 0:
            continue
        lead[q] = q
        for r in range(len(area)):
            inter = int((binary[q] & binary[r]).sum())
            union = int(area[q] + area[r]) - inter
            if lead[r] < 0 and area[q] > 0 and union > 0 and inter / union >= iou_thr:
                lead[r] = q
    return np.array(lead), key


@pytest.mark.parametrize("seed", [3, 4])
def test_each_group_is_classified_through_its_weightiest_member(seed):
    samples, tables, vocab = world(seed)
    differ = 0
    for leader in ("weightiest", "largest"):
        fuser = pipeline(tables, {"certify": False, "share_iou": 0.5, "min_top_area": False, "leader": leader}).fuser
        for name, t in tables.items():
            sel = fuser.select_regions([Proposals(t["masks"], t["class_logits"])], vocab)[0]
            want, key = brute_force_groups(t["masks"], t["class_logits"], 0.5, 0.7, leader)
            np.testing.assert_array_equal(sel.source.numpy(), want)
            np.testing.assert_array_equal(sel.classify.numpy(), want == np.arange(len(want)))
            for q, lead in enumerate(want):  # no member outweighs (or outsizes) its group's leader
                assert key[q] <= key[lead] + 1e-9
            if leader == "weightiest":
                differ += int((want != brute_force_groups(t["masks"], t["class_logits"], 0.5, 0.7, "largest")[0]).sum())
    assert differ > 0  # the two orders pick different leaders here


def test_the_text_memo_keeps_the_last_vocabularies_used():
    from ovframe.pipeline import TEXT_MEMO_SIZE

    class Counting(_NoText):
        def __init__(self):
            self.calls = 0

        def encode(self, vocabulary):
            self.calls += 1
            return vocabulary

    samples, tables, _ = world(0, images=1)
    pipe = pipeline(tables, None)
    pipe.text_encoder = Counting()
    vocabularies = [Vocabulary((f"v{i}",)) for i in range(TEXT_MEMO_SIZE + 1)]
    for v in vocabularies[:TEXT_MEMO_SIZE]:
        pipe.encode(v)
    pipe.encode(vocabularies[0])  # used again: now the most recent
    pipe.encode(vocabularies[-1])  # one too many: the least recently used (v1) goes
    assert pipe.text_encoder.calls == TEXT_MEMO_SIZE + 1
    pipe.encode(vocabularies[0])
    assert pipe.text_encoder.calls == TEXT_MEMO_SIZE + 1
    pipe.encode(vocabularies[1])
    assert pipe.text_encoder.calls == TEXT_MEMO_SIZE + 2 and len(pipe._text) == TEXT_MEMO_SIZE
