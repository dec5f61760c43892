"""`ovframe predict`: the user's images, the user's words; a folder per call, overlays (input beside the
prediction, colours fixed by class name), label PNGs, JSON with COCO RLE segments, a summary table."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from support import NAMES, ToyConfig, ToyDataset, write

from ovframe import runner
from ovframe.cli import main
from ovframe.results import decode_rle

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
        f"name: colour\ndevice: cpu\noutput_dir: {tmp_path / 'runs'}\nproposals: {{plugin: grid, cells: 4}}\n"
        f"classifier: {{plugin: mean-colour, colours: {COLOURS}}}\nfuser: clip-only\n",
    )


def test_predict_writes_pictures_labels_json_coco_and_a_summary(tmp_path, toy_registry, capsys):
    from pycocotools.coco import COCO

    folder = images(tmp_path / "photos")
    out = tmp_path / "out"
    argv = ["predict", str(folder), "--vocab", "sky, grass,red square", "--recipe", str(recipe(tmp_path)), "--out", str(out), "--batch-size", "2"]
    assert main(argv) == 0
    pred = out / "predictions"
    assert sorted(p.name for p in pred.glob("img*.json")) == ["img0.json", "img1.json", "img2.json"]  # broken.jpg skipped
    info = json.loads((pred / "img0.json").read_text())
    assert info["classes"] == ["sky", "grass", "red square"]  # the command line's vocabulary, not a dataset's
    assert abs(sum(info["shares"].values()) - 1) < 1e-4
    label = np.asarray(Image.open(pred / "img0.label.png"))
    assert label.shape == (32, 32) and set(np.unique(label)) <= {0, 1, 2}
    for segment in info["segments"]:  # one per class present, its RLE exactly the label PNG's pixels
        mask = decode_rle(segment["segmentation"])
        assert np.array_equal(mask, label == segment["class_index"])
        assert segment["area"] == mask.sum() and 0 < segment["score"] <= 1
        assert info["classes"][segment["class_index"]] == segment["class"]
    assert {s["class"] for s in info["segments"]} == set(info["shares"])

    coco = COCO(str(pred / "coco.json"))  # what COCO tools read
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["sky", "grass", "red square"]
    image_id = next(i for i, im in coco.imgs.items() if im["file_name"].endswith("img0.png"))
    for ann in coco.loadAnns(coco.getAnnIds(imgIds=[image_id])):
        assert np.array_equal(coco.annToMask(ann).astype(bool), label == ann["category_id"] - 1)
        assert 0 < ann["score"] <= 1

    overlay = Image.open(pred / "img0.overlay.png")
    assert overlay.height >= 384 and overlay.width >= 2 * 384  # 32 px scaled up 12x: input and prediction
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["images"], metrics["images_failed"], metrics["classes"]) == (3, 1, 3)
    assert abs(sum(metrics["shares"].values()) - 1) < 1e-4

    stdout = capsys.readouterr().out
    table = [line for line in stdout.splitlines() if line.startswith("| ")]
    assert table[0] == "| class | pixels | images |" and len(table) == 1 + 3
    assert (out / "summary.md").read_text().splitlines()[0] == table[0]
    assert f"predictions: {pred}" in stdout


def test_every_call_gets_its_own_folder_and_out_is_never_mixed(tmp_path, toy_registry, monkeypatch, capsys):
    folder = images(tmp_path / "photos", n=1)
    monkeypatch.chdir(tmp_path)
    r = str(recipe(tmp_path))
    assert main(["predict", str(folder), "--vocab", "sky, grass", "--recipe", r]) == 0
    assert main(["predict", str(folder), "--vocab", "red square, blue circle", "--recipe", r]) == 0
    runs = {d.name.split("_", 1)[1]: d for d in (tmp_path / "runs" / "predict").iterdir()}  # <date-time>_<classes>
    assert sorted(runs) == ["red-square-blue-circle", "sky-grass"]
    assert json.loads((runs["sky-grass"] / "predictions" / "img0.json").read_text())["classes"] == ["sky", "grass"]
    out = tmp_path / "mine"
    assert main(["predict", str(folder), "--vocab", "sky, grass", "--recipe", r, "--out", str(out)]) == 0
    assert main(["predict", str(folder), "--vocab", "sky, grass", "--recipe", r, "--out", str(out)]) == 0  # the same again
    capsys.readouterr()
    assert main(["predict", str(folder), "--vocab", "sky, water", "--recipe", r, "--out", str(out)]) == 2
    assert "holds predictions of another recipe, vocabulary or set of images" in capsys.readouterr().err


def test_colours_follow_class_names_not_their_order(tmp_path, toy_registry):
    folder = images(tmp_path / "photos", n=1)
    r = str(recipe(tmp_path))
    for i, vocab in enumerate(["sky, grass, red square, blue circle", "blue circle, red square, grass, sky"]):
        assert main(["predict", str(folder / "img0.png"), "--vocab", vocab, "--recipe", r, "--out", str(tmp_path / f"o{i}")]) == 0
    first, second = (np.asarray(Image.open(tmp_path / f"o{i}" / "predictions" / "img0.overlay.png")) for i in (0, 1))
    assert np.array_equal(first, second)  # same classes found, same colours, same legend
    labels = [np.asarray(Image.open(tmp_path / f"o{i}" / "predictions" / "img0.label.png")) for i in (0, 1)]
    assert not np.array_equal(labels[0], labels[1])  # while the class indices did change


def test_progress_lines_when_not_a_terminal(tmp_path, toy_registry, monkeypatch, capsys):
    monkeypatch.setattr(runner, "PROGRESS_EVERY", 0.0)
    folder = images(tmp_path / "photos", n=3)
    assert main(["predict", str(folder), "--vocab", "sky, grass", "--recipe", str(recipe(tmp_path)), "--out", str(tmp_path / "o"), "--batch-size", "2"]) == 0
    err = capsys.readouterr().err
    assert "predict: 2/4, " in err and "predict: 4/4 done in" in err  # 4 files (one unreadable), 2 per batch
    assert "predict: 2/4" in (tmp_path / "o" / "log.txt").read_text()


def test_one_class_vocabulary_gets_others(tmp_path, toy_registry):
    folder = images(tmp_path / "photos", n=1)
    label = ToyDataset(ToyConfig(n=1, size=32))[0].label
    background = NAMES[int(label[label >= 0].mode().values)]
    out = tmp_path / "out"
    assert main(["predict", str(folder / "img0.png"), "--vocab", background, "--recipe", str(recipe(tmp_path)), "--out", str(out)]) == 0
    info = json.loads((out / "predictions" / "img0.json").read_text())
    assert info["classes"] == [background, "others"]
    assert 0 < info["shares"].get("others", 0) < 1  # not every pixel is the one class


@pytest.mark.parametrize("vocab", ["sky, sky", " , "])
def test_bad_vocabularies_exit_2_before_any_model_loads(tmp_path, toy_registry, capsys, vocab):
    folder = images(tmp_path / "photos", n=1)
    assert main(["predict", str(folder), "--vocab", vocab, "--recipe", str(recipe(tmp_path))]) == 2
    assert "class name" in capsys.readouterr().err


def test_vocabulary_file_and_missing_recipe(tmp_path, toy_registry, capsys):
    folder = images(tmp_path / "photos", n=1)
    vocab = write(tmp_path / "vocab.txt", "# my classes\nsky\n\ngrass\n")
    out = tmp_path / "out"
    assert main(["predict", str(folder), "--vocab-file", str(vocab), "--recipe", str(recipe(tmp_path)), "--out", str(out)]) == 0
    assert json.loads((out / "predictions" / "img0.json").read_text())["classes"] == ["sky", "grass"]
    assert main(["predict", str(folder), "--vocab", "a", "--recipe", str(tmp_path / "none.yaml")]) == 2
    assert "no such recipe" in capsys.readouterr().err


def test_images_over_the_pixel_limit_are_shrunk_and_the_log_says_so(tmp_path, toy_registry, capsys):
    folder = images(tmp_path / "photos", n=1)
    out = tmp_path / "o"
    argv = ["predict", str(folder / "img0.png"), "--vocab", "sky, grass", "--recipe", str(recipe(tmp_path)), "--out", str(out),
            "-o", "task.max_image_pixels=256"]
    assert main(argv) == 0
    assert Image.open(out / "predictions" / "img0.label.png").size == (16, 16)
    assert json.loads((out / "predictions" / "img0.json").read_text())["size"] == [16, 16]
    assert "img0.png is 32 x 32 pixels, over the limit of 256 (max_image_pixels): shrunk to 16 x 16" in (out / "log.txt").read_text()
