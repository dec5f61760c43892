"""The SAM recipes: the shipped small SAM, the one-line swap, the analysis rows, the real-data recipe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

import ovframe_sam
from ovframe import MissingFiles
from ovframe.files import sha256_of
from ovframe.recipes import load_recipe
from ovframe.recipes.sets import expand, validate_set
from ovframe.runner import run_recipe
from ovframe_sam.config import SamConfig

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


def _shown(capsys, *argv):
    from ovframe.cli import main

    assert main(["show", *argv]) == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_sam_swapped_into_the_demo_inherits_nothing_of_the_maskformer(registry, capsys, tmp_path):
    """Issue 11: another generator replaces the section; the MaskFormer's weights and sha256 do not leak into SAM."""
    from ovframe.cli import main

    sam_defaults = {"plugin": "sam", **SamConfig().model_dump(mode="json")}
    assert main(["validate", "demo", "-o", "proposals={plugin: sam, weights: pkg://ovframe_sam/weights/sam.safetensors}"]) == 0
    assert "ok " in capsys.readouterr().out
    weighted = {**sam_defaults, "weights": "pkg://ovframe_sam/weights/sam.safetensors"}
    assert _shown(capsys, "demo", "-o", "proposals={plugin: sam, weights: pkg://ovframe_sam/weights/sam.safetensors}")["proposals"] == weighted
    assert _shown(capsys, "demo", "-o", "proposals.plugin=sam", "-o", "proposals.weights=pkg://ovframe_sam/weights/sam.safetensors")["proposals"] == weighted
    # through extends, and through a recipe set's variant: SAM's defaults plus what is written beside it
    pinned = {**sam_defaults, "weights": "pkg://ovframe_sam/weights/sam.safetensors", "sha256": MANIFEST["files"]["sam.safetensors"]}
    (tmp_path / "child.yaml").write_text(f"extends: demo\nname: child\nproposals: {{plugin: sam, weights: {pinned['weights']}, sha256: {pinned['sha256']}}}\n")
    assert _shown(capsys, str(tmp_path / "child.yaml"))["proposals"] == pinned
    (tmp_path / "set.yaml").write_text(f"name: s\nbase: demo\nvariants:\n  sam: {{proposals.sha256: {pinned['sha256']}, proposals.plugin: sam, proposals.weights: {pinned['weights']}}}\n")
    assert _shown(capsys, str(tmp_path / "set.yaml"))["proposals"] == pinned
    # the demo with synth/sam.yaml's proposals is synth/sam.yaml with the demo's fuser
    sam = load_recipe(ROOT / "recipes" / "synth" / "sam.yaml", registry=registry).resolved()
    demo = load_recipe("demo", [f"proposals={json.dumps(sam['proposals'])}"], registry=registry).resolved()
    back = load_recipe(ROOT / "recipes" / "synth" / "sam.yaml", ["fuser={plugin: geometric-ensemble, lam: 0.7}"], registry=registry).resolved()
    for r in (demo, back):
        r.pop("name"), r.pop("description")
    assert demo == back


def test_sam_without_weights_is_refused_before_any_model_loads(capsys, tmp_path):
    """SAM has no default weights: a recipe that would segment with it is bad input at validation (exit 2, naming the
    files to use), not a failure after CLIP has loaded; train-sam, which trains the section, starts without them."""
    from ovframe.cli import main

    for swap in ("proposals={plugin: sam}", "proposals={plugin: union, members: [{plugin: sam}]}"):
        assert main(["validate", "demo", "-o", swap]) == 2
        err = capsys.readouterr().err
        assert "proposals: " in err and "sam has no `weights:`" in err and "sam_vit_h_4b8939.pth" in err
        assert "pkg://ovframe_sam/weights/sam.safetensors" in err
    assert main(["validate", str(ROOT / "recipes" / "synth" / "train_sam.yaml"), "-o", "proposals.weights=null"]) == 0
    assert main(["run", "demo", "-o", "proposals={plugin: sam}", "-o", f"output_dir={tmp_path}"]) == 2
    assert not any(tmp_path.iterdir())  # refused before a run directory (or a model) was made
    capsys.readouterr()


def test_a_sam_built_without_weights_says_the_same_when_asked_to_segment(synth_samples):
    """Built from Python, past validation: propose gives the Config's reason, the one validate gives."""
    from ovframe import BadInput
    from ovframe_sam.generator import SamProposals

    config = SamConfig()
    with pytest.raises(BadInput) as e:
        SamProposals(config).propose(synth_samples[:1])
    assert str(e.value) == config.cannot_segment() and "sam_vit_h_4b8939.pth" in str(e.value)


@pytest.mark.slow
def test_swapping_sam_into_the_demo_is_one_line(registry, tmp_path, monkeypatch):
    """The demo (geometric ensemble, MPT) with its proposals replaced by the shipped SAM runs end to end (2 images:
    about 15 s on 2 busy cores)."""
    monkeypatch.setenv("OVFRAME_CACHE_DIR", str(tmp_path / "cache"))
    loose = "proposals.pred_iou_thresh=0.15"  # the small SAM's masks need the thresholds of recipes/synth/sam.yaml
    overrides = [SWAP, loose, "proposals.stability_score_thresh=0", "dataset.num_images=2", "task.visualize=0", f"output_dir={tmp_path}"]
    metrics = run_recipe(load_recipe(ROOT / "recipes" / "demo.yaml", overrides, registry=registry), registry)
    assert metrics["images"] == 2 and metrics["proposals_per_image"] > 3 and 0 < metrics["mIoU"] <= 100


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
