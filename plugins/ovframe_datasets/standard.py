"""The five open-vocabulary benchmarks (and COCO-Stuff), read from the detectron2-prepared layouts.

Each dataset indexes the label files of its split (sorted by name) and pairs each with the image of
the same stem, as detectron2's load_sem_seg does: so PC-59 reads the 5,105 labelled images of a
JPEGImages folder that holds all of VOC2010. `ovframe prepare NAME --source DOWNLOAD` makes the layout.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

from ovframe import BadInput, Dataset, RequiredFile, Sample, SampleError, Vocabulary
from ovframe.images import read_image

from . import config as cfg
from .classes import class_names
from .labels import read_label


class StandardDataset(Dataset):
    """A detectron2-layout dataset: `layout` maps each split to (image folder, label folder) under root."""

    title: ClassVar[str]
    layout: ClassVar[dict[str, tuple[str, str]]]
    label_suffix: ClassVar[str] = ".png"
    image_suffix: ClassVar[str] = ".jpg"
    source_hint: ClassVar[str]  # the --source argument, as the user's download is named
    download: ClassVar[str]  # what that is and where it comes from

    def __init__(self, config: Any):
        super().__init__(config)
        self.image_dir, self.label_dir = self.folders(config)
        if not self.label_dir.is_dir():
            raise BadInput(f"{self.label_dir}: no such folder ({self.how_to_get(config)})")
        self._ids = sorted(
            entry.name[: -len(self.label_suffix)]
            for entry in os.scandir(self.label_dir)
            if entry.name.endswith(self.label_suffix) and not entry.name.startswith(".")
        )
        if not self._ids:
            raise BadInput(f"{self.label_dir} holds no *{self.label_suffix} label files ({self.how_to_get(config)})")
        self._vocabulary = Vocabulary(class_names(self.name))

    @classmethod
    def folders(cls, config: Any) -> tuple[Path, Path]:
        images, labels = cls.layout[config.split]
        root = Path(os.path.expanduser(config.root))
        return root / images, root / labels

    @classmethod
    def how_to_get(cls, config: Any) -> str:
        return (
            f"make it with `ovframe prepare {cls.name} --source {cls.source_hint} --root {config.root}`, "
            f"{cls.source_hint} being {cls.download}; see docs/datasets/{cls.name}.md"
        )

    @classmethod
    def required_files(cls, config: Any) -> list[RequiredFile]:
        image_dir, label_dir = cls.folders(config)
        how = cls.how_to_get(config)
        return [
            RequiredFile(str(image_dir), f"{cls.title} {config.split} images", how),
            RequiredFile(str(label_dir), f"{cls.title} {config.split} labels (detectron2 layout)", how),
        ]

    @property
    def vocabulary(self) -> Vocabulary:
        return self._vocabulary

    def __len__(self) -> int:
        return len(self._ids)

    def sample_id(self, index: int) -> str:
        return self._ids[index]

    def __getitem__(self, index: int) -> Sample:
        sample_id = self._ids[index]
        image_path = self.image_dir / f"{sample_id}{self.image_suffix}"
        label_path = self.label_dir / f"{sample_id}{self.label_suffix}"
        if not image_path.is_file():
            raise SampleError(sample_id, f"image {image_path} is missing (its label {label_path} is there)")
        image = read_image(image_path, sample_id)
        label = read_label(label_path, len(self._vocabulary), sample_id)
        if tuple(label.shape) != tuple(image.shape[1:]):
            raise SampleError(
                sample_id, f"label {label_path} is {tuple(label.shape)} but image {image_path} is {tuple(image.shape[1:])}"
            )
        return Sample(image, label, sample_id, {"image": str(image_path), "label": str(label_path)})

    @classmethod
    def prepare(cls, source: str, root: str, **options: Any) -> None:
        from .prepare import run_prepare

        run_prepare(cls.name, source, root, **options)


class Ade150(StandardDataset):
    name = "ade20k-150"
    Config = cfg.Ade150Config
    title = "ADE20K-150"
    layout = {
        "val": ("ADEChallengeData2016/images/validation", "ADEChallengeData2016/annotations_detectron2/validation"),
        "train": ("ADEChallengeData2016/images/training", "ADEChallengeData2016/annotations_detectron2/training"),
    }
    source_hint = "ADEChallengeData2016.zip"
    download = "the official http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip"


class Ade847(StandardDataset):
    name = "ade20k-847"
    Config = cfg.Ade847Config
    title = "ADE20K-847"
    layout = {
        "val": ("ADE20K_2021_17_01/images_detectron2/validation", "ADE20K_2021_17_01/annotations_detectron2/validation"),
        "train": ("ADE20K_2021_17_01/images_detectron2/training", "ADE20K_2021_17_01/annotations_detectron2/training"),
    }
    label_suffix = ".tif"
    source_hint = "ADE20K_2021_17_01.zip"
    download = "the official ADE20K full dataset from https://ade20k.csail.mit.edu/ (free registration)"


class PascalContext59(StandardDataset):
    name = "pascal-context-59"
    Config = cfg.PascalContext59Config
    title = "Pascal Context 59"
    layout = {"val": ("VOCdevkit/VOC2010/JPEGImages", "VOCdevkit/VOC2010/annotations_detectron2/pc59_val")}
    source_hint = "DOWNLOADS"
    download = (
        "a folder holding http://host.robots.ox.ac.uk/pascal/VOC/voc2010/VOCtrainval_03-May-2010.tar and "
        "https://cs.stanford.edu/~roozbeh/pascal-context/trainval.tar.gz"
    )


class PascalContext459(PascalContext59):
    name = "pascal-context-459"
    Config = cfg.PascalContext459Config
    title = "Pascal Context 459"
    layout = {"val": ("VOCdevkit/VOC2010/JPEGImages", "VOCdevkit/VOC2010/annotations_detectron2/pc459_val")}
    label_suffix = ".tif"


class PascalVoc20(StandardDataset):
    name = "pascal-voc-20"
    Config = cfg.PascalVoc20Config
    title = "Pascal VOC 20"
    layout = {"val": ("VOCdevkit/VOC2012/JPEGImages", "VOCdevkit/VOC2012/annotations_detectron2/val")}
    source_hint = "VOCtrainval_11-May-2012.tar"
    download = "the official http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"


class CocoStuff171(StandardDataset):
    name = "coco-stuff-171"
    Config = cfg.CocoStuff171Config
    title = "COCO-Stuff-171"
    layout = {
        "val": ("coco/val2017", "coco/stuffthingmaps_detectron2/val2017"),
        "train": ("coco/train2017", "coco/stuffthingmaps_detectron2/train2017"),
    }
    source_hint = "DOWNLOADS"
    download = (
        "a folder holding http://calvin.inf.ed.ac.uk/wp-content/uploads/data/cocostuffdataset/stuffthingmaps_trainval2017.zip "
        "and http://images.cocodataset.org/zips/val2017.zip (and train2017.zip for training)"
    )
