"""The `train-sam` task: train the recipe's `proposals: sam` on prompts sampled from ground-truth segments.

The recipe gives the architecture and the starting weights (`proposals:`; no weights: from scratch), the
training images (`dataset:`, labelled) and the hyper-parameters (`task:`). The loop is the core's Trainer
(checkpoints, exact resume, DDP, loss.jsonl); this module supplies the batches and the loss.

A step, per image: the image encoder runs once; up to `masks_per_image` segments (prompts.segments_of)
are prompted, each by a point in it or (box_prob) its noisy box. Round 1: points with multimask output
(the loss backpropagates the best of the S masks), boxes with the single output. Each later round adds a
correction point in the error region of the previous round's mask and feeds that mask's low-resolution
logits back as the mask prompt, single output (SAM's iterative training, `iterations` rounds instead of the
paper's 11). Losses: loss.sam_loss, at the encoder's input frame (masks upsampled as SAM upsamples them).

Batch of step s, process r of n: positions s*B + r*(B/n) ... in a sequence of per-epoch permutations of
the dataset (seeded by the recipe seed); segment choice and first prompts drawn from a generator seeded by
(seed, position); correction points from torch's generator, which the Trainer seeds per step and process.

At the end the trained SAM is written with its architecture (model.save_sam) and measured on
`eval_dataset` (prompted mIoU: one interior point, the most confident of the S masks and the best of them;
the exact box).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ovframe import BadInput, RunContext, Sample, SampleError, Task

from .config import TrainSamConfig
from .loss import mask_iou, sam_loss
from .prompts import box_of, correction_points, first_prompts, interior_point, segments_of


class ImagePrompts:
    """One training image: normalised and padded image [3, S, S], its input size (h, w), segments bool [M, h, w],
    first prompts is_box [M], points [M, 2], boxes [M, 4] (input frame)."""

    def __init__(self, image: torch.Tensor, size: tuple[int, int], segments: torch.Tensor, is_box: torch.Tensor,
                 points: torch.Tensor, boxes: torch.Tensor):
        self.image, self.size, self.segments = image, size, segments
        self.is_box, self.points, self.boxes = is_box, points, boxes

    def to(self, device: Any) -> "ImagePrompts":
        return ImagePrompts(self.image.to(device), self.size, self.segments.to(device), self.is_box.to(device),
                            self.points.to(device), self.boxes.to(device))


def to_input_frame(image: torch.Tensor, label: torch.Tensor, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 [3, H, W], int64 [H, W] -> the same resized so that the long side is image_size (ResizeLongestSide;
    labels nearest)."""
    from segment_anything.utils.transforms import ResizeLongestSide

    h, w = label.shape
    size = ResizeLongestSide.get_preprocess_shape(h, w, image_size)
    if size == (h, w):
        return image, label
    resized = ResizeLongestSide(image_size).apply_image(image.permute(1, 2, 0).numpy())
    label = F.interpolate(label[None, None].float(), size=size, mode="nearest")[0, 0].long()
    return torch.from_numpy(resized).permute(2, 0, 1).contiguous(), label


def normalise_and_pad(image: torch.Tensor, mean: Sequence[float], std: Sequence[float], image_size: int) -> torch.Tensor:
    """uint8 [3, h, w] -> float [3, S, S]: (x - mean) / std, zero-padded right and bottom (Sam.preprocess)."""
    x = (image.float() - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    return F.pad(x, (0, image_size - x.shape[2], 0, image_size - x.shape[1]))


class SamForTraining(nn.Module):
    """SAM and one step's prompting rounds in one forward, so that DistributedDataParallel sees every use
    of the weights. forward(batch) -> sums over prompts and the number of prompts."""

    def __init__(self, sam: nn.Module, cfg: TrainSamConfig):
        super().__init__()
        self.sam = sam
        self.cfg = cfg

    def upsample(self, low: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """low-res logits [P, S, 4g, 4g] -> [P, S, h, w] at the input frame (SAM's upsampling, padding cut)."""
        side = self.sam.image_encoder.img_size
        return F.interpolate(low, (side, side), mode="bilinear", align_corners=False)[..., : size[0], : size[1]]

    def forward(self, batch: list[ImagePrompts]) -> dict[str, torch.Tensor]:
        sam, cfg = self.sam, self.cfg
        encoder_trains = any(p.requires_grad for p in sam.image_encoder.parameters())
        with torch.set_grad_enabled(encoder_trains and torch.is_grad_enabled()):
            embeddings = sam.image_encoder(torch.stack([b.image for b in batch]))
        dense_pe = sam.prompt_encoder.get_dense_pe()
        zero = embeddings.new_zeros(())
        sums = {"mask": zero, "iou": zero, "prompts": zero, "first_iou": zero, "last_iou": zero, "firsts": zero}
        for b, item in enumerate(batch):
            # point-first prompts, then box-first ones: in every round both have the same number of tokens
            # ([points.., pad] and [points.., corner, corner]), so one decoder call serves both
            order = torch.cat([torch.nonzero(~item.is_box).flatten(), torch.nonzero(item.is_box).flatten()])
            n_points = int((~item.is_box).sum())
            target, boxes = item.segments[order], item.boxes[order[n_points:]]
            coords = [item.points[order[:n_points], None, :], None]  # per group: [P, k, 2] or None
            labels = [torch.ones(n_points, 1, dtype=torch.int, device=target.device), None]
            mask_input = None
            rows = torch.arange(len(order), device=target.device)
            for r in range(cfg.iterations):
                sparse, dense = [], []
                for g, (first, last) in enumerate(((0, n_points), (n_points, len(order)))):
                    if first == last:
                        continue
                    pts = None if coords[g] is None else (coords[g], labels[g])
                    s, d = sam.prompt_encoder(points=pts, boxes=boxes if g == 1 else None,
                                              masks=None if mask_input is None else mask_input[first:last])
                    sparse.append(s)
                    dense.append(d)
                low, iou_pred = sam.mask_decoder.predict_masks(
                    image_embeddings=embeddings[b : b + 1], image_pe=dense_pe,
                    sparse_prompt_embeddings=torch.cat(sparse), dense_prompt_embeddings=torch.cat(dense),
                )  # all outputs: [M, 1 + S, ...]; single-output token 0, multimask 1..S
                best = torch.zeros(len(order), dtype=torch.long, device=low.device)
                parts = [(slice(0, n_points), slice(1, None) if r == 0 else slice(0, 1)), (slice(n_points, None), slice(0, 1))]
                chosen = []
                for group, slots in parts:
                    if low[group].shape[0] == 0:
                        continue
                    logits = self.upsample(low[group, slots], item.size)
                    mask_loss, iou_loss, info = sam_loss(logits, iou_pred[group, slots], target[group], cfg.focal_weight, cfg.dice_weight)
                    sums["mask"] = sums["mask"] + mask_loss
                    sums["iou"] = sums["iou"] + iou_loss
                    first_slot = slots.start
                    best[group] = info["best"] + first_slot
                    chosen.append((logits.detach(), info))
                sums["prompts"] = sums["prompts"] + len(order)
                ious = torch.cat([info["iou"] for _, info in chosen])
                if r == 0:
                    sums["first_iou"] = sums["first_iou"] + ious.sum()
                    sums["firsts"] = sums["firsts"] + len(order)
                if r == cfg.iterations - 1:
                    sums["last_iou"] = sums["last_iou"] + ious.sum()
                    break
                mask_input = low[rows, best][:, None].detach()
                predicted = torch.cat([lg[torch.arange(len(lg)), info["best"]] for lg, info in chosen]) > 0
                point, label = correction_points(predicted, target)
                for g, (first, last) in enumerate(((0, n_points), (n_points, len(order)))):
                    if first == last:
                        continue
                    p, lab = point[first:last, None], label[first:last, None]
                    coords[g] = p if coords[g] is None else torch.cat([coords[g], p], dim=1)
                    labels[g] = lab if labels[g] is None else torch.cat([labels[g], lab], dim=1)
        # every trainable weight takes part in the graph (DDP needs it when a batch has no box or no point prompt)
        sums["mask"] = sums["mask"] + sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0
        return sums


def global_count(n: float) -> float:
    """n summed over processes (at least 1), so that DDP's gradient average is the whole batch's gradient."""
    t = torch.tensor([float(n)], dtype=torch.float64)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(t)
        t /= torch.distributed.get_world_size()
    return max(float(t.item()), 1.0)


def compute_loss(model: nn.Module, batch: list[ImagePrompts], cfg: TrainSamConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of one batch (module-level so that tests can interrupt a run here)."""
    sums = model(batch)
    n = global_count(float(sums["prompts"]))
    loss = (sums["mask"] + cfg.iou_weight * sums["iou"]) / n
    firsts = max(float(sums["firsts"]), 1.0)
    return loss, {
        "mask": float(sums["mask"].detach()) / n,
        "iou_mse": float(sums["iou"].detach()) / n,
        "miou_first": float(sums["first_iou"]) / firsts,
        "miou_last": float(sums["last_iou"]) / firsts,
    }


class EpochOrder:
    """Dataset indices in per-epoch permutations seeded by (seed, epoch)."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed = n, seed
        self._epoch, self._perm = -1, np.arange(0)

    def at(self, position: int) -> int:
        epoch, offset = divmod(position, self.n)
        if epoch != self._epoch:
            self._epoch, self._perm = epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n)
        return int(self._perm[offset])


@torch.inference_mode()
def prompted_miou(sam: Any, samples: Sequence[Sample], segments: str = "components", min_area: int = 16) -> dict[str, float]:
    """SAM's prompted mask quality on labelled samples: for every segment, one point at its interior
    (multimask; the most confident mask and the best of them) and its exact box (single output); mean IoU."""
    from segment_anything.utils.transforms import ResizeLongestSide

    side = sam.image_encoder.img_size
    transform = ResizeLongestSide(side)
    ious: dict[str, list[float]] = {"point": [], "point_best": [], "box": []}
    device = next(sam.parameters()).device
    mean, std = sam.pixel_mean.flatten().tolist(), sam.pixel_std.flatten().tolist()
    for sample in samples:
        if sample.label is None:
            continue
        segs = segments_of(sample.label.numpy(), segments, min_area)
        if len(segs) == 0:
            continue
        h, w = sample.size
        image, _ = to_input_frame(sample.image, sample.label, side)
        size = tuple(image.shape[1:])
        embedding = sam.image_encoder(normalise_and_pad(image, mean, std, side)[None].to(device))
        points = torch.tensor([interior_point(s) for s in segs], dtype=torch.float)
        boxes = torch.tensor(np.stack([box_of(s) for s in segs]), dtype=torch.float)
        points = transform.apply_coords_torch(points, (h, w)).to(device)
        boxes = transform.apply_boxes_torch(boxes, (h, w)).to(device)
        target = torch.from_numpy(segs).to(device).flatten(1).float()
        for kind in ("point", "box"):
            if kind == "point":
                sparse, dense = sam.prompt_encoder(points=(points[:, None], torch.ones(len(segs), 1, dtype=torch.int, device=device)), boxes=None, masks=None)
            else:
                sparse, dense = sam.prompt_encoder(points=None, boxes=boxes, masks=None)
            low, iou_pred = sam.mask_decoder(image_embeddings=embedding, image_pe=sam.prompt_encoder.get_dense_pe(),
                                             sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=kind == "point")
            logits = sam.postprocess_masks(low, size, (h, w)).flatten(2)
            iou = mask_iou(logits, target[:, None].expand(-1, logits.shape[1], -1))  # [M, S]
            ious[kind] += iou.gather(1, iou_pred.argmax(1, keepdim=True)).flatten().tolist()
            if kind == "point":
                ious["point_best"] += iou.max(1).values.tolist()
    return {f"{k}_miou": round(100 * float(np.mean(v)), 2) if v else math.nan for k, v in ious.items()} | {"segments": len(ious["box"])}


class TrainSam(Task):
    name = "train-sam"
    Config = TrainSamConfig

    def run(self, ctx: RunContext) -> Mapping[str, Any]:
        from ovframe.training import Prefetch, Trainer, decay_groups

        from .model import save_sam

        cfg: TrainSamConfig = self.config  # type: ignore[assignment]
        generator = ctx.component("proposals")
        if getattr(generator, "name", None) != "sam":
            raise BadInput(f"train-sam trains `proposals: sam`, the recipe has {getattr(generator, 'name', generator)!r}")
        dataset = ctx.component("dataset")
        if len(dataset) == 0:
            raise BadInput("the training dataset is empty")
        if cfg.batch_size % ctx.world_size:
            raise BadInput(f"task.batch_size {cfg.batch_size} must be a multiple of the number of processes ({ctx.world_size})")
        sam = generator.model if generator.model is not None else generator.build_untrained()
        arch = generator.architecture
        if cfg.freeze_image_encoder:
            sam.image_encoder.requires_grad_(False)
        model = SamForTraining(sam, cfg).to(ctx.device)
        model.train()
        side = arch.image_size
        per_process = cfg.batch_size // ctx.world_size
        order = EpochOrder(len(dataset), ctx.recipe.seed)
        seed = ctx.recipe.seed

        def example(position: int) -> ImagePrompts:
            for attempt in range(len(dataset)):  # unreadable or unlabelled: the next position
                try:
                    sample = dataset[order.at(position + attempt)]
                except SampleError as e:
                    ctx.log.warning("skipped %s", e)
                    continue
                if sample.label is None:
                    continue
                image, label = to_input_frame(sample.image, sample.label, side)
                segs = segments_of(label.numpy(), cfg.segments, cfg.min_segment_area)
                if len(segs) == 0:
                    continue
                rng = np.random.default_rng([seed, position])
                if len(segs) > cfg.masks_per_image:
                    segs = segs[np.sort(rng.choice(len(segs), cfg.masks_per_image, replace=False))]
                is_box, points, boxes = first_prompts(segs, rng, cfg.box_prob, cfg.box_noise)
                return ImagePrompts(
                    normalise_and_pad(image, arch.pixel_mean, arch.pixel_std, side), tuple(label.shape), torch.from_numpy(segs),
                    torch.from_numpy(is_box), torch.from_numpy(points).float(), torch.from_numpy(boxes).float(),
                )
            raise BadInput("no image of the training dataset has a labelled segment to prompt")

        def make(step: int, rank: int, world: int) -> list[ImagePrompts]:
            first = step * cfg.batch_size + rank * per_process
            return [example(first + j) for j in range(per_process)]

        batches = Prefetch(make, cfg.steps, cfg.workers)
        trainer = Trainer(
            ctx, model, cfg,
            loss_fn=lambda m, batch: compute_loss(m, [b.to(ctx.device) for b in batch], cfg),
            batch_fn=batches,
            param_groups=decay_groups(model, cfg.weight_decay),
        )
        ctx.log.info("train-sam: %d images, %d steps of %d images x <= %d segments x %d rounds", len(dataset), cfg.steps,
                     cfg.batch_size, cfg.masks_per_image, cfg.iterations)
        last = trainer.run()
        sam.eval()
        metrics: dict[str, Any] = dict(last)
        weights = ctx.out_dir / cfg.weights_name
        if ctx.is_main:
            save_sam(weights, sam, arch, getattr(torch, cfg.save_dtype))
            ctx.log.info("wrote %s", weights)
            if cfg.eval_dataset is not None:
                evaluation = ctx.registry.build("dataset", dict(cfg.eval_dataset))
                samples = [evaluation[i] for i in range(min(cfg.eval_images, len(evaluation)))]
                measured = prompted_miou(sam, samples, cfg.segments, cfg.min_segment_area)
                ctx.log.info("prompted mIoU on %d images: %s", len(samples), measured)
                metrics["eval"] = measured
        return {**metrics, "weights": str(weights)}
