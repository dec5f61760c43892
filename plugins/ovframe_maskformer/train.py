"""The `train-proposals` task: train the recipe's `proposals: maskformer` on the dataset's seen classes.

The recipe gives the architecture (`proposals:`), the training split (`dataset:`), the frozen text encoder
(`text_encoder:`) and the hyper-parameters (`task:`). The loop is the core's Trainer (checkpoints, exact
resume, DDP, loss.jsonl); this module supplies the batches and the loss:

    batch of step s, process r of n: global positions s*B + r*(B/n) ... in a sequence of per-epoch
    permutations of the dataset (seeded by the recipe seed); each example augmented with a Random seeded
    by (seed, position) -- so batches depend on neither resuming nor the number of processes.
    loss: MaskFormer's set loss (loss.py) on the text embeddings of the training classes.

Classes marked unseen by the dataset's vocabulary are never trained on: their pixels become ignore and
their names are never embedded. The final weights go to <run dir>/<weights_name> with the architecture
in the safetensors metadata.
"""

from __future__ import annotations

import random
from typing import Any, Mapping

import torch
from torch import nn

from ovframe import IGNORE_INDEX, BadInput, SampleError, Task, Vocabulary
from ovframe.runner import RunContext

from .config import TrainProposalsConfig
from .loss import SetCriterion
from .mapper import Example, SemanticMapper


class EpochOrder:
    """Position p of an endless sequence of dataset permutations, one per epoch, seeded."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed = size, seed
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.int64)

    def at(self, position: int) -> int:
        epoch, offset = divmod(position, self.size)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % 2**64)
            self._epoch, self._perm = epoch, torch.randperm(self.size, generator=g)
        return int(self._perm[offset])


def training_classes(vocabulary: Vocabulary) -> tuple[list[int], list[str]]:
    """Indices and names of the classes to train on: the seen ones when the vocabulary marks them."""
    if vocabulary.seen is None:
        indices = list(range(len(vocabulary)))
    else:
        indices = [i for i, s in enumerate(vocabulary.seen) if s]
    if not indices:
        raise BadInput("the dataset's vocabulary marks no class as seen: there is nothing to train the proposals on")
    return indices, [vocabulary.names[i] for i in indices]


def param_groups(model: nn.Module, cfg: TrainProposalsConfig) -> list[dict[str, Any]]:
    """detectron2/MaskFormer's groups: backbone lr multiplier; no weight decay on norms and embeddings."""
    norms = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm2d, nn.SyncBatchNorm)
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            lr = cfg.lr * (cfg.backbone_lr_multiplier if module_name.startswith("backbone.") else 1.0)
            wd = cfg.weight_decay
            if isinstance(module, norms):
                wd = cfg.weight_decay_norm
            if isinstance(module, nn.Embedding) or pname in ("relative_position_bias_table", "absolute_pos_embed"):
                wd = cfg.weight_decay_embed
            groups.setdefault((lr, wd), []).append(p)
    return [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]


def compute_loss(model: nn.Module, batch: dict[str, Any], criterion: SetCriterion) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of one batch (module-level so that tests can interrupt a run here)."""
    outputs = model(batch["images"], batch["text"])
    return criterion(outputs, batch["targets"])


class TrainProposals(Task):
    name = "train-proposals"
    Config = TrainProposalsConfig

    def run(self, ctx: RunContext) -> Mapping[str, Any]:
        from ovframe.training import Trainer

        cfg: TrainProposalsConfig = self.config  # type: ignore[assignment]
        generator = ctx.component("proposals")
        if getattr(generator, "name", None) != "maskformer" or not hasattr(generator, "build_untrained"):
            raise BadInput(f"train-proposals trains `proposals: maskformer`, the recipe has {getattr(generator, 'name', generator)!r}")
        dataset = ctx.component("dataset")
        if len(dataset) == 0:
            raise BadInput("the training dataset is empty")
        indices, names = training_classes(dataset.vocabulary)
        class_map = torch.full((len(dataset.vocabulary),), -1, dtype=torch.int64)
        class_map[torch.tensor(indices)] = torch.arange(len(indices))
        encoder = ctx.component("text_encoder")
        with torch.no_grad():
            text = encoder.encode(Vocabulary(tuple(names)))
        embeddings = text.embeddings.detach().float().to(ctx.device)
        model = generator.model
        if model is None:
            model = generator.build_untrained(int(embeddings.shape[1]))
        elif model.embed_dim != embeddings.shape[1]:
            raise BadInput(f"the initial weights expect {model.embed_dim}-d text embeddings, the text encoder gives {embeddings.shape[1]}")
        model.train()
        gen_cfg = generator.config
        has_bn = any("BatchNorm" in type(m).__name__ for m in model.backbone.modules())
        if has_bn and gen_cfg.backbone_norm == "frozen" and not gen_cfg.backbone_pretrained and gen_cfg.weights is None:
            ctx.log.warning(
                "proposals.backbone_norm is frozen but the backbone starts from random weights: frozen BatchNorm "
                "statistics of an untrained network are meaningless; use backbone_norm: train, or a backbone_pretrained file"
            )
        if cfg.batch_size % ctx.world_size:
            raise BadInput(f"task.batch_size {cfg.batch_size} must be a multiple of the number of processes ({ctx.world_size})")
        per_process = cfg.batch_size // ctx.world_size
        mapper = SemanticMapper(cfg, class_map)
        order = EpochOrder(len(dataset), ctx.recipe.seed)
        criterion = SetCriterion(cfg.no_object_weight, cfg.class_weight, cfg.mask_weight, cfg.dice_weight, cfg.deep_supervision)
        gcfg = generator.config
        mean = torch.tensor(gcfg.pixel_mean).view(3, 1, 1)
        std = torch.tensor(gcfg.pixel_std).view(3, 1, 1)
        div = max(gcfg.size_divisibility, model.size_divisibility)
        seed = ctx.recipe.seed

        def example(position: int) -> Example:
            epoch_start = position - position % len(dataset)
            for attempt in range(len(dataset)):  # an unreadable sample: the next one of the same epoch
                p = epoch_start + (position - epoch_start + attempt) % len(dataset)
                index = order.at(p)
                try:
                    sample = dataset[index]
                except SampleError as e:
                    ctx.log.warning("skipped %s", e)
                    continue
                if sample.label is None:
                    ctx.log.warning("skipped %s: no label", sample.id)
                    continue
                return mapper(sample.image, sample.label, random.Random(seed * 1_000_003 + position))
            raise BadInput("no sample of the training dataset could be read")

        def batch_fn(step: int, rank: int, world: int) -> dict[str, Any]:
            first = step * cfg.batch_size + rank * per_process
            examples = [example(first + j) for j in range(per_process)]
            images = torch.stack([(e.image - mean) / std for e in examples])
            h, w = images.shape[-2:]
            hp, wp = -(-h // div) * div, -(-w // div) * div
            images = torch.nn.functional.pad(images, (0, wp - w, 0, hp - h))
            targets = [
                {
                    "labels": e.labels.to(ctx.device),
                    "masks": torch.nn.functional.pad(e.masks.float(), (0, wp - w, 0, hp - h)).to(ctx.device),
                    **({"valid": torch.nn.functional.pad((e.label != IGNORE_INDEX).float(), (0, wp - w, 0, hp - h)).to(ctx.device)}
                       if cfg.ignore_pixels == "excluded" else {}),
                }
                for e in examples
            ]
            return {"images": images.to(ctx.device), "text": embeddings, "targets": targets}

        trainer = Trainer(
            ctx, model, cfg,
            loss_fn=lambda m, batch: compute_loss(m, batch, criterion),
            batch_fn=batch_fn,
            param_groups=param_groups(model, cfg),
        )
        ctx.log.info("train-proposals: %d classes (%s), %d images, %d steps of %d", len(names), ", ".join(names[:8]) + (" ..." if len(names) > 8 else ""), len(dataset), cfg.steps, cfg.batch_size)
        last = trainer.run()
        model.eval()
        weights = ctx.out_dir / cfg.weights_name
        if ctx.is_main:
            from .weights import save_maskformer

            save_maskformer(weights, model, gcfg, classes=names, text_model=text.model_id, dtype=getattr(torch, cfg.save_dtype))
            ctx.log.info("wrote %s", weights)
        return {**last, "classes": len(names), "weights": str(weights)}
