"""The SAM recipes: the shipped small SAM, the one-line swap, the analysis rows, the real-data recipe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import ovframe_sam
from ovframe import MissingFiles
from ovframe.files import sha256_of
from ovframe.recipes import load_recipe
from ovframe.recipes.sets import expand, validate_set
from ovframe.runner import run_recipe

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = Path(ovframe_sam.__file__).parent / "weights"
MANIFEST = json.loads((WEIGHTS / "manifest.json").read_text())
SWAP = "proposals={plugin: sam, weights: pkg://ovframe_sam/weights/sam.safetensors, sha256: cb9567d2efd15d61136c5bddc8c43feb7466e699f3a295c75e23f8bbf6f89a24}"


def test_recipes_pin_the_shipped_sam(registry):
    digest = MANIFEST["files"]["sam.safetensors"]
    assert sha256_of(WEIGHTS / "sam.safetensors") == digest
    sam = load_recipe(ROOT / "recipes" / "synth" / "sam.yaml", registry=registry)
    assert sam.section("proposals").config.sha256 == digest and sam.section("fuser").spec.name == "clip-only"
    variants = {r.name: r for r in validate_set(expand(ROOT / "recipes" / "synth" / "analysis.yaml"), registry)}
    assert {"sam+clip", "sam+clip-mpt", "union+ensemble-mpt"} <= set(variants)
    assert variants["sam+clip-mpt"].section("proposals").config == sam.section("proposals").config
    members = variants["union+ensemble-mpt"].section("proposals").config.members
    assert [m["plugin"] for m in members] == ["maskformer", "sam"] and members[1]["sha256"] == digest
    for name, recipe in MANIFEST["trained_by"].items():
        assert (ROOT / recipe).is_file(), name


def test_the_real_data_recipe_lists_what_to_fetch(registry, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = load_recipe(ROOT / "recipes" / "ade150_sam.yaml", registry=registry)
    assert recipe.section("proposals").config.model == "vit_h"
    with pytest.raises(MissingFiles) as e:
        run_recipe(recipe, registry)
    missing = {Path(f.path).name for f in e.value.missing}
    assert {"sam_vit_h_4b8939.pth", "ovseg_swinbase_vitL14_ft_mpt.pth"} <= missing
    assert "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth" in str(e.value)


@pytest.mark.slow
def test_swapping_sam_into_the_demo_is_one_line(registry, tmp_path, monkeypatch):
    """The demo (geometric ensemble, MPT) with its proposals replaced by the shipped SAM runs end to end."""
    monkeypatch.setenv("OVFRAME_CACHE_DIR", str(tmp_path / "cache"))
    recipe = load_recipe(ROOT / "recipes" / "demo.yaml", [SWAP, "task.max_images=3", "task.visualize=0", f"output_dir={tmp_path}"], registry=registry)
    metrics = run_recipe(recipe, registry)
    assert metrics["images"] == 3 and 0 <= metrics["mIoU"] <= 100


@pytest.mark.slow
def test_the_shipped_sam_gives_the_package_generators_masks(registry, synth_samples):
    """With real masks (NMS and both thresholds at work) on synth val images, as recipes/synth/sam.yaml runs it."""
    options = load_recipe(ROOT / "recipes" / "synth" / "sam.yaml", registry=registry).section("proposals").config.model_dump()
    options["max_proposals"] = None
    spec = registry.get("proposals", "sam")
    ours = spec.build(options).propose(synth_samples[:2])
    package = spec.build({**options, "generator": "package"}).propose(synth_samples[:2])
    for a, b in zip(ours, package):
        assert len(a) == len(b) > 3
        oa = torch.argsort(a.quality["predicted_iou"], descending=True, stable=True)
        ob = torch.argsort(b.quality["predicted_iou"], descending=True, stable=True)
        torch.testing.assert_close(a.quality["predicted_iou"][oa], b.quality["predicted_iou"][ob])
        assert (a.mask_logits[oa] > 0).eq(b.mask_logits[ob] > 0).float().mean() > 0.9999
