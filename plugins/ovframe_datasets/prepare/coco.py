"""COCO-Stuff-171 preparation.

stuffthingmaps_trainval2017.zip holds train2017/*.png and val2017/*.png whose values are the COCO
category id - 1 (0..181; 255 unlabelled). The 171 ids in use (classes/coco-stuff-171.ids.txt; the
other 11 of the 182 were never annotated) become 0..170 in that order, everything else 255 (ignore).
Masks that are then all ignore are not written, as in the reference. Images come from the COCO
train2017.zip / val2017.zip and are copied beside them (coco/<split>2017/) unless already there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..classes import class_ids
from ..labels import IGNORE_8BIT, write_label
from ..sources import Source
from .common import by_stem, copy_images, decode_indices, missing, progress, stem_of, wanted_splits

COCO_EXPECTED = (
    "a folder holding stuffthingmaps_trainval2017.zip "
    "(http://calvin.inf.ed.ac.uk/wp-content/uploads/data/cocostuffdataset/stuffthingmaps_trainval2017.zip) and the COCO "
    "images val2017.zip / train2017.zip (http://images.cocodataset.org/zips/), or their unpacked folders"
)


def coco_lookup() -> np.ndarray:
    """stuffthingmaps value (category id - 1) -> 0..170, 255 for the rest."""
    lut = np.full(256, IGNORE_8BIT, dtype=np.uint8)
    for k, category in enumerate(class_ids("coco-stuff-171")):
        lut[category - 1] = k
    return lut


def prepare_coco_stuff(src: Source, root: Path, splits: str | list[str] | None = None) -> dict[str, int]:
    chosen = wanted_splits(splits, ("val", "train"), ("val", "train"))
    lut = coco_lookup()
    out = root / "coco"
    counts = {"labels": 0, "unlabelled skipped": 0, "images copied": 0}
    found_any = False
    for split in chosen:
        folder = f"{split}2017"
        masks = [n for n in src.find(rf"(^|/){folder}/[^/]+\.png$") if "_detectron2/" not in n]
        if not masks:
            if splits is not None:
                raise missing(f"stuffthingmaps {folder}/*.png", src, COCO_EXPECTED)
            continue
        found_any = True
        label_dir = out / "stuffthingmaps_detectron2" / folder
        image_dir = out / folder
        images = by_stem(src.find(rf"(^|/){folder}/[^/]+\.jpg$"))
        kept: list[str] = []
        for name, data in progress(src.read_many(masks), len(masks), f"coco-stuff-171 {split} labels"):
            stem = stem_of(name)
            dest = label_dir / f"{stem}.png"
            if dest.exists():
                kept.append(stem)
                continue
            label = lut[decode_indices(data, name)]
            if (label == IGNORE_8BIT).all():
                counts["unlabelled skipped"] += 1
                continue
            write_label(dest, label)
            kept.append(stem)
            counts["labels"] += 1
        absent = [s for s in kept if s not in images and not (image_dir / f"{s}.jpg").exists()]
        if absent:
            raise missing(f"{len(absent)} {folder} image(s) such as {folder}/{absent[0]}.jpg", src, COCO_EXPECTED)
        counts["images copied"] += copy_images(src, {s: images[s] for s in kept if s in images}, image_dir, f"coco {split} images")
    if not found_any:
        raise missing("stuffthingmaps val2017/*.png or train2017/*.png", src, COCO_EXPECTED)
    return counts
