"""Oracle configs (light)."""

from __future__ import annotations

from pydantic import Field

from ovframe import ComponentConfig


class GroundTruthMasksConfig(ComponentConfig):
    """One proposal per ground-truth class present in the image (needs labelled samples)."""

    needs_text = False
    needs_labels = True

    logit: float = Field(50.0, gt=0, description="mask logit inside (+) and outside (-) the region")


class OracleClassifierConfig(ComponentConfig):
    """Labels each proposal with the ground-truth class it overlaps most (an upper bound on classification)."""

    needs_text = False
    needs_labels = True

    mask_thr: float = Field(0.5, gt=0.0, lt=1.0, description="sigmoid(mask) above this is the region")
