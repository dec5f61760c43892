"""Caption datasets: COCO Captions (pycocotools) with `ovframe prepare`, and a folder with captions.jsonl."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from ovframe import BadInput, MissingFiles
from ovframe.recipes import load_recipe
from ovframe.runner import run_recipe


def coco_download(folder):
    """What the COCO site gives: annotations_trainval2017.zip (captions inside) and the val2017 images."""
    folder.mkdir(parents=True)
    images = [{"id": 139, "file_name": "000000000139.jpg", "height": 20, "width": 30},
              {"id": 285, "file_name": "000000000285.jpg", "height": 20, "width": 30}]
    anns = [{"id": 1, "image_id": 139, "caption": "A dog on a red sofa."},
            {"id": 2, "image_id": 139, "caption": "Two cats near a table."},
            {"id": 3, "image_id": 285, "caption": "A bear in the grass."}]
    data = json.dumps({"info": {}, "licenses": [], "images": images, "annotations": anns})
    with zipfile.ZipFile(folder / "annotations_trainval2017.zip", "w") as z:
        z.writestr("annotations/captions_val2017.json", data)
        z.writestr("annotations/instances_val2017.json", "{}")
    with zipfile.ZipFile(folder / "val2017.zip", "w") as z:
        for im in images:
            path = folder / im["file_name"]
            Image.fromarray(np.full((20, 30, 3), 100, np.uint8)).save(path, format="JPEG")
            z.write(path, f"val2017/{im['file_name']}")
            path.unlink()
    return folder


def test_coco_captions_prepare_and_read(tmp_path, registry, capsys):
    from ovframe.cli import main

    src = coco_download(tmp_path / "download")
    root = tmp_path / "datasets"
    assert main(["prepare", "coco-captions", "--source", str(src), "--root", str(root), "--split", "val"]) == 0
    assert (root / "coco" / "annotations" / "captions_val2017.json").exists()
    assert sorted(p.name for p in (root / "coco" / "val2017").iterdir()) == ["000000000139.jpg", "000000000285.jpg"]
    dataset = registry.get("dataset", "coco-captions").build({"root": str(root), "split": "val"})
    assert len(dataset) == 2 and dataset.sample_id(0) == "000000000139"
    sample = dataset[0]
    assert sample.image.shape == (3, 20, 30) and sample.label is None
    assert sample.meta["captions"] == ["A dog on a red sofa.", "Two cats near a table."] and sample.meta["coco_id"] == 139
    with pytest.raises(BadInput, match="without class labels"):
        dataset.vocabulary


def test_coco_captions_missing_files_say_how_to_prepare(tmp_path, registry):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"name: r\noutput_dir: {tmp_path}\ndataset: {{plugin: coco-captions, root: {tmp_path / 'none'}}}\n"
        "proposals: {plugin: ground-truth-masks}\nclassifier: {plugin: oracle}\ntask: {plugin: mine-pairs}\n"
    )
    with pytest.raises(MissingFiles, match=r"captions_train2017\.json(.|\n)*ovframe prepare coco-captions"):
        run_recipe(load_recipe(recipe, registry=registry), registry)


def test_caption_folder_reports_bad_lines_and_keeps_the_rest(caption_folder, registry):
    data, _ = caption_folder
    dataset = registry.get("dataset", "caption-folder").build({"root": str(data)})
    assert len(dataset) == 10
    assert dataset.problems and dataset.problems[0].startswith("line 3: not JSON")
    assert len(dataset[0].meta["captions"]) == 2
    broken = dataset[3].meta["captions"]  # "", a 5000-character caption, and one with a byte that is not UTF-8
    assert broken[0] == "" and len(broken[1]) == 5000 and "\udcff" in broken[2]
