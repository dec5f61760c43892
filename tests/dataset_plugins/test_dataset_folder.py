"""The `folder` dataset: the fixed layout, 8- and 16-bit labels, unlabelled images, seen classes, and
clear errors for what a user gets wrong."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ovframe import BadInput, SampleError


def build(registry, root, **options):
    return registry.get("dataset", "folder").build({"root": str(root), **options})


def make(root, labels: dict[str, np.ndarray], classes=("a", "b", "c"), images_only=()):
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("# my classes\n" + "".join(f"{c}\n" for c in classes))
    for stem, label in labels.items():
        h, w = label.shape
        Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(root / "images" / f"{stem}.jpg")
        Image.fromarray(label).save(root / "labels" / f"{stem}.png")
    for stem in images_only:
        Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(root / "images" / f"{stem}.png")
    return root


def test_layout_ignore_and_unlabelled_images(tmp_path, registry):
    label = np.array([[0, 1, 255], [2, 2, 0]], np.uint8)
    root = make(tmp_path, {"x1": label}, images_only=("x0",))
    ds = build(registry, root)
    assert ds.vocabulary.names == ("a", "b", "c") and ds.vocabulary.seen is None
    assert [ds.sample_id(i) for i in range(len(ds))] == ["x0", "x1"]
    assert ds[0].label is None and tuple(ds[0].image.shape) == (3, 4, 5)
    np.testing.assert_array_equal(ds[1].label.numpy(), [[0, 1, -1], [2, 2, 0]])


def test_sixteen_bit_labels_for_many_classes(tmp_path, registry):
    names = [f"class {i}" for i in range(300)]
    label = np.array([[0, 299, 65535], [256, 1, 7]], np.uint16)
    root = make(tmp_path, {}, classes=names)
    Image.fromarray(np.zeros((2, 3, 3), np.uint8)).save(root / "images" / "big.png")
    Image.fromarray(label).save(root / "labels" / "big.png")
    assert Image.open(root / "labels" / "big.png").mode.startswith("I")
    np.testing.assert_array_equal(build(registry, root)[0].label.numpy(), [[0, 299, -1], [256, 1, 7]])


def test_seen_split_split_folder_and_class_file_option(tmp_path, registry):
    make(tmp_path / "val", {"v": np.zeros((2, 2), np.uint8)}, classes=("x", "y", "z"))
    (tmp_path / "val" / "classes.txt").unlink()
    (tmp_path / "classes.txt").write_text("cat\ndog\nsofa\n")
    (tmp_path / "seen.txt").write_text("dog\n")
    ds = build(registry, tmp_path, split="val")
    assert ds.vocabulary.names == ("cat", "dog", "sofa") and ds.vocabulary.seen == (False, True, False)
    other = tmp_path / "elsewhere.txt"
    other.write_text("one\ntwo\nthree\n")
    assert build(registry, tmp_path, split="val", classes=str(other), seen=str(other)).vocabulary.seen == (True, True, True)


def test_bad_samples_are_sample_errors(tmp_path, registry):
    root = make(tmp_path, {"ok": np.zeros((2, 2), np.uint8), "toobig": np.array([[0, 3]], np.uint8), "rgb": np.zeros((2, 2), np.uint8)})
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(root / "labels" / "rgb.png")
    (root / "images" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    Image.fromarray(np.zeros((3, 3), np.uint8)).save(root / "labels" / "broken.png")
    ds = build(registry, root)
    ids = [ds.sample_id(i) for i in range(len(ds))]
    errors = {}
    for i, sample_id in enumerate(ids):
        try:
            ds[i]
        except SampleError as e:
            errors[e.sample_id] = e.reason
    assert set(errors) == {"toobig", "rgb", "broken"}
    assert "outside the 3 classes" in errors["toobig"] and "[3]" in errors["toobig"]
    assert "not colours" in errors["rgb"] and "cannot read image" in errors["broken"]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda r: (r / "classes.txt").unlink(), "no class-name file"),
        (lambda r: (r / "classes.txt").write_text("a\nb\na\n"), "repeats ['a']"),
        (lambda r: (r / "seen.txt").write_text("a\nzebra\n"), "zebra"),
        (lambda r: Image.fromarray(np.zeros((2, 2), np.uint8)).save(r / "labels" / "orphan.png"), "without an image"),
        (lambda r: Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(r / "images" / "x1.png"), "the same id 'x1'"),
    ],
)
def test_layout_mistakes_are_bad_input(tmp_path, registry, damage, message):
    root = make(tmp_path, {"x1": np.zeros((2, 2), np.uint8)})
    damage(root)
    with pytest.raises(BadInput, match=message.replace("[", r"\[").replace("]", r"\]")):
        build(registry, root)


def test_missing_folder_is_reported_before_any_work(tmp_path, registry):
    from ovframe import MissingFiles
    from ovframe.files import check_required_files

    spec = registry.get("dataset", "folder")
    with pytest.raises(MissingFiles) as e:
        check_required_files(spec.load().required_files(spec.config(root=str(tmp_path / "nope"))))
    assert str(tmp_path / "nope" / "images") in str(e.value) and "classes.txt" in str(e.value)
