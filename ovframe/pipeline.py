"""The two-stage pipeline: proposals, region classification, fusion. Timed per stage.

Resolution (the recipe's top-level `resolution:`):
    reference  the authors' order. Each image is resized to its generator's `test_size` (uint8,
               bilinear as Pillow/detectron2), proposals, CLIP crops and fusion all happen at that
               size, and the fused score map is resized (bilinear) to the image's size before the argmax.
    original   the generator resizes internally and returns mask logits at the image's size; crops are
               cut from the original image and the scores are fused there.
The two are the same for generators without a test size and for images already at it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal, Sequence

import torch

from .errors import BadInput
from .images import resize_image, resize_label
from .interfaces import Fuser, ProposalGenerator, RegionClassifier, TextEncoder
from .records import TEST_RESIZED_FROM, Sample, Segmentation, TextEmbeddings, Vocabulary

Resolution = Literal["reference", "original"]
RESOLUTIONS: tuple[str, ...] = ("reference", "original")


class Pipeline:
    def __init__(
        self,
        *,
        text_encoder: TextEncoder | None,
        proposals: ProposalGenerator,
        classifier: RegionClassifier | None,
        fuser: Fuser,
        timings=None,
        resolution: Resolution = "reference",
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
        if resolution not in RESOLUTIONS:
            raise BadInput(f"resolution must be one of {', '.join(RESOLUTIONS)}, got {resolution!r}")
        self.text_encoder = text_encoder
        self.proposals = proposals
        self.classifier = classifier
        self.fuser = fuser
        self.resolution = resolution
        self.timings = timings or Timings()
        self._text: dict[Vocabulary, TextEmbeddings] = {}

    def encode(self, vocabulary: Vocabulary) -> TextEmbeddings | None:
        if self.text_encoder is None:
            return None
        if vocabulary not in self._text:
            with self.timings.stage("encode_text"):
                self._text[vocabulary] = self.text_encoder.encode(vocabulary)
        return self._text[vocabulary]

    def test_resize(self, samples: Sequence[Sample]) -> list[Sample]:
        """Each sample at its generator's test size (`resolution: reference`), marked with the size it
        had; samples already at it, or whose generator wants none, are returned as they are."""
        out = []
        for s in samples:
            h, w = s.size
            size = self.proposals.test_size(h, w) if self.resolution == "reference" else None
            if size is None or tuple(size) == (h, w):
                out.append(s)
                continue
            size = (int(size[0]), int(size[1]))
            label = None if s.label is None else resize_label(s.label, size)
            meta = {**s.meta, TEST_RESIZED_FROM: (h, w)}
            out.append(replace(s, image=resize_image(s.image, size), label=label, meta=meta))
        return out

    @torch.no_grad()
    def segment(self, samples: Sequence[Sample], vocabulary: Vocabulary) -> list[Segmentation]:
        """Segment a batch of images with `vocabulary`: one Segmentation [K, H, W] per sample, at the
        sample's own size. Runs without autograd; components put their modules in eval mode themselves."""
        text = self.encode(vocabulary)
        with self.timings.stage("test_resize"):
            seen = self.test_resize(samples)
        with self.timings.stage("propose"):
            proposals = self.proposals.propose(seen, text if self.proposals.needs_text else None)
        scores = None
        if self.classifier is not None:
            with self.timings.stage("classify"):
                scores = self.classifier.classify(
                    seen, proposals, text if self.classifier.needs_text else None, vocabulary
                )
        with self.timings.stage("fuse"):
            return self.fuser.fuse(proposals, scores, vocabulary, output_sizes=[s.size for s in samples])
