"""The records that flow between pipeline stages. Shapes and dtypes are documented here, once.

Letters used in shapes:
    H, W  image height and width (each image of a batch has its own)
    K     number of classes in the vocabulary
    N     number of mask proposals of one image
    C     embedding dimension of the text/image joint space

Batched calls are the primary path: stages take and return lists with one record per image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

IGNORE_INDEX = -1
"""Label value of pixels that are not evaluated (datasets map their own ignore value, 255 or 65535, to it)."""

TEST_RESIZED_FROM = "test_resized_from"
"""Sample.meta key set by the pipeline on an image it has resized to its generator's `test_size`
(`resolution: reference`): the (H, W) the image had before. A generator given such a sample must not
resize it again."""


@dataclass(frozen=True)
class Vocabulary:
    """The classes to segment, named in free text.

    names: K class names. A name may carry synonyms separated by ", " (ADE-150's "road, route");
        how they are used is the text encoder's business.
    seen:  optional K booleans: True for classes the proposal generator was trained on. Used by the
        seen/unseen fusers (α/β) and by the seen/unseen metric breakdown.
    """

    names: tuple[str, ...]
    seen: tuple[bool, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(self.names))
        if not self.names:
            raise ValueError("a vocabulary needs at least one class name")
        if len(set(self.names)) != len(self.names):
            dupes = sorted({n for n in self.names if self.names.count(n) > 1})
            raise ValueError(f"duplicate class names in vocabulary: {dupes}")
        if self.seen is not None:
            object.__setattr__(self, "seen", tuple(bool(s) for s in self.seen))
            if len(self.seen) != len(self.names):
                raise ValueError(f"seen has {len(self.seen)} entries for {len(self.names)} class names")

    def __len__(self) -> int:
        return len(self.names)

    def seen_mask(self) -> torch.Tensor | None:
        """bool [K] or None."""
        return None if self.seen is None else torch.tensor(self.seen, dtype=torch.bool)


@dataclass(frozen=True)
class Sample:
    """One image and, when known, its dense label.

    image: uint8 [3, H, W], RGB.
    label: int64 [H, W] class indices into the dataset's vocabulary, IGNORE_INDEX where not
        evaluated; None when unlabelled (prediction on the user's own images).
    id:    unique within its dataset; names per-image outputs and resume state.
    meta:  free-form (file path, original size, captions ...).
    """

    image: torch.Tensor
    label: torch.Tensor | None
    id: str
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        img = self.image
        if img.dtype != torch.uint8 or img.ndim != 3 or img.shape[0] != 3:
            raise ValueError(f"sample {self.id}: image must be uint8 [3,H,W], got {img.dtype} {tuple(img.shape)}")
        if self.label is not None and tuple(self.label.shape) != tuple(img.shape[1:]):
            raise ValueError(f"sample {self.id}: label shape {tuple(self.label.shape)} != image size {tuple(img.shape[1:])}")

    @property
    def size(self) -> tuple[int, int]:
        """(H, W)."""
        return int(self.image.shape[1]), int(self.image.shape[2])

    def pin_memory(self) -> "Sample":
        """The sample with its tensors in page-locked memory (a DataLoader with pin_memory=True calls it),
        so that copying them to a GPU does not wait."""
        from dataclasses import replace

        label = None if self.label is None else self.label.pin_memory()
        return replace(self, image=self.image.pin_memory(), label=label)


@dataclass(frozen=True)
class TextEmbeddings:
    """Text embeddings of a vocabulary.

    embeddings: float [K, C], rows L2-normalised.
    model_id:   identity of the encoder that made them (model name + weights hash); caches key on it.
    """

    vocabulary: Vocabulary
    embeddings: torch.Tensor
    model_id: str = ""

    def __post_init__(self) -> None:
        if self.embeddings.ndim != 2 or self.embeddings.shape[0] != len(self.vocabulary):
            raise ValueError(
                f"embeddings must be [K={len(self.vocabulary)}, C], got {tuple(self.embeddings.shape)}"
            )


@dataclass(frozen=True)
class Proposals:
    """Mask proposals of one image.

    mask_logits:  float [N, H, W] at the image's resolution; sigmoid gives the soft mask.
    class_logits: float [N, K+1] against the vocabulary, the last column is "no object";
        None for class-agnostic generators (SAM, ground-truth masks). A row of NaN says "this proposal
        has no class opinion" (a `union` of a class-agnostic and a classifying generator): fusers use
        the region classifier's opinion alone for that row (`has_classes`).
    quality:      named per-proposal scores {name: float [N]}, higher is better, that the generator
        computed (SAM: "predicted_iou", "stability"); empty when it has none. A fuser may use them.
    """

    mask_logits: torch.Tensor
    class_logits: torch.Tensor | None = None
    quality: Mapping[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mask_logits.ndim != 3:
            raise ValueError(f"mask_logits must be [N,H,W], got {tuple(self.mask_logits.shape)}")
        n = self.mask_logits.shape[0]
        if self.class_logits is not None and (self.class_logits.ndim != 2 or self.class_logits.shape[0] != n):
            raise ValueError(f"class_logits must be [N={n}, K+1], got {tuple(self.class_logits.shape)}")
        for name, score in self.quality.items():
            if tuple(score.shape) != (n,):
                raise ValueError(f"quality[{name!r}] must be [N={n}], got {tuple(score.shape)}")

    def __len__(self) -> int:
        return int(self.mask_logits.shape[0])

    @property
    def has_classes(self) -> torch.Tensor:
        """bool [N]: True for the rows of class_logits that hold a class opinion (none when it is None)."""
        if self.class_logits is None:
            return torch.zeros(len(self), dtype=torch.bool, device=self.mask_logits.device)
        return ~self.class_logits.isnan().any(dim=1)


@dataclass(frozen=True)
class RegionScores:
    """A region classifier's opinion of each proposal of one image.

    probs: float [N, K], each row a distribution over the K classes (rows of invalid proposals are
        unspecified and must not be used). When the fuser chose not to classify some proposals
        (`Fuser.select_regions`), the pipeline fills their rows: a copy of the row of the proposal
        named as their source, or all zeros (valid, but support for no class).
    valid: bool [N]: False for proposals the classifier could not look at (empty after thresholding).
    """

    probs: torch.Tensor
    valid: torch.Tensor

    def __post_init__(self) -> None:
        if self.probs.ndim != 2 or self.valid.shape != (self.probs.shape[0],) or self.valid.dtype != torch.bool:
            raise ValueError(
                f"RegionScores needs probs [N,K] and bool valid [N], got {tuple(self.probs.shape)} "
                f"and {self.valid.dtype} {tuple(self.valid.shape)}"
            )


@dataclass(frozen=True)
class RegionSelection:
    """Which proposals of one image a fuser needs the region classifier's opinion of.

    classify: bool [N], the proposals to classify.
    source:   int64 [N]; for a proposal not classified, the proposal whose region scores it takes
        (a near-duplicate that is classified), or -1: no region opinion, its scores row is all zero.
        Ignored where `classify` is True.
    certify:  when True, the pipeline then asks the fuser which of the proposals left out could still
        change a label (`Fuser.unproven`) and classifies those too, so the labels are exactly those of
        classifying every proposal.
    """

    classify: torch.Tensor
    source: torch.Tensor
    certify: bool = False

    def __post_init__(self) -> None:
        if self.classify.dtype != torch.bool or self.classify.ndim != 1 or self.source.shape != self.classify.shape:
            raise ValueError(
                f"RegionSelection needs bool classify [N] and int source [N], got {self.classify.dtype} "
                f"{tuple(self.classify.shape)} and {tuple(self.source.shape)}"
            )


@dataclass(frozen=True)
class Segmentation:
    """The semantic segmentation of one image.

    labels: int64 [H, W], the class of each pixel (argmax of the per-class scores), at the output size.
    scores: float [K, H, W] per-class scores (not necessarily normalised) at the output size, or None:
        fusers build the labels class chunk by class chunk and keep this volume only when asked
        (`return_scores`).
    confidence: float [H, W] or None: each pixel's label score over the sum of its class scores (for
        non-negative scores, as fused mask x class probabilities are), which a chunked fuser gets
        without the volume.
    """

    labels: torch.Tensor
    scores: torch.Tensor | None = None
    confidence: torch.Tensor | None = None

    @classmethod
    def from_scores(cls, scores: torch.Tensor, output_size: tuple[int, int] | None = None) -> "Segmentation":
        """Labels from scores [K, h, w]. With `output_size` (H, W) different from (h, w), the scores are
        first resized to it, bilinearly with align_corners=False, as the reference resizes its fused score
        map from the test size to the image's size (detectron2's sem_seg_postprocess)."""
        if output_size is not None and tuple(scores.shape[-2:]) != tuple(output_size):
            scores = resize_scores(scores, output_size)
        return cls(labels=scores.argmax(dim=0), scores=scores)


def resize_scores(scores: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """float [K, h, w] -> [K, H, W]: bilinear, align_corners=False, no antialiasing (F.interpolate's
    defaults, the call detectron2's sem_seg_postprocess makes). Classes are independent, so a fuser
    may resize its scores in chunks of classes and get the same numbers."""
    import torch.nn.functional as F

    return F.interpolate(scores[None].float(), size=tuple(size), mode="bilinear", align_corners=False)[0]
