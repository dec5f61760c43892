"""What segmenting one image gives its user: class names, the label map, per-class shares, one segment
per class present (score, mask, bounding box, COCO RLE) and pictures. Shared by `ovframe predict` and
`ovframe.api.Segmenter`, so both describe an image the same way.

COCO conventions: RLE is pycocotools' compressed form (`{"size": [H, W], "counts": str}`); bounding
boxes are [x, y, width, height]; category ids in COCO files are class index + 1 (0 is reserved).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .records import IGNORE_INDEX

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from .records import Segmentation


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """bool [H, W] -> COCO compressed RLE with the counts as text (JSON-ready)."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """COCO RLE (counts as text or bytes) -> bool [H, W]."""
    from pycocotools import mask as mask_utils

    counts = rle["counts"]
    return mask_utils.decode({"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}).astype(bool)


@dataclass(frozen=True)
class Segment:
    """The pixels of one class in one image (one segment per class present, as in COCO-Stuff results).

    mask:  bool [H, W].
    score: mean over the segment's pixels of its class's probability (the pipeline's per-class scores
        normalised over the classes at each pixel), in [0, 1]; None when the pipeline gave no scores.
    bbox:  [x, y, width, height] of the mask.
    """

    label: str
    label_id: int  # index into the result's class_names: the value in the label PNG
    score: float | None
    area: int
    bbox: tuple[int, int, int, int]
    mask: np.ndarray = field(repr=False)

    @property
    def rle(self) -> dict[str, Any]:
        return encode_rle(self.mask)

    def to_json(self) -> dict[str, Any]:
        return {
            "class": self.label,
            "class_index": self.label_id,
            "score": None if self.score is None else round(self.score, 6),
            "area": self.area,
            "bbox": list(self.bbox),
            "segmentation": self.rle,
        }


@dataclass(frozen=True)
class SegmentationResult:
    """One image segmented with one vocabulary.

    class_names: the K names asked for (with "others" when one name was given), label order.
    labels:      int64 [H, W], indices into class_names (IGNORE_INDEX where unlabelled).
    segments:    one Segment per class present, largest first.
    image:       uint8 [H, W, 3], the input as segmented (None if not kept).
    """

    class_names: tuple[str, ...]
    labels: np.ndarray = field(repr=False)
    segments: tuple[Segment, ...]
    image: np.ndarray | None = field(default=None, repr=False)
    id: str = "image"

    @property
    def size(self) -> tuple[int, int]:
        """(H, W)."""
        return int(self.labels.shape[0]), int(self.labels.shape[1])

    @property
    def shares(self) -> dict[str, float]:
        """Class name -> share of the labelled pixels, for the classes present, largest first."""
        total = max(sum(s.area for s in self.segments), 1)
        return {s.label: s.area / total for s in self.segments}

    def segment(self, name: str) -> Segment | None:
        """The segment of class `name`, None if the class is absent from the image."""
        return next((s for s in self.segments if s.label == name), None)

    def overlay(self, *, show_input: bool = True, alpha: float = 0.55, title: str | None = None) -> "Image.Image":
        """The picture `ovframe predict` writes: the input beside the coloured prediction, a legend
        with each class's share; small images scaled up, large ones down."""
        from .visualize import overlay

        if self.image is None:
            raise ValueError("this result does not keep its image; segment with keep_image=True to draw overlays")
        return overlay(self.image, self.labels, self.class_names, alpha=alpha, title=title, show_input=show_input)

    def label_image(self) -> "Image.Image":
        """The label map as a PNG-ready image (uint8, 255 = unlabelled; 16-bit past 254 classes)."""
        from .visualize import label_image

        return label_image(self.labels, len(self.class_names))

    def to_json(self) -> dict[str, Any]:
        """Everything but the pixels of the picture: names, size, shares, segments with RLE masks."""
        return {
            "id": self.id,
            "size": list(self.size),
            "classes": list(self.class_names),
            "shares": {k: round(v, 6) for k, v in self.shares.items()},
            "segments": [s.to_json() for s in self.segments],
        }

    def coco_annotations(self, image_id: int, first_id: int = 1) -> list[dict[str, Any]]:
        """COCO annotations (with scores) of the segments; category_id = class index + 1."""
        return [
            {
                "id": first_id + i,
                "image_id": image_id,
                "category_id": s.label_id + 1,
                "segmentation": s.rle,
                "area": s.area,
                "bbox": list(s.bbox),
                "iscrowd": 0,
                "score": None if s.score is None else round(s.score, 6),
            }
            for i, s in enumerate(self.segments)
        ]

    def __repr__(self) -> str:
        shares = ", ".join(f"{k} {100 * v:.1f}%" for k, v in self.shares.items())
        return f"SegmentationResult({self.id!r}, {self.size[0]}x{self.size[1]}, {len(self.class_names)} classes: {shares})"


def pixel_confidence(scores: "torch.Tensor", labels: "torch.Tensor") -> "torch.Tensor":
    """float [H, W]: the probability of each pixel's label, the scores [K, H, W] normalised over K
    (divided by their sum when none is negative, as fused mask x class probabilities are; a softmax
    when they are logits)."""
    import torch

    scores = scores.float()
    index = labels.clamp(min=0)[None]
    if bool((scores >= 0).all()):
        return scores.gather(0, index)[0] / scores.sum(dim=0).clamp_min(torch.finfo(torch.float32).tiny)
    return (scores.gather(0, index)[0] - torch.logsumexp(scores, dim=0)).exp()


def make_result(
    image: "torch.Tensor", segmentation: "Segmentation", class_names: Sequence[str], *, id: str = "image", keep_image: bool = True
) -> SegmentationResult:
    """image uint8 [3, H, W] and its Segmentation -> a SegmentationResult (segments largest first)."""
    labels_t = segmentation.labels.cpu()
    labels = labels_t.numpy().astype(np.int64)
    confidence = None
    if segmentation.scores is not None:
        confidence = pixel_confidence(segmentation.scores.cpu(), labels_t).numpy()
    elif segmentation.confidence is not None:  # what a chunked fuser computes without the [K, H, W] scores
        confidence = segmentation.confidence.cpu().float().numpy()
    ids, counts = np.unique(labels[labels != IGNORE_INDEX], return_counts=True)
    segments = []
    for k, area in sorted(zip(ids.tolist(), counts.tolist()), key=lambda kc: (-kc[1], kc[0])):
        mask = labels == k
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        bbox = (int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1))
        score = None if confidence is None else float(confidence[mask].mean())
        segments.append(Segment(class_names[k], int(k), score, int(area), bbox, mask))
    picture = image.permute(1, 2, 0).cpu().numpy() if keep_image else None
    return SegmentationResult(tuple(class_names), labels, tuple(segments), picture, id)


class CocoCollector:
    """Builds a COCO file image by image, keeping only RLE text (no masks): images, categories (the
    vocabulary; id = class index + 1) and annotations with scores, readable by pycocotools' COCO()."""

    def __init__(self, class_names: Sequence[str]):
        self.categories = [{"id": k + 1, "name": name} for k, name in enumerate(class_names)]
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []

    def add(self, result: SegmentationResult, file_name: str) -> None:
        image_id = len(self.images) + 1
        h, w = result.size
        self.images.append({"id": image_id, "file_name": file_name, "height": h, "width": w})
        self.annotations += result.coco_annotations(image_id, first_id=len(self.annotations) + 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "info": {"description": "ovframe predictions: one segment per class present; score = mean class probability"},
            "images": self.images,
            "categories": self.categories,
            "annotations": self.annotations,
        }
