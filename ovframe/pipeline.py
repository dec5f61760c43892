"""The two-stage pipeline: proposals, region classification, fusion. Timed per stage."""

from __future__ import annotations

from typing import Sequence

import torch

from .errors import BadInput
from .interfaces import Fuser, ProposalGenerator, RegionClassifier, TextEncoder
from .records import Sample, Segmentation, TextEmbeddings, Vocabulary


class Pipeline:
    def __init__(
        self,
        *,
        text_encoder: TextEncoder | None,
        proposals: ProposalGenerator,
        classifier: RegionClassifier | None,
        fuser: Fuser,
        timings=None,
    ):
        from .runner import Timings

        if fuser.needs_classifier and classifier is None:
            raise BadInput(f"fuser {fuser.name!r} needs a `classifier:` section (or use fuser: proposal-only)")
        if fuser.needs_proposal_classes and not proposals.needs_text:
            raise BadInput(
                f"fuser {fuser.name!r} needs class logits from the proposals, but {proposals.name!r} is "
                f"class-agnostic; use fuser: clip-only"
            )
        needs_text = proposals.needs_text or (classifier is not None and classifier.needs_text)
        if needs_text and text_encoder is None:
            raise BadInput("this pipeline needs a `text_encoder:` section to embed the class names")
        self.text_encoder = text_encoder
        self.proposals = proposals
        self.classifier = classifier
        self.fuser = fuser
        self.timings = timings or Timings()
        self._text: dict[Vocabulary, TextEmbeddings] = {}

    def encode(self, vocabulary: Vocabulary) -> TextEmbeddings | None:
        if self.text_encoder is None:
            return None
        if vocabulary not in self._text:
            with self.timings.stage("encode_text"):
                self._text[vocabulary] = self.text_encoder.encode(vocabulary)
        return self._text[vocabulary]

    @torch.no_grad()
    def segment(self, samples: Sequence[Sample], vocabulary: Vocabulary) -> list[Segmentation]:
        """Segment a batch of images with `vocabulary`: one Segmentation [K, H, W] per sample.
        Runs without autograd; components put their modules in eval mode themselves."""
        text = self.encode(vocabulary)
        with self.timings.stage("propose"):
            proposals = self.proposals.propose(samples, text if self.proposals.needs_text else None)
        scores = None
        if self.classifier is not None:
            with self.timings.stage("classify"):
                scores = self.classifier.classify(
                    samples, proposals, text if self.classifier.needs_text else None, vocabulary
                )
        with self.timings.stage("fuse"):
            return self.fuser.fuse(proposals, scores, vocabulary)
