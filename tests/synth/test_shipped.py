"""The models shipped in ovframe_synth/weights: their checksums (in the manifest and in recipes/demo.yaml),
the 25 MB budget, and the demo pipeline reaching the figures the manifest and the docs state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import ovframe_synth
from ovframe.files import sha256_of
from ovframe.recipes import load_recipe
from ovframe.runner import run_recipe

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = Path(ovframe_synth.__file__).parent / "weights"
MANIFEST = json.loads((WEIGHTS / "manifest.json").read_text())
DEMO = ROOT / "recipes" / "demo.yaml"


def test_files_match_their_checksums_and_fit_the_budget():
    files = MANIFEST["files"]
    assert set(files) == {"clip.json", "clip.safetensors", "maskformer.safetensors", "mpt.safetensors"}
    for name, digest in files.items():
        assert sha256_of(WEIGHTS / name) == digest, name
    assert sum((WEIGHTS / name).stat().st_size for name in files) <= 25 * 2**20
    for name, recipe in MANIFEST["trained_by"].items():
        assert (ROOT / recipe).is_file(), f"{name}: {recipe}"


def test_the_demo_recipe_pins_the_shipped_files(registry):
    recipe = load_recipe(DEMO, registry=registry)
    files = MANIFEST["files"]
    assert recipe.section("proposals").config.sha256 == files["maskformer.safetensors"]
    assert recipe.section("adapter").config.sha256 == files["mpt.safetensors"]
    assert recipe.section("classifier").config.sha256 == recipe.section("text_encoder").config.sha256 == files["clip.safetensors"]


@pytest.mark.slow
def test_the_demo_reaches_the_documented_figures(registry, tmp_path, monkeypatch):
    """The first `images` of the synth val split, as recipes/demo.yaml runs them (about 15 s)."""
    monkeypatch.setenv("OVFRAME_CACHE_DIR", str(tmp_path / "cache"))
    check = MANIFEST["check"]
    recipe = load_recipe(DEMO, [f"task.max_images={check['images']}", "task.visualize=0", f"output_dir={tmp_path}"], registry=registry)
    metrics = run_recipe(recipe, registry)
    for key in ("mIoU", "mIoU_seen", "mIoU_unseen"):
        assert metrics[key] == pytest.approx(check[key], abs=0.3), key
    docs = (ROOT / "docs" / "synthetic-benchmark.md").read_text()
    full = MANIFEST["demo"]
    assert f"{full['mIoU']:.1f} | {full['mIoU_seen']:.1f} | {full['mIoU_unseen']:.1f}" in docs, "the docs quote the manifest"


@pytest.mark.slow
def test_predict_segments_new_images_with_a_typed_vocabulary(tmp_path, monkeypatch):
    """`ovframe predict` with the shipped models on images no run has seen (val under seed 7, as PNG
    files), the vocabulary typed as the names of the classes in them: each image is labelled better than
    the best constant answer (its largest class everywhere) would be."""
    import numpy as np
    from PIL import Image

    from ovframe.cli import main
    from ovframe_synth import world
    from ovframe_synth.scene import make_scene

    monkeypatch.setenv("OVFRAME_CACHE_DIR", str(tmp_path / "cache"))
    scenes = {f"new-{i}": make_scene(7, "val", i) for i in range(4)}
    (tmp_path / "images").mkdir()
    for name, scene in scenes.items():
        Image.fromarray(scene.image).save(tmp_path / "images" / f"{name}.png")
    names = sorted({world.CLASSES[c].name for s in scenes.values() for c in s.present()})
    rc = main(["predict", str(tmp_path / "images"), "--vocab", ", ".join(names), "--recipe", str(DEMO), "--out", str(tmp_path / "out")])
    assert rc == 0
    for name, scene in scenes.items():
        out = tmp_path / "out" / "predictions"
        assert json.loads((out / f"{name}.json").read_text())["classes"] == names
        assert (out / f"{name}.overlay.png").is_file()
        predicted = np.asarray(names)[np.array(Image.open(out / f"{name}.label.png"))]
        truth = np.asarray([c.name for c in world.CLASSES])[scene.label]
        _, counts = np.unique(truth, return_counts=True)
        assert (predicted == truth).mean() > counts.max() / truth.size, name
