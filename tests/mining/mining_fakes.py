"""Test-only components for mining, loadable through an entry point (so a real `ovframe run` finds them).

colour-regions  proposals: one exact mask per colour present in the image (black background excluded),
                then one mask of the whole image; class-agnostic. `test_scale`: a test size (image x scale).
colour-words    scores a region against phrases by colour: a phrase whose colour word is the region's
                colour gets weight 4, any other 1, normalised over the phrases. So each colour phrase's
                best proposal is exactly the region of its colour, and a phrase without a colour word
                ties everywhere (its best proposal is the first candidate). `delay` slows each image.
"""

from __future__ import annotations

import time

import torch
from pydantic import Field

from ovframe import ComponentConfig, ProposalGenerator, Proposals, RegionClassifier, RegionScores, hookimpl

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 60, 230), "yellow": (240, 220, 30)}
MATMUL_DTYPES: list[tuple[str, torch.dtype]] = []
"""(component, dtype of a float32 matmul run inside it): what autocast the task put it under."""


def note_matmul_dtype(component: str) -> None:
    MATMUL_DTYPES.append((component, (torch.ones(2, 2) @ torch.ones(2, 2)).dtype))


def colour_of(rgb: torch.Tensor) -> str | None:
    best = min(COLOURS, key=lambda c: sum((float(a) - b) ** 2 for a, b in zip(rgb, COLOURS[c])))
    return best if sum((float(a) - b) ** 2 for a, b in zip(rgb, COLOURS[best])) < 60**2 else None


class ColourRegionsConfig(ComponentConfig):
    """One proposal per colour present, then the whole image (tests only)."""

    delay: float = Field(0.0, ge=0)
    test_scale: float | None = Field(None, gt=0, description="wants the image at this scale (a test size)")
    needs_text = False


class ColourRegions(ProposalGenerator):
    name = "colour-regions"
    Config = ColourRegionsConfig

    def test_size(self, h, w):
        scale = self.config.test_scale
        return None if scale is None else (round(h * scale), round(w * scale))

    def propose(self, samples, text=None):
        note_matmul_dtype(self.name)
        out = []
        for sample in samples:
            if self.config.delay:
                time.sleep(self.config.delay)
            img = sample.image.long()
            masks = []
            for rgb in COLOURS.values():
                m = (img - torch.tensor(rgb).view(3, 1, 1)).abs().sum(0) < 30
                if m.any():
                    masks.append(m)
            masks.append(torch.ones(sample.image.shape[1:], dtype=torch.bool))
            out.append(Proposals(torch.where(torch.stack(masks), 20.0, -20.0)))
        return out


class ColourWordsConfig(ComponentConfig):
    """Phrases naming a region's colour score 4, others 1, normalised (tests only)."""

    needs_text = False


class ColourWords(RegionClassifier):
    name = "colour-words"
    Config = ColourWordsConfig

    def classify(self, samples, proposals, text, vocabulary):
        note_matmul_dtype(self.name)
        out = []
        for sample, props in zip(samples, proposals):
            regions = props.mask_logits.sigmoid() > 0.5
            probs = torch.ones(len(props), len(vocabulary))
            for n, region in enumerate(regions):
                colour = colour_of(sample.image[:, region].float().mean(dim=1)) if region.any() else None
                for k, phrase in enumerate(vocabulary.names):
                    if colour is not None and colour in phrase.split():
                        probs[n, k] = 4.0
            out.append(RegionScores(probs / probs.sum(dim=1, keepdim=True), regions.flatten(1).any(dim=1)))
        return out


@hookimpl
def register_proposal_generators(register):
    register(ColourRegions)


@hookimpl
def register_region_classifiers(register):
    register(ColourWords)
