"""The `pretrain-clip` task: a CLIP from scratch on image-caption pairs, CLIP's contrastive loss.

This plays the role of CLIP's web-scale pretraining in the synthetic world: the captions name every
class, unseen ones included; no pixel label is read. The batch of step s is a pure function of s (a
fresh permutation of the images per epoch, seeded by the recipe seed; a caption per image drawn with a
generator seeded by (seed, position)), so the shared loop's exact resume holds. `keep_together: g`
shuffles blocks of g consecutive images instead of single images, so that a dataset's neighbours
(synth twins) share a batch. The loss is
open_clip's own ClipLoss on the L2-normalised features at the learnable temperature exp(logit_scale),
clamped to <= 100 as open_clip does; under torchrun features are gathered across processes.

At the end the model is written as clip.json + clip.safetensors (clip_model.py) and scored by
zero-shot region accuracy (zeroshot.py) on `eval_dataset`.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F

from ovframe import BadInput, Dataset, RunContext, Task
from ovframe.files import resolve_path, sha256_of
from ovframe.training import Prefetch, Trainer, decay_groups

from .clip_model import build_clip, build_tokenizer, read_model_config, save_clip
from .config import PretrainClipConfig
from .zeroshot import zero_shot_regions

LOG_100 = math.log(100.0)


class CaptionBatches:
    """batch_fn: {"images": float [b, 3, S, S] normalised, "tokens": int64 [b, context]} of one step."""

    def __init__(self, dataset: Dataset, tokenizer: Callable, image_size: int, mean, std,
                 global_batch: int, seed: int, caption: str, keep_together: int = 1):
        self.dataset, self.tokenizer, self.size = dataset, tokenizer, image_size
        self.group = keep_together
        self.mean = torch.tensor(mean).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(std).view(1, 3, 1, 1) * 255
        self.global_batch, self.seed, self.caption = global_batch, seed, caption
        self._perms: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        """Images per epoch: whole blocks of `keep_together` consecutive images."""
        return len(self.dataset) // self.group * self.group

    def _order(self, epoch: int) -> torch.Tensor:
        """The images of an epoch in order: blocks of `group` consecutive indices, shuffled as blocks."""
        if epoch not in self._perms:
            if len(self._perms) > 2:
                self._perms.pop(min(self._perms))
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % 2**64)
            blocks = torch.randperm(len(self) // self.group, generator=g)
            self._perms[epoch] = (blocks[:, None] * self.group + torch.arange(self.group)).flatten()
        return self._perms[epoch]

    def positions(self, step: int, rank: int, world: int) -> range:
        local = self.global_batch // world
        start = step * self.global_batch + rank * local
        return range(start, start + local)

    def __call__(self, step: int, rank: int, world: int) -> dict[str, torch.Tensor]:
        n = len(self)
        images, texts = [], []
        for p in self.positions(step, rank, world):
            sample = self.dataset[int(self._order(p // n)[p % n])]
            captions = list(sample.meta.get("captions") or [])
            if not captions:
                raise BadInput(f"sample {sample.id} has no captions (sample.meta['captions']); pretrain-clip needs image-caption pairs")
            if self.caption == "first":
                pick = 0
            else:
                g = torch.Generator().manual_seed((self.seed * 7_919 + p) % 2**64)
                pick = int(torch.randint(len(captions), (1,), generator=g))
            images.append(sample.image)
            texts.append(captions[pick])
        batch = torch.stack(images).float()
        if batch.shape[-2:] != (self.size, self.size):
            batch = F.interpolate(batch, size=(self.size, self.size), mode="bicubic", align_corners=False, antialias=True)
        return {"images": (batch - self.mean) / self.std, "tokens": self.tokenizer(texts)}





class PretrainClip(Task):
    name = "pretrain-clip"
    Config = PretrainClipConfig

    def run(self, ctx: RunContext) -> Mapping[str, Any]:
        from open_clip.loss import ClipLoss

        cfg: PretrainClipConfig = self.config  # type: ignore[assignment]
        if cfg.batch_size % (ctx.world_size * cfg.keep_together):
            raise BadInput(f"task.batch_size {cfg.batch_size} does not split evenly over {ctx.world_size} process(es) "
                           f"in blocks of keep_together = {cfg.keep_together}")
        model_cfg = read_model_config(cfg.model)
        dataset: Dataset = ctx.component("dataset")
        eval_dataset = ctx.registry.build("dataset", cfg.eval_dataset) if cfg.eval_dataset else None  # fail early
        if eval_dataset is not None and "{}" not in cfg.eval_template:
            raise BadInput(f"task.eval_template must hold one {{}}, got {cfg.eval_template!r}")
        torch.manual_seed(ctx.recipe.seed % 2**64)  # the initial weights
        model = build_clip(model_cfg).to(ctx.device)
        tokenizer = build_tokenizer(model_cfg, None if isinstance(cfg.model, dict) else resolve_path(cfg.model).parent)
        size = model.visual.image_size
        size = int(size[0] if isinstance(size, (tuple, list)) else size)
        params = sum(p.numel() for p in model.parameters())
        ctx.log.info("pretrain-clip: %.2fM parameters, %d images of %d px, %d steps of %d pairs",
                     params / 1e6, len(dataset), size, cfg.steps, cfg.batch_size)

        if len(dataset) < cfg.keep_together:
            raise BadInput(f"the dataset has {len(dataset)} images, fewer than task.keep_together = {cfg.keep_together}")
        make = CaptionBatches(dataset, tokenizer, size, cfg.mean, cfg.std, cfg.batch_size, ctx.recipe.seed, cfg.caption,
                              cfg.keep_together)
        loss = ClipLoss(local_loss=ctx.world_size > 1, gather_with_grad=ctx.world_size > 1,
                        rank=ctx.rank, world_size=ctx.world_size)

        def loss_fn(m: torch.nn.Module, batch: dict[str, torch.Tensor]):
            with torch.no_grad():
                model.logit_scale.clamp_(0, LOG_100)
            image, text, scale = m(batch["images"].to(ctx.device), batch["tokens"].to(ctx.device))
            value = loss(image, text, scale)
            with torch.no_grad():
                acc = (image @ text.T).argmax(dim=1).eq(torch.arange(len(image), device=image.device)).float().mean()
            return value, {"scale": float(scale.detach()), "batch_i2t_acc": float(acc)}

        trainer = Trainer(ctx, model, cfg, loss_fn=loss_fn, batch_fn=Prefetch(make, cfg.steps, cfg.workers),
                          param_groups=decay_groups(model, cfg.weight_decay))
        last = trainer.run()
        with torch.no_grad():
            model.logit_scale.clamp_(0, LOG_100)
        metrics: dict[str, Any] = {k: v for k, v in last.items() if k != "lr"}
        if ctx.is_main:
            dtype = torch.float16 if cfg.save_dtype == "float16" else torch.float32
            config_path, weights_path = save_clip(model, model_cfg, ctx.out_dir, mean=cfg.mean, std=cfg.std, dtype=dtype)
            metrics.update(parameters=params, weights=str(weights_path), weights_sha256=sha256_of(weights_path),
                           weights_mb=round(weights_path.stat().st_size / 2**20, 2), model_config=str(config_path))
            if eval_dataset is not None:
                with ctx.timings.stage("zero_shot"):
                    metrics.update(zero_shot_regions(model, tokenizer, eval_dataset, cfg.eval_images, template=cfg.eval_template,
                                                     mean=cfg.mean, std=cfg.std, device=ctx.device))
            ctx.log.info("pretrain-clip: wrote %s and %s; %s", config_path.name, weights_path.name,
                         {k: round(v, 4) for k, v in metrics.items() if k.startswith("zs_") and isinstance(v, float)})
        return metrics
