"""Run by tests/core/test_training.py under torchrun: a toy training task, no dropout, shardable batches."""

from __future__ import annotations

import sys

import torch

from ovframe import Task, hookimpl
from ovframe.config import TrainingConfig
from ovframe.recipes import load_recipe
from ovframe.registry import get_registry
from ovframe.runner import run_recipe
from ovframe.training import Trainer


class ShardConfig(TrainingConfig):
    """Linear regression with a global batch split across processes."""


class ShardedToy(Task):
    name = "sharded-toy"
    Config = ShardConfig

    def run(self, ctx):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        w = torch.arange(4, dtype=torch.float32)

        def batch_fn(step, rank, world):
            g = torch.Generator().manual_seed(step)
            x = torch.randn(self.config.batch_size, 4, generator=g)  # the global batch ...
            x = x.chunk(world)[rank]  # ... this process's share
            return x, (x @ w)[:, None]

        def loss_fn(m, batch):
            x, y = batch
            return torch.nn.functional.mse_loss(m(x), y), {}

        return Trainer(ctx, model, self.config, loss_fn=loss_fn, batch_fn=batch_fn).run()


class Plugin:
    @hookimpl
    def register_tasks(self, register):
        register(ShardedToy)


if __name__ == "__main__":
    registry = get_registry()
    registry.add_plugin(Plugin(), name="sharded-toy")
    run_recipe(load_recipe(sys.argv[1], registry=registry), registry)
