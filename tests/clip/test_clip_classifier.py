"""Region classifiers against a plain per-mask reference written here (reference/ovseg.md, "Region crops")."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from clip_helpers import build

from ovframe import Proposals, Sample, TextEmbeddings, Vocabulary

VOCAB = Vocabulary(("sky", "grass", "cat", "dog", "tree"))
MEAN = torch.tensor((0.48145466, 0.4578275, 0.40821073)).view(3, 1, 1) * 255
STD = torch.tensor((0.26862954, 0.26130258, 0.27577711)).view(3, 1, 1) * 255


def scene(seed: int, h: int, w: int, n: int) -> tuple[Sample, Proposals]:
    g = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)
    logits = torch.full((n, h, w), -8.0)
    for q in range(n):
        y0, x0 = torch.randint(0, h - 4, (1,), generator=g).item(), torch.randint(0, w - 4, (1,), generator=g).item()
        y1, x1 = y0 + torch.randint(1, h - y0, (1,), generator=g).item(), x0 + torch.randint(1, w - x0, (1,), generator=g).item()
        logits[q, y0:y1, x0:x1] = torch.randn(y1 - y0, x1 - x0, generator=g) * 3  # ragged soft masks
    return Sample(image, None, f"s{seed}"), Proposals(logits)


def batch():
    samples, proposals = zip(scene(0, 40, 56, 6), scene(1, 37, 29, 4), scene(2, 64, 48, 7))
    return list(samples), list(proposals)


def text_for(encoder_like_dim=32, seed=3):
    emb = F.normalize(torch.randn(len(VOCAB), encoder_like_dim, generator=torch.Generator().manual_seed(seed)), dim=-1)
    return TextEmbeddings(VOCAB, emb, "test")


def reference_crop(image, logits, thr, ratio, fill, size):
    """The reference's procedure for one proposal, step by step, with Python numbers."""
    binary = logits.sigmoid() > thr
    if not binary.any():
        return None
    ys, xs = torch.nonzero(binary, as_tuple=True)
    x1, y1, x2, y2 = xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1
    cx, cy, w, h = 0.5 * (x1 + x2), 0.5 * (y1 + y2), (x2 - x1) * ratio, (y2 - y1) * ratio
    l, t, r, b = (int(v) for v in (cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h))
    l, t, r, b = max(l, 0), max(t, 0), min(r, image.shape[2]), min(b, image.shape[1])
    if r <= l or b <= t:
        return None
    crop = image.float()[:, t:b, l:r]
    m = binary[t:b, l:r].float()
    if fill is not None:
        fill_value = MEAN if fill == "mean" else torch.zeros(3, 1, 1)
        crop = crop * m + (1 - m) * fill_value
    crop = (crop - MEAN) / STD
    region = F.interpolate(crop[None], size=(size, size), mode="bicubic")[0]
    mask = F.interpolate(m[None, None], size=(size, size), mode="nearest")[0, 0] > 0.5
    return region, mask if fill is not None else torch.ones_like(mask)


def reference_scores(clf, samples, proposals, text, thr, ratio, fill):
    """One CLIP forward per mask, then softmax(T * cos) over the vocabulary."""
    out = []
    for sample, props in zip(samples, proposals):
        probs, valid = torch.zeros(len(props), len(VOCAB)), torch.zeros(len(props), dtype=torch.bool)
        for q in range(len(props)):
            got = reference_crop(sample.image, props.mask_logits[q], thr, ratio, fill, 32)
            if got is None:
                continue
            with torch.no_grad():
                emb = F.normalize(clf.encoder.visual(got[0][None]), dim=-1)
            probs[q] = (100.0 * emb @ text.embeddings.T).softmax(-1)[0]
            valid[q] = True
        out.append((probs, valid))
    return out


@pytest.mark.parametrize(
    "plugin,thr,ratio,fill",
    [("clip-masked-crop", 0.5, 1.0, "mean"), ("clip-masked-crop", 0.4, 1.5, "zero"), ("clip-background-crop", 0.5, 1.25, None)],
)
def test_batched_classification_equals_the_per_mask_reference(tiny, plugin, thr, ratio, fill):
    options = {"plugin": plugin, **tiny, "mask_thr": thr, "expand_ratio": ratio, "chunk_size": 5}
    if fill is not None:
        options["fill"] = fill
    clf = build("classifier", options)
    samples, proposals = batch()
    text = text_for()
    got = clf.classify(samples, proposals, text, VOCAB)
    ref = reference_scores(clf, samples, proposals, text, thr, ratio, fill)
    assert len(got) == 3
    for scores, (probs, valid) in zip(got, ref):
        assert scores.valid.tolist() == valid.tolist()
        torch.testing.assert_close(scores.probs[valid], probs[valid], rtol=1e-5, atol=1e-6)
        assert torch.all(scores.probs[~valid] == 0)
    # and the crops themselves, pixel for pixel
    plan, store = clf.plan(samples, proposals)
    regions, masks = clf.region_inputs(store, plan, range(len(plan)))
    for row, (i, q) in enumerate(plan.items):
        region, mask = reference_crop(samples[i].image, proposals[i].mask_logits[q], thr, ratio, fill, 32)
        torch.testing.assert_close(regions[row], region, rtol=0, atol=1e-5)
        assert torch.equal(masks[row], mask)


def test_results_do_not_depend_on_the_chunk_size(tiny):
    samples, proposals = batch()
    text = text_for()
    results = []
    for chunk in (1, 2, 7, 1000):
        clf = build("classifier", {"plugin": "clip-masked-crop", **tiny, "chunk_size": chunk})
        results.append(clf.classify(samples, proposals, text, VOCAB))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a.valid, b.valid)
            # batched matmuls reduce in a batch-size dependent order: float32 noise only
            torch.testing.assert_close(a.probs, b.probs, rtol=0, atol=1e-5)


def test_empty_and_invalid_proposals_never_crash(tiny):
    clf = build("classifier", {"plugin": "clip-masked-crop", **tiny, "expand_ratio": 0.5})
    h, w = 20, 24
    image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8)
    logits = torch.full((6, h, w), -10.0)
    logits[1, 2:9, 3:12] = 10.0  # a good region
    logits[2] = float("nan")  # garbage: NaN is background
    logits[3, :, 5] = 10.0  # one pixel wide: no area once the box shrinks by half
    logits[4, 0, 0] = 0.0  # sigmoid 0.5, not above the 0.5 threshold
    logits[5, h - 1, w - 1] = 10.0  # one pixel in the corner: box of 1x1 shrinks to nothing
    samples = [
        Sample(image, None, "a"),
        Sample(image, None, "b"),
        Sample(torch.zeros(3, 8, 8, dtype=torch.uint8), None, "c"),
    ]
    proposals = [Proposals(logits), Proposals(torch.zeros(0, h, w)), Proposals(torch.full((2, 8, 8), -5.0))]
    scores = clf.classify(samples, proposals, text_for(), VOCAB)
    assert scores[0].valid.tolist() == [False, True, False, False, False, False]
    assert scores[0].probs[1].sum().item() == pytest.approx(1.0)
    assert scores[1].probs.shape == (0, len(VOCAB)) and scores[1].valid.shape == (0,)
    assert scores[2].valid.tolist() == [False, False]


def test_probabilities_are_softmax_of_temperature_times_cosine(tiny):
    clf = build("classifier", {"plugin": "clip-masked-crop", **tiny, "temperature": 30.0})
    sample, props = scene(5, 30, 30, 3)
    text = text_for()
    got = clf.classify([sample], [props], text, VOCAB)[0]
    plan, store = clf.plan([sample], [props])
    regions, masks = clf.region_inputs(store, plan, range(len(plan)))
    with torch.no_grad():
        cos = F.normalize(clf.encoder.visual(regions), dim=-1) @ text.embeddings.T
    expected = torch.exp(30 * cos) / torch.exp(30 * cos).sum(-1, keepdim=True)
    torch.testing.assert_close(got.probs[got.valid], expected, rtol=1e-5, atol=1e-6)
    assert math.isclose(float(got.probs[got.valid].sum()), float(got.valid.sum()), rel_tol=1e-5)


def test_masks_must_be_at_the_image_resolution(tiny):
    clf = build("classifier", {"plugin": "clip-masked-crop", **tiny})
    sample = Sample(torch.zeros(3, 10, 10, dtype=torch.uint8), None, "x")
    with pytest.raises(ValueError, match="image's resolution"):
        clf.classify([sample], [Proposals(torch.zeros(1, 5, 5))], text_for(), VOCAB)


def test_pixels_exactly_at_the_mask_threshold_are_background(tiny):
    """reference/ovseg.md: binary = sigmoid(mask) > mask_thr, strictly. A region at exactly the threshold
    (logit 0 for 0.5) is not part of the mask: a proposal made only of it is invalid, and one that also has
    pixels above the threshold is cropped to those alone (as if the at-threshold pixels were -10)."""
    clf = build("classifier", {"plugin": "clip-masked-crop", **tiny, "mask_thr": 0.5, "temperature": 1.0})
    h, w = 24, 32
    image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    logits = torch.full((3, h, w), -10.0)
    logits[0, 2:12, 2:14] = 0.0  # a large region, every pixel exactly at the threshold
    logits[1, 2:12, 2:14] = 0.0  # the same ...
    logits[1, 14:22, 16:30] = 6.0  # ... plus pixels above it, elsewhere
    logits[2, 14:22, 16:30] = 6.0  # only the pixels above it
    scores = clf.classify([Sample(image, None, "t")], [Proposals(logits)], text_for(), VOCAB)[0]
    assert scores.valid.tolist() == [False, True, True]
    torch.testing.assert_close(scores.probs[1], scores.probs[2], rtol=0, atol=1e-6)
    counted = clf.classify([Sample(image, None, "t")], [Proposals(torch.where(logits == 0, 1e-3, logits))], text_for(), VOCAB)[0]
    assert (counted.probs[1] - scores.probs[1]).abs().max() > 1e-4  # had they counted, the crop would differ
