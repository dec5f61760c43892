"""The shared training loop: an interrupted run resumes to exactly the loss curve of an uninterrupted one."""

from __future__ import annotations

import json

import pytest
import torch

from ovframe import ComponentConfig, Task, hookimpl
from ovframe.config import TrainingConfig
from ovframe.recipes import load_recipe
from ovframe.runner import run_recipe
from ovframe.training import Trainer, lr_factor

CRASH_AT: dict[str, int | None] = {"step": None}


class ToyTrainConfig(TrainingConfig):
    """Fit a small MLP with dropout to a fixed random regression problem."""


class ToyTrain(Task):
    name = "toy-train"
    Config = ToyTrainConfig

    def run(self, ctx):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Dropout(0.2), torch.nn.ReLU(), torch.nn.Linear(16, 1))
        w = torch.arange(4, dtype=torch.float32)

        def batch_fn(step, rank, world):
            g = torch.Generator().manual_seed(1000 + step)
            x = torch.randn(self.config.batch_size, 4, generator=g)
            return x, (x @ w)[:, None]

        def loss_fn(m, batch):
            if CRASH_AT["step"] is not None and trainer.step == CRASH_AT["step"]:
                raise KeyboardInterrupt("simulated kill")
            x, y = batch
            return torch.nn.functional.mse_loss(m(x), y), {}

        trainer = Trainer(ctx, model, self.config, loss_fn=loss_fn, batch_fn=batch_fn)
        return trainer.run()


class Plugin:
    @hookimpl
    def register_tasks(self, register):
        register(ToyTrain)


def _recipe(tmp_path, name):
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: {name}\noutput_dir: {tmp_path / 'runs'}\ndevice: cpu\n"
        "task: {plugin: toy-train, steps: 60, batch_size: 16, lr: 0.05, checkpoint_every: 10, log_every: 5, warmup_steps: 5}\n"
    )
    return path


def _log(tmp_path, name):
    return [json.loads(l) for l in (tmp_path / "runs" / name / "loss.jsonl").read_text().splitlines()]


def test_resume_gives_the_same_loss_curve(tmp_path, registry):
    registry.add_plugin(Plugin(), name="toy")
    straight = run_recipe(load_recipe(_recipe(tmp_path, "straight"), registry=registry), registry)

    CRASH_AT["step"] = 37
    try:
        with pytest.raises(KeyboardInterrupt):
            run_recipe(load_recipe(_recipe(tmp_path, "broken"), registry=registry), registry)
    finally:
        CRASH_AT["step"] = None
    ckpts = sorted(p.name for p in (tmp_path / "runs" / "broken" / "checkpoints").iterdir())
    assert ckpts[-1] == "step-0000030"  # resumes from the last checkpoint before the crash
    resumed = run_recipe(load_recipe(_recipe(tmp_path, "broken"), registry=registry), registry)

    a, b = _log(tmp_path, "straight"), _log(tmp_path, "broken")
    assert [r["step"] for r in b] == list(range(5, 61, 5))  # no step logged twice or lost
    assert a == b  # bit-identical losses and learning rates
    assert straight == resumed
    assert a[-1]["loss"] < 0.2 * a[0]["loss"]  # and it did learn


def test_lr_schedules():
    cfg = TrainingConfig(steps=100, warmup_steps=10, warmup_factor=0.1, schedule="poly", poly_power=0.9)
    assert lr_factor(0, cfg) == pytest.approx(0.1)
    assert lr_factor(10, cfg) == pytest.approx(1.0)
    assert lr_factor(55, cfg) == pytest.approx((1 - 45 / 90) ** 0.9)
    cos = TrainingConfig(steps=100, schedule="cosine")
    assert lr_factor(50, cos) == pytest.approx(0.5)
    assert lr_factor(100, cos) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.slow
@pytest.mark.distributed
def test_two_gloo_processes_follow_the_single_process_curve(tmp_path):
    """DDP averages gradients over the shards of the global batch: the same loss curve as one process."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).with_name("ddp_toy.py")
    curves = {}
    for procs in (1, 2):
        name = f"ddp{procs}"
        recipe = tmp_path / f"{name}.yaml"
        recipe.write_text(
            f"name: {name}\noutput_dir: {tmp_path / 'runs'}\ndevice: cpu\n"
            "task: {plugin: sharded-toy, steps: 20, batch_size: 16, lr: 0.02, log_every: 5, checkpoint_every: 10}\n"
        )
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs), str(script), str(recipe)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
        assert out.returncode == 0, out.stderr[-3000:]
        curves[procs] = _log(tmp_path, name)
    assert [r["step"] for r in curves[2]] == [5, 10, 15, 20]
    for a, b in zip(curves[1], curves[2]):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
    assert (tmp_path / "runs" / "ddp2" / "checkpoints" / "step-0000020").is_dir()
