"""`synth-export`: the folder layout read back equals the dataset; resume; refusal of a foreign root."""

from __future__ import annotations

import json

import numpy as np
import torch
import pytest
from PIL import Image

from ovframe import BadInput
from ovframe.recipes import load_recipe
from ovframe.runner import run_recipe


def export(tmp_path, registry, root, dataset: str, name="exp"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: {name}\noutput_dir: {tmp_path / 'runs'}\ndevice: cpu\n"
        f"task: {{plugin: synth-export, root: {root}}}\ndataset: {dataset}\n"
    )
    recipe = load_recipe(path, registry=registry)
    return run_recipe(recipe, registry, fresh=True), recipe


def read_back(root):
    classes = (root / "classes.txt").read_text().splitlines()
    seen = (root / "seen.txt").read_text().splitlines()
    captions = [json.loads(line) for line in (root / "captions.jsonl").read_text().splitlines()]
    return classes, seen, captions


@pytest.mark.parametrize("split", ["val", "train"])
def test_export_round_trip(tmp_path, registry, split):
    root = tmp_path / "out"
    metrics, _ = export(tmp_path, registry, root, f"{{plugin: synth, split: {split}, num_images: 5}}")
    assert metrics["images"] == metrics["written"] == 5
    data = registry.get("dataset", "synth").build({"split": split, "num_images": 5})
    classes, seen, captions = read_back(root)
    assert classes == list(data.vocabulary.names)
    assert seen == [n for n, s in zip(data.vocabulary.names, data.vocabulary.seen) if s]
    assert [c["id"] for c in captions] == [data.sample_id(i) for i in range(5)]
    ignored = 0
    for i in range(5):
        sample = data[i]
        image = np.asarray(Image.open(root / "images" / f"{sample.id}.png"))
        label = np.asarray(Image.open(root / "labels" / f"{sample.id}.png")).astype(np.int64)
        assert np.array_equal(image, sample.image.permute(1, 2, 0).numpy())
        assert np.array_equal(np.where(label == 255, -1, label), sample.label.numpy())
        assert captions[i]["captions"] == sample.meta["captions"]
        ignored += int((label == 255).sum())
    assert (ignored > 0) == (split == "train"), "only the proposal-training view has ignore pixels"


def test_export_resumes_and_refuses_a_foreign_root(tmp_path, registry):
    root = tmp_path / "out"
    dataset = "{plugin: synth, num_images: 4}"
    export(tmp_path, registry, root, dataset, name="first")
    (root / "images" / "val-s0-000002.png").unlink()
    metrics, _ = export(tmp_path, registry, root, dataset, name="again")
    assert (metrics["written"], metrics["kept"]) == (1, 3)
    with pytest.raises(BadInput, match="export of a different dataset"):
        export(tmp_path, registry, root, "{plugin: synth, num_images: 4, seed: 1}", name="other-seed")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(BadInput, match="not empty"):
        export(tmp_path, registry, tmp_path / "other", dataset, name="foreign")


def test_the_folder_dataset_reads_an_export_back(tmp_path, registry):
    """The export is the layout of the `folder` dataset (ovframe_datasets): same images, labels, vocabulary."""
    root = tmp_path / "out"
    export(tmp_path, registry, root, "{plugin: synth, split: val, num_images: 4}")
    synth = registry.get("dataset", "synth").build({"split": "val", "num_images": 4})
    folder = registry.get("dataset", "folder").build({"root": str(root)})
    assert folder.vocabulary == synth.vocabulary and len(folder) == 4
    by_id = {folder[i].id: folder[i] for i in range(4)}
    for i in range(4):
        mine = synth[i]
        theirs = by_id[mine.id]
        assert torch.equal(theirs.image, mine.image) and torch.equal(theirs.label, mine.label)
