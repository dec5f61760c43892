"""The `evaluate` task: stream the dataset through the pipeline into a confusion matrix.

Resumable: the matrix, the ids already counted and the failures are saved together, atomically, in
one file per process (state/rank<r>-of-<n>.safetensors) every `save_every` seconds and at the end; a
restarted run skips the ids already counted, so nothing is lost or counted twice. Under torchrun the
dataset is sharded (rank r takes images r, r+n, ...) and the matrices are all-reduced at the end.
Unreadable images are reported in failures.csv, counted in metrics.json, and skipped.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ..errors import SampleError
from ..interfaces import Dataset, Task
from ..io import atomic_path, markdown_table, write_csv
from ..metrics import ConfusionMatrix
from ..records import Sample
from ..runner import RunContext
from .config import EvaluateConfig


class EvalState:
    """The resumable state of one process's share of an evaluation."""

    def __init__(self, path: Path, num_classes: int, count: str):
        self.path = path
        self.confusion = ConfusionMatrix(num_classes, count)  # type: ignore[arg-type]
        self.done: set[str] = set()
        self.failed: dict[str, str] = {}
        self.saved_at = time.monotonic()

    def load(self) -> "EvalState":
        if self.path.exists():
            tensors = load_file(self.path)
            with safe_open(str(self.path), "pt") as f:
                meta = f.metadata()
            if tensors["confusion"].shape != self.confusion.matrix.shape:
                raise RuntimeError(f"{self.path}: saved state has a different number of classes")
            self.confusion.matrix = tensors["confusion"].clone()
            self.done = set(json.loads(meta["done"]))
            self.failed = json.loads(meta["failed"])
        return self

    def save(self) -> None:
        meta = {"done": json.dumps(sorted(self.done)), "failed": json.dumps(self.failed)}
        with atomic_path(self.path) as tmp:
            save_file({"confusion": self.confusion.matrix.contiguous()}, str(tmp), metadata=meta)
        self.saved_at = time.monotonic()


class _Indexed(torch.utils.data.Dataset):
    """Dataset items as (index, id, Sample or SampleError): an unreadable image never stops the loader."""

    def __init__(self, dataset: Dataset, indices: list[int]):
        self.dataset, self.indices = dataset, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[int, str, Sample | SampleError]:
        index = self.indices[i]
        try:
            sample = self.dataset[index]
            return index, sample.id, sample
        except SampleError as e:
            return index, e.sample_id, e
        except Exception as e:  # a decoder's own error (truncated file, bad header ...)
            sample_id = self.dataset.sample_id(index)
            return index, sample_id, SampleError(sample_id, f"{type(e).__name__}: {e}")


def load_batches(dataset: Dataset, indices: list[int], batch_size: int, workers: int) -> Iterator[list]:
    loader = torch.utils.data.DataLoader(
        _Indexed(dataset, indices), batch_size=batch_size, num_workers=workers, collate_fn=list
    )
    yield from loader


class Evaluate(Task):
    name = "evaluate"
    Config = EvaluateConfig

    def run(self, ctx: RunContext) -> Mapping[str, Any]:
        cfg: EvaluateConfig = self.config  # type: ignore[assignment]
        dataset: Dataset = ctx.component("dataset")
        vocabulary = ctx.vocabulary()
        pipeline = ctx.pipeline()
        total = len(dataset) if cfg.max_images is None else min(cfg.max_images, len(dataset))
        mine = list(range(ctx.rank, total, ctx.world_size))
        state = EvalState(ctx.out_dir / "state" / f"rank{ctx.rank}-of-{ctx.world_size}.safetensors", len(vocabulary), cfg.count).load()
        todo = [i for i in mine if dataset.sample_id(i) not in state.done]
        if len(todo) < len(mine):
            ctx.log.info("resuming: %d of %d images already counted", len(mine) - len(todo), len(mine))
        overlays = ctx.out_dir / "overlays"
        try:
            batches = load_batches(dataset, todo, cfg.batch_size, cfg.workers)
            bar = ctx.progress(batches, total=-(-len(todo) // cfg.batch_size), desc=f"evaluate {ctx.recipe.name}")
            for batch in bar:
                samples, indices = [], []
                for index, sample_id, item in batch:
                    if isinstance(item, SampleError):
                        ctx.log.warning("skipped %s: %s", sample_id, item.reason)
                        state.failed[sample_id] = item.reason
                        state.done.add(sample_id)
                    elif item.label is None:
                        state.failed[sample_id] = "no label"
                        state.done.add(sample_id)
                    else:
                        samples.append(item)
                        indices.append(index)
                if samples:
                    segmentations = pipeline.segment(samples, vocabulary)
                    with ctx.timings.stage("score"):
                        for index, sample, seg in zip(indices, samples, segmentations):
                            state.confusion.update(seg.labels.cpu(), sample.label)
                            state.done.add(sample.id)
                            if index < cfg.visualize:
                                _write_overlay(overlays / f"{sample.id}.png", sample, seg, vocabulary.names)
                if time.monotonic() - state.saved_at > cfg.save_every:
                    state.save()
        finally:
            state.save()
        return self._finish(ctx, state, vocabulary, total)

    def _finish(self, ctx: RunContext, state: EvalState, vocabulary, total: int) -> dict[str, Any]:
        failed = dict(state.failed)
        confusion = state.confusion
        if ctx.world_size > 1:
            import torch.distributed as dist

            confusion.all_reduce()
            gathered: list[Any] = [None] * ctx.world_size
            dist.all_gather_object(gathered, failed)
            failed = {k: v for part in gathered for k, v in part.items()}
        metrics: dict[str, Any] = {
            **confusion.summary(vocabulary.seen),
            "images": total - len(failed),
            "images_failed": len(failed),
        }
        if ctx.is_main:
            rows = confusion.per_class_rows(vocabulary.names, vocabulary.seen)
            write_csv(ctx.out_dir / "per_class.csv", rows)
            if failed:
                write_csv(ctx.out_dir / "failures.csv", [{"id": k, "reason": v} for k, v in sorted(failed.items())])
                ctx.log.warning("%d image(s) could not be read; see %s", len(failed), ctx.out_dir / "failures.csv")
            ctx.log.info("\n%s", markdown_table([metrics]))
        return metrics


def _write_overlay(path: Path, sample: Sample, seg, names) -> None:
    from ..visualize import overlay

    path.parent.mkdir(parents=True, exist_ok=True)
    label = sample.label.numpy() if sample.label is not None else None
    picture = overlay(sample.image.permute(1, 2, 0).numpy(), seg.labels.cpu().numpy(), names, ground_truth=label, title=sample.id)
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG")
