"""`ovframe predict`: the user's images, the user's words; overlays, label PNGs, JSON; bad files skipped."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image
from support import NAMES, ToyConfig, ToyDataset, write

from ovframe.cli import main

COLOURS = "{sky: [90, 160, 230], grass: [40, 160, 40], red square: [220, 30, 30], blue circle: [30, 30, 220]}"


def images(folder, n=3):
    folder.mkdir(parents=True)
    data = ToyDataset(ToyConfig(n=n, size=32))
    for i in range(n):
        Image.fromarray(data[i].image.permute(1, 2, 0).numpy()).save(folder / f"img{i}.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    return folder


def recipe(tmp_path):
    return write(
        tmp_path / "colour.yaml",
        f"name: colour\ndevice: cpu\nproposals: {{plugin: grid, cells: 4}}\n"
        f"classifier: {{plugin: mean-colour, colours: {COLOURS}}}\nfuser: clip-only\n",
    )


def test_predict_writes_pictures_labels_and_json(tmp_path, toy_registry, capsys):
    folder = images(tmp_path / "photos")
    out = tmp_path / "out"
    code = main(["predict", str(folder), "--vocab", "sky, grass,red square", "--recipe", str(recipe(tmp_path)), "--out", str(out), "--batch-size", "2"])
    assert code == 0
    pred = out / "predictions"
    assert sorted(p.name for p in pred.glob("*.json")) == ["img0.json", "img1.json", "img2.json"]  # broken.jpg skipped
    info = json.loads((pred / "img0.json").read_text())
    assert info["classes"] == ["sky", "grass", "red square"]  # the command line's vocabulary, not a dataset's
    assert abs(sum(info["fractions"].values()) - 1) < 1e-4
    label = np.asarray(Image.open(pred / "img0.label.png"))
    assert label.shape == (32, 32) and set(np.unique(label)) <= {0, 1, 2}
    overlay = Image.open(pred / "img0.overlay.png")
    assert overlay.height >= 32 and overlay.width > 32 + 100  # the image plus a legend
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == {"images": 3, "images_failed": 1, "classes": 3}


def test_one_class_vocabulary_gets_others(tmp_path, toy_registry):
    folder = images(tmp_path / "photos", n=1)
    label = ToyDataset(ToyConfig(n=1, size=32))[0].label
    background = NAMES[int(label[label >= 0].mode().values)]
    out = tmp_path / "out"
    assert main(["predict", str(folder / "img0.png"), "--vocab", background, "--recipe", str(recipe(tmp_path)), "--out", str(out)]) == 0
    info = json.loads((out / "predictions" / "img0.json").read_text())
    assert info["classes"] == [background, "others"]
    assert 0 < info["fractions"].get("others", 0) < 1  # not every pixel is the one class


def test_vocabulary_file_and_missing_recipe(tmp_path, toy_registry, capsys):
    folder = images(tmp_path / "photos", n=1)
    vocab = write(tmp_path / "vocab.txt", "# my classes\nsky\n\ngrass\n")
    out = tmp_path / "out"
    assert main(["predict", str(folder), "--vocab-file", str(vocab), "--recipe", str(recipe(tmp_path)), "--out", str(out)]) == 0
    assert json.loads((out / "predictions" / "img0.json").read_text())["classes"] == ["sky", "grass"]
    assert main(["predict", str(folder), "--vocab", "a", "--recipe", str(tmp_path / "none.yaml")]) == 2
    assert "no such recipe" in capsys.readouterr().err
