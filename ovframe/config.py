"""Base of every component's Config (light: pydantic only, importable without torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ComponentConfig(BaseModel):
    """Parameters of a component, validated from its recipe section.

    Unknown keys are rejected; instances are frozen so that a built component cannot drift from the
    recipe that describes it. Subclasses document each field (the docs and `ovframe plugins --json`
    show them).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class TrainingConfig(ComponentConfig):
    """Options every training task shares (ovframe.training.Trainer reads them). Tasks subclass it and
    override the defaults with their method's hyper-parameters."""

    steps: int = Field(1000, ge=1, description="optimizer steps in all")
    batch_size: int = Field(8, ge=1, description="global batch size (split across processes under torchrun)")
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: Literal["poly", "cosine", "constant"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    warmup_factor: float = Field(0.001, ge=0, le=1, description="lr multiplier at step 0 of the warm-up")
    poly_power: float = Field(0.9, gt=0)
    grad_clip: float | None = Field(None, gt=0, description="max global gradient norm (None: no clipping)")
    amp: Literal["none", "bf16", "fp16"] = Field("none", description="mixed precision")
    checkpoint_every: int = Field(200, ge=1, description="steps between checkpoints (resume points)")
    keep_checkpoints: int = Field(2, ge=1)
    log_every: int = Field(10, ge=1, description="steps between lines of loss.jsonl")
