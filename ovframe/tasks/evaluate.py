"""The `evaluate` task: stream the dataset through the pipeline into a confusion matrix.

Bounded memory: images are read `batch_size` at a time (by `workers` background processes when
asked) and dropped once counted; what grows with the dataset is the set of ids already counted.

Resumable: the matrix, the ids already counted and the failures are saved together, atomically, in
one file per process (state/rank<r>-of-<n>.safetensors) every `save_every` seconds, at the end, and
when the run stops on an error or Ctrl-C. A restarted run loads that file and skips the ids in it, so
an image is counted exactly once: killed at any point, the rerun ends with the metrics of an
uninterrupted run. (State saved by a different number of processes is not reused: sharding differs.)

Sharded: under torchrun, rank r evaluates images r, r+n, ... and the matrices are summed with an
all-reduce at the end (and the failures gathered), so the result equals the single-process one.

Unreadable images (corrupt files, bad labels, over `max_image_pixels`) are logged, listed in failures.csv
with the reason, counted in metrics.json (`images_failed`), and skipped. An image that fails at run time
(a component cannot handle it, out of memory) is listed the same way, its traceback in errors.log, and
tried again when the run is resumed; only when every image fails does the run fail (exit 1). Outputs, beside metrics.json:
    per_class.csv           IoU, accuracy and pixel counts per class, with its seen/unseen split
    failures.csv            id and reason of every image that could not be evaluated (header only if none)
    confusion.safetensors   the summed confusion matrix int64 [K, K] (rows ground truth, columns prediction)
    overlays/               with `visualize: N`, pictures of the first N images
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ..errors import BadInput, OvframeError, SampleError, damaged_state
from ..images import DEFAULT_MAX_IMAGE_PIXELS, check_size, pixel_limit
from ..interfaces import Dataset, Task
from ..io import atomic_path, markdown_table, write_csv
from ..metrics import ConfusionMatrix
from ..records import Sample, Vocabulary
from ..runner import RunContext
from .config import EvaluateConfig
from .isolate import ERRORS_LOG, FailureLog, segment_each
from .names import safe_name

STATE_DIR = "state"


class EvalState:
    """The resumable state of one process's share of an evaluation."""

    def __init__(self, path: Path, num_classes: int, count: str):
        self.path = path
        self.confusion = ConfusionMatrix(num_classes, count)  # type: ignore[arg-type]
        self.done: set[str] = set()
        self.failed: dict[str, str] = {}
        self.counts: dict[str, int] = {"proposals": 0, "regions_classified": 0}
        self.saved_at = time.monotonic()

    def load(self) -> "EvalState":
        if not self.path.exists():
            return self
        try:
            tensors = load_file(self.path)
            with safe_open(str(self.path), "pt") as f:
                meta = f.metadata()
            confusion = tensors["confusion"]
            done, failed = json.loads(meta["done"]), json.loads(meta["failed"])
            counts = json.loads(meta.get("counts", "{}"))
            if not (isinstance(done, list) and isinstance(failed, dict) and isinstance(counts, dict) and confusion.dtype == torch.int64):
                raise ValueError("unexpected content")
        except Exception as e:  # truncated or overwritten: safetensors, JSON and key errors alike
            raise damaged_state(self.path, e, "evaluation progress", f"delete {self.path} to evaluate its images again") from None
        if confusion.shape != self.confusion.matrix.shape:
            raise BadInput(
                f"{self.path}: saved by a run with {confusion.shape[0]} classes, this one has {self.confusion.matrix.shape[0]}; "
                "start over with --fresh"
            )
        self.confusion.matrix = confusion.clone()
        self.done = {str(d) for d in done}
        self.failed = {str(k): str(v) for k, v in failed.items()}
        self.counts.update({k: int(v) for k, v in counts.items() if k in self.counts and isinstance(v, int)})
        return self

    def save(self) -> None:
        meta = {"done": json.dumps(sorted(self.done)), "failed": json.dumps(self.failed), "counts": json.dumps(self.counts)}
        with atomic_path(self.path) as tmp:
            save_file({"confusion": self.confusion.matrix.contiguous()}, str(tmp), metadata=meta)
        self.saved_at = time.monotonic()


class _Indexed(torch.utils.data.Dataset):
    """Dataset items as (index, id, Sample or SampleError): an unreadable image, or one over the pixel
    limit, never stops the loader."""

    def __init__(self, dataset: Dataset, indices: list[int], max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS):
        self.dataset, self.indices, self.max_pixels = dataset, indices, max_pixels

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[int, str, Sample | SampleError]:
        index = self.indices[i]
        try:
            with pixel_limit(self.max_pixels):  # files are refused from their header, before decoding
                sample = self.dataset[index]
            h, w = sample.image.shape[-2:]
            check_size((w, h), sample.id, sample.id, self.max_pixels)  # images that were not read from a file
            return index, sample.id, sample
        except SampleError as e:
            return index, e.sample_id, e
        except Exception as e:  # a decoder's own error (truncated file, bad header ...)
            sample_id = self.dataset.sample_id(index)
            return index, sample_id, SampleError(sample_id, f"{type(e).__name__}: {e}")


def load_batches(
    dataset: Dataset, indices: list[int], batch_size: int, workers: int, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    pin_memory: bool = False,
) -> Iterator[list]:
    """Batches of (index, id, Sample or SampleError); with workers, read ahead in background processes
    (two batches each) while the pipeline works; with pin_memory, in page-locked memory (GPU runs)."""
    loader = torch.utils.data.DataLoader(
        _Indexed(dataset, indices, max_pixels), batch_size=batch_size, num_workers=workers, collate_fn=list,
        pin_memory=pin_memory, prefetch_factor=2 if workers else None, persistent_workers=False,
    )
    yield from loader


def _workers(setting: int | str, images: int, batch_size: int) -> int:
    """`auto`: one loader per spare core (at most 4), none when everything fits in one batch."""
    if setting != "auto":
        return int(setting)
    if images <= batch_size:
        return 0
    return min(4, max(0, (os.cpu_count() or 1) - 1))


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
        state_dir = ctx.out_dir / STATE_DIR
        state = EvalState(state_dir / f"rank{ctx.rank}-of-{ctx.world_size}.safetensors", len(vocabulary), cfg.count).load()
        _warn_other_states(ctx, state_dir, state.path)
        todo = [i for i in mine if dataset.sample_id(i) not in state.done]
        if len(todo) < len(mine):
            ctx.log.info("resuming: %d of %d images already counted", len(mine) - len(todo), len(mine))
        overlays = ctx.out_dir / "overlays"
        failures = FailureLog(ctx.out_dir, ctx.log)
        try:
            on_gpu = torch.device(ctx.device).type == "cuda"
            workers = _workers(cfg.workers, len(todo), cfg.batch_size)
            batches = load_batches(dataset, todo, cfg.batch_size, workers, cfg.max_image_pixels, pin_memory=on_gpu)
            bar = ctx.progress(batches, total=-(-len(todo) // cfg.batch_size), desc=f"evaluate {ctx.recipe.name}")
            for batch in bar:
                samples, indices = [], {}
                for index, sample_id, item in batch:
                    if isinstance(item, SampleError):
                        ctx.log.warning("skipped %s: %s", sample_id, item.reason)
                        state.failed[sample_id] = item.reason
                        state.done.add(sample_id)
                    elif item.label is None:
                        ctx.log.warning("skipped %s: it has no label", sample_id)
                        state.failed[sample_id] = "no label"
                        state.done.add(sample_id)
                    else:
                        samples.append(item)
                        indices[item.id] = index
                if samples:
                    # an image that fails at run time is listed in failures.csv but not marked done: a
                    # resumed run tries it again (with more memory, or a fixed component)
                    before = dict(pipeline.stats)
                    segmented = segment_each(pipeline, samples, vocabulary, failures)
                    for key in state.counts:
                        state.counts[key] += pipeline.stats[key] - before[key]
                    state.failed.update(failures.reasons)
                    failures.reasons.clear()
                    with ctx.timings.stage("score"):
                        for sample, seg in segmented:
                            state.confusion.update(seg.labels.cpu(), sample.label)
                            state.done.add(sample.id)
                            state.failed.pop(sample.id, None)
                            if indices[sample.id] < cfg.visualize:
                                _write_overlay(overlays / f"{safe_name(sample.id)}.png", sample, seg, vocabulary.names)
                    del segmented, samples
                if time.monotonic() - state.saved_at > cfg.save_every:
                    state.save()
                    ctx.log.info(
                        "%d of %d images counted (%d failed)%s", len(state.done), len(mine), len(state.failed),
                        f" on rank {ctx.rank}" if ctx.world_size > 1 else "",
                    )
        finally:
            state.save()
        return self._finish(ctx, state, vocabulary, total)

    def _finish(self, ctx: RunContext, state: EvalState, vocabulary: Vocabulary, total: int) -> dict[str, Any]:
        failed = dict(state.failed)
        counts = dict(state.counts)
        at_run_time = sum(1 for k in failed if k not in state.done)  # not the files' fault: tried again on resume
        confusion = ConfusionMatrix(len(vocabulary), state.confusion.count)
        confusion.matrix = state.confusion.matrix.clone()  # the saved state keeps this rank's share
        if ctx.world_size > 1:
            import torch.distributed as dist

            confusion.all_reduce()
            gathered: list[Any] = [None] * ctx.world_size
            dist.all_gather_object(gathered, (failed, counts, at_run_time))
            failed = {k: v for part, _, _ in gathered for k, v in part.items()}
            counts = {k: sum(c[k] for _, c, _ in gathered) for k in counts}
            at_run_time = sum(n for _, _, n in gathered)
        metrics: dict[str, Any] = {
            **confusion.summary(vocabulary.seen),
            **_split_accuracy(confusion, vocabulary.seen),
            "images": total - len(failed),
            "images_failed": len(failed),
            "images_total": total,
        }
        evaluated = total - len(failed)
        if evaluated and ctx.has("classifier"):
            # what the region classifier cost: its forwards per image (the fusers' `skip` lowers it)
            metrics["regions_per_image"] = round(counts["regions_classified"] / evaluated, 3)
            metrics["proposals_per_image"] = round(counts["proposals"] / evaluated, 3)
        if ctx.is_main:
            rows = confusion.per_class_rows(vocabulary.names, vocabulary.seen)
            write_csv(ctx.out_dir / "per_class.csv", rows)
            write_csv(
                ctx.out_dir / "failures.csv",
                [{"id": k, "reason": v} for k, v in sorted(failed.items())],
                columns=["id", "reason"],
            )
            with atomic_path(ctx.out_dir / "confusion.safetensors") as tmp:
                save_file(
                    {"confusion": confusion.matrix.contiguous()}, str(tmp),
                    metadata={"rows": "ground truth", "columns": "prediction", "classes": json.dumps(list(vocabulary.names))},
                )
            if failed:
                ctx.log.warning("%d image(s) could not be evaluated; see %s", len(failed), ctx.out_dir / "failures.csv")
            ctx.log.info("\n%s", markdown_table([{k: v for k, v in metrics.items() if not k.endswith(("_seen", "_unseen"))}]))
            if vocabulary.seen is not None:
                ctx.log.info("\n%s", markdown_table(_side_by_side(confusion, vocabulary.seen)))
        if total and metrics["images"] == 0:  # nothing evaluated: the run failed, whatever the reason
            if at_run_time:
                raise OvframeError(
                    f"every image failed ({at_run_time} at run time): see {ctx.out_dir / 'failures.csv'} and the "
                    f"tracebacks in {ctx.out_dir / ERRORS_LOG}; a rerun tries them again"
                )
            raise BadInput(f"none of the {total} images could be evaluated; see {ctx.out_dir / 'failures.csv'}")
        return metrics


def _split_accuracy(confusion: ConfusionMatrix, seen) -> dict[str, float]:
    """mACC over the seen and the unseen classes (mIoU_seen/unseen come from ConfusionMatrix.summary)."""
    if seen is None:
        return {}
    acc = confusion.per_class()["acc"]
    mask = np.asarray(seen, dtype=bool)
    return {"mACC_seen": _nanmean_pct(acc[mask]), "mACC_unseen": _nanmean_pct(acc[~mask])}


def _side_by_side(confusion: ConfusionMatrix, seen) -> list[dict[str, Any]]:
    """Rows all / seen / unseen: classes, classes present, mIoU, mACC."""
    pc = confusion.per_class()
    mask = np.asarray(seen, dtype=bool)
    rows = []
    for split, keep in (("all", np.ones_like(mask)), ("seen", mask), ("unseen", ~mask)):
        rows.append(
            {
                "classes": split,
                "count": int(keep.sum()),
                "present": int((pc["counted"] & keep).sum()),
                "mIoU": _nanmean_pct(pc["iou"][keep]),
                "mACC": _nanmean_pct(pc["acc"][keep]),
            }
        )
    return rows


def _nanmean_pct(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return 100.0 * float(values.mean()) if values.size else math.nan


def _warn_other_states(ctx: RunContext, state_dir: Path, mine: Path) -> None:
    if not state_dir.is_dir() or not ctx.is_main:
        return
    others = sorted(p.name for p in state_dir.glob("rank*-of-*.safetensors") if not p.name.endswith(f"-of-{ctx.world_size}.safetensors"))
    if others:
        ctx.log.warning(
            "state saved by a run with another number of processes (%s) is not reused: those images are evaluated again",
            ", ".join(others),
        )


def _write_overlay(path: Path, sample: Sample, seg, names) -> None:
    from ..visualize import overlay

    path.parent.mkdir(parents=True, exist_ok=True)
    label = sample.label.numpy() if sample.label is not None else None
    picture = overlay(sample.image.permute(1, 2, 0).numpy(), seg.labels.cpu().numpy(), names, ground_truth=label, title=sample.id)
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG")
