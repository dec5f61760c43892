"""Pascal preparations.

Pascal Context (VOCtrainval_03-May-2010.tar + trainval.tar.gz of the Pascal Context site): each
validation image has trainval/<id>.mat whose `LabelMap` holds 1..459, the line numbers of labels.txt.
PC-459: LabelMap - 1 as uint16 TIFF, 0 becoming 65535 (ignore). PC-59: the index of the class in the
59 list (classes/pascal-context-59.txt, matched to labels.txt by name), every other class 255 (ignore),
as PNG. Validation ids: pascalcontext_val.txt when the source has it, else VOC2010
ImageSets/Main/val.txt (the same 5,105 ids), keeping those with a .mat. Both PC-59 and PC-459 are
written by either command.

Pascal VOC 2012 (VOCtrainval_11-May-2012.tar): SegmentationClass/<id>.png (palette indices 0 =
background, 1..20, 255 = boundary) of the ids in ImageSets/Segmentation/val.txt become index - 1, with
background and boundary 255 (ignore). Masks that are then all ignore (background-only images) are
not written, so those images are not evaluated, as in the reference.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ovframe import BadInput

from ..classes import class_names
from ..labels import IGNORE_8BIT, IGNORE_16BIT, write_label
from ..sources import Source
from .common import by_stem, copy_images, decode_indices, missing, progress, stem_of

PC_EXPECTED = (
    "a folder holding VOCtrainval_03-May-2010.tar (http://host.robots.ox.ac.uk/pascal/VOC/voc2010/) and "
    "trainval.tar.gz (https://cs.stanford.edu/~roozbeh/pascal-context/trainval.tar.gz), or their unpacked files"
)
VOC_EXPECTED = (
    "the official VOCtrainval_11-May-2012.tar (http://host.robots.ox.ac.uk/pascal/VOC/voc2012/) or the folder it unpacks to"
)


def _prefer_all(src: Source, year: str, tail: str) -> list[str]:
    """Members matching `tail`, those under `year`/ (VOC2010, VOC2012) when there are any."""
    return src.find(rf"(^|/){year}/{tail}") or src.find(rf"(^|/){tail}")


def _prefer(src: Source, year: str, tail: str) -> str | None:
    found = _prefer_all(src, year, tail)
    return found[0] if found else None


def read_id_list(data: bytes) -> list[str]:
    ids = [line.strip().split()[0] for line in data.decode("utf-8", "replace").splitlines() if line.strip()]
    for i in ids:
        stem_of(i + ".x")  # plain names only
    return ids


def parse_labels_txt(data: bytes) -> dict[int, str]:
    """labels.txt of Pascal Context: lines "idx: name"."""
    out = {}
    for line in data.decode("utf-8", "replace").splitlines():
        if ":" in line:
            idx, name = line.split(":", 1)
            out[int(idx.strip())] = name.strip()
    return out


def check_labels_txt(labels: dict[int, str]) -> None:
    """The 459 list ovframe pins must be the source's labels.txt (PC-459 labels index it)."""
    pinned = class_names("pascal-context-459")
    theirs = [labels.get(i + 1) for i in range(len(pinned))]
    if theirs != list(pinned) or len(labels) != len(pinned):
        diff = next((i for i, (a, b) in enumerate(zip(pinned, theirs)) if a != b), len(pinned))
        raise BadInput(
            f"labels.txt differs from the Pascal Context 459 list ovframe pins (first difference at id {diff + 1}: "
            f"{theirs[diff] if diff < len(theirs) else None!r} vs {pinned[diff] if diff < len(pinned) else None!r}); "
            f"this is another version of Pascal Context"
        )


def load_label_map(data: bytes, name: str) -> np.ndarray:
    from scipy.io import loadmat

    try:
        mat = loadmat(io.BytesIO(data))
    except Exception as e:
        raise BadInput(f"{name}: cannot read the .mat file ({e}); the download may be corrupt") from None
    if "LabelMap" not in mat:
        raise BadInput(f"{name}: no LabelMap in the .mat file; expected Pascal Context's trainval/*.mat")
    return np.asarray(mat["LabelMap"])


def pc459_label(label_map: np.ndarray, name: str = "") -> np.ndarray:
    """uint16: LabelMap - 1, 0 (unlabelled) -> 65535."""
    values = label_map.astype(np.int64)
    if values.size and (values.max() > 459 or values.min() < 0):
        raise BadInput(f"{name}: LabelMap values {values.min()}..{values.max()}; Pascal Context has 1..459")
    out = values - 1
    out[values == 0] = IGNORE_16BIT
    return out.astype(np.uint16)


def pc59_lookup() -> np.ndarray:
    """LabelMap value (1..459) -> PC-59 index, 255 for the other 400 classes."""
    id_of = {name: i + 1 for i, name in enumerate(class_names("pascal-context-459"))}
    lut = np.full(460, IGNORE_8BIT, dtype=np.uint8)
    for k, name in enumerate(class_names("pascal-context-59")):
        lut[id_of[name]] = k
    return lut


def prepare_pascal_context(src: Source, root: Path) -> dict[str, int]:
    mats = by_stem(src.find(r"(^|/)trainval/[^/]+\.mat$"))
    if not mats:
        raise missing("trainval/*.mat", src, PC_EXPECTED)
    labels_txt = src.find_one(r"(^|/)labels\.txt$")
    if labels_txt is not None:
        check_labels_txt(parse_labels_txt(src.read(labels_txt)))
    val_list = src.find_one(r"(^|/)pascalcontext_val\.txt$") or _prefer(src, "VOC2010", r"ImageSets/Main/val\.txt$")
    if val_list is None:
        raise missing("the validation list (VOC2010/ImageSets/Main/val.txt or pascalcontext_val.txt)", src, PC_EXPECTED)
    ids = [i for i in read_id_list(src.read(val_list)) if i in mats]
    if not ids:
        raise BadInput(f"--source {src.path}: none of the validation ids in {val_list} has a trainval/<id>.mat")
    out = root / "VOCdevkit" / "VOC2010"
    image_dir = out / "JPEGImages"
    images = by_stem(_prefer_all(src, "VOC2010", r"JPEGImages/[^/]+\.jpg$"))
    absent = [i for i in ids if i not in images and not (image_dir / f"{i}.jpg").exists()]
    if absent:
        raise missing(f"{len(absent)} validation image(s) such as VOC2010/JPEGImages/{absent[0]}.jpg", src, PC_EXPECTED)
    lut = pc59_lookup()
    dir59 = out / "annotations_detectron2" / "pc59_val"
    dir459 = out / "annotations_detectron2" / "pc459_val"
    counts = {"pc59 labels": 0, "pc459 labels": 0, "images copied": 0}
    todo = [mats[i] for i in ids if not ((dir59 / f"{i}.png").exists() and (dir459 / f"{i}.tif").exists())]
    for name, data in progress(src.read_many(todo), len(todo), "pascal-context labels"):
        stem = stem_of(name)
        label_map = load_label_map(data, name)
        write_label(dir459 / f"{stem}.tif", pc459_label(label_map, name))
        write_label(dir59 / f"{stem}.png", lut[np.clip(label_map.astype(np.int64), 0, 459)])
        counts["pc59 labels"] += 1
        counts["pc459 labels"] += 1
    counts["images copied"] = copy_images(src, {i: images[i] for i in ids if i in images}, image_dir, "pascal-context images")
    return counts


def voc20_label(mask: np.ndarray) -> np.ndarray:
    """uint8: VOC index - 1 for 1..20; background 0, boundary 255 and anything else 255."""
    lut = np.full(256, IGNORE_8BIT, dtype=np.uint8)
    lut[1:21] = np.arange(20, dtype=np.uint8)
    return lut[mask]


def prepare_voc20(src: Source, root: Path) -> dict[str, int]:
    val_list = _prefer(src, "VOC2012", r"ImageSets/Segmentation/val\.txt$")
    if val_list is None:
        raise missing("VOC2012/ImageSets/Segmentation/val.txt", src, VOC_EXPECTED)
    masks = by_stem(_prefer_all(src, "VOC2012", r"SegmentationClass/[^/]+\.png$")) or by_stem(
        _prefer_all(src, "VOC2012", r"SegmentationClassAug/[^/]+\.png$")
    )
    ids = read_id_list(src.read(val_list))
    absent = [i for i in ids if i not in masks]
    if absent:
        raise missing(f"{len(absent)} mask(s) such as SegmentationClass/{absent[0]}.png", src, VOC_EXPECTED)
    out = root / "VOCdevkit" / "VOC2012"
    label_dir = out / "annotations_detectron2" / "val"
    image_dir = out / "JPEGImages"
    images = by_stem(_prefer_all(src, "VOC2012", r"JPEGImages/[^/]+\.jpg$"))
    counts = {"labels": 0, "background-only skipped": 0, "images copied": 0}
    kept: list[str] = []
    for name, data in progress(src.read_many(masks[i] for i in ids), len(ids), "pascal-voc-20 labels"):
        stem = stem_of(name)
        label = voc20_label(decode_indices(data, name))
        if (label == IGNORE_8BIT).all():
            counts["background-only skipped"] += 1
            continue
        kept.append(stem)
        if not (label_dir / f"{stem}.png").exists():
            write_label(label_dir / f"{stem}.png", label)
            counts["labels"] += 1
    absent = [i for i in kept if i not in images and not (image_dir / f"{i}.jpg").exists()]
    if absent:
        raise missing(f"{len(absent)} image(s) such as JPEGImages/{absent[0]}.jpg", src, VOC_EXPECTED)
    counts["images copied"] = copy_images(src, {i: images[i] for i in kept if i in images}, image_dir, "pascal-voc-20 images")
    return counts
