"""The `sam` proposal generator: SAM's automatic mask generator, batched, with bounded memory.

It makes the masks segment_anything's SamAutomaticMaskGenerator makes (same prompts, filters and NMS,
built on its model, transforms and amg utilities), in another order of work:

    1. every image (and crop, with crop_n_layers) goes through the image encoder, `image_batch` at a time;
    2. per crop, point prompts in batches of `points_per_batch` through the prompt encoder and mask decoder;
       the predicted-IoU filter runs on the decoder's output, so only the masks that pass it are upsampled
       to the crop's size (Sam.postprocess_masks, as the package does), `upsample_batch` at a time, for the
       stability filter, the box and the crop-edge filter; what is kept of a mask is its box and scores;
    3. box NMS per crop (by predicted IoU), then between crops (smaller crops preferred), as the package;
    4. the kept prompts, highest predicted IoU first, are decoded again, and their upsampled logits
       become the proposals, up to `max_proposals`.
Memory is bounded by the batch sizes and the output, never by points_per_side^2 (the package keeps an RLE of
every mask that passes the filters). Step 4 decodes at most max_proposals prompts a second time.

Mask logits (`mask_logits: upsampled`): SAM's low-resolution logits upsampled exactly as SAM upsamples them
(bilinear to the encoder's input size, padding cut, bilinear to the image), so logit 0 is SAM's own mask
boundary and a classifier's mask_thr 0.5 gives SAM's masks. Pixels outside a mask's crop get
-binary_logit. `binary`: +-binary_logit.

min_mask_region_area > 0 (ovframe's own clean-up, scipy instead of opencv): each kept mask, highest
predicted IoU first, has its holes and islands smaller than the area removed (8-connectivity; a mask
whose islands are all small keeps its largest), the changed pixels get +-binary_logit, and a cleaned mask
whose new box overlaps an already kept one above max(box_nms_thresh, crop_nms_thresh) is dropped. (The
package instead re-runs NMS over all masks preferring unchanged ones, and needs opencv.)

Proposals.quality: "predicted_iou" and "stability" [N] of each mask.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from ovframe import BadInput, ProposalGenerator, Proposals, RequiredFile, Sample
from ovframe.files import resolve_path

from .config import HOW_TO_GET, SamConfig
from .model import load_sam


@dataclass
class Crop:
    """One image crop seen by the encoder: `box` (x0, y0, x1, y1) in its image, the resized input size."""

    sample: int
    box: list[int]
    layer: int
    input_size: tuple[int, int]
    embedding: torch.Tensor | None = None

    @property
    def size(self) -> tuple[int, int]:
        x0, y0, x1, y1 = self.box
        return y1 - y0, x1 - x0


@dataclass
class Candidates:
    """Masks that passed the filters: box (image frame), scores, and how to decode them again."""

    boxes: list[torch.Tensor] = field(default_factory=list)  # [M, 4] xyxy
    iou: list[torch.Tensor] = field(default_factory=list)  # [M]
    stability: list[torch.Tensor] = field(default_factory=list)  # [M]
    crop: list[torch.Tensor] = field(default_factory=list)  # [M] index into the crops
    points: list[torch.Tensor] = field(default_factory=list)  # [M, 2] the prompt in the encoder's input frame
    slot: list[torch.Tensor] = field(default_factory=list)  # [M] which multimask output

    def cat(self) -> dict[str, torch.Tensor]:
        if not self.boxes:
            return {"boxes": torch.zeros(0, 4), "iou": torch.zeros(0), "stability": torch.zeros(0),
                    "crop": torch.zeros(0, dtype=torch.long), "points": torch.zeros(0, 2), "slot": torch.zeros(0, dtype=torch.long)}
        return {k: torch.cat(getattr(self, k)) for k in ("boxes", "iou", "stability", "crop", "points", "slot")}


def clean_small_regions(mask: np.ndarray, min_area: int) -> np.ndarray:
    """Fill holes and remove islands smaller than min_area pixels (8-connectivity); a mask whose islands are
    all small keeps its largest one."""
    from scipy import ndimage

    eight = np.ones((3, 3), dtype=bool)
    holes, n = ndimage.label(~mask, structure=eight)
    if n:
        sizes = np.bincount(holes.ravel())[1:]
        mask = mask | np.isin(holes, 1 + np.flatnonzero(sizes < min_area))
    islands, n = ndimage.label(mask, structure=eight)
    if n:
        sizes = np.bincount(islands.ravel())[1:]
        small = sizes < min_area
        if small.all():
            small[int(sizes.argmax())] = False
        mask = mask & ~np.isin(islands, 1 + np.flatnonzero(small))
    return mask


class SamProposals(ProposalGenerator):
    name = "sam"
    Config = SamConfig

    def __init__(self, config: SamConfig):
        super().__init__(config)
        self.config: SamConfig = config
        self.model: Any = None
        self.architecture = None
        if config.weights is not None:
            self.model, self.architecture = load_sam(config.model, resolve_path(config.weights))
        from segment_anything.utils.amg import build_all_layer_point_grids

        self.grids = build_all_layer_point_grids(config.points_per_side, config.crop_n_layers, config.crop_n_points_downscale_factor)

    @classmethod
    def required_files(cls, config: SamConfig) -> list[RequiredFile]:
        if config.weights is None:
            return []
        what = f"SAM weights ({config.model if isinstance(config.model, str) else 'custom architecture' if config.model else 'architecture from the file'})"
        return [RequiredFile(str(resolve_path(config.weights)), what, HOW_TO_GET, config.sha256)]

    def build_untrained(self) -> Any:
        """A freshly initialised network of the recipe's architecture (train-sam from scratch)."""
        self.model, self.architecture = load_sam(self.config.model, None)
        self.model.to(self.device)
        return self.model

    # -- the automatic generator -------------------------------------------------------------
    def propose(self, samples: Sequence[Sample], text: Any = None) -> list[Proposals]:
        if self.model is None:
            raise BadInput(self.config.cannot_segment() or "sam has no network to segment with")
        if not samples:
            return []
        self.model.eval()
        with torch.inference_mode():
            if self.config.generator == "package":
                return [self._propose_with_package(s) for s in samples]
            return self._propose_batched(samples)

    def _propose_batched(self, samples: Sequence[Sample]) -> list[Proposals]:
        from segment_anything.utils.amg import generate_crop_boxes

        cfg = self.config
        crops: list[Crop] = []
        for i, s in enumerate(samples):
            boxes, layers = generate_crop_boxes(s.size, cfg.crop_n_layers, cfg.crop_overlap_ratio)
            crops += [Crop(i, list(b), layer, (0, 0)) for b, layer in zip(boxes, layers)]
        self._encode(samples, crops)
        out = []
        for i, s in enumerate(samples):
            mine = [j for j, c in enumerate(crops) if c.sample == i]
            found = Candidates()
            for j in mine:
                self._filter_crop(crops[j], j, s.size, found)
            kept = self._nms(found.cat(), crops)
            out.append(self._proposals(kept, crops, s.size))
            for j in mine:
                crops[j].embedding = None  # free as we go
        return out

    def _encode(self, samples: Sequence[Sample], crops: list[Crop]) -> None:
        """Set each crop's image embedding [C, h, w], `image_batch` crops per encoder call."""
        from segment_anything.utils.transforms import ResizeLongestSide

        transform = ResizeLongestSide(self.model.image_encoder.img_size)
        images = [s.image.permute(1, 2, 0).cpu().numpy() for s in samples]
        for start in range(0, len(crops), self.config.image_batch):
            chunk = crops[start : start + self.config.image_batch]
            batch = []
            for c in chunk:
                x0, y0, x1, y1 = c.box
                resized = transform.apply_image(np.ascontiguousarray(images[c.sample][y0:y1, x0:x1]))
                c.input_size = (int(resized.shape[0]), int(resized.shape[1]))
                tensor = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).float()
                batch.append(self.model.preprocess(tensor))
            embeddings = self.model.image_encoder(torch.stack(batch))
            for c, e in zip(chunk, embeddings):
                c.embedding = e

    def _decode(self, crop: Crop, points: torch.Tensor, multimask: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """points [P, 2] (encoder input frame) -> low-res logits [P, S, h, w], predicted IoU [P, S]."""
        prompt = self.model.prompt_encoder
        labels = torch.ones(points.shape[0], 1, dtype=torch.int, device=self.device)
        sparse, dense = prompt(points=(points[:, None, :], labels), boxes=None, masks=None)
        return self.model.mask_decoder(
            image_embeddings=crop.embedding[None],
            image_pe=prompt.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )

    def _upsample(self, crop: Crop, low: torch.Tensor) -> torch.Tensor:
        """low-res logits [M, h, w] -> logits [M, Hc, Wc] at the crop's size, as SAM upsamples them."""
        return self.model.postprocess_masks(low[:, None], crop.input_size, crop.size)[:, 0]

    def _filter_crop(self, crop: Crop, index: int, image_size: tuple[int, int], found: Candidates) -> None:
        from segment_anything.utils.amg import batched_mask_to_box, calculate_stability_score, is_box_near_crop_edge, uncrop_boxes_xyxy
        from segment_anything.utils.transforms import ResizeLongestSide

        cfg = self.config
        h, w = image_size
        ch, cw = crop.size
        grid = self.grids[crop.layer] * np.array([[cw, ch]])
        coords = torch.as_tensor(ResizeLongestSide(self.model.image_encoder.img_size).apply_coords(grid, crop.size), dtype=torch.float, device=self.device)
        for start in range(0, len(coords), cfg.points_per_batch):
            points = coords[start : start + cfg.points_per_batch]
            low, iou = self._decode(crop, points)
            slots = low.shape[1]
            low, iou = low.flatten(0, 1), iou.flatten(0, 1)
            prompt = torch.arange(len(points), device=self.device).repeat_interleave(slots)
            slot = torch.arange(slots, device=self.device).repeat(len(points))
            keep = torch.nonzero(iou > cfg.pred_iou_thresh if cfg.pred_iou_thresh > 0 else torch.ones_like(iou, dtype=torch.bool)).flatten()
            for part in keep.split(cfg.upsample_batch):
                logits = self._upsample(crop, low[part])
                stability = calculate_stability_score(logits, self.model.mask_threshold, cfg.stability_score_offset)
                ok = stability >= cfg.stability_score_thresh if cfg.stability_score_thresh > 0 else torch.ones_like(stability, dtype=torch.bool)
                boxes = batched_mask_to_box(logits[ok] > self.model.mask_threshold)
                inside = ~is_box_near_crop_edge(boxes, crop.box, [0, 0, w, h])
                part, stability, boxes = part[ok][inside], stability[ok][inside], boxes[inside]
                found.boxes.append(uncrop_boxes_xyxy(boxes, crop.box).float())
                found.iou.append(iou[part].float())
                found.stability.append(stability.float())
                found.crop.append(torch.full((len(part),), index, dtype=torch.long, device=self.device))
                found.points.append(points[prompt[part]])
                found.slot.append(slot[part])

    def _nms(self, c: dict[str, torch.Tensor], crops: list[Crop]) -> dict[str, torch.Tensor]:
        """Box NMS per crop by predicted IoU, then between crops preferring smaller crops; highest IoU first."""
        from torchvision.ops.boxes import batched_nms, box_area

        if len(c["iou"]) == 0:
            return c
        keep = batched_nms(c["boxes"], c["iou"], c["crop"], self.config.box_nms_thresh)  # crops as categories: per crop
        c = {k: v[keep] for k, v in c.items()}
        if len(crops) > 1 and len(keep) > 1:
            areas = box_area(torch.tensor([crops[int(i)].box for i in c["crop"]], dtype=torch.float, device=c["boxes"].device))
            keep = batched_nms(c["boxes"], 1 / areas, torch.zeros_like(c["crop"]), self.config.crop_nms_thresh)
            c = {k: v[keep] for k, v in c.items()}
        order = torch.argsort(c["iou"], descending=True, stable=True)
        return {k: v[order] for k, v in c.items()}

    def _proposals(self, kept: dict[str, torch.Tensor], crops: list[Crop], size: tuple[int, int]) -> Proposals:
        """Decode the kept prompts again and place their logits in the image (step 4 of the docstring)."""
        cfg = self.config
        h, w = size
        limit = cfg.max_proposals or len(kept["iou"])
        clean = cfg.min_mask_region_area > 0
        candidates = len(kept["iou"]) if clean else min(limit, len(kept["iou"]))
        masks: list[torch.Tensor] = []
        chosen: list[int] = []
        boxes: list[torch.Tensor] = []
        for part in torch.arange(candidates).split(cfg.upsample_batch):
            logits = self._decode_kept(kept, part, crops, size)
            for j, m in zip(part.tolist(), logits):
                if clean:
                    m, box = self._clean(m)
                    if box is None or any(_box_iou(box, b) > max(cfg.box_nms_thresh, cfg.crop_nms_thresh) for b in boxes):
                        continue
                    boxes.append(box)
                if cfg.mask_logits == "binary":
                    m = torch.where(m > 0, cfg.binary_logit, -cfg.binary_logit)
                masks.append(m)
                chosen.append(j)
                if len(masks) == limit:
                    break
            if len(masks) == limit:
                break
        index = torch.tensor(chosen, dtype=torch.long, device=kept["iou"].device)
        quality = {"predicted_iou": kept["iou"][index].float(), "stability": kept["stability"][index].float()}
        stacked = torch.stack(masks) if masks else torch.zeros(0, h, w, device=self.device)
        return Proposals(mask_logits=stacked.float(), quality=quality)

    def _decode_kept(self, kept: dict[str, torch.Tensor], part: torch.Tensor, crops: list[Crop], size: tuple[int, int]) -> torch.Tensor:
        """Logits [len(part), H, W] in the image frame of the kept masks `part` (outside their crop: -binary_logit)."""
        h, w = size
        out = torch.full((len(part), h, w), -self.config.binary_logit, device=self.device)
        crop_of = kept["crop"][part]
        for index in crop_of.unique().tolist():
            rows = torch.nonzero(crop_of == index).flatten()
            crop = crops[index]
            which = part[rows]
            low, _ = self._decode(crop, kept["points"][which])
            low = low[torch.arange(len(which)), kept["slot"][which]]
            x0, y0, x1, y1 = crop.box
            out[rows, y0:y1, x0:x1] = self._upsample(crop, low)
        return out

    def _clean(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """min_mask_region_area clean-up of one mask: (logits with changed pixels at +-binary_logit, box or None if empty)."""
        before = (logits > 0).cpu().numpy()
        after = clean_small_regions(before, self.config.min_mask_region_area)
        if not after.any():
            return logits, None
        changed = torch.from_numpy(before != after).to(logits.device)
        on = torch.from_numpy(after).to(logits.device)
        value = torch.where(on, self.config.binary_logit, -self.config.binary_logit).to(logits.dtype)
        logits = torch.where(changed, value, logits)
        ys, xs = np.nonzero(after)
        return logits, torch.tensor([xs.min(), ys.min(), xs.max(), ys.max()], dtype=torch.float)

    # -- the package's own generator ------------------------------------------------------------
    def _propose_with_package(self, sample: Sample) -> Proposals:
        from segment_anything import SamAutomaticMaskGenerator

        cfg = self.config
        try:
            generator = SamAutomaticMaskGenerator(
                self.model,
                points_per_side=cfg.points_per_side,
                points_per_batch=cfg.points_per_batch,
                pred_iou_thresh=cfg.pred_iou_thresh,
                stability_score_thresh=cfg.stability_score_thresh,
                stability_score_offset=cfg.stability_score_offset,
                box_nms_thresh=cfg.box_nms_thresh,
                crop_n_layers=cfg.crop_n_layers,
                crop_nms_thresh=cfg.crop_nms_thresh,
                crop_overlap_ratio=cfg.crop_overlap_ratio,
                crop_n_points_downscale_factor=cfg.crop_n_points_downscale_factor,
                min_mask_region_area=cfg.min_mask_region_area,
                output_mode="binary_mask",
            )
        except ImportError as e:
            raise BadInput(f"generator: package with min_mask_region_area > 0 needs opencv ({e}); use generator: batched") from None
        records = generator.generate(sample.image.permute(1, 2, 0).cpu().numpy())
        records.sort(key=lambda r: -r["predicted_iou"])
        records = records[: cfg.max_proposals] if cfg.max_proposals else records
        h, w = sample.size
        if not records:
            return Proposals(torch.zeros(0, h, w, device=self.device), quality={"predicted_iou": torch.zeros(0), "stability": torch.zeros(0)})
        masks = torch.from_numpy(np.stack([r["segmentation"] for r in records])).to(self.device)
        logits = torch.where(masks, cfg.binary_logit, -cfg.binary_logit).float()
        quality = {k: torch.tensor([r[key] for r in records], dtype=torch.float, device=self.device)
                   for k, key in (("predicted_iou", "predicted_iou"), ("stability", "stability_score"))}
        return Proposals(logits, quality=quality)


def _box_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """IoU of two xyxy boxes with inclusive pixel coordinates (as batched_mask_to_box gives them)."""
    from torchvision.ops.boxes import box_iou

    return float(box_iou(a[None].float(), b[None].float())[0, 0])
