"""Ground-truth masks as proposals, and the oracle classifier (reference/ovseg.md, "Analysis")."""

from __future__ import annotations

from typing import Sequence

import torch

from ovframe import IGNORE_INDEX, ProposalGenerator, Proposals, RegionClassifier, RegionScores, Sample

from .config import GroundTruthMasksConfig, OracleClassifierConfig


def _label_of(sample: Sample, who: str) -> torch.Tensor:
    if sample.label is None:
        raise ValueError(f"{who} needs labelled samples; {sample.id} has no label")
    return sample.label


class GroundTruthMasks(ProposalGenerator):
    name = "ground-truth-masks"
    Config = GroundTruthMasksConfig

    def propose(self, samples: Sequence[Sample], text=None) -> list[Proposals]:
        out = []
        for sample in samples:
            label = _label_of(sample, self.name)
            classes = [int(c) for c in torch.unique(label) if int(c) != IGNORE_INDEX]
            masks = torch.stack([label == c for c in classes]) if classes else torch.zeros(0, *label.shape, dtype=torch.bool)
            logit = float(self.config.logit)
            out.append(Proposals(mask_logits=torch.where(masks, logit, -logit).float()))
        return out


class OracleClassifier(RegionClassifier):
    name = "oracle"
    Config = OracleClassifierConfig

    def classify(self, samples: Sequence[Sample], proposals: Sequence[Proposals], text, vocabulary) -> list[RegionScores]:
        k = len(vocabulary)
        out = []
        for sample, props in zip(samples, proposals):
            label = _label_of(sample, self.name).to(props.mask_logits.device)
            regions = props.mask_logits.sigmoid() > self.config.mask_thr  # [N, H, W]
            probs = torch.zeros(len(props), k)
            valid = torch.zeros(len(props), dtype=torch.bool)
            for q, region in enumerate(regions):
                inside = label[region]
                inside = inside[inside != IGNORE_INDEX]
                if inside.numel():
                    probs[q, torch.bincount(inside, minlength=k).argmax()] = 1.0
                    valid[q] = True
            out.append(RegionScores(probs=probs, valid=valid))
        return out
