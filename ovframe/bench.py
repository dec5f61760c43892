"""`ovframe bench`: steady-state speed and memory of a recipe's pipeline, per stage; two recipes side by side.

Each recipe runs in a child process of its own, so that its peak memory is its own. Per batch a child reads
the images (stage `load`) and segments them (`propose`, `classify`, `fuse`: the pipeline's own Timings,
CUDA-synchronised at the boundaries on a GPU); the batch's wall time is measured around both. The first
`warmup` images are run and not counted: they pay the first-call costs (the text encoding, reported on its
own, kernel selection, allocator growth). With two recipes the children take turns batch by batch, so that
load from other jobs on the machine slows both alike and their ratios hold.

The parent process stays light (no torch): it validates the recipes, drives the children and writes the
report (ovframe.bench_report).
"""

from __future__ import annotations

import math
import os
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Sequence

from .errors import BadInput, OvframeError

PIPELINE_KINDS = ("dataset", "text_encoder", "proposals", "classifier", "adapter", "fuser")
"""The recipe sections a benchmark builds (the task section is not run)."""

FIRST_STAGES = ("load", "test_resize", "propose", "classify", "fuse")
"""Stages in the order they run (Pipeline.segment's, after reading); others a component records follow."""
TEXT_STAGE = "encode_text"


@dataclass
class BenchJob:
    """What one child measures."""

    recipe: str  # a recipe file or a shipped recipe's name
    overrides: list[str]
    images: int  # timed images
    warmup: int | None  # images run first and not counted (None: one batch)
    batch_size: int | None  # None: the recipe task's batch_size, else 1
    inputs: list[str] | None = None  # image files/folders instead of the recipe's dataset


@dataclass
class BenchResult:
    """One recipe's figures. Stage seconds cover the timed images only."""

    label: str
    recipe: str
    description: str
    device: str
    threads: int
    batch_size: int
    images_from: str
    vocabulary: int
    images: int
    warmup: int
    wall_s: float
    stages: dict[str, float]
    calls: dict[str, int]
    first_text_ms: float | None
    peak_rss_mib: float | None
    peak_cuda_mib: float | None
    failed: list[str] = field(default_factory=list)

    @property
    def images_per_s(self) -> float:
        return self.images / self.wall_s if self.wall_s > 0 else math.nan

    @property
    def ms_per_image(self) -> float:
        return 1000.0 * self.wall_s / self.images if self.images else math.nan

    def stage_ms(self, stage: str) -> float:
        return 1000.0 * self.stages.get(stage, 0.0) / self.images if self.images else math.nan

    def share(self, stage: str) -> float:
        """Percent of the timed wall time spent in `stage`."""
        return 100.0 * self.stages.get(stage, 0.0) / self.wall_s if self.wall_s > 0 else math.nan

    @property
    def other_s(self) -> float:
        """Wall time outside every top-level stage (Python between the stages)."""
        return self.wall_s - sum(s for k, s in self.stages.items() if "/" not in k)  # "a/b" lies inside "a"

    def stage_order(self) -> list[str]:
        """Top-level stages in pipeline order, then any others a component recorded."""
        known = [s for s in FIRST_STAGES if s in self.stages]
        return known + sorted(s for s in self.stages if s not in known)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "images_per_s": self.images_per_s, "ms_per_image": self.ms_per_image}


# -- the child ------------------------------------------------------------------------------
def _peak_rss_mib() -> float | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024.0 / (1024.0 if sys.platform == "darwin" else 1.0)  # bytes on macOS, KiB on Linux


class _Bench:
    """Inside a child: the recipe's pipeline, its images, and the batches to run."""

    def __init__(self, job: BenchJob):
        import torch

        from .files import check_required_files
        from .recipes import load_recipe
        from .registry import get_registry
        from .runner import RunContext, Timings, required_files, resolve_device, seed_everything

        registry = get_registry()
        recipe = load_recipe(job.recipe, job.overrides, registry=registry, fit="pipeline")
        check_recipe(recipe, job.inputs)
        check_required_files(required_files(recipe, PIPELINE_KINDS))
        device = resolve_device(recipe.top.device)
        seed_everything(recipe.seed)
        self.ctx = RunContext(recipe, registry=registry, device=device, out_dir=None, timings=Timings(device))  # type: ignore[arg-type]
        self.recipe = recipe
        self.pipeline = self.ctx.pipeline()
        self.vocabulary = self.ctx.vocabulary()
        task_batch = getattr(recipe.sections["task"].config, "batch_size", None) if "task" in recipe.sections else None
        self.batch_size = int(job.batch_size or task_batch or 1)
        self.warmup = self.batch_size if job.warmup is None else job.warmup
        self.read, self.images_from = self._source(job)
        self.batches = _batches(self.warmup, job.images, self.batch_size)
        self.timed_from = sum(1 for first, _ in self.batches if first < self.warmup)  # the first timed batch
        self.wall = 0.0
        self.images = 0
        self.failed: list[str] = []
        self.torch = torch
        self.pipeline.encode(self.vocabulary)  # once per vocabulary (memoised): measured on its own
        seconds = self.ctx.timings.seconds.get(TEXT_STAGE)
        self.first_text_ms = None if seconds is None else 1000.0 * seconds

    def _source(self, job: BenchJob) -> tuple[Callable[[int], Any], str]:
        """A reader of image i (cycling when there are fewer images than asked for), and what they are."""
        from .records import Sample

        if job.inputs is not None:
            from .images import find_images, read_image

            paths = find_images(job.inputs)
            if not paths:
                raise BadInput(f"no images under {' '.join(job.inputs)}")
            return (
                lambda i: Sample(read_image(paths[i % len(paths)]), None, paths[i % len(paths)].stem),
                f"{len(paths)} image file(s)",
            )
        dataset = self.ctx.component("dataset")
        if len(dataset) == 0:
            raise BadInput(f"{self.recipe.origin}: the dataset has no images")
        spec = self.recipe.sections["dataset"].spec.name
        return (lambda i: dataset[i % len(dataset)]), f"dataset {spec} ({len(dataset)} images)"

    def run_batch(self, index: int) -> None:
        from .errors import SampleError

        first, last = self.batches[index]
        timings = self.ctx.timings
        if index == self.timed_from:  # warm-up done: forget its timings
            timings.seconds.clear()
            timings.calls.clear()
        start = time.perf_counter()
        samples = []
        with timings.stage("load"):
            for i in range(first, last):
                try:
                    samples.append(self.read(i))
                except SampleError as e:
                    self.failed.append(str(e))
        if samples:
            self.pipeline.segment(samples, self.vocabulary)
        if self.ctx.device.type == "cuda":
            self.torch.cuda.synchronize(self.ctx.device)
        if index >= self.timed_from:
            self.wall += time.perf_counter() - start
            self.images += len(samples)

    def report(self, label: str) -> BenchResult:
        stages = {k: v for k, v in self.ctx.timings.seconds.items() if k != TEXT_STAGE}
        calls = {k: v for k, v in self.ctx.timings.calls.items() if k != TEXT_STAGE}
        cuda = None
        if self.ctx.device.type == "cuda":
            cuda = self.torch.cuda.max_memory_allocated(self.ctx.device) / 2**20
        return BenchResult(
            label=label,
            recipe=self.recipe.name,
            description=self.recipe.top.description,
            device=str(self.ctx.device),
            threads=self.torch.get_num_threads(),
            batch_size=self.batch_size,
            images_from=self.images_from,
            vocabulary=len(self.vocabulary),
            images=self.images,
            warmup=self.warmup,
            wall_s=self.wall,
            stages=stages,
            calls=calls,
            first_text_ms=self.first_text_ms,
            peak_rss_mib=_peak_rss_mib(),
            peak_cuda_mib=cuda,
            failed=self.failed,
        )


def _batches(warmup: int, images: int, batch_size: int) -> list[tuple[int, int]]:
    """[first, last) image indices of each batch: the warm-up images, then the timed ones."""
    out = [(a, min(a + batch_size, warmup)) for a in range(0, warmup, batch_size)]
    return out + [(a, min(a + batch_size, warmup + images)) for a in range(warmup, warmup + images, batch_size)]


def _child(job: BenchJob, label: str, conn: Any) -> None:
    """The child's loop: build, say how many batches, run the batches it is told to, report."""

    def send(*message: Any) -> None:
        try:
            conn.send(message)
        except (BrokenPipeError, OSError):  # the parent is gone
            pass

    try:
        bench = _Bench(job)
        send("ready", len(bench.batches))
        while True:
            command, arg = conn.recv()
            if command == "batch":
                bench.run_batch(arg)
                send("ok", None)
            elif command == "report":
                send("report", bench.report(label))
            else:
                return
    except BadInput as e:
        send("bad", str(e))
    except OvframeError as e:
        send("failed", str(e))
    except (EOFError, KeyboardInterrupt):
        return
    except BaseException:
        send("failed", traceback.format_exc())


# -- the parent -----------------------------------------------------------------------------
class _Child:
    def __init__(self, mp: Any, job: BenchJob, label: str):
        self.label = label
        self.conn, theirs = mp.Pipe()
        self.process = mp.Process(target=_child, args=(job, label, theirs), daemon=True, name=f"ovframe-bench-{label}")
        self.process.start()
        theirs.close()

    def ask(self, command: str, arg: Any = None) -> Any:
        if command:
            self.conn.send((command, arg))
        try:
            kind, value = self.conn.recv()
        except EOFError:
            self.process.join(5)
            raise OvframeError(f"the benchmark of {self.label} stopped (exit code {self.process.exitcode}; out of memory?)") from None
        if kind == "bad":
            raise BadInput(f"{self.label}: {value}")
        if kind == "failed":
            raise OvframeError(f"{self.label}: {value}")
        return value

    def close(self) -> None:
        try:
            self.conn.send(("stop", None))
        except (BrokenPipeError, OSError):
            pass
        self.process.join(10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)


def run_bench(
    jobs: Sequence[BenchJob],
    labels: Sequence[str],
    progress: Callable[[Iterable[int], int], Iterable[int]] = lambda it, total: it,
) -> list[BenchResult]:
    """Measure each job in its own child process, batch by batch in turn; one result per job."""
    import multiprocessing

    mp = multiprocessing.get_context("spawn")  # a fresh interpreter: no state (or threads) shared with the parent
    children = []
    try:
        for job, label in zip(jobs, labels):
            children.append(_Child(mp, job, label))
        counts = [child.ask("") for child in children]  # they build their pipelines at the same time
        for b in progress(range(max(counts)), max(counts)):
            for child, count in zip(children, counts):
                if b < count:
                    child.ask("batch", b)
        return [child.ask("report") for child in children]
    finally:
        for child in children:
            child.close()


def check_recipe(recipe: Any, inputs: list[str] | None) -> None:
    """BadInput unless `recipe` has a pipeline to run and images to run it on."""
    missing = [f"`{k}:`" for k in ("proposals", "fuser") if recipe.section(k) is None]
    if missing:
        raise BadInput(f"{recipe.origin}: a benchmark runs the segmentation pipeline; the recipe has no {' or '.join(missing)} section")
    if recipe.section("dataset") is None:
        if inputs is None:
            raise BadInput(f"{recipe.origin} has no `dataset:` to take images from; name images with --inputs IMAGES_OR_FOLDERS")
        if recipe.top.vocabulary is None:
            raise BadInput(f"{recipe.origin}: without a `dataset:`, the recipe needs a `vocabulary:` (or -o vocabulary.names=[a,b])")


def check_counts(images: int, warmup: int | None, batch_size: int | None) -> None:
    if images < 1:
        raise BadInput(f"--images must be at least 1 (got {images})")
    if warmup is not None and warmup < 0:
        raise BadInput(f"--warmup cannot be negative (got {warmup})")
    if batch_size is not None and batch_size < 1:
        raise BadInput(f"--batch-size must be at least 1 (got {batch_size})")


def labels_for(names: Sequence[str], paths: Sequence[str]) -> list[str]:
    """Column names: the recipe names, else the file names, else A and B."""
    if len(set(names)) == len(names):
        return list(names)
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    return [chr(ord("A") + i) for i in range(len(names))]
