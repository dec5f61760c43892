"""`precision: bf16 | fp16` on the shipped demo models: the networks run under autocast, crops,
softmaxes and fusion stay fp32, and the labels are those of fp32 for at least 99 % of the pixels."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ovframe.recipes import load_recipe
from ovframe.runner import RunContext

ROOT = Path(__file__).resolve().parents[2]
IMAGES = 12


def labels_and_dtypes(registry, tmp_path, precision):
    recipe = load_recipe(ROOT / "recipes" / "demo.yaml", [f"precision={precision}"], registry=registry)
    ctx = RunContext(recipe, tmp_path, registry, torch.device("cpu"))
    dataset, vocabulary, pipeline = ctx.component("dataset"), ctx.vocabulary(), ctx.pipeline()
    seen: dict[str, set] = {"tower": set(), "crops": set(), "region probs": set()}
    classifier = pipeline.classifier
    tower = classifier.encoder.visual.transformer.resblocks[0].mlp.c_fc
    hook = tower.register_forward_hook(lambda m, a, out: seen["tower"].add(out.dtype))
    region_inputs, classify = classifier.region_inputs, classifier.classify

    def spy_inputs(*args):
        regions, masks = region_inputs(*args)
        seen["crops"].add(regions.dtype)
        return regions, masks

    def spy_classify(*args):
        out = classify(*args)
        seen["region probs"].update(s.probs.dtype for s in out)
        return out

    classifier.region_inputs, classifier.classify = spy_inputs, spy_classify
    try:
        segs = pipeline.segment([dataset[i] for i in range(IMAGES)], vocabulary)
    finally:
        hook.remove()
    return torch.stack([s.labels for s in segs]), seen


@pytest.mark.slow
def test_mixed_precision_keeps_the_labels(registry, tmp_path):
    """About 10 s: the first 12 images of the demo in fp32, bf16 and fp16."""
    want, seen32 = labels_and_dtypes(registry, tmp_path, "fp32")
    assert seen32["tower"] == {torch.float32}
    for precision, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        got, seen = labels_and_dtypes(registry, tmp_path, precision)
        assert seen["tower"] == {dtype}, f"{precision}: the image tower ran under autocast"
        assert seen["crops"] == seen["region probs"] == {torch.float32}, f"{precision}: crops and softmax stay fp32"
        agreement = (got == want).float().mean().item()
        assert agreement >= 0.99, (precision, agreement)
