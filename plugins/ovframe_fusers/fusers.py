"""The fusers. Formulas (reference/ovseg.md):

    p_proposal = softmax(class_logits)[:, :K]        (no-object column dropped after the softmax)
    p          = p_proposal^(1-λ) · p_clip^λ          (λ per class: α seen, β unseen in the seen/unseen variant)
                 rows without a class opinion (NaN class_logits, from a `union`; every row when the
                 generator is class-agnostic, e.g. SAM): p = p_clip (λ = 1), as clip-only fuses them
    semseg[k]  = Σ_q p[q, k] · sigmoid(mask_logits[q])  then argmax over k (no background, no threshold)

Each fuser turns its inputs into per-proposal class weights p [N, K]; `fusion.fuse_masks` computes
semseg at the proposals' resolution class chunk by class chunk, resizes each chunk (bilinear) to the
output size when one is given (the image's size when the pipeline test-resized it, as the reference
does) and keeps a running argmax, so memory does not grow with K.

With `skip`, the fusers that use a region classifier also say which proposals it must look at
(`select_regions`, see selection.py) and, to keep the labels exact, which of those left out could
still change a label (`unproven`): while a proposal's region score is unknown its weight lies in
[low, high], the weights for p_clip = 0 and p_clip = 1.
"""

from __future__ import annotations

import logging
from typing import Sequence

import torch

from ovframe import Fuser, Proposals, RegionScores, RegionSelection, Segmentation, Vocabulary

from .config import ClipOnlyConfig, GeometricEnsembleConfig, ProposalOnlyConfig, SeenUnseenEnsembleConfig
from .fusion import certify, fuse_masks, soft_masks
from .selection import select

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
    probs: torch.Tensor, mask_logits: torch.Tensor, output_size: tuple[int, int] | None = None, return_scores: bool = True
) -> Segmentation:
    """probs [N, K], mask_logits [N, h, w] -> Segmentation at output_size (default (h, w)), with its
    scores [K, H, W] when asked."""
    labels, scores, confidence = fuse_masks(probs, mask_logits, output_size, return_scores)
    return Segmentation(labels=labels, scores=scores, confidence=confidence)


def _sizes(proposals: Sequence[Proposals], output_sizes: Sequence[tuple[int, int]] | None) -> list:
    if output_sizes is None:
        return [None] * len(proposals)
    if len(output_sizes) != len(proposals):
        raise ValueError(f"{len(output_sizes)} output sizes for {len(proposals)} images")
    return list(output_sizes)


def clip_weights_per_row(clip_weight: torch.Tensor, has_classes: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """λ [K] -> [N, K]: 1 on the rows without a proposal opinion."""
    w = clip_weight.to(like).expand_as(like)
    if has_classes is not None:
        w = torch.where(has_classes.to(like.device)[:, None], w, torch.ones_like(w))
    return w


def geometric_ensemble(
    p_proposal: torch.Tensor, scores: RegionScores, clip_weight: torch.Tensor, invalid_regions: str,
    has_classes: torch.Tensor | None = None,
) -> torch.Tensor:
    """p_proposal [N, K], clip_weight [K] (λ per class) -> [N, K]. Rows where has_classes [N] is False
    carry no proposal opinion: their λ is 1 (p = p_clip) and their p_proposal is not read."""
    valid = scores.valid.to(p_proposal.device)[:, None]
    p_clip = torch.where(valid, scores.probs.float().to(p_proposal.device), torch.ones_like(p_proposal))
    w = clip_weights_per_row(clip_weight, has_classes, p_proposal)
    if has_classes is not None:
        p_proposal = torch.where(has_classes.to(p_proposal.device)[:, None], p_proposal, torch.ones_like(p_proposal))
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


class RegionFuser(Fuser):
    """A fuser of region classifier opinions: weights from scores, and their bounds while scores are unknown."""

    def weights(self, proposals: Proposals, scores: RegionScores, vocabulary: Vocabulary) -> torch.Tensor:
        """float [N, K]: each proposal's weight per class in the fused map."""
        raise NotImplementedError

    def bounds(self, proposals: Proposals, vocabulary: Vocabulary) -> tuple[torch.Tensor, torch.Tensor]:
        """float [N, K] low, high: the weights' range over every possible region score (p_clip in [0, 1],
        or the proposal found invalid)."""
        raise NotImplementedError

    def fuse(self, proposals, scores, vocabulary: Vocabulary, output_sizes=None, *, return_scores: bool = False) -> list[Segmentation]:
        _check(proposals, scores, len(vocabulary), True)
        return [
            semantic_fusion(self.weights(p, s, vocabulary), p.mask_logits, size, return_scores)
            for p, s, size in zip(proposals, scores, _sizes(proposals, output_sizes))
        ]

    def select_regions(self, proposals, vocabulary: Vocabulary) -> list[RegionSelection] | None:
        skip = getattr(self.config, "skip", None)
        if skip is None:
            return None
        return [select(p, self.bounds(p, vocabulary)[1].amax(dim=1), skip) for p in proposals]

    def unproven(self, proposals, scores, selections, vocabulary: Vocabulary, output_sizes=None) -> list[torch.Tensor]:
        out = []
        for p, s, sel, size in zip(proposals, scores, selections, _sizes(proposals, output_sizes)):
            known = sel.classify.to(p.mask_logits.device)
            if bool(known.all()):
                out.append(torch.zeros_like(known))
                continue
            low, high = self.bounds(p, vocabulary)
            weights = self.weights(p, s, vocabulary)
            low = torch.where(known[:, None], weights, low)
            high = torch.where(known[:, None], weights, high)
            uncertain = ~certify(known, low, high, p.mask_logits, size)
            if not bool(uncertain.any()):
                out.append(torch.zeros_like(known))
                continue
            # the unknown proposal that can move each uncertain pixel most (at the proposals'
            # resolution, the pixels that the output resize reads) is classified next
            slack = soft_masks(p.mask_logits)[:, _near(uncertain, p.mask_logits.shape[1:]).flatten()]
            slack = slack * torch.where(known, 0.0, (high - low).amax(dim=1))[:, None]
            top = slack.argmax(dim=0)[slack.amax(dim=0) > 0]
            out.append(torch.zeros_like(known).index_fill_(0, top.unique(), True))
        return out


def _near(uncertain: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """bool [H, W] at the output size -> bool [h, w]: the input pixels a bilinear resize reads for them."""
    if tuple(uncertain.shape) == tuple(size):
        return uncertain
    import torch.nn.functional as F

    # a pixel is read by an output pixel within one input pixel of it: pool the (upsampled) mask
    small = F.interpolate(uncertain[None, None].float(), size=tuple(size), mode="area")[0, 0] > 0
    return F.max_pool2d(small[None, None].float(), 3, stride=1, padding=1)[0, 0] > 0


class ProposalOnly(Fuser):
    name = "proposal-only"
    Config = ProposalOnlyConfig

    def fuse(self, proposals, scores, vocabulary: Vocabulary, output_sizes=None, *, return_scores: bool = False) -> list[Segmentation]:
        out = []
        for p, size in zip(proposals, _sizes(proposals, output_sizes)):
            if p.class_logits is None:
                raise ValueError("proposal-only needs class logits from the proposal generator")
            probs, _ = opinion(p, self.config.proposal_probs, len(vocabulary))  # rows without a class opinion contribute nothing
            out.append(semantic_fusion(probs, p.mask_logits, size, return_scores))
        return out


class ClipOnly(RegionFuser):
    name = "clip-only"
    Config = ClipOnlyConfig

    def weights(self, proposals, scores, vocabulary):
        valid = scores.valid.to(scores.probs.device)[:, None]
        fill = 1.0 if self.config.invalid_regions == "clip-ones" else 0.0
        probs = torch.where(valid, scores.probs.float(), torch.full_like(scores.probs, fill, dtype=torch.float32))
        return probs.to(proposals.mask_logits.device)

    def bounds(self, proposals, vocabulary):
        shape = (len(proposals), len(vocabulary))
        device = proposals.mask_logits.device
        return torch.zeros(shape, device=device), torch.ones(shape, device=device)


class GeometricEnsemble(RegionFuser):
    """Class-agnostic proposals (SAM) are accepted: every row then has no proposal opinion (p = p_clip)."""

    name = "geometric-ensemble"
    Config = GeometricEnsembleConfig

    _told = False

    def clip_weights(self, vocabulary: Vocabulary) -> torch.Tensor:
        return torch.full((len(vocabulary),), float(self.config.lam))

    def _opinion(self, proposals: Proposals, vocabulary: Vocabulary) -> tuple[torch.Tensor, torch.Tensor]:
        if proposals.class_logits is None and not self._told:
            log.info("%s: the proposals carry no class opinion, so the classifier alone labels them (as clip-only)", self.name)
            self._told = True
        p, has = opinion(proposals, self.config.proposal_probs, len(vocabulary))
        return p.to(proposals.mask_logits.device), has

    def weights(self, proposals, scores, vocabulary):
        p_prop, has = self._opinion(proposals, vocabulary)
        return geometric_ensemble(p_prop, scores, self.clip_weights(vocabulary), self.config.invalid_regions, has)

    def bounds(self, proposals, vocabulary):
        p_prop, has = self._opinion(proposals, vocabulary)
        w = clip_weights_per_row(self.clip_weights(vocabulary), has, p_prop)
        p_prop = torch.where(has.to(p_prop.device)[:, None], p_prop, torch.ones_like(p_prop))
        high = p_prop.pow(1.0 - w)  # p_clip = 1
        low = high * torch.zeros_like(high).pow(w)  # p_clip = 0 (0^0 = 1: where λ = 0 the classifier has no say)
        if self.config.invalid_regions == "drop":
            low = torch.zeros_like(low)  # an unknown proposal may turn out invalid, and then weighs 0
        return low, high


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
