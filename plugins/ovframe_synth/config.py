"""Configs of the synthetic benchmark's components (light: pydantic only)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from ovframe import ComponentConfig
from ovframe.config import TrainingConfig

DEFAULT_IMAGES = {"train": 100_000, "val": 200}


class SynthDatasetConfig(ComponentConfig):
    """The synthetic open-vocabulary benchmark: procedural scenes generated on the fly, with dense labels and captions.

    Sample i of a split under a seed is always the same image (nothing is read from disk). The train
    split is the proposal-training view: by default unseen-class pixels are IGNORE_INDEX and the
    vocabulary holds the seen classes only; the val split is labelled with all 40 classes.
    """

    split: Literal["train", "val"] = Field("val", description="train and val never share an image")
    num_images: int | None = Field(
        None, ge=1, description=f"images in the split (default: train {DEFAULT_IMAGES['train']}, val {DEFAULT_IMAGES['val']})"
    )
    seed: int = Field(0, ge=0, description="the world's seed; another seed gives other images of the same world")
    image_size: int = Field(128, ge=32, le=1024, description="square images of this many pixels a side")
    labels: Literal["all", "seen", "none"] | None = Field(
        None,
        description="all: every class labelled (40-class vocabulary); seen: unseen-class pixels are ignore and the "
        "vocabulary holds the seen classes only (proposal training); none: no labels (caption pretraining). "
        "Default: seen for train, all for val. train with all is refused: no training may see unseen labels",
    )
    captions: int = Field(5, ge=0, le=20, description="captions per image, in sample.meta['captions']")
    objects: tuple[int, int] = Field((2, 6), description="fewest and most objects per image")
    object_size: tuple[float, float] = Field(
        (0.06, 0.24), description="nominal object size (about sqrt(area / 2)) as a fraction of the image side, min and max"
    )

    closeups: float = Field(
        0.0, ge=0.0, le=1.0,
        description="share of images showing one large object (12-26 % of the image) instead of 2-6, as object-centric "
        "web photos do; for caption pretraining (the benchmark itself keeps 0)",
    )

    cutouts: float = Field(
        0.0, ge=0.0, le=1.0,
        description="share of images that are object photos: one object cut out on a plain grey backdrop, framed by "
        "its box and captioned by its name alone, as product photos on the web are; for caption pretraining "
        "(labels: the object, the backdrop ignore)",
    )

    analysis: bool = Field(
        False,
        description="allow labels: all on the train split, for measurements that never train on the labels (the "
        "precision of pairs mined from the training captions); a training recipe must never set it",
    )

    twins: bool = Field(
        False,
        description="images come in twins (indices 2k, 2k+1): the same picture with every object's shape changed, "
        "colours, places and background kept; hard negatives for caption pretraining (with pretrain-clip's keep_together: 2)",
    )

    @model_validator(mode="before")
    @classmethod
    def _defaults_by_split(cls, data: Any) -> Any:
        if isinstance(data, dict):
            split = data.get("split", "val")  # any value: the field's own check reports a wrong one
            if data.get("labels") is None:
                data = {**data, "labels": "seen" if split == "train" else "all"}
            if data.get("num_images") is None and isinstance(split, str) and split in DEFAULT_IMAGES:
                data = {**data, "num_images": DEFAULT_IMAGES[split]}
        return data

    @model_validator(mode="after")
    def _check(self) -> "SynthDatasetConfig":
        if self.split == "train" and self.labels == "all" and not self.analysis:
            raise ValueError(
                "labels: all is refused for split: train, because no training may use unseen-class labels; "
                "use labels: seen (proposal training), labels: none (caption pretraining), or split: val "
                "(analysis: true allows it for measurements that never train, such as mined-pair precision)"
            )
        lo, hi = self.objects
        if not 1 <= lo <= hi <= 12:
            raise ValueError(f"objects must be [min, max] with 1 <= min <= max <= 12, got {list(self.objects)}")
        a, b = self.object_size
        if not 0.02 <= a <= b <= 0.4:
            raise ValueError(f"object_size must be [min, max] with 0.02 <= min <= max <= 0.4, got {list(self.object_size)}")
        return self


class SynthExportConfig(ComponentConfig):
    """Write the recipe's dataset to the `folder` layout: images/, labels/, classes.txt, seen.txt, captions.jsonl.

    Works for any dataset; captions.jsonl is written when samples carry meta['captions']. Re-running
    resumes: images and labels already written are kept.
    """

    needs_sections = ("dataset",)
    root: str = Field(description="output folder (created); ROOT/images/<id>.png, ROOT/labels/<id>.png ...")
    max_images: int | None = Field(None, ge=1, description="export only the first N images of the dataset")
    workers: int = Field(0, ge=0, description="background processes that generate/load samples")


class PretrainClipConfig(TrainingConfig):
    """Pretrain a CLIP from scratch on the dataset's image-caption pairs (open_clip model from a config, CLIP's contrastive loss).

    The recipe's `dataset:` gives the images and sample.meta['captions'] (labels are never read); the
    model is an open_clip CLIP built from `model`. Writes clip.json + clip.safetensors to the run folder,
    the files ovframe's CLIP components load, and measures zero-shot region accuracy on `eval_dataset`.
    """

    needs_sections = ("dataset",)

    model: dict[str, Any] | str = Field(
        description="open_clip model config {embed_dim, vision_cfg, text_cfg} inline, or the path of such a JSON"
    )
    steps: int = Field(2000, ge=1)
    batch_size: int = Field(256, ge=2, description="global batch of image-caption pairs (the contrastive negatives)")
    lr: float = Field(5e-4, gt=0)
    weight_decay: float = Field(0.1, ge=0, description="not applied to gains, biases, embeddings and the logit scale")
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = Field(100, ge=0)
    grad_clip: float | None = Field(1.0, gt=0)
    caption: Literal["random", "first"] = Field(
        "random", description="which caption of an image a step uses: a random one (seeded by step) or the first"
    )
    workers: int = Field(0, ge=0, description="background processes that generate/load the batches")
    keep_together: int = Field(
        1, ge=1, description="shuffle blocks of this many consecutive images, so that they share a batch (2 with synth twins)"
    )
    mean: tuple[float, float, float] = Field((0.48145466, 0.4578275, 0.40821073), description="pixel mean (0..1), written to clip.json")
    std: tuple[float, float, float] = Field((0.26862954, 0.26130258, 0.27577711), description="pixel std (0..1), written to clip.json")
    save_dtype: Literal["float32", "float16"] = Field("float32", description="dtype of clip.safetensors (float16 halves it)")
    eval_dataset: dict[str, Any] | None = Field(
        default_factory=lambda: {"plugin": "synth", "split": "val"},
        description="a labelled dataset section for the zero-shot region accuracy at the end (null: none)",
    )
    eval_images: int = Field(100, ge=1, description="images of eval_dataset used")
    eval_template: str = Field("a photo of a {}.", description="prompt of the zero-shot evaluation (one {})")
