"""The fusers. Formulas (reference/ovseg.md):

    p_proposal = softmax(class_logits)[:, :K]        (no-object column dropped after the softmax)
    p          = p_proposal^(1-λ) · p_clip^λ          (λ per class: α seen, β unseen in the seen/unseen variant)
                 rows without a class opinion (NaN class_logits, from a `union`; every row when the
                 generator is class-agnostic, e.g. SAM): p = p_clip (λ = 1), as clip-only fuses them
    semseg[k]  = Σ_q p[q, k] · sigmoid(mask_logits[q])  then argmax over k (no background, no threshold)

semseg is computed at the proposals' resolution; with an output size (the image's size when the pipeline
test-resized it), it is resized bilinearly to it before the argmax, as the reference does.
"""

from __future__ import annotations

import logging
from typing import Sequence

import torch

from ovframe import Fuser, Proposals, RegionScores, Segmentation, Vocabulary

from .config import ClipOnlyConfig, GeometricEnsembleConfig, ProposalOnlyConfig, SeenUnseenEnsembleConfig

log = logging.getLogger("ovframe")


def proposal_probs(class_logits: torch.Tensor, mode: str) -> torch.Tensor:
    """[N, K+1] logits -> [N, K] probabilities."""
    if mode == "softmax-drop-no-object":
        return class_logits.float().softmax(dim=-1)[:, :-1]
    if mode == "softmax-over-classes":
        return class_logits.float()[:, :-1].softmax(dim=-1)
    raise ValueError(f"unknown proposal_probs mode {mode!r}")


def opinion(proposals: Proposals, mode: str, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The generator's class opinion: probabilities [N, K] (zero rows where it has none) and has_classes [N]."""
    has = proposals.has_classes
    if proposals.class_logits is None:
        return torch.zeros(len(proposals), k, device=has.device), has
    logits = torch.where(has[:, None], proposals.class_logits, torch.zeros_like(proposals.class_logits))
    return proposal_probs(logits, mode) * has[:, None], has


def semantic_fusion(
    probs: torch.Tensor, mask_logits: torch.Tensor, output_size: tuple[int, int] | None = None
) -> Segmentation:
    """probs [N, K], mask_logits [N, h, w] -> Segmentation with scores [K, H, W] at output_size (default (h, w))."""
    scores = torch.einsum("qk,qhw->khw", probs.float(), mask_logits.float().sigmoid())
    return Segmentation.from_scores(scores, output_size)


def _sizes(proposals: Sequence[Proposals], output_sizes: Sequence[tuple[int, int]] | None) -> list:
    if output_sizes is None:
        return [None] * len(proposals)
    if len(output_sizes) != len(proposals):
        raise ValueError(f"{len(output_sizes)} output sizes for {len(proposals)} images")
    return list(output_sizes)


def geometric_ensemble(
    p_proposal: torch.Tensor, scores: RegionScores, clip_weight: torch.Tensor, invalid_regions: str,
    has_classes: torch.Tensor | None = None,
) -> torch.Tensor:
    """p_proposal [N, K], clip_weight [K] (λ per class) -> [N, K]. Rows where has_classes [N] is False
    carry no proposal opinion: their λ is 1 (p = p_clip) and their p_proposal is not read."""
    valid = scores.valid.to(p_proposal.device)[:, None]
    p_clip = torch.where(valid, scores.probs.float().to(p_proposal.device), torch.ones_like(p_proposal))
    w = clip_weight.to(p_proposal).expand_as(p_proposal)
    if has_classes is not None:
        has = has_classes.to(p_proposal.device)[:, None]
        w = torch.where(has, w, torch.ones_like(w))
        p_proposal = torch.where(has, p_proposal, torch.ones_like(p_proposal))
    fused = p_proposal.pow(1.0 - w) * p_clip.pow(w)
    if invalid_regions == "drop":
        fused = fused * valid
    return fused


def _check(proposals: Sequence[Proposals], scores: Sequence[RegionScores] | None, k: int, need_scores: bool) -> None:
    if need_scores and (scores is None or len(scores) != len(proposals)):
        raise ValueError("this fuser needs one RegionScores per image")
    for i, p in enumerate(proposals):
        if scores is not None and scores[i].probs.shape != (len(p), k):
            raise ValueError(f"image {i}: region scores {tuple(scores[i].probs.shape)} for {len(p)} proposals and {k} classes")


class ProposalOnly(Fuser):
    name = "proposal-only"
    Config = ProposalOnlyConfig
    needs_classifier = False

    def fuse(self, proposals, scores, vocabulary: Vocabulary, output_sizes=None) -> list[Segmentation]:
        out = []
        for p, size in zip(proposals, _sizes(proposals, output_sizes)):
            if p.class_logits is None:
                raise ValueError("proposal-only needs class logits from the proposal generator")
            probs, _ = opinion(p, self.config.proposal_probs, len(vocabulary))  # rows without a class opinion contribute nothing
            out.append(semantic_fusion(probs, p.mask_logits, size))
        return out


class ClipOnly(Fuser):
    name = "clip-only"
    Config = ClipOnlyConfig
    needs_proposal_classes = False

    def fuse(self, proposals, scores, vocabulary: Vocabulary, output_sizes=None) -> list[Segmentation]:
        _check(proposals, scores, len(vocabulary), True)
        out = []
        for p, s, size in zip(proposals, scores, _sizes(proposals, output_sizes)):
            valid = s.valid.to(s.probs.device)[:, None]
            fill = 1.0 if self.config.invalid_regions == "clip-ones" else 0.0
            probs = torch.where(valid, s.probs.float(), torch.full_like(s.probs, fill, dtype=torch.float32))
            out.append(semantic_fusion(probs.to(p.mask_logits.device), p.mask_logits, size))
        return out


class GeometricEnsemble(Fuser):
    """Class-agnostic proposals (SAM) are accepted: every row then has no proposal opinion (p = p_clip)."""

    name = "geometric-ensemble"
    Config = GeometricEnsembleConfig
    needs_proposal_classes = False

    _told = False

    def clip_weights(self, vocabulary: Vocabulary) -> torch.Tensor:
        return torch.full((len(vocabulary),), float(self.config.lam))

    def fuse(self, proposals, scores, vocabulary: Vocabulary, output_sizes=None) -> list[Segmentation]:
        _check(proposals, scores, len(vocabulary), True)
        weights = self.clip_weights(vocabulary)
        out = []
        for p, s, size in zip(proposals, scores, _sizes(proposals, output_sizes)):
            if p.class_logits is None and not self._told:
                log.info("%s: the proposals carry no class opinion, so the classifier alone labels them (as clip-only)", self.name)
                self._told = True
            p_prop, has = opinion(p, self.config.proposal_probs, len(vocabulary))
            fused = geometric_ensemble(p_prop, s, weights, self.config.invalid_regions, has)
            out.append(semantic_fusion(fused.to(p.mask_logits.device), p.mask_logits, size))
        return out


class SeenUnseenEnsemble(GeometricEnsemble):
    name = "geometric-ensemble-seen-unseen"
    Config = SeenUnseenEnsembleConfig

    def clip_weights(self, vocabulary: Vocabulary) -> torch.Tensor:
        seen = vocabulary.seen_mask()
        if seen is None:
            raise ValueError(
                f"{self.name} needs to know which classes are seen: the dataset must mark them, or give "
                "vocabulary.seen in the recipe"
            )
        return torch.where(seen, torch.tensor(self.config.alpha), torch.tensor(self.config.beta))
