"""The training loop every training task shares: deterministic steps, checkpoints, exact resume, DDP.

A task supplies three things and gets the rest:

    batch_fn(step, rank, world_size) -> batch   the batch of `step` for this process; a pure function of
                                                its arguments (and the recipe seed), so that a resumed
                                                run sees exactly the batches an uninterrupted one would
    loss_fn(model, batch) -> (loss, {name: float})   model is the (possibly DDP-wrapped) module
    model                                        an nn.Module whose trainable parameters require grad

The global RNGs are re-seeded from (seed, step, rank) before every step, so dropout and augmentation
need no saved RNG state. Every `checkpoint_every` steps the trainable state (safetensors) and the
optimizer/schedule state (a plain dict loaded with weights_only=True) are written atomically to
checkpoints/step-XXXXXXX/; a rerun resumes from the newest one and continues the loss log (loss.jsonl)
as if it had never stopped. Under torchrun the model is wrapped in DistributedDataParallel (gloo on CPU,
NCCL on GPU) and the logged loss is the mean over processes.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import shutil
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .config import TrainingConfig
from .errors import BadInput, damaged_state
from .io import atomic_path, write_text
from .runner import RunContext

LossFn = Callable[[torch.nn.Module, Any], "tuple[torch.Tensor, dict[str, float]]"]
BatchFn = Callable[[int, int, int], Any]


def lr_factor(step: int, cfg: TrainingConfig) -> float:
    """Multiplier of the base learning rate at `step`: linear warm-up, then poly / cosine / constant."""
    if step < cfg.warmup_steps:
        return cfg.warmup_factor + (1.0 - cfg.warmup_factor) * step / max(1, cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    if cfg.schedule == "poly":
        return (1.0 - progress) ** cfg.poly_power
    if cfg.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


def build_optimizer(params: Iterable[Any], cfg: TrainingConfig) -> torch.optim.Optimizer:
    """AdamW or SGD over `params` (tensors or param-group dicts) with the config's lr and weight decay."""
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=tuple(cfg.betas))
    return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=0.9)


def decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Param groups with CLIP's rule: weight decay on the trainable matrices only, not on gains, biases,
    embeddings or a logit scale."""
    decay, other = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        exempt = p.ndim < 2 or "embedding" in name or "logit_scale" in name or name.endswith("bias")
        (other if exempt else decay).append(p)
    return [g for g in ({"params": decay, "weight_decay": weight_decay}, {"params": other, "weight_decay": 0.0}) if g["params"]]


class _Steps(torch.utils.data.Dataset):
    def __init__(self, make: BatchFn, first: int, last: int, rank: int, world: int):
        self.make, self.first, self.last, self.rank, self.world = make, first, last, rank, world

    def __len__(self) -> int:
        return self.last - self.first

    def __getitem__(self, i: int) -> tuple[int, Any]:
        return self.first + i, self.make(self.first + i, self.rank, self.world)


class Prefetch:
    """A batch_fn that makes the coming steps' batches in `workers` background processes.

    The batches are exactly those `make` gives inline (it is a pure function of the step), so a run with
    workers resumes and matches one without."""

    def __init__(self, make: BatchFn, steps: int, workers: int):
        self.make, self.steps, self.workers = make, steps, workers
        self._it: Any = None
        self._next = -1

    def __call__(self, step: int, rank: int, world: int) -> Any:
        if self.workers == 0:
            return self.make(step, rank, world)
        if self._it is None or step != self._next:
            loader = torch.utils.data.DataLoader(
                _Steps(self.make, step, self.steps, rank, world), batch_size=None, num_workers=self.workers, prefetch_factor=2
            )
            self._it = iter(loader)
        got, batch = next(self._it)
        if got != step:
            raise RuntimeError(f"prefetched step {got} where step {step} was asked for")
        self._next = step + 1
        return batch


def step_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step * 9_973 + rank * 7_919) % (2**31 - 1)


def seed_step(seed: int, step: int, rank: int) -> None:
    s = step_seed(seed, step, rank)
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


def _logged_step(line: str) -> float:
    """The step of a loss.jsonl line; a line that cannot be read (cut by a kill) counts as after any step."""
    try:
        return float(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return float("inf")


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that require grad, plus all buffers (BatchNorm statistics ...)."""
    state = {n: p for n, p in model.named_parameters() if p.requires_grad}
    state.update({n: b for n, b in model.named_buffers() if b is not None})
    return state


def save_weights(path: str | Path, state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Atomic safetensors write (tensors are copied, so shared storage is fine)."""
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_weights(module: torch.nn.Module, path: str | Path, *, strict: bool = True) -> list[str]:
    """Load a safetensors file into `module`; return the module's keys the file did not have.

    strict: every key of the file must exist in the module and, for a full checkpoint, every key of the
    module must be in the file. Errors name the file and the keys."""
    path = Path(path)
    try:
        state = load_file(str(path))
    except Exception as e:  # safetensors raises its own error types for truncated/corrupt files
        raise BadInput(f"{path}: not a readable safetensors file ({e})") from None
    result = module.load_state_dict(state, strict=False)
    if result.unexpected_keys:
        raise BadInput(f"{path}: keys that {type(module).__name__} does not have: {result.unexpected_keys[:8]}")
    if strict and result.missing_keys:
        raise BadInput(f"{path}: missing keys for {type(module).__name__}: {result.missing_keys[:8]}")
    return list(result.missing_keys)


class Trainer:
    def __init__(
        self,
        ctx: RunContext,
        model: torch.nn.Module,
        cfg: TrainingConfig,
        *,
        loss_fn: LossFn,
        batch_fn: BatchFn,
        param_groups: list[dict[str, Any]] | None = None,
        state_fn: Callable[[], dict[str, torch.Tensor]] | None = None,
    ):
        self.ctx, self.model, self.cfg = ctx, model, cfg
        self.loss_fn, self.batch_fn = loss_fn, batch_fn
        self.state_fn = state_fn or (lambda: trainable_state(model))
        trainable = [p for p in model.parameters() if p.requires_grad]
        if not trainable:
            raise ValueError("the model has no parameter that requires grad: nothing to train")
        self.optimizer = build_optimizer(param_groups or trainable, cfg)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(s, cfg))
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)
        self.scaler = torch.amp.GradScaler(enabled=cfg.amp == "fp16" and ctx.device.type == "cuda")
        self.ckpt_dir = ctx.out_dir / "checkpoints"
        self.log_path = ctx.out_dir / "loss.jsonl"
        self.step = 0

    # -- checkpoints ---------------------------------------------------------------------
    def checkpoints(self) -> list[Path]:
        return sorted(p for p in self.ckpt_dir.glob("step-*") if p.is_dir() and (p / "trainer.pt").exists())

    def save_checkpoint(self) -> None:
        final = self.ckpt_dir / f"step-{self.step:07d}"
        tmp = self.ckpt_dir / f".tmp-step-{self.step:07d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file({k: v.detach().cpu().contiguous().clone() for k, v in self.state_fn().items()}, str(tmp / "weights.safetensors"))
        trainer_state = {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
        }
        torch.save(trainer_state, tmp / "trainer.pt")
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)  # the checkpoint appears whole or not at all
        for old in self.checkpoints()[: -self.cfg.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)

    def resume(self) -> int:
        found = self.checkpoints()
        if not found:
            return 0
        latest = found[-1]
        undo = f"delete {latest} to resume from the checkpoint before it"
        try:
            state = load_file(str(latest / "weights.safetensors"))
            trainer_state = torch.load(latest / "trainer.pt", map_location="cpu", weights_only=True)
            step = int(trainer_state["step"])
        except Exception as e:  # truncated files, a foreign pickle refused by weights_only ...
            raise damaged_state(latest, e, "training checkpoint", undo) from None
        missing = [k for k in self.state_fn() if k not in state]
        if missing:
            raise BadInput(f"{latest}: checkpoint lacks {missing[:5]}; it was made by a different model")
        self.model.load_state_dict(state, strict=False)
        try:
            self.optimizer.load_state_dict(trainer_state["optimizer"])
            self.scheduler.load_state_dict(trainer_state["scheduler"])
            self.scaler.load_state_dict(trainer_state["scaler"])
        except (KeyError, ValueError, TypeError, RuntimeError) as e:
            raise damaged_state(latest / "trainer.pt", e, "optimizer state", undo) from None
        self.step = step
        self._truncate_log(self.step)
        self.ctx.log.info("resumed from %s (step %d of %d)", latest, self.step, self.cfg.steps)
        return self.step

    def _truncate_log(self, step: int) -> None:
        """Drop log lines written after the checkpoint we resume from (they will be written again)."""
        if not self.ctx.is_main or not self.log_path.exists():
            return
        lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        kept = [line for line in lines if _logged_step(line) <= step]
        write_text(self.log_path, "".join(line + "\n" for line in kept))

    # -- the loop --------------------------------------------------------------------------
    def _wrapped(self) -> torch.nn.Module:
        if self.ctx.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            device_ids = [self.ctx.device.index] if self.ctx.device.type == "cuda" else None
            return DistributedDataParallel(self.model, device_ids=device_ids)
        return self.model

    def _mean_over_processes(self, values: dict[str, float]) -> dict[str, float]:
        if self.ctx.world_size == 1:
            return values
        import torch.distributed as dist

        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64)
        dist.all_reduce(t)
        return {k: float(v) / self.ctx.world_size for k, v in zip(keys, t)}

    def run(self) -> dict[str, float]:
        """Train to cfg.steps (resuming if a checkpoint exists); return the last logged values."""
        cfg, ctx = self.cfg, self.ctx
        self.resume()
        model = self._wrapped()
        model.train()
        autocast = (
            torch.autocast(device_type=ctx.device.type, dtype=self.amp_dtype)
            if self.amp_dtype is not None
            else contextlib.nullcontext()
        )
        last: dict[str, float] = {}
        bar = ctx.progress(range(self.step, cfg.steps), total=cfg.steps - self.step, desc=f"train {ctx.recipe.name}")
        for step in bar:
            seed_step(ctx.recipe.seed, step, ctx.rank)
            with ctx.timings.stage("data"):
                batch = self.batch_fn(step, ctx.rank, ctx.world_size)
            with ctx.timings.stage("step"):
                with autocast:
                    loss, parts = self.loss_fn(model, batch)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss is {loss.item()} at step {step}; lower the learning rate or use amp: none")
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                if cfg.grad_clip is not None:
                    self.scaler.unscale_(self.optimizer)
                    torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], cfg.grad_clip)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.scheduler.step()
            self.step = step + 1
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                values = self._mean_over_processes({"loss": float(loss.detach()), **{k: float(v) for k, v in parts.items()}})
                last = {"step": self.step, "lr": self.optimizer.param_groups[0]["lr"], **values}
                if ctx.is_main:
                    with open(self.log_path, "a", encoding="utf-8") as f:
                        f.write(json.dumps(last) + "\n")
                if hasattr(bar, "set_postfix"):
                    bar.set_postfix(loss=f"{values['loss']:.4f}")
            if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                if ctx.is_main:
                    self.save_checkpoint()
                if ctx.world_size > 1:
                    import torch.distributed as dist

                    dist.barrier()
        if not last and self.log_path.exists():  # resumed after the end: report the logged end
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
            try:
                last = json.loads(lines[-1]) if lines else {}
            except ValueError:  # a line cut by a kill
                last = {}
        return last
