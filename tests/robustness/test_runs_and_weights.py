"""Runs that meet each other, damaged resume state, and weights files that would run code."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time

import pytest
import torch
from support import write

from ovframe import BadInput, ComponentConfig, Task, hookimpl
from ovframe.cli import main
from ovframe.config import TrainingConfig
from ovframe.lock import lock_path, run_lock
from ovframe.recipes import load_recipe
from ovframe.runner import run_recipe
from ovframe.training import Trainer

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


def oracle(tmp_path, name="oracle", task="{plugin: evaluate, save_every: 0.001}"):
    return write(
        tmp_path / f"{name}.yaml",
        f"name: {name}\noutput_dir: {tmp_path / 'runs'}\ndevice: cpu\ndataset: {{plugin: toy, n: 4}}\n"
        f"proposals: ground-truth-masks\nclassifier: oracle\nfuser: clip-only\ntask: {task}\n",
    )


# -- the run-directory lock ---------------------------------------------------------------------------
def test_a_second_run_into_the_same_directory_is_refused(tmp_path, toy_registry, capsys):
    f = oracle(tmp_path)
    with run_lock(tmp_path / "runs" / "oracle"):  # another run holds it
        with pytest.raises(BadInput, match=rf"runs/oracle is in use by another ovframe run \(pid {os.getpid()} on "):
            run_recipe(load_recipe(f, registry=toy_registry), toy_registry)
        assert main(["run", str(f), "--fresh"]) == 2  # --fresh may not move a directory in use either
        assert "in use by another ovframe run" in capsys.readouterr().err
        assert not list((tmp_path / "runs").glob("oracle.prev-*"))
    assert run_recipe(load_recipe(f, registry=toy_registry), toy_registry)["images"] == 4


def test_a_lock_left_by_a_killed_run_does_not_block(tmp_path, toy_registry):
    f = oracle(tmp_path)
    run_dir = tmp_path / "runs" / "oracle"
    code = (
        "import sys, time\nfrom pathlib import Path\nfrom ovframe.lock import run_lock\n"
        "with run_lock(Path(sys.argv[1])):\n    print('locked', flush=True)\n    time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(BadInput, match=f"pid {holder.pid}"):
            run_recipe(load_recipe(f, registry=toy_registry), toy_registry)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert json.loads(lock_path(run_dir).read_text())["pid"] == holder.pid  # stale: still names the dead run
    assert run_recipe(load_recipe(f, registry=toy_registry), toy_registry)["images"] == 4
    assert f"(pid {holder.pid} on" in (run_dir / "log.txt").read_text()  # "... stopped before its end: resuming it"
    assert lock_path(run_dir).read_text() == ""  # a finished run leaves no holder


def test_a_run_directory_that_is_a_file(tmp_path, toy_registry):
    f = oracle(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "oracle").write_text("not a folder")
    with pytest.raises(BadInput, match="is a file, where this recipe's run directory should be"):
        run_recipe(load_recipe(f, registry=toy_registry), toy_registry)


# -- damaged resume state --------------------------------------------------------------------------
def test_a_truncated_evaluation_state_says_what_to_do(tmp_path, toy_registry, capsys):
    f = oracle(tmp_path)
    run_recipe(load_recipe(f, registry=toy_registry), toy_registry)
    run_dir = tmp_path / "runs" / "oracle"
    state = run_dir / "state" / "rank0-of-1.safetensors"
    data = state.read_bytes()
    (run_dir / "metrics.json").unlink()  # as if killed before the end
    for damaged in (data[: len(data) // 2], data[:7], b"", data.replace(b'"done"', b'"dome"')):
        state.write_bytes(damaged)
        assert main(["run", str(f)]) == 2
        err = capsys.readouterr().err
        assert "the saved evaluation progress is damaged" in err and "--fresh" in err and "Traceback" not in err
    assert main(["run", str(f), "--fresh"]) == 0


class ToyTrainConfig(TrainingConfig):
    """A linear regression, trained by the shared loop (test only)."""


class ToyTrain(Task):
    name = "harden-train"
    Config = ToyTrainConfig

    def run(self, ctx):
        model = torch.nn.Linear(3, 1)

        def batch_fn(step, rank, world):
            x = torch.randn(4, 3, generator=torch.Generator().manual_seed(step))
            return x, x.sum(1, keepdim=True)

        def loss_fn(m, batch):
            return torch.nn.functional.mse_loss(m(batch[0]), batch[1]), {}

        return Trainer(ctx, model, self.config, loss_fn=loss_fn, batch_fn=batch_fn).run()


class TrainPlugin:
    @hookimpl
    def register_tasks(self, register):
        register(ToyTrain)


@pytest.mark.parametrize("damage", ["weights", "trainer", "log"])
def test_a_damaged_training_checkpoint_says_what_to_do(tmp_path, registry, damage):
    registry.add_plugin(TrainPlugin(), name="harden-train")
    f = write(
        tmp_path / "t.yaml",
        f"name: t\noutput_dir: {tmp_path / 'runs'}\ndevice: cpu\n"
        "task: {plugin: harden-train, steps: 6, batch_size: 4, checkpoint_every: 2, log_every: 1}\n",
    )
    run_recipe(load_recipe(f, registry=registry), registry)
    run_dir = tmp_path / "runs" / "t"
    (run_dir / "metrics.json").unlink()
    latest = sorted(p for p in run_dir.rglob("weights.safetensors"))[-1].parent
    if damage == "weights":
        (latest / "weights.safetensors").write_bytes(b"\x00" * 10)
    elif damage == "trainer":
        (latest / "trainer.pt").write_bytes(pickle.dumps({"step": 1}) + b"\x00trailing")
    else:
        with open(run_dir / "loss.jsonl", "a") as log:
            log.write('{"step": 7, "lo')  # a line cut by a kill
    if damage == "log":
        assert run_recipe(load_recipe(f, registry=registry), registry)["step"] == 6
        return
    with pytest.raises(BadInput, match=rf"the saved .* is damaged .*--fresh.*delete {latest}"):
        run_recipe(load_recipe(f, registry=registry), registry)


# -- weights files that would run code ---------------------------------------------------------------
class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(2))

    def forward(self, x):
        return x * self.w


def test_torchscript_weights_are_refused_unless_allowed(tmp_path, monkeypatch, caplog):
    from ovframe_clip import checkpoints

    path = tmp_path / "ViT-B-16.pt"
    torch.jit.save(torch.jit.script(Tiny()), str(path))

    def never(*args, **kwargs):
        raise AssertionError("torch.jit.load ran on a file nobody allowed")

    real = torch.jit.load
    monkeypatch.setattr(torch.jit, "load", never)
    with pytest.raises(BadInput, match="TorchScript archive: loading it runs code stored in the file.*allow_torchscript: true"):
        checkpoints.read_checkpoint(path)
    monkeypatch.setattr(torch.jit, "load", real)
    state, fmt, _ = checkpoints.read_checkpoint(path, allow_torchscript=True)
    assert fmt == "openai" and torch.equal(state["w"], torch.ones(2))
    assert "runs code from the file" in caplog.text


def test_allow_torchscript_is_a_recipe_option(tmp_path, toy_registry):
    f = write(
        tmp_path / "r.yaml",
        "name: r\ndataset: {plugin: toy}\nproposals: ground-truth-masks\nfuser: clip-only\ntext_encoder: {plugin: clip-text, model: ViT-B-16, pretrained: openai}\n"
        "classifier: {plugin: clip-masked-crop, model: ViT-B-16, pretrained: x.pt, allow_torchscript: true}\n",
    )
    assert load_recipe(f, registry=toy_registry).sections["classifier"].config.allow_torchscript is True


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


@pytest.mark.parametrize("content", ["pickle", "garbage", "truncated"])
def test_an_unreadable_backbone_file_is_bad_input(tmp_path, monkeypatch, content):
    from ovframe_maskformer.model import load_timm_weights

    monkeypatch.chdir(tmp_path)
    path = tmp_path / "backbone.pth"
    if content == "pickle":
        torch.save({"conv1.weight": Exploit()}, path)
    elif content == "garbage":
        path.write_bytes(os.urandom(1000))
    else:
        torch.save({"conv1.weight": torch.ones(3)}, path)
        path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(BadInput, match="cannot be read as backbone weights"):
        load_timm_weights(torch.nn.Linear(1, 1), str(path), "resnet18")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("recorded", ["{not json", "[" * 100_000, '"a string"', '{"embed_dim": "x"}'])
def test_weights_whose_recorded_architecture_is_damaged(tmp_path, recorded):
    """Metadata of a weights file is input too: maskformer and SAM report it, they do not crash on it."""
    from safetensors.torch import save_file

    from ovframe_maskformer.config import MaskFormerConfig
    from ovframe_maskformer.weights import ARCH_KEY as MF_KEY, check_architecture
    from ovframe_sam.model import ARCH_KEY as SAM_KEY, architecture_for

    path = tmp_path / "w.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata={MF_KEY: recorded})
    with pytest.raises(BadInput, match="cannot be read|not a mapping"):
        check_architecture(path, MaskFormerConfig())
    with pytest.raises(BadInput, match="cannot be read"):
        architecture_for(None, path, None, {SAM_KEY: recorded})


def test_a_clip_model_config_that_is_not_one(tmp_path):
    from ovframe_clip.loading import architecture

    for name, text in {"deep.json": "[" * 100_000 + "]" * 100_000, "bad.json": "{", "list.json": "[1, 2]"}.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(BadInput, match="not valid JSON|needs embed_dim"):
            architecture(str(tmp_path / name))
