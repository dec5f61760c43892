"""The `sam` proposal generator against segment_anything's own generator and predictor (random tiny SAM)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ovframe import Sample

FILTERS_OFF = dict(pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0, crop_nms_thresh=1.0, max_proposals=None)


def sam(weights, **options):
    from ovframe import get_registry

    return get_registry().get("proposals", "sam").build({"weights": weights, "points_per_side": 6, **options})


def odd_image() -> Sample:
    """A non-square image with a few flat regions (so that the random SAM's masks differ)."""
    g = torch.Generator().manual_seed(1)
    image = (torch.rand(3, 48, 80, generator=g) * 255).to(torch.uint8)
    image[:, 10:30, 20:50] = torch.tensor([200, 30, 30], dtype=torch.uint8)[:, None, None]
    image[:, 30:, 60:] = torch.tensor([20, 200, 30], dtype=torch.uint8)[:, None, None]
    return Sample(image, None, "odd")


def by_iou(p):
    order = torch.argsort(p.quality["predicted_iou"], descending=True, stable=True)
    return p.mask_logits[order] > 0, p.quality["predicted_iou"][order], p.quality["stability"][order]


@pytest.mark.parametrize(
    "options",
    [
        FILTERS_OFF,
        dict(pred_iou_thresh=0.0005, stability_score_thresh=0.4, box_nms_thresh=1.0, max_proposals=None),
        pytest.param(dict(FILTERS_OFF, crop_n_layers=1, crop_overlap_ratio=0.2), marks=pytest.mark.slow),
    ],
    ids=["filters-off", "filters-on", "crops"],
)
def test_batched_generator_gives_the_package_generators_masks(tiny_weights, options):
    sample = odd_image()
    ours = sam(tiny_weights, points_per_batch=10, **options).propose([sample])[0]
    package = sam(tiny_weights, generator="package", **options).propose([sample])[0]
    assert len(ours) == len(package) > 3
    m1, iou1, st1 = by_iou(ours)
    m2, iou2, st2 = by_iou(package)
    torch.testing.assert_close(iou1, iou2)
    torch.testing.assert_close(st1, st2)
    assert (m1 == m2).float().mean() > 0.9999  # re-decoding a prompt in another batch may flip a pixel at logit ~0


def test_mask_logits_are_sams_own_upsampled_logits(tiny_weights, tiny_sam):
    """Each proposal's logits are what SamPredictor returns (return_logits=True) for its point prompt,
    so sigmoid > 0.5 is SAM's own mask and mask_thr means what it means for MaskFormer."""
    from segment_anything import SamAutomaticMaskGenerator, SamPredictor

    sample = odd_image()
    image = sample.image.permute(1, 2, 0).numpy()
    ours = sam(tiny_weights, **FILTERS_OFF).propose([sample])[0]
    records = SamAutomaticMaskGenerator(tiny_sam, points_per_side=6, **{k: v for k, v in FILTERS_OFF.items() if k != "max_proposals"}).generate(image)
    predictor = SamPredictor(tiny_sam)
    predictor.set_image(image)
    checked = 0
    for q in range(0, len(ours), 7):
        iou = float(ours.quality["predicted_iou"][q])
        record = min(records, key=lambda r: abs(r["predicted_iou"] - iou))
        logits, ious, _ = predictor.predict(np.array(record["point_coords"]), np.array([1]), multimask_output=True, return_logits=True)
        slot = int(np.argmin(np.abs(ious - iou)))
        np.testing.assert_allclose(ours.mask_logits[q].numpy(), logits[slot], atol=1e-4)
        checked += 1
    assert checked >= 3
    binary = sam(tiny_weights, mask_logits="binary", binary_logit=7.0, **FILTERS_OFF).propose([sample])[0]
    assert set(binary.mask_logits.unique().tolist()) <= {-7.0, 7.0}
    assert torch.equal(binary.mask_logits > 0, ours.mask_logits > 0)


@pytest.mark.slow
def test_results_do_not_depend_on_batch_sizes(tiny_weights, synth_samples):
    a = sam(tiny_weights, **FILTERS_OFF).propose(synth_samples[:3])
    b = sam(tiny_weights, points_per_batch=5, upsample_batch=3, image_batch=2, **FILTERS_OFF).propose(synth_samples[:3])
    for pa, pb in zip(a, b):
        torch.testing.assert_close(pa.quality["predicted_iou"], pb.quality["predicted_iou"])
        assert (pa.mask_logits > 0).eq(pb.mask_logits > 0).float().mean() > 0.9999


def test_proposals_fit_what_the_classifiers_and_fusers_take(tiny_weights, synth_samples):
    out = sam(tiny_weights, **dict(FILTERS_OFF, max_proposals=5)).propose(synth_samples[:2])
    for sample, p in zip(synth_samples, out):
        assert p.mask_logits.shape == (5, *sample.size) and p.class_logits is None
        assert set(p.quality) == {"predicted_iou", "stability"} and p.quality["stability"].shape == (5,)
        assert torch.isfinite(p.mask_logits).all()
        assert (p.quality["predicted_iou"].diff() <= 0).all()  # highest predicted IoU first
    assert sam(tiny_weights).propose([]) == []


def test_small_region_clean_up():
    from ovframe_sam.generator import clean_small_regions

    mask = np.zeros((20, 20), dtype=bool)
    mask[2:12, 2:12] = True
    mask[5, 5] = False  # a 1-pixel hole: filled
    mask[3:11, 8:10] = False  # a 16-pixel hole reaching ... kept (area 16 >= 10)
    mask[8:11, 3:5] = False
    mask[16:18, 16:18] = True  # a 4-pixel island: removed
    out = clean_small_regions(mask, 10)
    assert out[5, 5] and not out[16:18, 16:18].any()
    assert not out[3:11, 8:10].any()
    islands_only = np.zeros((10, 10), dtype=bool)
    islands_only[1:3, 1:3] = True
    islands_only[6:9, 6:9] = True
    kept = clean_small_regions(islands_only, 50)  # every island is small: the largest stays
    assert kept[6:9, 6:9].all() and not kept[1:3, 1:3].any()


@pytest.mark.slow
def test_clean_up_in_the_generator_marks_changed_pixels(tiny_weights):
    sample = odd_image()
    plain = sam(tiny_weights, **FILTERS_OFF, mask_logits="upsampled").propose([sample])[0]
    cleaned = sam(tiny_weights, **dict(FILTERS_OFF, min_mask_region_area=30), binary_logit=9.0).propose([sample])[0]
    assert 0 < len(cleaned) <= len(plain)
    changed = (cleaned.mask_logits.abs() == 9.0)
    assert changed.any()


def test_without_weights_the_generator_says_what_to_get():
    from ovframe import BadInput, get_registry

    generator = get_registry().get("proposals", "sam").build({})
    with pytest.raises(BadInput, match="sam_vit_h_4b8939.pth"):
        generator.propose([odd_image()])
