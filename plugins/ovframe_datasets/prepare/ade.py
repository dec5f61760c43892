"""ADE20K preparations.

ADE-150 (ADEChallengeData2016.zip): annotations/<split>/*.png hold 0 = "other" and 1..150; the
detectron2 label is annotation - 1 in uint8, so 0 becomes 255 (ignore). Images are copied as they are.
Validation only unless asked (`--split train`): OVSeg evaluates on it and trains on COCO-Stuff.

ADE-847 (ADE20K_2021_17_01.zip): images/ADE/<split>/<scene>/.../ADE_val_XXXXXXXX.jpg with a colour-coded
ADE_val_XXXXXXXX_seg.png beside it, whose object class is R/10*256 + G (integer division). Each class
of the 847 list (classes/ade20k-847.ids.txt) becomes its index; every other value 65535 (ignore).
Images whose short side is over 512 are resized to 512 (long side round(long/short*512), Python's
round): the image bilinearly (OpenCV INTER_LINEAR semantics: half-pixel centres, no antialiasing,
equal up to rounding), the label with OpenCV's INTER_NEAREST rule (source index floor(i*src/dst)).
Labels are written as uint16 TIFF, images re-encoded as JPEG with Pillow's defaults, as the
reference does. The split comes from the file name (ADE_val_* is validation, anything else training).
index_ade20k.pkl is never read: nothing is unpickled.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from ovframe import BadInput
from ovframe.io import atomic_path

from ..classes import class_ids
from ..labels import IGNORE_16BIT, write_label
from ..sources import Source
from .common import SPLIT_FOLDERS, by_stem, copy_images, decode_indices, missing, progress, stem_of, wanted_splits

ADE150_EXPECTED = "the official ADEChallengeData2016.zip (http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip) or the folder it unpacks to"
ADE847_EXPECTED = "the official ADE20K_2021_17_01.zip (https://ade20k.csail.mit.edu/) or the folder it unpacks to"
MAX_SHORT_SIDE = 512


def ade150_label(annotation: np.ndarray, name: str = "") -> np.ndarray:
    """The detectron2 label of an ADEChallengeData2016 annotation: value - 1, 0 -> 255."""
    if annotation.size and int(annotation.max()) > 150:
        raise BadInput(f"{name}: annotation values up to {int(annotation.max())}; ADE-150 has 0..150")
    return (annotation.astype(np.int16) - 1).astype(np.uint8)  # -1 wraps to 255


def prepare_ade150(src: Source, root: Path, splits: str | list[str] | None = None) -> dict[str, int]:
    chosen = wanted_splits(splits, ("val",), ("val", "train"))
    out = root / "ADEChallengeData2016"
    counts = {"labels": 0, "images copied": 0}
    for split in chosen:
        folder = SPLIT_FOLDERS[split]
        labels = src.find(rf"(^|/)annotations/{folder}/[^/]+\.png$")
        if not labels:
            raise missing(f"annotations/{folder}/*.png", src, ADE150_EXPECTED)
        images = by_stem(src.find(rf"(^|/)images/{folder}/[^/]+\.jpg$"))
        label_dir = out / "annotations_detectron2" / folder
        todo = [n for n in labels if not (label_dir / f"{stem_of(n)}.png").exists()]
        for name, data in progress(src.read_many(todo), len(todo), f"ade20k-150 {split} labels"):
            write_label(label_dir / f"{stem_of(name)}.png", ade150_label(decode_indices(data, name), name))
            counts["labels"] += 1
        image_dir = out / "images" / folder
        stems = [stem_of(n) for n in labels]
        absent = [s for s in stems if s not in images and not (image_dir / f"{s}.jpg").exists()]
        if absent:
            raise missing(f"{len(absent)} {folder} image(s) such as images/{folder}/{absent[0]}.jpg", src, ADE150_EXPECTED)
        wanted = {s: images[s] for s in stems if s in images}
        counts["images copied"] += copy_images(src, wanted, image_dir, f"ade20k-150 {split} images")
    return counts


def resized_size(height: int, width: int, max_size: int = MAX_SHORT_SIDE) -> tuple[int, int] | None:
    """(new height, new width) when the short side exceeds max_size, else None (the reference's rule)."""
    if width >= height > max_size:
        return max_size, round(width / float(height) * max_size)
    if height >= width > max_size:
        return round(height / float(width) * max_size), max_size
    return None


def resize_nearest(label: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """OpenCV INTER_NEAREST: output pixel i takes source pixel floor(i * (1 / (dst / src))), in doubles
    as OpenCV computes it (torch's float32 "nearest" differs at rare exact boundaries)."""
    (h, w), (nh, nw) = label.shape, size
    rows = np.minimum(np.floor(np.arange(nh) * (1.0 / (nh / h))).astype(np.int64), h - 1)
    cols = np.minimum(np.floor(np.arange(nw) * (1.0 / (nw / w))).astype(np.int64), w - 1)
    return label[rows[:, None], cols[None, :]]


def resize_bilinear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [H, W, 3] -> [h, w, 3], bilinear with half-pixel centres and no antialiasing (INTER_LINEAR)."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)[None].float()
    y = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=False)
    return y[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def ade847_class_map(seg_rgb: np.ndarray) -> np.ndarray:
    """int32 [H, W] object class of an ADE20K_2021 *_seg.png: R/10*256 + G."""
    r = seg_rgb[..., 0].astype(np.int32)
    g = seg_rgb[..., 1].astype(np.int32)
    return (r // 10) * 256 + g


def ade847_label(class_map: np.ndarray) -> np.ndarray:
    """uint16 [H, W]: index in the 847 list, 65535 elsewhere."""
    lut = np.full(max(int(class_map.max(initial=0)), max(class_ids("ade20k-847"))) + 1, IGNORE_16BIT, dtype=np.uint16)
    lut[list(class_ids("ade20k-847"))] = np.arange(847, dtype=np.uint16)
    return lut[class_map]


def convert_ade847(image_bytes: bytes, seg_bytes: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The (image uint8 [h, w, 3], label uint16 [h, w]) of one ADE20K_2021 image, resized as the reference."""
    try:
        with Image.open(io.BytesIO(image_bytes)) as im:
            image = np.asarray(im.convert("RGB"))
        with Image.open(io.BytesIO(seg_bytes)) as im:
            seg = np.asarray(im.convert("RGB"))
    except Exception as e:
        raise BadInput(f"{name}: cannot decode ({e}); the download may be corrupt") from None
    if seg.shape[:2] != image.shape[:2]:
        raise BadInput(f"{name}: segmentation {seg.shape[:2]} and image {image.shape[:2]} differ in size")
    classes = ade847_class_map(seg)
    size = resized_size(*image.shape[:2])
    if size is not None:
        image = resize_bilinear(image, size)
        classes = resize_nearest(classes, size)
    return image, ade847_label(classes)


def prepare_ade847(src: Source, root: Path, splits: str | list[str] | None = None) -> dict[str, int]:
    chosen = wanted_splits(splits, ("val",), ("val", "train"))
    segs = src.find(r"(^|/)ADE_[A-Za-z]+_[^/]*_seg\.png$")
    if not segs:
        raise missing("images/ADE/.../ADE_*_seg.png", src, ADE847_EXPECTED)
    out = root / "ADE20K_2021_17_01"
    counts = {"labels": 0, "images": 0}
    for split in chosen:
        folder = SPLIT_FOLDERS[split]
        mine = [n for n in segs if ("val" if n.rsplit("/", 1)[-1].split("_")[1] == "val" else "train") == split]
        if not mine:
            raise missing(f"{folder} segmentations (ADE_{'val' if split == 'val' else 'train'}_*_seg.png)", src, ADE847_EXPECTED)
        for seg_name in progress(mine, len(mine), f"ade20k-847 {split}"):
            stem = stem_of(seg_name)[: -len("_seg")]
            image_name = seg_name[: -len("_seg.png")] + ".jpg"
            image_out = out / "images_detectron2" / folder / f"{stem}.jpg"
            label_out = out / "annotations_detectron2" / folder / f"{stem}.tif"
            if image_out.exists() and label_out.exists():
                continue
            try:
                image_bytes = src.read(image_name)
            except KeyError:
                raise missing(f"the image {image_name} of {seg_name}", src, ADE847_EXPECTED) from None
            image, label = convert_ade847(image_bytes, src.read(seg_name), seg_name)
            with atomic_path(image_out) as tmp:
                Image.fromarray(image).save(tmp, format="JPEG")
            write_label(label_out, label)
            counts["labels"] += 1
            counts["images"] += 1
    return counts
