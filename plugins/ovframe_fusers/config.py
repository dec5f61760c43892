"""Fuser configs (light). Each quirk of the reference implementation is a named option."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ovframe import ComponentConfig

ProposalProbs = Literal["softmax-drop-no-object", "softmax-over-classes"]
InvalidRegions = Literal["clip-ones", "drop"]

PROPOSAL_PROBS_HELP = (
    "softmax-drop-no-object (reference): softmax over K+1 logits, then drop the no-object column "
    "(rows sum to < 1); softmax-over-classes: drop no-object, then softmax over K"
)


class ProposalOnlyConfig(ComponentConfig):
    """The proposal generator's own class opinion only (no CLIP): MaskFormer semantic fusion."""

    proposal_probs: ProposalProbs = Field("softmax-drop-no-object", description=PROPOSAL_PROBS_HELP)


class ClipOnlyConfig(ComponentConfig):
    """The region classifier's opinion only (the reference's λ <= 0 switch, named)."""

    invalid_regions: InvalidRegions = Field(
        "drop", description="proposals the classifier marked invalid: drop (contribute nothing) or clip-ones (p = 1 for every class)"
    )


class GeometricEnsembleConfig(ComponentConfig):
    """OVSeg's geometric ensemble p = p_proposal^(1-λ) · p_clip^λ, then MaskFormer semantic fusion."""

    lam: float = Field(0.7, ge=0.0, le=1.0, description="λ, the weight of the region classifier (ADE 0.7, PC 0.6, VOC 0.45)")
    proposal_probs: ProposalProbs = Field("softmax-drop-no-object", description=PROPOSAL_PROBS_HELP)
    invalid_regions: InvalidRegions = Field(
        "clip-ones", description="proposals the classifier marked invalid: clip-ones (reference: p_clip = 1, proposal opinion kept) or drop"
    )


class SeenUnseenEnsembleConfig(ComponentConfig):
    """Geometric ensemble with α for classes seen in proposal training and β for unseen (FC-CLIP, ODISE)."""

    alpha: float = Field(0.4, ge=0.0, le=1.0, description="CLIP weight for seen classes (FC-CLIP 0.4, ODISE 0.3)")
    beta: float = Field(0.8, ge=0.0, le=1.0, description="CLIP weight for unseen classes (FC-CLIP 0.8, ODISE 0.7)")
    proposal_probs: ProposalProbs = Field("softmax-drop-no-object", description=PROPOSAL_PROBS_HELP)
    invalid_regions: InvalidRegions = Field("clip-ones", description="as in geometric-ensemble")
