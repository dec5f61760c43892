"""Running a recipe: resolve it, check its files, build its components, run its task, write runs/<name>/.

A run directory holds:
    recipe.yaml    the resolved recipe (every default filled in)
    metrics.json   what the task returned
    timings.json   seconds per stage
    log.txt        the log
    ...            task outputs (per-class CSV, pictures, resume state, checkpoints)

Re-running the same recipe resumes (the task's own state) or, when metrics.json is there, reports the
finished run. A directory made by a different recipe is never overwritten: use --fresh (the old one is
kept as <dir>.prev-<time>) or another name.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

import yaml

from .errors import BadInput, RequiredFile
from .files import check_required_files
from .io import write_json, write_text
from .lock import LOCK_NAME, lock_path, run_lock
from .recipes import Recipe
from .registry import KINDS, Registry

T = TypeVar("T")
log = logging.getLogger("ovframe")


class Timings:
    """Wall time per named stage (with CUDA synchronised at the boundaries when on a GPU)."""

    def __init__(self, device: Any = "cpu"):
        self.device = device
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def _sync(self) -> None:
        if getattr(self.device, "type", str(self.device)).startswith("cuda"):
            import torch

            torch.cuda.synchronize(self.device)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self._sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
            self.calls[name] = self.calls.get(name, 0) + 1

    def summary(self) -> dict[str, dict[str, float]]:
        return {
            k: {"seconds": round(s, 4), "calls": self.calls[k], "ms_per_call": round(1000 * s / self.calls[k], 3)}
            for k, s in self.seconds.items()
        }


@dataclass
class RunContext:
    """What a task gets: the recipe, its run directory, components on demand, the process group."""

    recipe: Recipe
    out_dir: Path
    registry: Registry
    device: Any
    rank: int = 0
    world_size: int = 1
    timings: Timings = field(default_factory=Timings)
    log: logging.Logger = log
    _built: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def has(self, kind: str) -> bool:
        return kind in self.recipe.sections

    def component(self, kind: str) -> Any:
        """The component of recipe section `kind`, built once and moved to the run's device.
        A classifier gets the recipe's adapter attached."""
        if kind not in KINDS:
            raise KeyError(kind)
        if kind not in self._built:
            section = self.recipe.section(kind)
            if section is None:
                raise BadInput(
                    f"{self.recipe.origin}: task {self.recipe.sections['task'].spec.name!r} needs a "
                    f"`{kind}:` section ({KINDS[kind].label}: {', '.join(sorted(self.registry.components[kind]))})"
                )
            built = section.spec.build(section.config)
            built = built.to(self.device) if hasattr(built, "to") else built
            if kind == "classifier" and self.has("adapter"):
                built.attach(self.component("adapter"))
            self._built[kind] = built
        return self._built[kind]

    def vocabulary(self) -> Any:
        """The recipe's `vocabulary:` if given (checked against the dataset's size), else the dataset's."""
        from .records import Vocabulary

        spec = self.recipe.top.vocabulary
        dataset_vocab = self.component("dataset").vocabulary if self.has("dataset") else None
        if spec is None or (spec.names is None and spec.file is None and spec.seen is None):
            if dataset_vocab is None:
                raise BadInput(f"{self.recipe.origin}: give a `vocabulary:` (names or file) or a `dataset:`")
            return dataset_vocab
        names: tuple[str, ...]
        if spec.names is not None:
            names = tuple(spec.names)
        elif spec.file is not None:
            names = read_class_file(spec.file)
        elif dataset_vocab is not None:
            names = dataset_vocab.names
        else:
            raise BadInput(f"{self.recipe.origin}: vocabulary needs names or file")
        if dataset_vocab is not None and self.recipe.sections["task"].spec.name == "evaluate":
            if len(names) != len(dataset_vocab.names):
                raise BadInput(
                    f"{self.recipe.origin}: vocabulary has {len(names)} names but the dataset's labels index "
                    f"{len(dataset_vocab.names)} classes; evaluation needs one name per label, in label order"
                )
        seen = dataset_vocab.seen if dataset_vocab is not None and len(dataset_vocab.names) == len(names) else None
        if spec.seen is not None:
            unknown = sorted(set(spec.seen) - set(names))
            if unknown:
                raise BadInput(f"{self.recipe.origin}: vocabulary.seen names classes not in the vocabulary: {unknown}")
            seen = tuple(n in set(spec.seen) for n in names)
        return Vocabulary(names, seen)

    def pipeline(self) -> Any:
        """The segmentation pipeline of this recipe's components."""
        from .pipeline import Pipeline

        return Pipeline(
            text_encoder=self.component("text_encoder") if self.has("text_encoder") else None,
            proposals=self.component("proposals"),
            classifier=self.component("classifier") if self.has("classifier") else None,
            fuser=self.component("fuser"),
            timings=self.timings,
            resolution=self.recipe.top.resolution,
            precision=self.recipe.top.precision,
        )

    def progress(
        self, iterable: Iterable[T], total: int | None = None, desc: str = "", weight: Callable[[T], int] | None = None
    ) -> Iterable[T]:
        """Progress of a long loop, from the main process: a bar on a terminal; elsewhere (a log file, CI)
        a log line every PROGRESS_EVERY seconds and one at the end. `weight(item)`: how many units an
        item is (the images of a batch); `total` counts units."""
        if not self.is_main:
            return iterable
        if sys.stderr.isatty():
            return _progress_bar(iterable, total, desc, weight)
        return _progress_lines(iterable, total, desc, weight, self.log)


PROGRESS_EVERY = 10.0
"""Seconds between progress lines when stderr is not a terminal."""


def _progress_bar(iterable: Iterable[T], total: int | None, desc: str, weight: Callable[[T], int] | None) -> Iterable[T]:
    from tqdm.auto import tqdm

    if weight is None:
        return tqdm(iterable, total=total, desc=desc, dynamic_ncols=True, leave=False)  # keeps set_postfix

    def weighted() -> Iterator[T]:
        with tqdm(total=total, desc=desc, dynamic_ncols=True, leave=False) as bar:
            for item in iterable:
                yield item
                bar.update(weight(item))

    return weighted()


def _progress_lines(
    iterable: Iterable[T], total: int | None, desc: str, weight: Callable[[T], int] | None, logger: logging.Logger
) -> Iterator[T]:
    start = last = time.perf_counter()
    done = 0
    of = f"/{total}" if total is not None else ""
    for item in iterable:
        yield item
        done += weight(item) if weight else 1
        now = time.perf_counter()
        if now - last >= PROGRESS_EVERY and (total is None or done < total):
            logger.info("%s: %d%s, %.1f/s", desc, done, of, done / (now - start))
            last = now
    logger.info("%s: %d%s done in %.1f s", desc, done, of, time.perf_counter() - start)


def read_class_file(path: str | os.PathLike) -> tuple[str, ...]:
    """One class name per line; blank lines and lines starting with # are skipped. The names must be
    UTF-8 text and distinct (BadInput naming the file otherwise)."""
    from .errors import RecipeError
    from .recipes.schema import check_class_names
    from .recipes.source import read_text

    try:
        text = read_text(Path(path), "class-name file")
    except RecipeError as e:
        raise BadInput(e.format()) from None
    names = tuple(line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))
    if not names:
        raise BadInput(f"class-name file {path} has no names (one per line)")
    try:
        check_class_names(names)
    except ValueError as e:
        raise BadInput(f"class-name file {path}: {e}") from None
    return names


def resolve_device(name: str, local_rank: int = 0) -> Any:
    """The torch device a recipe names (validated by the schema: auto, cpu, cuda, cuda:N, mps), checked
    against this machine."""
    import torch

    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BadInput(f"device {name!r} was asked for but CUDA is not available; use device: auto or cpu")
        index = int(name.partition(":")[2] or local_rank)
        if index >= torch.cuda.device_count():
            raise BadInput(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s) (cuda:0 ...)")
        return torch.device("cuda", index)
    if name == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise BadInput("device 'mps' was asked for but Apple's MPS is not available here; use device: auto or cpu")
    try:
        return torch.device(name)
    except RuntimeError as e:
        raise BadInput(f"device {name!r}: {e}") from None


def required_files(recipe: Recipe, kinds: Iterable[str] | None = None) -> list[RequiredFile]:
    """The files of the recipe's sections (of `kinds` only, when given: what a command will build)."""
    wanted = None if kinds is None else set(kinds)
    out: list[RequiredFile] = []
    for kind, section in recipe.sections.items():
        if wanted is None or kind in wanted:
            out += section.spec.load().required_files(section.config)
    return out


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch; any integer is folded into what each accepts."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed % 2**64)


@contextmanager
def _process_group() -> Iterator[tuple[int, int, int]]:
    """(rank, world_size, local_rank); initialises torch.distributed under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        yield 0, 1, 0
        return
    import torch
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    try:
        yield dist.get_rank(), dist.get_world_size(), local_rank
    except BaseException:
        # No barrier: the other processes are inside another collective and would never meet us;
        # exiting lets torchrun stop them.
        dist.destroy_process_group()
        raise
    dist.barrier()
    dist.destroy_process_group()


def _dump_recipe(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.resolved(), sort_keys=False, allow_unicode=True)


def prepare_run_dir(recipe: Recipe, fresh: bool) -> tuple[Path, bool]:
    """The run directory, and whether it already holds a finished run of this same recipe."""
    out_dir = Path(recipe.top.output_dir) / recipe.name
    dumped = _dump_recipe(recipe)
    saved = out_dir / "recipe.yaml"
    if out_dir.exists() and not out_dir.is_dir():
        raise BadInput(f"{out_dir} is a file, where this recipe's run directory should be; move it or change `name`")
    if fresh and out_dir.is_dir() and any(p.name != LOCK_NAME for p in out_dir.iterdir()):
        stamp = time.strftime("%Y%m%d-%H%M%S")
        backup = out_dir.with_name(f"{out_dir.name}.prev-{stamp}")
        n = 1
        while backup.exists():  # two fresh starts within a second
            n += 1
            backup = out_dir.with_name(f"{out_dir.name}.prev-{stamp}-{n}")
        out_dir.rename(backup)
        log.info("moved the previous run to %s", backup)
    elif saved.exists() and _read_saved(saved) != dumped:
        raise BadInput(
            f"{out_dir} holds a run of a different recipe (compare {saved} with `ovframe show`). "
            f"Resume it with the same recipe, start over with --fresh (the old run is kept), or change `name`."
        )
    finished = (out_dir / "metrics.json").exists() and saved.exists()
    make_dir(out_dir)
    return out_dir, finished


def _read_saved(saved: Path) -> str | None:
    try:
        return saved.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None  # unreadable: not this recipe's run


def make_dir(path: Path) -> None:
    """mkdir -p, with a clear error (a file in the way, no permission, a full disk)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BadInput(f"cannot create the run directory {path}: {e.strerror or e}") from None


@contextmanager
def _run_logging(out_dir: Path, rank: int) -> Iterator[None]:
    handlers: list[logging.Handler] = [
        logging.FileHandler(out_dir / ("log.txt" if rank == 0 else f"log.rank{rank}.txt"), encoding="utf-8")
    ]
    handlers[0].setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    if rank == 0:
        handlers.append(logging.StreamHandler(sys.stderr))
        handlers[1].setFormatter(logging.Formatter("%(message)s"))
    for h in handlers:
        log.addHandler(h)
    old_level = log.level
    log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.setLevel(old_level)
        for h in handlers:
            log.removeHandler(h)
            h.close()


def run_recipe(
    recipe: Recipe, registry: Registry, *, fresh: bool = False, out_dir: Path | None = None, check_files: bool = True
) -> dict[str, Any]:
    """Run one validated recipe; return its metrics.

    With `out_dir`, write there with no resume guard (one-off commands such as `ovframe predict`);
    otherwise into <output_dir>/<name>/, resuming or refusing as the module docstring says.
    `check_files=False`: the caller has checked the recipe's required files (a recipe set, once for all).
    """
    import json

    from .recipes.schema import check_runnable

    check_runnable(recipe, registry)
    if check_files:
        check_required_files(required_files(recipe))
    with _process_group() as (rank, world, local_rank), contextlib.ExitStack() as held:
        finished, previous = False, ""
        if out_dir is not None:
            if rank == 0:
                previous = held.enter_context(run_lock(out_dir))
            make_dir(out_dir)
        else:
            out_dir = Path(recipe.top.output_dir) / recipe.name
            if rank == 0:
                previous = held.enter_context(run_lock(out_dir))
                out_dir, finished = prepare_run_dir(recipe, fresh)
                if not lock_path(out_dir).exists():  # --fresh moved the locked directory aside: lock the new one
                    held.enter_context(run_lock(out_dir))
            if world > 1:
                import torch.distributed as dist

                flags = [finished]
                dist.broadcast_object_list(flags, src=0)
                finished = bool(flags[0])
        if finished:
            if rank == 0:
                print(f"{out_dir}: already complete (use --fresh to run again)", file=sys.stderr)
            try:
                return json.loads((out_dir / "metrics.json").read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise BadInput(f"{out_dir / 'metrics.json'} is damaged ({e}); run again with --fresh (the old run is kept)") from None
        with _run_logging(out_dir, rank):
            if previous:
                log.info("the previous run in %s (%s) stopped before its end: resuming it", out_dir, previous)
            if rank == 0:
                write_text(out_dir / "recipe.yaml", _dump_recipe(recipe))
            device = resolve_device(recipe.top.device, local_rank)
            seed_everything((recipe.seed + rank) % 2**64)
            ctx = RunContext(recipe, out_dir, registry, device, rank, world, Timings(device))
            task = ctx.component("task")
            log.info("run %s: task %s on %s%s", recipe.name, task.name, device, f" (rank {rank}/{world})" if world > 1 else "")
            start = time.perf_counter()
            with ctx.timings.stage("total"):
                metrics = dict(task.run(ctx))
            if rank == 0:
                write_json(out_dir / "timings.json", ctx.timings.summary())
                write_json(out_dir / "metrics.json", metrics)
                log.info("done in %.1f s: %s", time.perf_counter() - start, out_dir)
            return metrics
