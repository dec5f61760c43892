"""The resolution order on the shipped synthetic models with images that ARE resized (96 px scenes, test
short side 128): `resolution: reference` gives the labels of the reference's order re-computed here from
its formulas (tests/reference_order.py), and `resolution: original` those of ovframe's earlier order
(generator-internal float resize, mask logits back to the image, crops and fusion there)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ovframe.pipeline import Pipeline
from ovframe.recipes import load_recipe
from ovframe.records import Proposals, Sample
from ovframe.runner import RunContext

from reference_order import assert_same_labels, d2_output_shape, ensemble, network_masks, np_bilinear, pil_resize, semseg

DEMO = Path(__file__).resolve().parents[2] / "recipes" / "demo.yaml"
IMAGES = 3


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    from ovframe.registry import get_registry

    out = tmp_path_factory.mktemp("runs")
    recipe = load_recipe(DEMO, ["dataset.image_size=96", f"output_dir={out}"], registry=get_registry())
    ctx = RunContext(recipe, out / "x", get_registry(), torch.device("cpu"))
    names = ("dataset", "text_encoder", "proposals", "classifier", "fuser")
    return {name: ctx.component(name) for name in names}


def pipeline(parts, resolution):
    return Pipeline(
        text_encoder=parts["text_encoder"], proposals=parts["proposals"], classifier=parts["classifier"],
        fuser=parts["fuser"], resolution=resolution,
    )


def clip_scores(classifier, image, mask_logits, class_logits, text, vocabulary):
    """The region classifier (proven against its own formulas in tests/clip) on crops of `image`."""
    props = Proposals(torch.from_numpy(mask_logits).float(), torch.from_numpy(class_logits).float())
    (scores,) = classifier.classify([Sample(image, None, "x")], [props], text, vocabulary)
    return scores.probs.double().numpy(), scores.valid.numpy()


@pytest.mark.slow
def test_reference_and_original_orders_on_resized_synthetic_images(parts):
    dataset, gen, classifier = parts["dataset"], parts["proposals"], parts["classifier"]
    cfg, lam = gen.config, parts["fuser"].config.lam
    vocabulary = dataset.vocabulary
    text = parts["text_encoder"].encode(vocabulary)
    samples = [dataset[i] for i in range(IMAGES)]
    reference = pipeline(parts, "reference").segment(samples, vocabulary)
    original = pipeline(parts, "original").segment(samples, vocabulary)
    changed = 0
    for s, ref_seg, orig_seg in zip(samples, reference, original):
        h, w = s.size
        test = d2_output_shape(h, w, cfg.test_short_side, cfg.test_max_size)
        assert (h, w) == (96, 96) and test == (128, 128)

        # the reference's order: everything at the test size, the fused scores resized at the end
        resized = pil_resize(s.image, test)
        masks, logits = network_masks(gen.model, resized, cfg.pixel_mean, cfg.pixel_std, text.embeddings)
        p_clip, valid = clip_scores(classifier, resized, masks, logits, text, vocabulary)
        want = np_bilinear(semseg(ensemble(logits, p_clip, valid, lam), masks), (h, w))
        assert tuple(ref_seg.labels.shape) == (h, w)
        assert_same_labels(ref_seg.labels, want)

        # the original order: float antialiased resize for the network, mask logits back to (h, w),
        # crops from the original image, fusion there
        float_resized = F.interpolate(s.image[None].float(), size=test, mode="bilinear", align_corners=False, antialias=True)[0]
        masks, logits = network_masks(gen.model, float_resized, cfg.pixel_mean, cfg.pixel_std, text.embeddings)
        masks = F.interpolate(torch.from_numpy(masks)[None], size=(h, w), mode="bilinear", align_corners=False)[0].numpy()
        p_clip, valid = clip_scores(classifier, s.image, masks, logits, text, vocabulary)
        assert_same_labels(orig_seg.labels, semseg(ensemble(logits, p_clip, valid, lam), masks))
        changed += int((ref_seg.labels != orig_seg.labels).sum())
    assert changed > 0  # the two orders do differ on these images, so the checks above tell them apart
