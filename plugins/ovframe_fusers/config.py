"""Fuser configs (light). Each quirk of the reference implementation is a named option."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from ovframe import ComponentConfig
from ovframe.config import StrictModel

ProposalProbs = Literal["softmax-drop-no-object", "softmax-over-classes"]
InvalidRegions = Literal["clip-ones", "drop"]

PROPOSAL_PROBS_HELP = (
    "softmax-drop-no-object (reference): softmax over K+1 logits, then drop the no-object column "
    "(rows sum to < 1); softmax-over-classes: drop no-object, then softmax over K"
)


class SkipConfig(StrictModel):
    """Classify only the proposals that matter (docs/performance.md has the measured trade-off).

    Proposals are grouped: one whose binary mask (sigmoid > 0.5) overlaps a group leader's at IoU >=
    share_iou joins it and takes its region scores (leaders are taken greedily from the weightiest
    proposal down: mask area times the most the fuser lets it weigh; `leader: largest`: by area). A
    group gets no region opinion (it then adds nothing to the fused map) when its weighted masks are
    the strongest on at most min_top_area of the image, or its leader's mask covers less than
    min_area, or the leader's no-object probability is above max_no_object, or it is not among the
    top_k groups by objectness. Only the leader of each remaining group is classified. With certify
    (the default), every proposal left out that could still change a label is then classified after
    all, so the labels are exactly those of classifying everything; without it, the approximation
    above is the result."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)
    share_iou: Annotated[float, Field(gt=0.0, le=1.0)] | Literal[False] = Field(
        0.85, description="mask IoU at which a proposal reuses its group leader's region scores (false: never)"
    )
    leader: Literal["weightiest", "largest"] = Field(
        "weightiest",
        description="the member of a group that is classified and lends its scores: weightiest (largest mask area x the most it can weigh, p_proposal^(1-λ)) or largest (mask area)",
    )
    min_top_area: Annotated[float, Field(ge=0.0, lt=1.0)] | Literal[False] = Field(
        0.0005,
        description="groups that are the strongest mask on at most this fraction of the pixels get no region opinion (false: never)",
    )
    min_area: float | None = Field(None, ge=0.0, lt=1.0, description="groups whose mask covers less than this fraction of the image get none")
    max_no_object: float | None = Field(
        None, gt=0.0, le=1.0, description="groups whose no-object probability (from the proposal generator) is above this get none"
    )
    top_k: int | None = Field(None, ge=1, description="only the k groups the generator finds most object-like get one")
    certify: bool = Field(
        True, description="true: labels identical to classifying every proposal (skips only what is proven); false: the approximation"
    )


SKIP_HELP = "classify only the proposals that matter (null: all of them, the reference); {} is exact, {certify: false} measured"


class ProposalOnlyConfig(ComponentConfig):
    """The proposal generator's own class opinion only (no CLIP): MaskFormer semantic fusion."""

    needs_classifier = False

    proposal_probs: ProposalProbs = Field("softmax-drop-no-object", description=PROPOSAL_PROBS_HELP)


class ClipOnlyConfig(ComponentConfig):
    """The region classifier's opinion only (the reference's λ <= 0 switch, named)."""

    needs_proposal_classes = False

    invalid_regions: InvalidRegions = Field(
        "drop", description="proposals the classifier marked invalid: drop (contribute nothing) or clip-ones (p = 1 for every class)"
    )
    skip: SkipConfig | None = Field(None, description=SKIP_HELP)


class GeometricEnsembleConfig(ComponentConfig):
    """OVSeg's geometric ensemble p = p_proposal^(1-λ) · p_clip^λ, then MaskFormer semantic fusion."""

    needs_proposal_classes = False  # class-agnostic rows (SAM) have no proposal opinion: p = p_clip there

    lam: float = Field(0.7, ge=0.0, le=1.0, description="λ, the weight of the region classifier (ADE 0.7, PC 0.6, VOC 0.45)")
    proposal_probs: ProposalProbs = Field("softmax-drop-no-object", description=PROPOSAL_PROBS_HELP)
    invalid_regions: InvalidRegions = Field(
        "clip-ones", description="proposals the classifier marked invalid: clip-ones (reference: p_clip = 1, proposal opinion kept) or drop"
    )
    skip: SkipConfig | None = Field(None, description=SKIP_HELP)


class SeenUnseenEnsembleConfig(ComponentConfig):
    """Geometric ensemble with α for classes seen in proposal training and β for unseen (FC-CLIP, ODISE)."""

    needs_proposal_classes = False

    alpha: float = Field(0.4, ge=0.0, le=1.0, description="CLIP weight for seen classes (FC-CLIP 0.4, ODISE 0.3)")
    beta: float = Field(0.8, ge=0.0, le=1.0, description="CLIP weight for unseen classes (FC-CLIP 0.8, ODISE 0.7)")
    proposal_probs: ProposalProbs = Field("softmax-drop-no-object", description=PROPOSAL_PROBS_HELP)
    invalid_regions: InvalidRegions = Field("clip-ones", description="as in geometric-ensemble")
    skip: SkipConfig | None = Field(None, description=SKIP_HELP)
