"""MaskFormer configs (light: pydantic only). Defaults are the reference's Swin-B setting (reference/ovseg.md);
the R101c setting differs where noted in each description."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from ovframe import ComponentConfig
from ovframe.config import TrainingConfig

SWIN_ARGS = {"embed_dim": 128, "depths": [2, 2, 18, 2], "num_heads": [4, 8, 16, 32], "window_size": 12,
             "patch_size": 4, "mlp_ratio": 4.0, "patch_norm": True}
RESNET_ARGS = {"depth": 101, "stem": "deeplab", "stem_out_channels": 128, "res2_out_channels": 256, "width_per_group": 64,
               "num_groups": 1, "stride_in_1x1": False, "res4_dilation": 1, "res5_dilation": 1, "res5_multi_grid": [1, 2, 4]}
D2_BACKBONES: dict[str, tuple[str, dict[str, Any]]] = {
    # name: (family, the arguments that differ from the family's table above); MaskFormer's configs
    "d2-swin-t": ("swin", {"embed_dim": 96, "depths": [2, 2, 6, 2], "num_heads": [3, 6, 12, 24], "window_size": 7}),
    "d2-swin-s": ("swin", {"embed_dim": 96, "num_heads": [3, 6, 12, 24], "window_size": 7}),
    "d2-swin-b": ("swin", {}),  # OVSeg's Swin-B (ImageNet-22K 384 init, window 12)
    "d2-swin-l": ("swin", {"embed_dim": 192, "num_heads": [6, 12, 24, 48]}),
    "d2-r50": ("resnet", {"depth": 50, "stem": "basic", "stem_out_channels": 64, "res5_multi_grid": [1, 1, 1]}),
    "d2-r101": ("resnet", {"stem": "basic", "stem_out_channels": 64, "res5_multi_grid": [1, 1, 1]}),
    "d2-r101c": ("resnet", {}),  # OVSeg's R101c: DeepLab stem (3 convs, 128), res5 multi-grid 1, 2, 4
}
"""The detectron2-exact backbones of this plugin (swin.py, resnet.py); any other `backbone` name is a timm model."""


def d2_backbone_args(name: str, overrides: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(family, full argument dict) of a d2 backbone preset with the recipe's overrides applied."""
    family, preset = D2_BACKBONES[name]
    return family, {**(SWIN_ARGS if family == "swin" else RESNET_ARGS), **preset, **overrides}


ARCHITECTURE_KEYS = (
    "backbone", "backbone_args", "out_indices", "out_norm", "backbone_norm", "conv_dim", "mask_dim", "hidden_dim",
    "num_queries", "dec_layers", "nheads", "dim_feedforward", "pre_norm", "embed_dim", "embed_hidden_dim",
    "embed_layers", "temperature",
)
"""The keys that change the network's parameters or outputs; stored in trained weights and compared on load."""


class MaskFormerConfig(ComponentConfig):
    """MaskFormer with OVSeg's open-vocabulary class head: mask proposals plus class logits against any vocabulary."""

    # -- architecture -------------------------------------------------------------------------
    backbone: str = Field(
        "d2-swin-b",
        description="d2-swin-b, d2-swin-l, d2-swin-s, d2-swin-t, d2-r50, d2-r101, d2-r101c: the detectron2 backbones of "
        "MaskFormer/OVSeg, computed exactly (d2-swin-b and d2-r101c are OVSeg's); any other name is a timm model used "
        "through features_only (resnet10t, resnet50, swin_tiny_patch4_window7_224 ...)",
    )
    backbone_args: dict[str, Any] = Field(
        default_factory=dict,
        description="d2 backbones only: changes to the preset's numbers, e.g. {embed_dim: 32, num_heads: [1, 2, 4, 8]} "
        f"(Swin: {', '.join(SWIN_ARGS)}; ResNet: {', '.join(RESNET_ARGS)})",
    )
    backbone_pretrained: str | bool = Field(
        False,
        description="false: random init; or a local file of ImageNet weights for the backbone, never downloaded: d2 Swin: "
        "the official Swin release (.pth, {'model': ...}) or its safetensors; d2 ResNet: a detectron2-layout state dict "
        "(.pth/.safetensors; a .pkl of NumPy arrays is not read); timm: that model's timm weights",
    )
    backbone_drop_path: float = Field(
        0.3, ge=0.0, lt=1.0, description="stochastic depth of the d2 Swin blocks, rising linearly to this (training only; the reference's 0.3)"
    )
    backbone_freeze_at: int | None = Field(
        None, ge=0, le=5,
        description="detectron2's FREEZE_AT for d2 ResNets: 1 freezes the stem, k > 1 also res2..res{k} (training only); "
        "None: 2, the released R101c config's (detectron2's default)",
    )
    out_indices: tuple[int, ...] = Field(
        (0, 1, 2, 3), description="backbone stages fed to the FPN, highest resolution first (0 = stride 4; timm ResNets: (1, 2, 3, 4))"
    )
    out_norm: bool | None = Field(
        None,
        description="LayerNorm on each backbone output (Swin for dense prediction: `norm{i}`); None: from the weights file when "
        "there is one, else on for Swin and other NHWC (transformer) backbones, off for ResNets",
    )
    backbone_norm: Literal["frozen", "train"] = Field(
        "frozen", description="BatchNorm layers of the backbone: frozen (detectron2's FrozenBN, the reference) or trained"
    )
    conv_dim: int = Field(256, ge=8, description="channels of the FPN pixel decoder")
    mask_dim: int = Field(256, ge=8, description="channels of the per-pixel mask embeddings")
    hidden_dim: int = Field(256, ge=8, description="transformer decoder width")
    num_queries: int = Field(100, ge=1, description="queries = mask proposals per image")
    dec_layers: int = Field(6, ge=1, description="transformer decoder layers (each one is supervised)")
    nheads: int = Field(8, ge=1)
    dim_feedforward: int = Field(2048, ge=8)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    pre_norm: bool = False
    embed_dim: int | None = Field(
        None, description="CLIP joint-embedding dimension of the class head (512 ViT-B/16, 768 ViT-L/14); None: from the weights, else the text embeddings"
    )
    embed_hidden_dim: int = Field(1024, ge=8, description="hidden width of the class-embedding MLP")
    embed_layers: int = Field(2, ge=1, description="layers of the class-embedding MLP")
    temperature: float = Field(100.0, gt=0, description="logit scale of the cosine similarities (fixed at 100 in the reference)")
    # -- test-time input -------------------------------------------------------------------------
    test_short_side: int | None = Field(
        640, ge=32, description="resize the short side to this before the network (R101c: 512); None: keep the image size"
    )
    test_max_size: int = Field(2560, ge=32, description="cap of the long side after resizing (R101c: 2048)")
    size_divisibility: int = Field(32, ge=1, description="pad the network input to a multiple of this")
    batch_padding: Literal["per-image", "shared"] = Field(
        "per-image",
        description="per-image (reference): each image padded to its own multiple of size_divisibility, only images of "
        "the same padded size share a forward pass, so results do not depend on the batch; shared: one tensor padded "
        "to the batch's largest image (fewer passes for mixed sizes; the extra padding changes results near borders)",
    )
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    # -- weights -------------------------------------------------------------------------------------
    weights: str | None = Field(
        None,
        description="trained weights (safetensors from train-proposals or the converter; pkg:// allowed); None only for training",
    )
    sha256: str | None = Field(None, description="sha256 of the weights file")

    @model_validator(mode="after")
    def _known_backbone_args(self) -> "MaskFormerConfig":
        if self.backbone not in D2_BACKBONES:
            if self.backbone_args:
                raise ValueError(f"backbone_args are for the d2 backbones ({', '.join(D2_BACKBONES)}), not the timm model {self.backbone!r}")
            return self
        family, _ = D2_BACKBONES[self.backbone]
        allowed = SWIN_ARGS if family == "swin" else RESNET_ARGS
        unknown = sorted(set(self.backbone_args) - set(allowed))
        if unknown:
            raise ValueError(f"backbone_args of {self.backbone}: unknown {unknown}; known: {', '.join(allowed)}")
        if family == "resnet" and self.out_norm:
            raise ValueError(f"out_norm is for Swin backbones; {self.backbone} has no LayerNorm on its outputs (leave it unset)")
        return self

    def resolved_backbone_args(self) -> dict[str, Any]:
        """The full argument dict of a d2 backbone (preset + overrides); {} for timm backbones."""
        return d2_backbone_args(self.backbone, self.backbone_args)[1] if self.backbone in D2_BACKBONES else {}

    def resolved_out_norm(self) -> bool | None:
        """out_norm as the d2 backbones resolve `None` (Swin: on, ResNet: off); None stays for timm (decided by its output format)."""
        if self.out_norm is None and self.backbone in D2_BACKBONES:
            return D2_BACKBONES[self.backbone][0] == "swin"
        return self.out_norm

    def architecture(self) -> dict[str, Any]:
        """The architecture keys, with what the config alone decides resolved (d2 backbone arguments, out_norm)."""
        arch = {k: getattr(self, k) for k in ARCHITECTURE_KEYS}
        arch["backbone_args"] = self.resolved_backbone_args()
        arch["out_norm"] = self.resolved_out_norm()
        return arch


class TrainProposalsConfig(TrainingConfig):
    """Train the recipe's `proposals: maskformer` on the dataset's seen classes (Hungarian matching, CE + focal + dice)."""

    needs_sections = ("dataset", "proposals", "text_encoder")
    trains = ("proposals",)

    # optimisation: the reference's Swin-B setting (R101c: lr 2e-4, weight_decay 1e-4, backbone_lr_multiplier 0.1)
    steps: int = Field(120_000, ge=1, description="optimizer steps in all")
    batch_size: int = Field(32, ge=1, description="global batch size (split across processes under torchrun)")
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(6e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    schedule: Literal["poly", "cosine", "constant"] = "poly"
    warmup_steps: int = Field(1500, ge=0)
    warmup_factor: float = Field(1e-6, ge=0, le=1)
    poly_power: float = Field(0.9, gt=0)
    grad_clip: float | None = Field(0.01, gt=0, description="max gradient norm over the full model")
    checkpoint_every: int = Field(5000, ge=1)
    log_every: int = Field(20, ge=1)
    backbone_lr_multiplier: float = Field(1.0, gt=0, description="lr multiplier of the backbone (R101c: 0.1)")
    weight_decay_norm: float = Field(0.0, ge=0, description="weight decay of normalisation layers")
    weight_decay_embed: float = Field(0.0, ge=0, description="weight decay of embeddings (queries, Swin position tables)")
    # loss and matching
    no_object_weight: float = Field(0.1, ge=0, description="cross-entropy weight of the no-object class")
    class_weight: float = Field(1.0, ge=0, description="weight of the classification loss and matching cost")
    mask_weight: float = Field(20.0, ge=0, description="weight of the sigmoid focal loss and matching cost")
    dice_weight: float = Field(1.0, ge=0, description="weight of the dice loss and matching cost")
    deep_supervision: bool = Field(True, description="apply the loss to every decoder layer")
    ignore_pixels: Literal["negative", "excluded"] = Field(
        "negative",
        description="ignore-label pixels (unseen classes, padding): negative counts them as background of every target "
        "mask (detectron2's MaskFormer, the reference); excluded leaves them out of the mask losses and matching costs",
    )
    # data
    crop_size: int = Field(640, ge=16, description="square training crop (R101c: 512)")
    min_size_train: list[int] | None = Field(
        None, description="short sides to choose from; None: int(x * 0.1 * crop_size) for x in 5..20 (320-1280 at 640)"
    )
    max_size_train: int | None = Field(None, description="cap of the long side; None: 4 x crop_size")
    single_category_max_area: float = Field(1.0, gt=0, le=1, description="retry crops where one class covers more than this")
    color_aug: bool = Field(True, description="SSD colour augmentation (brightness, contrast, saturation, hue)")
    flip: bool = Field(True, description="random horizontal flip")
    weights_name: str = Field("maskformer.safetensors", description="file name of the final weights in the run directory")
    save_dtype: Literal["float32", "float16"] = Field("float32", description="dtype of the final weights (float16 halves the file; loads into float32)")
