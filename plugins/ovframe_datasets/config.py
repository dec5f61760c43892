"""Dataset configs (light: pydantic only, no torch)."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field

from ovframe import ComponentConfig

ROOT_ENV = "DETECTRON2_DATASETS"


def default_root() -> str:
    """$DETECTRON2_DATASETS, else ./datasets (detectron2's convention, so prepared data is shared)."""
    return os.environ.get(ROOT_ENV) or "datasets"


ROOT_HELP = "datasets root holding the detectron2-style layout (default: $DETECTRON2_DATASETS, else ./datasets)"


class _StandardConfig(ComponentConfig):
    root: str = Field(default_factory=default_root, description=ROOT_HELP)


class Ade150Config(_StandardConfig):
    """ADE20K-150 (SceneParsing, ADEChallengeData2016): 150 classes, 2,000 validation images."""

    split: Literal["val", "train"] = Field("val", description="val (2,000 images) or train (20,210)")


class Ade847Config(_StandardConfig):
    """ADE20K-Full (ADE20K_2021_17_01): 847 classes, 2,000 validation images, short side <= 512."""

    split: Literal["val", "train"] = Field("val", description="val (2,000 images) or train")


class PascalContext59Config(_StandardConfig):
    """Pascal Context (VOC2010): 59 classes, 5,105 validation images."""

    split: Literal["val"] = Field("val", description="val (5,105 images)")


class PascalContext459Config(_StandardConfig):
    """Pascal Context (VOC2010): all 459 classes, 5,105 validation images, uint16 TIFF labels."""

    split: Literal["val"] = Field("val", description="val (5,105 images)")


class PascalVoc20Config(_StandardConfig):
    """Pascal VOC 2012: 20 classes, background ignored, 1,449 validation images (less background-only ones)."""

    split: Literal["val"] = Field("val", description="val")


class CocoStuff171Config(_StandardConfig):
    """COCO-Stuff-164k: 171 classes (80 things, 91 stuff); train2017 trains proposals, val2017 evaluates."""

    split: Literal["val", "train"] = Field("val", description="val (val2017, 5,000 images) or train (train2017, 118K)")


class FolderConfig(ComponentConfig):
    """Your own data: ROOT/images/<id>.<jpg|png|...>, ROOT/labels/<id>.png, ROOT/classes.txt (+ optional seen.txt)."""

    root: str = Field(description="the folder holding images/, labels/ and classes.txt")
    split: str | None = Field(
        None, description="optional sub-folder of root with its own images/ and labels/ (e.g. val); class files are looked for there, then in root"
    )
    classes: str | None = Field(None, description="class-name file, one name per line in label order (default: classes.txt)")
    seen: str | None = Field(
        None, description="file naming the classes seen in proposal training, one per line (default: seen.txt when present)"
    )
