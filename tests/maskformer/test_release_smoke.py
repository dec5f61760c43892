"""The release smoke test: a file with every key of each OVSeg release (ovseg_release.py), converted by the
documented command, then `ovframe run` of the shipped recipe on two images in the prepared ADE-150 layout.

The recipes are run as shipped; the overrides are sizes only (the test resolution, the narrowed backbone's
widths, an open_clip config of the narrowed CLIP: same depths, image and patch size) and the file locations
the recipes read from the environment. The `tiny` size (ovseg_release.py) runs in the slow layer; the full-size files (about 2 GB of
RAM for Swin-B + ViT-L/14) run with OVFRAME_FULL_RELEASE_SMOKE=1.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ovseg_release import R101C_VITB16, SWINB_VITL14, Release, clip_model_json, size_overrides, write_release

ROOT = Path(__file__).resolve().parents[2]
RUNS = {  # release -> (shipped recipe, the environment variables it reads the files from)
    SWINB_VITL14: ("ade150_mpt.yaml", "OVSEG_CHECKPOINT", "OVSEG_MASKFORMER"),
    R101C_VITB16: ("ade150_r101c_vitb16_mpt.yaml", "OVSEG_CHECKPOINT_B16", "OVSEG_MASKFORMER_R101C"),
}


def prepared_ade(root: Path) -> Path:
    """Two validation images with labels as `ovframe prepare ade20k-150` writes them (class - 1, 255 ignore)."""
    images = root / "ADEChallengeData2016" / "images" / "validation"
    labels = root / "ADEChallengeData2016" / "annotations_detectron2" / "validation"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(90, 120), (100, 76)], start=1):
        label = np.full((h, w), 2, np.uint8)  # sky
        label[h // 2 :] = 0  # wall
        label[h // 3 : h // 2, w // 4 : w // 2] = 12  # person
        label[:4] = 255
        palette = rng.integers(0, 256, (256, 3), dtype=np.uint8)
        image = np.clip(palette[label].astype(int) + rng.integers(-20, 21, (h, w, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(images / f"ADE_val_{i:08d}.jpg", quality=95)
        Image.fromarray(label).save(labels / f"ADE_val_{i:08d}.png")
    return root


def run_release(tmp_path: Path, release: Release, size: str, monkeypatch: pytest.MonkeyPatch) -> dict:
    """`python -m ovframe_maskformer.convert RELEASE OUT` and `ovframe run RECIPE -o ...`, both through their
    command-line entry points (in this process: the interpreter start-up is the only thing saved)."""
    from ovframe.cli import main as ovframe_main
    from ovframe_maskformer.convert import main as convert_main

    recipe, checkpoint_env, maskformer_env = RUNS[release]
    src = write_release(tmp_path / "weights", release, size=size)
    converted = tmp_path / "weights" / "converted.safetensors"
    assert convert_main([str(src), str(converted)]) == 0
    clip = clip_model_json(tmp_path / "weights", release, size)
    for key, value in {checkpoint_env: src, maskformer_env: converted, "DETECTRON2_DATASETS": prepared_ade(tmp_path / "datasets"),
                       "OVFRAME_CACHE_DIR": tmp_path / "cache"}.items():
        monkeypatch.setenv(key, str(value))
    monkeypatch.chdir(tmp_path)
    sizes = ["proposals.test_short_side=64", "proposals.test_max_size=128", f"text_encoder.model={clip}", f"classifier.model={clip}",
             *size_overrides(release, size)]
    assert ovframe_main(["run", str(ROOT / "recipes" / recipe), *[a for s in sizes for a in ("-o", s)]]) == 0
    (metrics_file,) = (tmp_path / "runs").rglob("metrics.json")
    metrics = json.loads(metrics_file.read_text())
    assert metrics["images"] == 2 and 0.0 <= metrics["mIoU"] <= 100.0
    return metrics


@pytest.mark.slow
@pytest.mark.parametrize("release", [SWINB_VITL14, R101C_VITB16], ids=["swinb_vitl14", "r101c_vitb16"])
def test_release_converts_and_runs_the_shipped_recipe(tmp_path, release, registry, monkeypatch):
    run_release(tmp_path, release, "tiny", monkeypatch)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("OVFRAME_FULL_RELEASE_SMOKE"), reason="full-size release files: set OVFRAME_FULL_RELEASE_SMOKE=1 (about 2 GB of RAM)")
@pytest.mark.parametrize("release", [SWINB_VITL14, R101C_VITB16], ids=["swinb_vitl14", "r101c_vitb16"])
def test_full_size_release_converts_and_runs_the_shipped_recipe(tmp_path, release, registry, monkeypatch):
    run_release(tmp_path, release, "full", monkeypatch)
