"""The class lists shipped as data files: the counts and a few known names, positions and ids of the
lists detectron2 / MaskFormer / OVSeg use."""

from __future__ import annotations

import pytest

from ovframe.files import resolve_path
from ovframe.runner import read_class_file
from ovframe_datasets.classes import class_file, class_ids, class_names

COUNTS = {
    "ade20k-150": 150,
    "ade20k-847": 847,
    "pascal-context-59": 59,
    "pascal-context-459": 459,
    "pascal-voc-20": 20,
    "coco-stuff-171": 171,
}


@pytest.mark.parametrize("name, count", COUNTS.items())
def test_counts_and_unique_names(name, count):
    names = class_names(name)
    assert len(names) == count and len(set(names)) == count
    # the file is a plain class-name file a recipe can name: vocabulary.file: pkg://ovframe_datasets/classes/<name>.txt
    assert read_class_file(resolve_path(f"pkg://ovframe_datasets/classes/{name}.txt")) == names
    assert class_file(name).is_file()


def test_ade150_is_detectrons_list_with_synonyms():
    names = class_names("ade20k-150")
    assert names[:7] == ("wall", "building", "sky", "floor", "tree", "ceiling", "road, route")
    assert names[8] == "window"  # detectron2 writes "window " (trailing space)
    assert names[12] == "person" and names[116] == "minibike, motorbike" and names[149] == "flag"
    assert names[65] == "toilet, can, commode, crapper, pot, potty, stool, throne"


def test_ade847_names_and_ade_ids():
    names, ids = class_names("ade20k-847"), class_ids("ade20k-847")
    assert len(ids) == 847 and len(set(ids)) == 847
    assert (names[0], ids[0]) == ("wall", 2978)
    assert (names[4], ids[4]) == ("road, route", 2131)
    assert (names[242], ids[242]) == ("magazine", 1485)
    assert (names[846], ids[846]) == ("adding machine, totalizer, totaliser", 3148)


def test_pascal_lists():
    voc = class_names("pascal-voc-20")
    assert voc[10] == "diningtable" and voc[15] == "pottedplant" and voc[19] == "tvmonitor"
    pc59, pc459 = class_names("pascal-context-59"), class_names("pascal-context-459")
    assert pc59[:3] == ("aeroplane", "bicycle", "bird") and pc59[10] == "table" and pc59[58] == "wood"
    assert pc59[41] == "curtain" and pc59[51] == "bedclothes"  # the 59_labels.txt order, not alphabetical
    assert set(pc59) <= set(pc459)
    assert pc459[0] == "accordion" and pc459[458] == "wool" and list(pc459) == sorted(pc459)  # labels.txt order


def test_coco_stuff_names_and_ids():
    names, ids = class_names("coco-stuff-171"), class_ids("coco-stuff-171")
    assert names[0] == "person" and names[79] == "toothbrush" and names[80] == "banner" and names[170] == "wood"
    assert ids[:12] == (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13) and ids[80] == 92 and ids[170] == 182
    assert set(range(1, 183)) - set(ids) == {12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91}
