"""The two-stage pipeline: proposals, region classification, fusion. Timed per stage.

Resolution (the recipe's top-level `resolution:`):
    reference  the authors' order. Each image is resized to its generator's `test_size` (uint8,
               bilinear as Pillow/detectron2), proposals, CLIP crops and fusion all happen at that
               size, and the fused score map is resized (bilinear) to the image's size before the argmax.
    original   the generator resizes internally and returns mask logits at the image's size; crops are
               cut from the original image and the scores are fused there.
The two are the same for generators without a test size and for images already at it.

When the fuser selects regions (`Fuser.select_regions`, e.g. the fusers' `skip` option), only the
proposals it names go through the region classifier; the others take the scores of the proposal
named as their source, or none. For a selection that asks to be certified, the fuser then names the
proposals left out that could still change a label, and those are classified as well.
`stats` counts images, proposals and the regions the classifier looked at.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace
from typing import Literal, Sequence

import torch

from .errors import BadInput
from .images import resize_image, resize_label
from .interfaces import Fuser, ProposalGenerator, RegionClassifier, TextEncoder
from .records import TEST_RESIZED_FROM, Proposals, RegionScores, RegionSelection, Sample, Segmentation, TextEmbeddings, Vocabulary

Resolution = Literal["reference", "original"]
RESOLUTIONS: tuple[str, ...] = ("reference", "original")
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

CERTIFY_ROUNDS = 3
"""Rounds of classifying what a certified selection cannot prove yet, before classifying all that is left."""

TEXT_MEMO_SIZE = 8
"""Vocabularies whose embeddings a pipeline keeps in memory (least recently used ones are dropped)."""


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
        precision: str = "fp32",
    ):
        from .runner import Timings

        from .compat import problems

        parts = {kind: (c.name, c) for kind, c in  # a built component shows its Config's declarations
                 (("text_encoder", text_encoder), ("proposals", proposals), ("classifier", classifier), ("fuser", fuser)) if c is not None}
        found = problems(parts)
        if found:
            raise BadInput("; ".join(f"{p.section}: {p.message}" for p in found))
        if resolution not in RESOLUTIONS:
            raise BadInput(f"resolution must be one of {', '.join(RESOLUTIONS)}, got {resolution!r}")
        if precision not in PRECISIONS:
            raise BadInput(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.precision = precision
        self.text_encoder = text_encoder
        self.proposals = proposals
        self.classifier = classifier
        self.fuser = fuser
        self.resolution = resolution
        self.timings = timings or Timings()
        self._counts = {"images": 0, "proposals": 0}
        self._classified: list = []  # per batch, the regions classified (device tensors: read when asked)
        self._text: OrderedDict[Vocabulary, TextEmbeddings] = OrderedDict()

    @property
    def stats(self) -> dict[str, int]:
        """Images and proposals seen, and regions the classifier looked at (its CLIP forwards), so far.
        (Counted on the device and read here, so that segmenting never waits for the count.)"""
        self._sum_classified()
        return {**self._counts, "regions_classified": int(self._classified[0]) if self._classified else 0}

    def _sum_classified(self) -> None:
        if len(self._classified) > 1:
            self._classified = [torch.stack([c.to(self._classified[0].device) for c in self._classified]).sum()]

    def encode(self, vocabulary: Vocabulary) -> TextEmbeddings | None:
        if self.text_encoder is None:
            return None
        if vocabulary in self._text:
            self._text.move_to_end(vocabulary)
        else:
            with self.timings.stage("encode_text"):
                self._text[vocabulary] = self.text_encoder.encode(vocabulary)
            while len(self._text) > TEXT_MEMO_SIZE:
                self._text.popitem(last=False)
        return self._text[vocabulary]

    def test_resize(self, samples: Sequence[Sample]) -> list[Sample]:
        return test_resize(samples, self.proposals, self.resolution)

    @torch.inference_mode()
    def segment(self, samples: Sequence[Sample], vocabulary: Vocabulary, return_scores: bool = False) -> list[Segmentation]:
        """Segment a batch of images with `vocabulary`: one Segmentation per sample, at the sample's own
        size, with its [K, H, W] scores only when `return_scores` (they are large when K is). Runs
        without autograd; components put their modules in eval mode themselves."""
        text = self.encode(vocabulary)
        with self.timings.stage("test_resize"):
            seen = self.test_resize(samples)
        seen = [self._to_device(s) for s in seen]
        with self.timings.stage("propose"), self.autocast(self.proposals):
            proposals = self.proposals.propose(seen, text if self.proposals.needs_text else None)
        self._counts["images"] += len(samples)
        self._counts["proposals"] += sum(len(p) for p in proposals)
        scores = None
        if self.classifier is not None:
            with self.timings.stage("classify"), self.autocast(self.classifier):
                scores = self.classify(
                    seen, proposals, text if self.classifier.needs_text else None, vocabulary, [s.size for s in samples]
                )
        if len(self._classified) > 1024:  # a long-lived pipeline whose stats nobody reads stays small
            self._sum_classified()
        with self.timings.stage("fuse"):
            options = {"return_scores": True} if return_scores else {}
            return self.fuser.fuse(proposals, scores, vocabulary, output_sizes=[s.size for s in samples], **options)

    def autocast(self, component) -> "torch.autocast":
        return autocast(component, self.precision)

    def _to_device(self, sample: Sample) -> Sample:
        """The sample's image on the proposal generator's device, copied without waiting (a pinned
        image from the data loader overlaps the copy with the work already queued)."""
        device = torch.device(getattr(self.proposals, "device", "cpu"))
        if sample.image.device == device:
            return sample
        return replace(sample, image=sample.image.to(device, non_blocking=True))

    def classify(
        self,
        samples: Sequence[Sample],
        proposals: Sequence[Proposals],
        text: TextEmbeddings | None,
        vocabulary: Vocabulary,
        output_sizes: Sequence[tuple[int, int]] | None = None,
    ) -> list[RegionScores]:
        """Region scores of every proposal, asking the classifier only about those the fuser selects
        (`output_sizes`: where the labels will be made, for a certified selection)."""
        assert self.classifier is not None
        selections = self.fuser.select_regions(proposals, vocabulary)
        if selections is None:
            scores = self.classifier.classify(samples, proposals, text, vocabulary)
            self._classified += [s.valid.sum() for s in scores]
            return scores
        wanted = [s.classify for s in selections]
        classified = self._classify_rows(samples, proposals, wanted, text, vocabulary)
        scores = [_fill_skipped(c, sel) for c, sel in zip(classified, selections)]
        rounds = 0
        while any(sel.certify for sel in selections):
            # the fuser names what it cannot prove yet; after CERTIFY_ROUNDS rounds, all that is left
            unproven = self.fuser.unproven(proposals, scores, selections, vocabulary, output_sizes)
            more = [u.to(torch.bool) & sel.certify for u, sel in zip(unproven, selections)]
            if not any(bool(m.any()) for m in more):
                break
            rounds += 1
            if rounds > CERTIFY_ROUNDS:
                more = [m.any() & ~sel.classify.to(m.device) for m, sel in zip(more, selections)]
            extra = self._classify_rows(samples, proposals, more, text, vocabulary)
            scores = [
                RegionScores(torch.where(m[:, None], e.probs, s.probs), torch.where(m, e.valid, s.valid))
                for s, e, m in zip(scores, extra, more)
            ]
            selections = [replace(sel, classify=sel.classify | m.to(sel.classify.device)) for sel, m in zip(selections, more)]
        return scores

    def _classify_rows(
        self,
        samples: Sequence[Sample],
        proposals: Sequence[Proposals],
        rows: Sequence[torch.Tensor],
        text: TextEmbeddings | None,
        vocabulary: Vocabulary,
    ) -> list[RegionScores]:
        """Classify the proposals where rows [N] is True; other rows come back zero and invalid."""
        assert self.classifier is not None
        index = [torch.nonzero(r.to(p.mask_logits.device)).flatten() for r, p in zip(rows, proposals)]
        subsets = [
            Proposals(
                p.mask_logits[i], None if p.class_logits is None else p.class_logits[i], {k: v[i] for k, v in p.quality.items()}
            )
            for p, i in zip(proposals, index)
        ]
        got = self.classifier.classify(samples, subsets, text, vocabulary)
        out = []
        for p, i, s in zip(proposals, index, got):
            probs = torch.zeros(len(p), len(vocabulary), device=s.probs.device, dtype=s.probs.dtype)
            valid = torch.zeros(len(p), dtype=torch.bool, device=s.valid.device)
            i = i.to(s.probs.device)
            probs[i] = s.probs
            valid[i] = s.valid
            out.append(RegionScores(probs, valid))
            self._classified.append(s.valid.sum())
        return out


def autocast(component, precision: str) -> "torch.autocast":
    """Autocast to the recipe's `precision` on `component`'s device (a no-op for fp32). Components keep
    what must stay fp32 (crops, softmaxes) outside it themselves; the fusers compute in fp32."""
    device = torch.device(getattr(component, "device", "cpu"))
    dtype = PRECISIONS[precision]
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def test_resize(samples: Sequence[Sample], proposals: ProposalGenerator, resolution: Resolution) -> list[Sample]:
    """Each sample at its generator's test size under `resolution: reference`, marked with the size it
    had (meta[TEST_RESIZED_FROM]); samples already at it, or whose generator wants none, and every sample
    under `original`, are returned as they are. For tasks other than the pipeline's (mine-pairs) too."""
    out = []
    for s in samples:
        h, w = s.size
        size = proposals.test_size(h, w) if resolution == "reference" else None
        if size is None or tuple(size) == (h, w):
            out.append(s)
            continue
        size = (int(size[0]), int(size[1]))
        label = None if s.label is None else resize_label(s.label, size)
        meta = {**s.meta, TEST_RESIZED_FROM: (h, w)}
        out.append(replace(s, image=resize_image(s.image, size), label=label, meta=meta))
    return out


def _fill_skipped(scores: RegionScores, selection: RegionSelection) -> RegionScores:
    """Rows of proposals not classified: the source's row, or zeros (valid: support for no class)."""
    device = scores.probs.device
    classify = selection.classify.to(device)
    source = torch.where(classify, torch.arange(len(classify), device=device), selection.source.to(device))
    has_source = source >= 0
    src = source.clamp(min=0)
    probs = torch.where(has_source[:, None], scores.probs[src], torch.zeros_like(scores.probs))
    valid = torch.where(has_source, scores.valid[src], torch.ones_like(scores.valid))
    return RegionScores(probs, valid)
