"""CLIP region classifiers: `clip-masked-crop` (OVSeg) and `clip-background-crop` (the ablation).

classify(samples, proposals, text, vocabulary) -> one RegionScores per image:
    probs [N, K] = softmax over the K vocabulary classes of temperature * cos(region embedding, class text)
    valid [N]    = False where the thresholded mask is empty or its box has no area (their probs rows are 0)
There is no background/no-object text embedding: the reference drops that column before the softmax,
which is the same as never having it. All valid proposals of the batch go through the image tower
together, `chunk_size` regions at a time (crops are made per chunk, so memory stays bounded and the
results do not depend on the chunk size).
"""

from __future__ import annotations

import logging
from typing import ClassVar, Sequence

import torch
import torch.nn.functional as F

from ovframe import Adapter, BadInput, Proposals, RegionClassifier, RegionScores, Sample, TextEmbeddings, Vocabulary

from .config import BackgroundCropConfig, MaskedCropConfig
from .crops import Cropper, RegionPlan, RegionStore, binarize, plan_regions
from .encoders import PlainEncoder, RegionEncoder
from .loading import MASK_EMBEDDING_KEY, load_clip, required_files

log = logging.getLogger("ovframe.clip")


class ClipRegionClassifier(RegionClassifier):
    """Shared machinery; subclasses choose whether the background is masked."""

    keep_background: ClassVar[bool] = False

    def __init__(self, config: MaskedCropConfig | BackgroundCropConfig):
        super().__init__(config)
        loaded = load_clip(config)
        self.model_id = loaded.model_id
        self.encoder: RegionEncoder = PlainEncoder(loaded.model.visual, loaded.image_size, loaded.model_id, loaded.extras)
        fill = None if self.keep_background else getattr(config, "fill", "mean")
        self.cropper = Cropper(loaded.image_size, loaded.mean, loaded.std, fill)
        self.adapter: Adapter | None = None
        self._checked: set[str] = set()

    @classmethod
    def required_files(cls, config):
        return required_files(config)

    def export_graph(self):
        """The image tower with its adapter, for `ovframe export` (see export.py)."""
        from .export import classifier_graph

        return classifier_graph(self)

    def attach(self, adapter: Adapter) -> None:
        """Hand the image model to `adapter`; regions are encoded by what it returns from now on."""
        if self.adapter is not None:
            raise BadInput(f"classifier {self.name!r} already has adapter {self.adapter.name!r}")
        encoder = adapter.attach(self.encoder)
        if not isinstance(encoder, RegionEncoder):
            raise TypeError(f"adapter {adapter.name!r} returned {type(encoder).__name__}, not a RegionEncoder")
        self.encoder = encoder.to(self.device)
        self.adapter = adapter

    # -- regions ---------------------------------------------------------------------------
    def plan(self, samples: Sequence[Sample], proposals: Sequence[Proposals]) -> tuple[RegionPlan, RegionStore]:
        """What to crop (boxes on the host: one device-to-host copy per batch) and where to crop it from."""
        if len(samples) != len(proposals):
            raise ValueError(f"{len(samples)} samples but {len(proposals)} proposal sets")
        for sample, props in zip(samples, proposals):
            if tuple(props.mask_logits.shape[1:]) != sample.size:
                raise ValueError(
                    f"sample {sample.id}: mask logits are {tuple(props.mask_logits.shape[1:])}, the image is "
                    f"{sample.size}; proposals must be at the image's resolution"
                )
        images = self.cropper.prepare([s.image for s in samples], self.device) if samples else None
        height, width = (0, 0) if images is None else images.shape[2:]
        masks = torch.zeros(sum(len(p) for p in proposals), height, width, dtype=torch.bool, device=self.device)
        binaries, start = [], 0
        for props in proposals:
            n, h, w = props.mask_logits.shape
            view = masks[start : start + n, :h, :w]
            binaries.append(binarize(props.mask_logits.to(self.device, non_blocking=True), self.config.mask_thr, out=view))
            start += n
        return plan_regions(binaries, self.config.expand_ratio), RegionStore(images, masks)

    def region_inputs(self, store: RegionStore, plan: RegionPlan, chunk: range) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder inputs of plan items `chunk`: float [B, 3, S, S], bool [B, S, S]."""
        return self.cropper.crop(store, plan, chunk)

    def _check_once(self, text: TextEmbeddings) -> None:
        """Warn (once) about combinations that run but are probably not what the recipe meant."""
        if "extras" not in self._checked and MASK_EMBEDDING_KEY in self.encoder.extras and self.adapter is None:
            log.warning(
                "the CLIP checkpoint %s carries mask prompts (%s %s); they are used only with "
                "`adapter: mask-prompt-tuning` (or mpt+ft)",
                self.config.pretrained, MASK_EMBEDDING_KEY, tuple(self.encoder.extras[MASK_EMBEDDING_KEY].shape),
            )
        self._checked.add("extras")
        if text.model_id and text.model_id != self.model_id and text.model_id not in self._checked:
            log.warning("the text embeddings come from CLIP %s, the classifier runs %s", text.model_id, self.model_id)
            self._checked.add(text.model_id)

    # -- classification --------------------------------------------------------------------
    @torch.inference_mode()
    def classify(
        self,
        samples: Sequence[Sample],
        proposals: Sequence[Proposals],
        text: TextEmbeddings | None,
        vocabulary: Vocabulary,
    ) -> list[RegionScores]:
        if text is None:
            raise ValueError(f"{self.name} needs the vocabulary's text embeddings")
        k = len(vocabulary)
        if text.embeddings.shape[0] != k:
            raise ValueError(f"text embeddings for {text.embeddings.shape[0]} classes, vocabulary has {k}")
        self._check_once(text)
        plan, store = self.plan(samples, proposals)
        counts = [len(v) for v in plan.valid]
        probs = torch.zeros(sum(counts), k, device=self.device)
        if len(plan):
            text_emb = F.normalize(text.embeddings.to(self.device).float(), dim=-1)
            self.encoder.eval()
            fp32 = torch.autocast(torch.device(self.device).type, enabled=False)  # crops, cosine and softmax
            for chunk in plan.chunks(self.config.chunk_size):
                with fp32:
                    regions, masks = self.region_inputs(store, plan, chunk)
                emb = self.encoder(regions, masks)  # under the pipeline's autocast, if any
                with fp32:
                    emb = F.normalize(emb.float(), dim=-1)
                    if emb.shape[1] != text_emb.shape[1]:
                        raise ValueError(
                            f"region embeddings are {emb.shape[1]}-d, the text embeddings {text_emb.shape[1]}-d: the text "
                            "encoder and the classifier must use the same CLIP"
                        )
                    rows = plan.row[chunk.start : chunk.stop].to(self.device, non_blocking=True)
                    probs.index_copy_(0, rows, (self.config.temperature * emb @ text_emb.T).softmax(dim=-1))
        return [
            RegionScores(probs=p, valid=v.to(self.device, non_blocking=True))
            for p, v in zip(torch.split(probs, counts), plan.valid)
        ]


class MaskedCropClassifier(ClipRegionClassifier):
    name = "clip-masked-crop"
    Config = MaskedCropConfig
    keep_background = False


class BackgroundCropClassifier(ClipRegionClassifier):
    """The box of the region with its background pixels kept; the encoder is given all-True region masks
    (nothing is masked, so a mask-prompt adapter replaces nothing)."""

    name = "clip-background-crop"
    Config = BackgroundCropConfig
    keep_background = True
