"""Configs of the SAM family (light: pydantic only, no torch).

SAM's architecture facts (segment_anything.build_sam): every official model takes 1024 px inputs in
16 px patches, windowed attention (14) with four global blocks, a 256-d prompt space, a two-layer
two-way transformer decoder (MLP 2048, 8 heads) and three multimask outputs; they differ in the image
encoder only.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_serializer, field_validator, model_validator
from pydantic_core import InitErrorDetails

from ovframe import ComponentConfig
from ovframe.config import TrainingConfig

OFFICIAL_ENCODERS: dict[str, dict[str, Any]] = {
    "vit_b": {"encoder_embed_dim": 768, "encoder_depth": 12, "encoder_num_heads": 12, "encoder_global_attn_indexes": (2, 5, 8, 11)},
    "vit_l": {"encoder_embed_dim": 1024, "encoder_depth": 24, "encoder_num_heads": 16, "encoder_global_attn_indexes": (5, 11, 17, 23)},
    "vit_h": {"encoder_embed_dim": 1280, "encoder_depth": 32, "encoder_num_heads": 16, "encoder_global_attn_indexes": (7, 15, 23, 31)},
}

CHECKPOINT_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
OFFICIAL_CHECKPOINTS: dict[str, tuple[str, str]] = {
    # model type: (file name, sha256) of the released checkpoints (github.com/facebookresearch/segment-anything)
    "vit_h": ("sam_vit_h_4b8939.pth", "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e"),
    "vit_l": ("sam_vit_l_0b3195.pth", "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622"),
    "vit_b": ("sam_vit_b_01ec64.pth", "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912"),
}
HOW_TO_GET = (
    "an official SAM checkpoint: " + ", ".join(f"{m}: {CHECKPOINT_URL}{f}" for m, (f, _) in OFFICIAL_CHECKPOINTS.items())
    + " (docs/sam.md); for the synthetic world, the shipped small SAM pkg://ovframe_sam/weights/sam.safetensors"
    + " with its thresholds (recipes/synth/sam.yaml); or train one with `task: train-sam` (recipes/synth/train_sam.yaml)"
)


class SamArchitecture(BaseModel):
    """SAM's network, built from segment_anything's own modules. The defaults are the official ViT-B SAM;
    a custom (small) SAM changes what it needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    image_size: int = Field(1024, ge=16, description="the encoder's input side: the long side is resized to it, the short one padded")
    patch_size: int = Field(16, ge=1, description="ViT patch size; masks come out at 4x the patch grid")
    encoder_embed_dim: int = Field(768, ge=8)
    encoder_depth: int = Field(12, ge=1)
    encoder_num_heads: int = Field(12, ge=1)
    encoder_global_attn_indexes: tuple[int, ...] = Field((2, 5, 8, 11), description="blocks with global attention")
    window_size: int = Field(14, ge=0, description="window of the other blocks' attention (0: every block global)")
    mlp_ratio: float = Field(4.0, gt=0)
    prompt_embed_dim: int = Field(256, ge=8, description="width of the prompt space, the image embedding and the mask decoder")
    mask_in_chans: int = Field(16, ge=4, description="hidden channels of the mask-prompt encoder")
    decoder_depth: int = Field(2, ge=1, description="two-way transformer layers")
    decoder_mlp_dim: int = Field(2048, ge=8)
    decoder_num_heads: int = Field(8, ge=1)
    iou_head_depth: int = Field(3, ge=1)
    iou_head_hidden_dim: int = Field(256, ge=8)
    num_multimask_outputs: int = Field(3, ge=1)
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)

    @model_validator(mode="after")
    def _check(self) -> "SamArchitecture":
        problems = []
        if self.image_size % self.patch_size:
            problems.append(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.encoder_embed_dim % self.encoder_num_heads:
            problems.append(f"encoder_embed_dim {self.encoder_embed_dim} is not a multiple of encoder_num_heads {self.encoder_num_heads}")
        if any(not 0 <= i < self.encoder_depth for i in self.encoder_global_attn_indexes):
            problems.append(f"encoder_global_attn_indexes {list(self.encoder_global_attn_indexes)} must lie in 0..{self.encoder_depth - 1}")
        if self.prompt_embed_dim % 8:
            problems.append(f"prompt_embed_dim {self.prompt_embed_dim} must be a multiple of 8 (the decoder upscales to /4 and /8 channels)")
        if (self.prompt_embed_dim // 2) % self.decoder_num_heads:
            problems.append(f"prompt_embed_dim / 2 = {self.prompt_embed_dim // 2} must be a multiple of decoder_num_heads {self.decoder_num_heads}")
        if self.mask_in_chans % 4:
            problems.append(f"mask_in_chans {self.mask_in_chans} must be a multiple of 4")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def official_architecture(model_type: str) -> SamArchitecture:
    """The architecture of an official SAM (vit_b / vit_l / vit_h)."""
    return SamArchitecture(**OFFICIAL_ENCODERS[model_type])


ModelSpec = Literal["vit_b", "vit_l", "vit_h"] | SamArchitecture | None


class SamModelConfig(ComponentConfig):
    """The keys that name a SAM network and its weights (shared by the generator and train-sam)."""

    model: ModelSpec = Field(
        None,
        description="vit_b / vit_l / vit_h (the official SAMs), or a custom architecture {image_size, patch_size, "
        "encoder_embed_dim ...} (defaults: ViT-B); None: as the weights say (ovframe's safetensors record it; an "
        "official .pth is recognised by its shapes)",
    )
    weights: str | None = Field(
        None,
        description="an official checkpoint (sam_vit_h_4b8939.pth ..., read with weights_only=True) or safetensors "
        "(train-sam's; pkg:// allowed); None only for training from scratch",
    )
    sha256: str | None = Field(None, description="sha256 of the weights file (checked before the run starts)")

    @field_validator("model", mode="plain", json_schema_input_type=ModelSpec)
    @classmethod
    def _model(cls, value: Any) -> Any:
        """One error for what was written (a name or an architecture), not one per kind of value."""
        if value is None or isinstance(value, SamArchitecture):
            return value
        if isinstance(value, str) and value in OFFICIAL_ENCODERS:
            return value
        if isinstance(value, dict):
            return SamArchitecture.model_validate(value)
        raise ValueError("expected vit_b, vit_l, vit_h or an architecture mapping")

    @field_serializer("model")
    def _dump_model(self, value: Any) -> Any:
        return value.model_dump(mode="json") if isinstance(value, SamArchitecture) else value


class SamConfig(SamModelConfig):
    """SAM's automatic mask generator as class-agnostic proposals: a grid of point prompts, filtered by predicted IoU and stability, box NMS."""

    needs_text = False

    def cannot_segment(self) -> str | None:
        if self.weights is None:
            return f"sam has no `weights:` to segment with; set them to {HOW_TO_GET}"
        return None

    points_per_side: int = Field(32, ge=1, description="point prompts along each side of the image (points_per_side^2 in all)")
    points_per_batch: int = Field(64, ge=1, description="point prompts per mask-decoder call (memory: each carries a copy of the image embedding)")
    pred_iou_thresh: float = Field(0.88, ge=0.0, le=1.0, description="keep masks whose predicted IoU is above this (0: keep all)")
    stability_score_thresh: float = Field(0.95, ge=0.0, le=1.0, description="keep masks whose stability score is at least this (0: keep all)")
    stability_score_offset: float = Field(1.0, ge=0.0, description="logit offset of the stability score (IoU of the masks at +offset and -offset)")
    box_nms_thresh: float = Field(0.7, gt=0.0, le=1.0, description="box IoU above which the mask with lower predicted IoU is dropped")
    crop_n_layers: int = Field(0, ge=0, le=4, description="also run on crops: layer i cuts the image into (2^i)^2 crops")
    crop_nms_thresh: float = Field(0.7, gt=0.0, le=1.0, description="box NMS between crops (masks of smaller crops preferred)")
    crop_overlap_ratio: float = Field(512 / 1500, ge=0.0, lt=1.0, description="overlap of neighbouring crops, as a fraction of the short side")
    crop_n_points_downscale_factor: int = Field(1, ge=1, description="points per side in crop layer i: points_per_side / factor^i")
    min_mask_region_area: int = Field(0, ge=0, description="fill holes and remove islands smaller than this many pixels (0: off)")
    max_proposals: int | None = Field(100, ge=1, description="keep at most this many masks, highest predicted IoU first (None: all)")
    mask_logits: Literal["upsampled", "binary"] = Field(
        "upsampled",
        description="upsampled: SAM's low-resolution mask logits upsampled to the image as SAM itself does (logit 0 = "
        "SAM's mask boundary, so a classifier's mask_thr 0.5 gives SAM's own masks); binary: +-binary_logit",
    )
    binary_logit: float = Field(20.0, gt=0.0, description="logit of binary masks, and of pixels the small-region clean-up changed")
    image_batch: int = Field(8, ge=1, description="images (and crops) per image-encoder call")
    upsample_batch: int = Field(64, ge=1, description="masks upsampled to the image size at a time (bounds memory)")
    generator: Literal["batched", "package"] = Field(
        "batched",
        description="batched: ovframe's generator (images batched through the encoder, masks upsampled only after the "
        "IoU filter and in bounded chunks, no RLE round trip); package: segment_anything's SamAutomaticMaskGenerator "
        "as is, one image at a time (binary masks only; min_mask_region_area needs opencv)",
    )


class UnionConfig(ComponentConfig):
    """Concatenates the proposals of other generators, e.g. SAM + MaskFormer; rows of class-agnostic members carry no class opinion."""

    members: list[dict[str, Any]] = Field(
        min_length=1,
        description="proposal sections {plugin: NAME, ...options}, each validated by its own generator; their proposals "
        "are concatenated in this order",
    )

    @field_validator("members")
    @classmethod
    def _validate_members(cls, members: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from ovframe import get_registry

        registry = get_registry()
        out, errors = [], []
        for i, member in enumerate(members):
            options = dict(member)
            plugin = options.pop("plugin", None)
            if plugin not in registry.components["proposals"]:
                message = registry.unknown_message("proposals", str(plugin)) if plugin else "a member needs `plugin: NAME`"
                errors.append(InitErrorDetails(type="value_error", loc=(i, "plugin"), input=plugin, ctx={"error": message}))
                continue
            spec = registry.get("proposals", plugin)
            try:
                config = spec.config.model_validate(options)
            except ValidationError as e:
                for err in e.errors():
                    errors.append(InitErrorDetails(type=err["type"], loc=(i, *err["loc"]), input=err.get("input"), ctx=err.get("ctx", {})))
                continue
            out.append({"plugin": plugin, **config.model_dump(mode="json")})
        if errors:
            raise ValidationError.from_exception_data("union members", errors)
        return out

    def member_configs(self) -> list[ComponentConfig]:
        from ovframe import get_registry

        registry = get_registry()
        out = []
        for member in self.members:
            options = dict(member)
            out.append(registry.get("proposals", options.pop("plugin")).config.model_validate(options))
        return out

    @property
    def needs_text(self) -> bool:  # type: ignore[override]
        """When a member does (its proposals then carry class logits)."""
        return any(c.needs_text for c in self.member_configs())

    @property
    def needs_labels(self) -> bool:  # type: ignore[override]
        return any(c.needs_labels for c in self.member_configs())

    def cannot_segment(self) -> str | None:
        reasons = [f"member {i}: {r}" for i, c in enumerate(self.member_configs()) if (r := c.cannot_segment())]
        return "; ".join(reasons) or None


class TrainSamConfig(TrainingConfig):
    """Train the recipe's `proposals: sam` on prompts sampled from ground-truth segments (points and boxes, multimask output, iterative correction points), as the SAM paper does."""

    needs_sections = ("dataset", "proposals")
    trains = ("proposals",)

    steps: int = Field(2000, ge=1)
    batch_size: int = Field(16, ge=1, description="images per step (global, split across processes)")
    lr: float = Field(8e-4, gt=0, description="the SAM paper's AdamW lr")
    weight_decay: float = Field(0.1, ge=0, description="the SAM paper's (not applied to gains, biases, embeddings)")
    warmup_steps: int = Field(100, ge=0)
    schedule: Literal["poly", "cosine", "constant"] = "cosine"
    grad_clip: float | None = Field(1.0, gt=0)
    checkpoint_every: int = Field(250, ge=1)
    log_every: int = Field(20, ge=1)
    masks_per_image: int = Field(8, ge=1, description="ground-truth segments prompted per image and step (fewer when the image has fewer)")
    segments: Literal["components", "classes"] = Field(
        "components", description="a segment is a connected part of one class's region (components) or the whole region (classes)"
    )
    min_segment_area: int = Field(16, ge=1, description="segments smaller than this many pixels are not prompted")
    box_prob: float = Field(0.5, ge=0.0, le=1.0, description="chance that the first prompt is the segment's box rather than a point in it")
    box_noise: float = Field(0.1, ge=0.0, description="std of the box-corner noise, as a fraction of the box side (at most 20 px)")
    iterations: int = Field(
        3, ge=1,
        description="prompting rounds: round 1 is the first point or box; each later round adds a point in the error "
        "region of the previous mask (positive where it missed, negative where it spilled) and feeds the previous "
        "mask logits back, single-mask output (the paper uses 11)",
    )
    focal_weight: float = Field(20.0, ge=0, description="the paper's 20:1 focal to dice ratio")
    dice_weight: float = Field(1.0, ge=0)
    iou_weight: float = Field(1.0, ge=0, description="weight of the IoU-prediction MSE")
    freeze_image_encoder: bool = Field(False, description="train only the prompt encoder and mask decoder (fine-tuning official weights)")
    workers: int = Field(0, ge=0, description="background processes that make the batches")
    weights_name: str = Field("sam.safetensors", description="file name of the final weights in the run directory")
    save_dtype: Literal["float32", "float16"] = Field("float32", description="dtype of the final weights (float16 halves the file)")
    eval_dataset: dict[str, Any] | None = Field(
        default_factory=lambda: {"plugin": "synth", "split": "val"},
        description="a labelled dataset section on which the trained SAM is measured at the end (null: none)",
    )
    eval_images: int = Field(50, ge=1, description="images of eval_dataset measured")
