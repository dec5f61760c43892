"""Configs of the core tasks (light: no torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..config import DEFAULT_MAX_IMAGE_PIXELS, ComponentConfig

MAX_PIXELS_HELP = (
    "the most pixels an image may have (default 4096 x 4096); memory grows with them. Larger images are {}"
)


class EvaluateConfig(ComponentConfig):
    """Segment every image of the dataset and score it: mIoU, fwIoU, mACC, pACC, per class, seen/unseen."""

    needs_sections = ("dataset", "proposals", "fuser")
    runs_pipeline = True

    batch_size: int = Field(1, ge=1, description="images per pipeline call")
    max_images: int | None = Field(None, ge=1, description="evaluate only the first N images of the dataset")
    count: Literal["gt-or-pred", "gt"] = Field(
        "gt-or-pred", description="classes averaged in mIoU: present in ground truth or prediction, or in ground truth"
    )
    save_every: float = Field(20.0, gt=0, description="seconds between saves of the resume state")
    visualize: int = Field(0, ge=0, description="write overlay PNGs of the first N images to overlays/")
    workers: int | Literal["auto"] = Field(
        "auto",
        description="background processes that read images ahead while the pipeline works (2 batches each); "
        "auto: one per spare CPU core, at most 4; 0: read in the main process",
    )
    max_image_pixels: int = Field(
        DEFAULT_MAX_IMAGE_PIXELS, ge=1, description=MAX_PIXELS_HELP.format("listed in failures.csv and skipped")
    )


class PredictConfig(ComponentConfig):
    """Segment the user's own images with the recipe's vocabulary; write overlays, label PNGs and JSON."""

    needs_sections = ("proposals", "fuser")
    runs_pipeline = True
    labelled_samples = False

    inputs: list[str] = Field(min_length=1, description="image files and/or folders of images")
    batch_size: int = Field(2, ge=1, description="images per pipeline call (bounds memory)")
    others: bool = Field(
        True, description='append an "others" class to a one-class vocabulary (as the reference does)'
    )
    outputs: list[Literal["overlay", "label", "json"]] = Field(
        default_factory=lambda: ["overlay", "label", "json"], description="what to write per image"
    )
    max_image_pixels: int = Field(
        DEFAULT_MAX_IMAGE_PIXELS, ge=1, description=MAX_PIXELS_HELP.format("shrunk to fit (aspect kept) before segmentation")
    )
