"""train-proposals under torchrun: 2 gloo processes on CPU train, checkpoint, and follow the 1-process loss curve."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ovframe.recipes import load_recipe
from ovframe.runner import run_recipe

from mf_fakes import TINY
from test_training import log_of, make_registry, write_recipe

LAUNCHER = Path(__file__).with_name("launch_ovframe.py")


@pytest.mark.slow
@pytest.mark.distributed
def test_two_gloo_processes_train_like_one(tmp_path):
    # frozen BatchNorm and no dropout: nothing in a step depends on how the batch is split over processes
    arch = {**TINY, "backbone_norm": "frozen", "dropout": 0.0}
    task = {"log_every": 1, "checkpoint_every": 3, "warmup_steps": 2}
    two = write_recipe(tmp_path, "two", steps=6, task=task, proposals=arch)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(filter(None, [str(LAUNCHER.parent), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(LAUNCHER), "run", str(two)],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "runs" / "two"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-0000003", "step-0000006"]
    assert (run / "maskformer.safetensors").exists() and (run / "log.rank1.txt").exists()
    assert json.loads((run / "metrics.json").read_text())["step"] == 6

    registry = make_registry()
    run_recipe(load_recipe(write_recipe(tmp_path, "one", steps=6, task=task, proposals=arch), registry=registry), registry)
    one, two_log = log_of(tmp_path, "one"), log_of(tmp_path, "two")
    assert [r["step"] for r in two_log] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(one, two_log):
        assert b["lr"] == a["lr"]
        assert b["loss"] == pytest.approx(a["loss"], rel=2e-3), (a, b)
