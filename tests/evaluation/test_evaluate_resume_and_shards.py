"""Real `ovframe run` processes: one killed mid-run and rerun ends with exactly the outputs of an
uninterrupted run; two gloo processes under torchrun give the single process's confusion matrix."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.torch import load_file

from eval_fixtures import expected_confusion, make_folder, plugin_site, recipe

N = 120
CORRUPT = {5: b"not an image", 77: b"\xff\xd8\xff truncated jpeg"}
OUTPUTS = ("metrics.json", "per_class.csv", "failures.csv")


def ovframe(*args, env, **kw):
    return subprocess.Popen([sys.executable, "-m", "ovframe", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def done_count(state) -> int:
    try:
        with safe_open(str(state), "pt") as f:
            return len(json.loads(f.metadata()["done"]))
    except Exception:  # not written yet
        return 0


def assert_same_outputs(a, b):
    for name in OUTPUTS:
        assert (a / name).read_text() == (b / name).read_text(), name
    np.testing.assert_array_equal(
        load_file(a / "confusion.safetensors")["confusion"].numpy(), load_file(b / "confusion.safetensors")["confusion"].numpy()
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("eval") / "data", N, corrupt=CORRUPT)


@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, data):
    env = plugin_site(tmp_path)
    clean = recipe(tmp_path / "clean.yaml", data, tmp_path / "runs", name="clean")
    out = ovframe("run", str(clean), env=env).communicate(timeout=300)
    assert (tmp_path / "runs" / "clean" / "metrics.json").exists(), out[1][-3000:]

    # the same pipeline, slowed down, saving its state often; SIGKILL once some images are counted
    slow = recipe(tmp_path / "slow.yaml", data, tmp_path / "runs", name="killed", delay=0.04, save_every=0.05)
    state = tmp_path / "runs" / "killed" / "state" / "rank0-of-1.safetensors"
    proc = ovframe("run", str(slow), env=env)
    deadline = time.monotonic() + 120
    while done_count(state) < 10 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err[-3000:]
    counted = done_count(state)
    assert 10 <= counted < N, f"the kill did not land mid-run ({counted} of {N} counted)"
    assert not (tmp_path / "runs" / "killed" / "metrics.json").exists()

    rerun = ovframe("run", str(slow), env=env)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-3000:]
    assert_same_outputs(tmp_path / "runs" / "clean", tmp_path / "runs" / "killed")
    assert f"resuming: {counted} of {N} images already counted" in (tmp_path / "runs" / "killed" / "log.txt").read_text()
    cm = load_file(tmp_path / "runs" / "killed" / "confusion.safetensors")["confusion"].numpy()
    np.testing.assert_array_equal(cm, expected_confusion(data, N, 30, skip=tuple(CORRUPT)))


@pytest.mark.slow
@pytest.mark.distributed
def test_two_gloo_processes_give_the_single_process_matrix(tmp_path, data):
    env = plugin_site(tmp_path)
    one = recipe(tmp_path / "one.yaml", data, tmp_path / "runs", name="one")
    two = recipe(tmp_path / "two.yaml", data, tmp_path / "runs", name="two")
    out = ovframe("run", str(one), env=env).communicate(timeout=300)
    assert (tmp_path / "runs" / "one" / "metrics.json").exists(), out[1][-3000:]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "ovframe", "run", str(two)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    runs = tmp_path / "runs"
    assert sorted(p.name for p in (runs / "two" / "state").iterdir()) == ["rank0-of-2.safetensors", "rank1-of-2.safetensors"]
    shares = [load_file(runs / "two" / "state" / f"rank{r}-of-2.safetensors")["confusion"].numpy() for r in (0, 1)]
    assert all(s.sum() > 0 for s in shares)  # each process evaluated its own shard ...
    assert_same_outputs(runs / "one", runs / "two")  # ... and the all-reduced result is the single process's
    np.testing.assert_array_equal(shares[0] + shares[1], load_file(runs / "one" / "confusion.safetensors")["confusion"].numpy())
