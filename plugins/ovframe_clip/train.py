"""The `train-adapter` task: train the recipe's adapter on (image, mask, noun) pairs.

The recipe names the CLIP model and crop procedure in `classifier:` (regions are cropped exactly as
at inference), the adapter in `adapter:`, the (frozen) text side in `text_encoder:`, and the pairs in
`task.pairs` (pairs.py). The loss is CLIP's contrastive loss between the batch's region embeddings
and their nouns' text embeddings, at the classifier's temperature. When a noun occurs more than once
in a batch its text is one column and every region of it a positive:

    logits = T * norm(regions) @ norm(texts of the batch's distinct nouns).T        [b, u]
    loss   = ( CE(logits, noun of each region) + mean_u( -mean_{regions of u} log_softmax(logits.T)[u] ) ) / 2

which is exactly CLIP's symmetric loss when the nouns are distinct. Under torchrun each process takes
its share of the global batch and computes the loss on it (DistributedDataParallel averages the
gradients). The shared loop ovframe.training.Trainer does checkpoints, exact resume, DDP and loss.jsonl;
the adapter's weights are written to <run>/adapter.safetensors at the end.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from ovframe import BadInput, SampleError, Task, Vocabulary
from ovframe.runner import RunContext
from ovframe.training import Prefetch, Trainer, decay_groups, save_weights

from .adapters import adapter_train_defaults
from .classifiers import ClipRegionClassifier
from .config import TrainAdapterConfig
from .crops import Cropper, region_boxes
from .pairs import PairSource, build_source

WEIGHTS_FILE = "adapter.safetensors"


def contrastive_loss(
    regions: torch.Tensor, text: torch.Tensor, nouns: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, dict[str, float]]:
    """regions float [b, C] (any norm), text float [U, C] (all nouns, normalised), nouns int64 [b] -> loss."""
    img = F.normalize(regions.float(), dim=-1)
    distinct, column = torch.unique(nouns, return_inverse=True)
    logits = temperature * img @ text[distinct].T  # [b, u]
    loss_image = F.cross_entropy(logits, column)
    positives = F.one_hot(column, len(distinct)).T.float()  # [u, b]
    positives = positives / positives.sum(dim=1, keepdim=True)
    loss_text = -(positives * logits.T.log_softmax(dim=1)).sum(dim=1).mean()
    loss = 0.5 * (loss_image + loss_text)
    return loss, {"loss_image": float(loss_image.detach()), "loss_text": float(loss_text.detach())}


class PairBatches:
    """The batch of a step: a pure function of (step, rank, world), so a resumed run sees the same data.

    Pairs are taken in a fresh permutation per epoch (seeded by the recipe seed and the epoch); step s of
    a global batch B covers positions [s*B, (s+1)*B) of the endless sequence of epochs, and rank r takes
    its contiguous share. Unreadable pairs and empty masks are skipped (the batch is then smaller)."""

    def __init__(self, source: PairSource, noun_ids: list[int], cropper: Cropper, expand_ratio: float,
                 global_batch: int, seed: int, log: Any):
        self.source, self.noun_ids, self.cropper = source, noun_ids, cropper
        self.expand_ratio, self.global_batch, self.seed, self.log = expand_ratio, global_batch, seed, log
        self._perms: dict[int, torch.Tensor] = {}

    def _order(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            if len(self._perms) > 2:
                self._perms.pop(min(self._perms))
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % 2**64)
            self._perms[epoch] = torch.randperm(len(self.source), generator=g)
        return self._perms[epoch]

    def indices(self, step: int, rank: int, world: int) -> list[int]:
        n, local = len(self.source), self.global_batch // world
        start = step * self.global_batch + rank * local
        return [int(self._order(p // n)[p % n]) for p in range(start, start + local)]

    def __call__(self, step: int, rank: int, world: int) -> dict[str, torch.Tensor]:
        images, binaries, boxes, nouns = [], [], [], []
        for index in self.indices(step, rank, world):
            try:
                image, mask = self.source.load(index)
            except SampleError as e:
                self.log.warning("skipped pair %d: %s", index, e.reason)
                continue
            box, valid = region_boxes(mask[None], self.expand_ratio)
            if not bool(valid[0]):
                continue
            images.append(image.float())
            binaries.append(mask)
            boxes.append(tuple(box[0].tolist()))
            nouns.append(self.noun_ids[index])
        if not images:
            raise RuntimeError(f"step {step}: no readable pair in this process's share of the batch")
        regions, masks = self.cropper.crop_batch(images, binaries, boxes)
        return {"images": regions, "masks": masks, "nouns": torch.tensor(nouns, dtype=torch.long)}





class TrainAdapter(Task):
    name = "train-adapter"
    Config = TrainAdapterConfig

    @classmethod
    def required_files(cls, config: TrainAdapterConfig):
        from ovframe import RequiredFile
        from ovframe.files import resolve_path

        files = []
        for pairs in config.pairs if isinstance(config.pairs, list) else [config.pairs]:
            if pairs.source == "jsonl":
                files.append(RequiredFile(str(resolve_path(pairs.path)), "the (image, mask, noun) pairs file",
                                          "written by hand or by a script (format: docs/clip.md)", pairs.sha256))
            elif pairs.source == "mined-pairs":
                files.append(RequiredFile(str(resolve_path(pairs.path)), "the pairs of a mine-pairs run",
                                          "run a mine-pairs recipe (docs/mining.md), e.g. recipes/synth/mine_pairs.yaml"))
        return files

    def run(self, ctx: RunContext) -> Mapping[str, Any]:
        cfg: TrainAdapterConfig = self.config  # type: ignore[assignment]
        if not ctx.has("adapter"):
            raise BadInput(
                f"{ctx.recipe.origin}: train-adapter needs an `adapter:` section (mask-prompt-tuning, full-finetune or mpt+ft)"
            )
        classifier = ctx.component("classifier")
        if not isinstance(classifier, ClipRegionClassifier):
            raise BadInput(f"{ctx.recipe.origin}: train-adapter trains CLIP classifiers (clip-masked-crop, clip-background-crop), not {classifier.name!r}")
        adapter = classifier.adapter
        text_encoder = ctx.component("text_encoder")
        if cfg.batch_size % ctx.world_size:
            raise BadInput(f"task.batch_size {cfg.batch_size} does not split evenly over {ctx.world_size} processes")

        source = build_source(ctx, cfg.pairs)
        if len(source) == 0:
            raise BadInput(f"{ctx.recipe.origin}: task.pairs gave no pairs")
        pair_nouns = source.nouns()
        nouns = sorted(set(pair_nouns))
        noun_index = {n: i for i, n in enumerate(nouns)}
        with ctx.timings.stage("encode_text"):
            text = F.normalize(text_encoder.encode(Vocabulary(tuple(nouns))).embeddings.float(), dim=-1).to(ctx.device)

        tcfg = self._resolved(cfg, adapter, len(source))
        ctx.log.info(
            "train-adapter: %s on %d pairs (%d nouns), %d steps of %d, lr %g, weight decay %g",
            adapter.name, len(source), len(nouns), tcfg.steps, tcfg.batch_size, tcfg.lr, tcfg.weight_decay,
        )
        encoder = classifier.encoder
        temperature = float(classifier.config.temperature)
        make = PairBatches(source, [noun_index[n] for n in pair_nouns], classifier.cropper,
                           classifier.config.expand_ratio, tcfg.batch_size, ctx.recipe.seed, ctx.log)

        def loss_fn(model: torch.nn.Module, batch: dict[str, torch.Tensor]):
            regions = model(batch["images"].to(ctx.device), batch["masks"].to(ctx.device))
            return contrastive_loss(regions, text, batch["nouns"].to(ctx.device), temperature)

        trainer = Trainer(ctx, encoder, tcfg, loss_fn=loss_fn, batch_fn=Prefetch(make, tcfg.steps, cfg.workers),
                          param_groups=decay_groups(encoder, tcfg.weight_decay))
        last = trainer.run()
        weights = ctx.out_dir / WEIGHTS_FILE
        if ctx.is_main:
            meta = {"adapter": adapter.name, **{k: str(v) for k, v in encoder.describe().items()}}
            save_weights(weights, encoder.adapter_state(), metadata=meta)
            ctx.log.info("adapter weights: %s (use it as `adapter: {plugin: %s, weights: %s}`)", weights, adapter.name, weights)
        return {
            "loss": last.get("loss"),
            "steps": tcfg.steps,
            "pairs": len(source),
            "nouns": len(nouns),
            "lr": tcfg.lr,
            "weights": str(weights),
        }

    @staticmethod
    def _resolved(cfg: TrainAdapterConfig, adapter: Any, n_pairs: int) -> TrainAdapterConfig:
        steps = cfg.steps
        if steps is None:
            if cfg.epochs is None:
                raise BadInput("train-adapter: give task.steps or task.epochs")
            steps = max(1, math.ceil(cfg.epochs * n_pairs / cfg.batch_size))
        defaults = adapter_train_defaults(adapter)
        lr = cfg.lr if cfg.lr is not None else defaults.get("lr", 1e-4)
        wd = cfg.weight_decay if cfg.weight_decay is not None else defaults.get("weight_decay", 0.0)
        return cfg.model_copy(update={"steps": steps, "lr": lr, "weight_decay": wd})
