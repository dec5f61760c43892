"""Configs of the CLIP family (light: pydantic only, no torch).

The model keys (`model`, `pretrained`, `sha256`, `quick_gelu`) are the same for the text encoder and the
region classifiers, so a recipe can share them (YAML anchors, `extends`). A process loads each
(model, weights) pair once, however many components ask for it.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ovframe import ComponentConfig
from ovframe.config import TrainingConfig, strict_input

MODEL_HELP = (
    "an open_clip model name (ViT-B-16, ViT-L-14 ...) or a path to an open_clip model-config JSON "
    "(custom or tiny models; pkg://PACKAGE/rel/path for shipped files)"
)
PRETRAINED_HELP = (
    "an open_clip pretrained tag (openai, laion2b_s34b_b88k ...; needs the weights cached or a network), or a "
    "local checkpoint: .safetensors, or an open_clip / OpenAI-format .pt/.pth/.bin (read with weights_only=True; "
    "OVSeg's ovseg_clip_l_9a1909.pth and full OVSeg checkpoints are recognised)"
)
QUICK_GELU_HELP = (
    "activation of the towers: auto = as the pretrained tag says, QuickGELU for checkpoints recognised as "
    "OpenAI/OVSeg format, else the model config's own; true/false force it"
)


class ClipModelConfig(ComponentConfig):
    """The keys that name an open_clip model and its weights."""

    model: str = Field(description=MODEL_HELP)
    pretrained: str = Field(description=PRETRAINED_HELP)
    sha256: str | None = Field(None, description="sha256 of the weights file (checked before the run starts)")
    quick_gelu: Literal["auto"] | bool = Field("auto", description=QUICK_GELU_HELP)
    allow_torchscript: bool = Field(
        False,
        description="read `pretrained` when it is a TorchScript archive (OpenAI's original .pt files); loading "
        "TorchScript runs code stored in the file, so only for files you trust (or convert them to safetensors)",
    )


class ClipTextConfig(ClipModelConfig):
    """CLIP text encoder: prompt-ensembled class embeddings, cached on disk per (model, templates, class name)."""

    templates: Literal["vild", "imagenet", "single"] | list[str] = Field(
        "vild",
        description="prompt templates: vild (the 14 of ViLD/OVSeg), imagenet (CLIP's 80), single ('a photo of a {}.'), "
        "or a list of strings with one {} each",
    )
    synonyms: Literal["as-is", "average"] = Field(
        "as-is",
        description="class names holding synonyms ('road, route'): as-is puts the whole string in each template "
        "(the reference); average embeds each synonym and averages them",
    )
    cache: bool = Field(True, description="keep embeddings on disk and reuse them")
    cache_dir: str | None = Field(
        None, description="where the cache lives (default: $OVFRAME_CACHE_DIR/text, else ~/.cache/ovframe/text)"
    )
    batch_size: int = Field(256, ge=1, description="prompts per text-tower forward")


class MaskedCropConfig(ClipModelConfig):
    """CLIP on masked region crops (OVSeg): box of the thresholded mask, background filled, resized to CLIP's input."""

    adapter_family = "clip"

    mask_thr: float = Field(
        0.5, gt=0.0, lt=1.0, description="sigmoid(mask) above this is the region (reference: 0.4 Swin-B, 0.5 R101c, 0.35 demo)"
    )
    expand_ratio: float = Field(1.0, gt=0.0, description="scale of the tight box about its centre (1.0: none)")
    fill: Literal["mean", "zero"] = Field("mean", description="background pixels: mean (255 x CLIP mean) or zero")
    temperature: float = Field(100.0, gt=0.0, description="logits = temperature x cosine similarity")
    chunk_size: int = Field(64, ge=1, description="regions per image-tower forward (bounds memory)")


class BackgroundCropConfig(ClipModelConfig):
    """CLIP on region boxes with the background kept (the paper's ablation: worse than masking)."""

    adapter_family = "clip"

    mask_thr: float = Field(0.5, gt=0.0, lt=1.0, description="sigmoid(mask) above this is the region")
    expand_ratio: float = Field(1.0, gt=0.0, description="scale of the tight box about its centre (1.0: none)")
    temperature: float = Field(100.0, gt=0.0, description="logits = temperature x cosine similarity")
    chunk_size: int = Field(64, ge=1, description="regions per image-tower forward (bounds memory)")


class MaskPromptConfig(ComponentConfig):
    """Mask prompt tuning: learnable tokens replace the patches that are entirely background."""

    adapter_family = "clip"

    depth: int = Field(3, ge=1, description="number of layers whose masked patch tokens are replaced (1 = input only)")
    shared: bool = Field(False, description="one token per layer for all patches ([depth, 1, width]) instead of one per patch")
    init_std: float = Field(0.02, gt=0.0, description="std of the normal initialisation of new prompts")
    weights: str | None = Field(
        None,
        description="prompts trained by train-adapter (.safetensors); without it, prompts come from the classifier's "
        "checkpoint when it carries visual.mask_embedding (OVSeg), else are freshly initialised (to train)",
    )
    sha256: str | None = None


class FullFinetuneConfig(ComponentConfig):
    """Full fine-tuning: the whole image tower is trained (the text tower stays frozen)."""

    adapter_family = "clip"

    weights: str | None = Field(None, description="image-tower weights trained by train-adapter (.safetensors)")
    sha256: str | None = None


class MaskPromptFinetuneConfig(ComponentConfig):
    """MPT+FT: mask prompts on top of a fully fine-tuned image tower (only the prompts are trained)."""

    adapter_family = "clip"

    depth: int = Field(3, ge=1, description="layers whose masked patch tokens are replaced")
    shared: bool = Field(False, description="one token per layer for all patches")
    init_std: float = Field(0.02, gt=0.0)
    finetuned: str | None = Field(
        None, description="image-tower weights of a full-finetune run to start from (.safetensors)"
    )
    finetuned_sha256: str | None = None
    weights: str | None = Field(
        None, description="the result of training mpt+ft (.safetensors holding the image tower and the prompts)"
    )
    sha256: str | None = None


class SegmentPairs(BaseModel):
    """One pair per ground-truth segment of the recipe's dataset (the paper's manual-label baseline)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    source: Literal["segments"] = "segments"
    min_pixels: int = Field(1, ge=1, description="skip segments smaller than this")
    seen_only: bool = Field(True, description="when the vocabulary marks seen classes, never train on an unseen one")
    _strict = field_validator("min_pixels", "seen_only", mode="before")(strict_input)  # (not on `source`: the tag)


class JsonlPairs(BaseModel):
    """Pairs listed in a JSONL file, one {"image" | "sample_index", "mask", "noun"} object a line."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    source: Literal["jsonl"]
    path: str = Field(description="the JSONL file; relative paths inside it are relative to its folder")
    sha256: str | None = None
    _strict = field_validator("path", "sha256", mode="before")(strict_input)


class MinedPairs(BaseModel):
    """Pairs written by a mine-pairs run: sharded JSONL, masks as COCO RLE (docs/mining.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    source: Literal["mined-pairs"]
    path: str = Field(description="a mine-pairs run folder, its pairs/ folder, or one shard-*.jsonl file")
    min_score: float = Field(0.0, ge=0.0, le=1.0, description="use only pairs whose mining score is at least this")


PairSource = Annotated[Union[SegmentPairs, JsonlPairs, MinedPairs], Field(discriminator="source")]


class TrainAdapterConfig(TrainingConfig):
    """Train the recipe's adapter on (image, mask, class name) pairs with CLIP's contrastive loss (text frozen)."""

    pairs: PairSource | list[PairSource] = Field(
        default_factory=SegmentPairs, description="where the pairs come from; a list trains on all its sources together"
    )
    steps: int | None = Field(None, ge=1, description="optimizer steps in all (default: from epochs)")
    epochs: float | None = Field(5.0, gt=0, description="passes over the pairs (the paper: 5), used when steps is not given")
    batch_size: int = Field(256, ge=1, description="global batch (the paper: 256), split across processes")
    lr: float | None = Field(None, gt=0, description="default: the adapter's (MPT 2e-2, FT 5e-6)")
    weight_decay: float | None = Field(None, ge=0, description="default: the adapter's (MPT 0, FT 0.2)")
    schedule: Literal["poly", "cosine", "constant"] = "cosine"
    workers: int = Field(0, ge=0, description="background processes that load and crop the pairs")

    @property
    def needs_sections(self) -> tuple[str, ...]:  # type: ignore[override]
        """The adapter, its CLIP classifier and text encoder; the dataset too when pairs are its segments."""
        sources = self.pairs if isinstance(self.pairs, list) else [self.pairs]
        return ("classifier", "adapter", "text_encoder") + (("dataset",) if any(s.source == "segments" for s in sources) else ())
