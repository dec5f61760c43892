"""A test-only region classifier, loaded through an entry point (so a real `ovframe run` finds it).

`noisy-oracle` gives each proposal the ground-truth class it covers, except that a fixed, id-seeded
share of proposals is given the next class instead: metrics are non-trivial and deterministic, so a
lost or double-counted image changes them. `delay` slows each image (a kill lands mid-run).
"""

from __future__ import annotations

import time
import zlib

import torch
from pydantic import Field

from ovframe import ComponentConfig, IGNORE_INDEX, RegionClassifier, RegionScores, hookimpl


def flipped(sample_id: str, cls: int, percent: int) -> bool:
    """Whether the proposal of class `cls` in image `sample_id` is mislabelled (shared with the tests)."""
    return zlib.crc32(f"{sample_id}/{cls}".encode()) % 100 < percent


class NoisyOracleConfig(ComponentConfig):
    """Oracle labels with a deterministic share of mistakes (tests only)."""

    flip_percent: int = Field(30, ge=0, le=100)
    delay: float = Field(0.0, ge=0)
    needs_text = False


class NoisyOracle(RegionClassifier):
    name = "noisy-oracle"
    Config = NoisyOracleConfig

    def classify(self, samples, proposals, text, vocabulary):
        k = len(vocabulary)
        out = []
        for sample, props in zip(samples, proposals):
            if self.config.delay:
                time.sleep(self.config.delay)
            regions = props.mask_logits.sigmoid() > 0.5
            probs = torch.zeros(len(props), k)
            valid = torch.zeros(len(props), dtype=torch.bool)
            for q, region in enumerate(regions):
                inside = sample.label[region]
                inside = inside[inside != IGNORE_INDEX]
                if inside.numel():
                    cls = int(torch.bincount(inside, minlength=k).argmax())
                    probs[q, (cls + 1) % k if flipped(sample.id, cls, self.config.flip_percent) else cls] = 1.0
                    valid[q] = True
            out.append(RegionScores(probs=probs, valid=valid))
        return out


@hookimpl
def register_region_classifiers(register):
    register(NoisyOracle)
