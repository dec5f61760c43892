"""`ovframe prepare` on tiny downloads fabricated in each official format; the converted layout and
label values are checked exactly against conversions restated here, then read back by the datasets."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from ovframe.cli import main


def jpeg(h: int, w: int, seed: int) -> bytes:
    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), np.full_like(xx, g.integers(0, 255))], -1)
    buf = io.BytesIO()
    Image.fromarray(rgb.astype(np.uint8)).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def png(array: np.ndarray, palette: bool = False) -> bytes:
    im = Image.fromarray(array)
    if palette:  # VOC's SegmentationClass PNGs are palette images: indices plus a colour table
        im.putpalette([c for i in range(256) for c in ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)])
        assert im.mode == "P"
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def write_tar(path: Path, members: dict[str, bytes], mode: str = "w") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, mode) as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


def unpack(archive: Path, dest: Path) -> Path:
    if archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as z:
            z.extractall(dest)
    else:
        with tarfile.open(archive) as t:
            t.extractall(dest, filter="data")
    return dest


def prepare(name: str, source: Path, root: Path) -> None:
    assert main(["prepare", name, "--source", str(source), "--root", str(root)]) == 0


def read(path: Path) -> np.ndarray:
    return tifffile.imread(path) if path.suffix == ".tif" else np.asarray(Image.open(path))


def dataset(registry, name: str, root: Path, **options):
    return registry.get("dataset", name).build({"root": str(root), **options})


def check_dataset_labels(ds, expected: dict[str, np.ndarray], ignore: int) -> None:
    """The dataset reads back every prepared label with the ignore value as -1."""
    assert [ds.sample_id(i) for i in range(len(ds))] == sorted(expected)
    for i in range(len(ds)):
        sample = ds[i]
        want = expected[sample.id].astype(np.int64)
        want[expected[sample.id] == ignore] = -1
        assert sample.label.dtype == torch.int64
        np.testing.assert_array_equal(sample.label.numpy(), want)
        assert tuple(sample.image.shape) == (3, *want.shape)


# -- ADE20K-150 ------------------------------------------------------------------------------


def test_ade150_from_the_official_zip_and_its_folder(tmp_path, registry):
    g = np.random.default_rng(0)
    anns = {f"ADE_val_{i:08d}": g.integers(0, 151, (13, 17), dtype=np.uint8) for i in (1, 2)}
    anns["ADE_val_00000001"][0, :2] = (0, 150)
    members = {"ADEChallengeData2016/objectInfo150.txt": b"Idx\tRatio\tTrain\tVal\tName\n"}
    for i, (stem, ann) in enumerate(anns.items()):
        members[f"ADEChallengeData2016/images/validation/{stem}.jpg"] = jpeg(13, 17, i)
        members[f"ADEChallengeData2016/annotations/validation/{stem}.png"] = png(ann)
    train = g.integers(0, 151, (9, 11), dtype=np.uint8)
    members["ADEChallengeData2016/images/training/ADE_train_00000001.jpg"] = jpeg(9, 11, 5)
    members["ADEChallengeData2016/annotations/training/ADE_train_00000001.png"] = png(train)
    archive = write_zip(tmp_path / "ADEChallengeData2016.zip", members)

    root = tmp_path / "datasets"
    prepare("ade20k-150", archive, root)
    base = root / "ADEChallengeData2016"
    expected = {}
    for stem, ann in anns.items():
        out = read(base / "annotations_detectron2" / "validation" / f"{stem}.png")
        assert out.dtype == np.uint8
        expected[stem] = np.where(ann == 0, 255, ann.astype(np.int64) - 1)  # label - 1, 0 -> 255
        np.testing.assert_array_equal(out, expected[stem])
        assert (base / "images" / "validation" / f"{stem}.jpg").read_bytes() == members[f"ADEChallengeData2016/images/validation/{stem}.jpg"]
    check_dataset_labels(dataset(registry, "ade20k-150", root), expected, 255)
    assert not (base / "annotations_detectron2" / "training").exists()  # validation only unless asked
    assert main(["prepare", "ade20k-150", "--source", str(archive), "--root", str(root), "--split", "train"]) == 0
    np.testing.assert_array_equal(read(base / "annotations_detectron2" / "training" / "ADE_train_00000001.png"), np.where(train == 0, 255, train.astype(np.int64) - 1))
    assert len(dataset(registry, "ade20k-150", root, split="train")) == 1

    # the unpacked folder gives the same layout
    root2 = tmp_path / "datasets2"
    prepare("ade20k-150", unpack(archive, tmp_path / "unpacked"), root2)
    for stem in anns:
        rel = Path("ADEChallengeData2016/annotations_detectron2/validation") / f"{stem}.png"
        assert (root2 / rel).read_bytes() == (root / rel).read_bytes()


# -- ADE20K-847 ------------------------------------------------------------------------------

# facts from the 847 list (ADE object id -> label): wall, building, magazine, rowing machine, adding machine
KNOWN = {2978: 0, 312: 1, 1485: 242, 2171: 794, 3148: 846}
NOT_IN_847 = (0, 1, 2, 5)  # 0 is unlabelled; the others are ADE objects outside the 847


def ade_seg(ids: np.ndarray, seed: int) -> np.ndarray:
    """The colour code of ADE20K_2021 *_seg.png: R/10 = id // 256 (R keeps a 0..9 remainder), G = id % 256."""
    g = np.random.default_rng(seed)
    r = (ids // 256) * 10 + g.integers(0, 10, ids.shape)
    return np.stack([r, ids % 256, g.integers(0, 256, ids.shape)], -1).astype(np.uint8)


def test_ade847_from_the_official_zip(tmp_path, registry):
    from ovframe_datasets.classes import class_ids

    assert not set(NOT_IN_847) & set(class_ids("ade20k-847"))
    pool = np.array(list(KNOWN) + list(NOT_IN_847))
    g = np.random.default_rng(1)
    shapes = {"ADE_val_00000001": (520, 600), "ADE_val_00000002": (700, 530), "ADE_val_00000003": (30, 40)}
    objects = {stem: pool[g.integers(0, len(pool), hw)] for stem, hw in shapes.items()}
    members = {"ADE20K_2021_17_01/index_ade20k.pkl": b"never unpickled", "ADE20K_2021_17_01/objects.txt": b""}
    for i, (stem, ids) in enumerate(objects.items()):
        folder = f"ADE20K_2021_17_01/images/ADE/validation/home_or_hotel/bedroom{i}"
        members[f"{folder}/{stem}.jpg"] = jpeg(*ids.shape, i)
        members[f"{folder}/{stem}_seg.png"] = png(ade_seg(ids, i))
        members[f"{folder}/{stem}.json"] = b"{}"
        members[f"{folder}/{stem}_parts_1.png"] = png(np.zeros((*ids.shape, 3), np.uint8))
    members["ADE20K_2021_17_01/images/ADE/training/urban/street/ADE_train_00000001.jpg"] = jpeg(20, 20, 9)
    members["ADE20K_2021_17_01/images/ADE/training/urban/street/ADE_train_00000001_seg.png"] = png(ade_seg(np.full((20, 20), 2978), 9))
    root = tmp_path / "datasets"
    prepare("ade20k-847", write_zip(tmp_path / "ADE20K_2021_17_01.zip", members), root)

    base = root / "ADE20K_2021_17_01"
    sizes = {"ADE_val_00000001": (512, 591), "ADE_val_00000002": (676, 512), "ADE_val_00000003": (30, 40)}
    expected = {}
    for stem, ids in objects.items():
        # reference: nearest resize (torch's "nearest" is OpenCV's INTER_NEAREST rule), then id -> label, else 65535
        resized = torch.nn.functional.interpolate(torch.from_numpy(ids)[None, None].double(), size=sizes[stem], mode="nearest")[0, 0]
        expected[stem] = np.vectorize(lambda v: KNOWN.get(int(v), 65535))(resized.numpy()).astype(np.uint16)
        label = read(base / "annotations_detectron2" / "validation" / f"{stem}.tif")
        assert label.dtype == np.uint16 and label.shape == sizes[stem]
        np.testing.assert_array_equal(label, expected[stem])
        with Image.open(base / "images_detectron2" / "validation" / f"{stem}.jpg") as im:
            assert (im.height, im.width) == sizes[stem] and im.mode == "RGB"
    assert not (base / "images_detectron2" / "training").exists()  # validation only by default
    check_dataset_labels(dataset(registry, "ade20k-847", root), expected, 65535)
    assert main(["prepare", "ade20k-847", "--source", str(tmp_path / "ADE20K_2021_17_01.zip"), "--root", str(root), "--split", "train"]) == 0
    np.testing.assert_array_equal(read(base / "annotations_detectron2" / "training" / "ADE_train_00000001.tif"), np.zeros((20, 20), np.uint16))


# -- Pascal Context 59 / 459 --------------------------------------------------------------------


def test_pascal_context_from_the_official_archives(tmp_path, registry):
    from scipy.io import savemat

    from ovframe_datasets.classes import class_names

    names459 = class_names("pascal-context-459")
    labels_txt = "".join(f"{i + 1}: {n}\n" for i, n in enumerate(names459)).encode()
    g = np.random.default_rng(2)
    maps = {i: g.integers(0, 460, (11, 14)).astype(np.uint16) for i in ("2008_000002", "2008_000003", "2008_000007")}
    maps["2008_000002"][0, :3] = (0, 1, 459)
    mats = {}
    for stem, m in maps.items():
        buf = io.BytesIO()
        savemat(buf, {"LabelMap": m})
        mats[f"trainval/{stem}.mat"] = buf.getvalue()
    downloads = tmp_path / "downloads"
    write_tar(downloads / "trainval.tar.gz", {**mats, "labels.txt": labels_txt}, "w:gz")
    voc = {f"VOCdevkit/VOC2010/JPEGImages/{s}.jpg": jpeg(11, 14, k) for k, s in enumerate(maps)}
    voc["VOCdevkit/VOC2010/ImageSets/Main/val.txt"] = b"2008_000002\n2008_000003\n2008_000009\n"  # 7 is train; 9 has no .mat
    write_tar(downloads / "VOCtrainval_03-May-2010.tar", voc)
    root = tmp_path / "datasets"
    prepare("pascal-context-59", downloads, root)

    # facts: PC-59 classes by name (the 59_labels.txt order) among the 459 of labels.txt
    pc59 = class_names("pascal-context-59")
    base = root / "VOCdevkit" / "VOC2010"
    exp59, exp459 = {}, {}
    for stem in ("2008_000002", "2008_000003"):
        m = maps[stem].astype(np.int64)
        exp459[stem] = np.where(m == 0, 65535, m - 1).astype(np.uint16)
        exp59[stem] = np.vectorize(lambda v: pc59.index(names459[v - 1]) if v and names459[v - 1] in pc59 else 255)(m).astype(np.uint8)
        np.testing.assert_array_equal(read(base / "annotations_detectron2" / "pc459_val" / f"{stem}.tif"), exp459[stem])
        np.testing.assert_array_equal(read(base / "annotations_detectron2" / "pc59_val" / f"{stem}.png"), exp59[stem])
        assert (base / "JPEGImages" / f"{stem}.jpg").read_bytes() == voc[f"VOCdevkit/VOC2010/JPEGImages/{stem}.jpg"]
    assert not (base / "annotations_detectron2" / "pc59_val" / "2008_000007.png").exists()
    assert exp59["2008_000002"][0, 0] == 255 and exp459["2008_000002"][0, 0] == 65535
    check_dataset_labels(dataset(registry, "pascal-context-59", root), exp59, 255)
    check_dataset_labels(dataset(registry, "pascal-context-459", root), exp459, 65535)


def test_pascal_context_refuses_another_label_list(tmp_path):
    from scipy.io import savemat

    buf = io.BytesIO()
    savemat(buf, {"LabelMap": np.ones((3, 3), np.uint16)})
    src = write_tar(tmp_path / "trainval.tar.gz", {"trainval/2008_000002.mat": buf.getvalue(), "labels.txt": b"1: accordion\n2: plane\n"}, "w:gz")
    assert main(["prepare", "pascal-context-459", "--source", str(src), "--root", str(tmp_path / "d")]) == 2


# -- Pascal VOC 20 --------------------------------------------------------------------------


def test_voc20_from_the_official_tar(tmp_path, registry):
    g = np.random.default_rng(3)
    masks = {s: g.choice(np.array([0, *range(1, 21), 255], np.uint8), (10, 12)) for s in ("2007_000033", "2007_000042")}
    masks["2007_000033"][0, :3] = (0, 20, 255)
    masks["2007_000061"] = np.where(g.random((10, 12)) < 0.5, 0, 255).astype(np.uint8)  # background only: not evaluated
    members = {"VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt": "".join(f"{s}\n" for s in masks).encode()}
    for k, (stem, m) in enumerate(masks.items()):
        members[f"VOCdevkit/VOC2012/JPEGImages/{stem}.jpg"] = jpeg(10, 12, k)
        members[f"VOCdevkit/VOC2012/SegmentationClass/{stem}.png"] = png(m, palette=True)
    members["VOCdevkit/VOC2012/JPEGImages/2007_000099.jpg"] = jpeg(4, 4, 7)  # not in val
    root = tmp_path / "datasets"
    prepare("pascal-voc-20", write_tar(tmp_path / "VOCtrainval_11-May-2012.tar", members), root)
    base = root / "VOCdevkit" / "VOC2012"
    expected = {}
    for stem in ("2007_000033", "2007_000042"):
        m = masks[stem].astype(np.int64)
        expected[stem] = np.where((m >= 1) & (m <= 20), m - 1, 255).astype(np.uint8)  # background and boundary ignored
        np.testing.assert_array_equal(read(base / "annotations_detectron2" / "val" / f"{stem}.png"), expected[stem])
    assert not (base / "annotations_detectron2" / "val" / "2007_000061.png").exists()
    assert not (base / "JPEGImages" / "2007_000099.jpg").exists()
    check_dataset_labels(dataset(registry, "pascal-voc-20", root), expected, 255)


# -- COCO-Stuff-171 ---------------------------------------------------------------------------

UNUSED_COCO_IDS = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91}  # never annotated: 182 - 11 = 171 classes


def test_coco_stuff_from_the_official_zips(tmp_path, registry):
    used = [i for i in range(1, 183) if i not in UNUSED_COCO_IDS]
    to_label = {cid - 1: k for k, cid in enumerate(used)}  # stuffthingmaps store id - 1
    g = np.random.default_rng(4)
    values = np.array([*range(0, 182), 255], np.uint8)
    maps = {
        ("val2017", "000000000139"): g.choice(values, (9, 13)),
        ("val2017", "000000000285"): g.choice(values, (7, 8)),
        ("val2017", "000000000632"): np.array([[11, 255], [255, 25]], np.uint8),  # only unused ids: not evaluated
        ("train2017", "000000000009"): g.choice(values, (6, 6)),
    }
    downloads = tmp_path / "downloads"
    write_zip(downloads / "stuffthingmaps_trainval2017.zip", {f"{split}/{stem}.png": png(m) for (split, stem), m in maps.items()})
    for split in ("val2017", "train2017"):
        write_zip(downloads / f"{split}.zip", {f"{split}/{stem}.jpg": jpeg(*m.shape, 0) for (s, stem), m in maps.items() if s == split})
    root = tmp_path / "datasets"
    prepare("coco-stuff-171", downloads, root)
    base = root / "coco"
    expected = {"val2017": {}, "train2017": {}}
    for (split, stem), m in maps.items():
        out = base / "stuffthingmaps_detectron2" / split / f"{stem}.png"
        if stem == "000000000632":
            assert not out.exists() and not (base / split / f"{stem}.jpg").exists()
            continue
        expected[split][stem] = np.vectorize(lambda v: to_label.get(int(v), 255))(m).astype(np.uint8)
        np.testing.assert_array_equal(read(out), expected[split][stem])
        assert (base / split / f"{stem}.jpg").is_file()
    check_dataset_labels(dataset(registry, "coco-stuff-171", root), expected["val2017"], 255)
    check_dataset_labels(dataset(registry, "coco-stuff-171", root, split="train"), expected["train2017"], 255)


# -- errors -----------------------------------------------------------------------------------


def test_a_wrong_source_says_what_is_expected(tmp_path, capsys):
    archive = write_zip(tmp_path / "something.zip", {"readme.txt": b"hello"})
    assert main(["prepare", "ade20k-150", "--source", str(archive), "--root", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "annotations/validation/*.png" in err and "ADEChallengeData2016.zip" in err
    assert main(["prepare", "pascal-voc-20", "--source", str(tmp_path / "nothing-here"), "--root", str(tmp_path / "d")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["prepare", "pascal-voc-20", "--source", str(archive), "--root", str(tmp_path / "d"), "--split", "train"]) == 2
    assert "has a single split (val)" in capsys.readouterr().err
    assert main(["prepare", "folder", "--source", str(archive), "--root", str(tmp_path / "d")]) == 2
    assert "needs no preparation" in capsys.readouterr().err


@pytest.mark.parametrize(
    "name, path",
    [
        ("ade20k-150", "ADEChallengeData2016/annotations_detectron2/validation"),
        ("ade20k-847", "ADE20K_2021_17_01/annotations_detectron2/validation"),
        ("pascal-context-59", "VOCdevkit/VOC2010/annotations_detectron2/pc59_val"),
        ("pascal-context-459", "VOCdevkit/VOC2010/annotations_detectron2/pc459_val"),
        ("pascal-voc-20", "VOCdevkit/VOC2012/annotations_detectron2/val"),
        ("coco-stuff-171", "coco/stuffthingmaps_detectron2/val2017"),
    ],
)
def test_missing_data_names_the_path_and_the_prepare_command(tmp_path, capsys, name, path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"name: r\noutput_dir: {tmp_path / 'runs'}\ndataset: {{plugin: {name}, root: {tmp_path / 'data'}}}\n"
        "proposals: ground-truth-masks\nclassifier: oracle\nfuser: clip-only\n"
    )
    assert main(["run", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "data" / path) in err
    assert f"ovframe prepare {name} --source" in err and f"docs/datasets/{name}.md" in err
