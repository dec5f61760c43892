"""The train-adapter task: pair sources, what it trains, exact resume, and two gloo processes under torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from ovframe import BadInput
from ovframe.recipes import load_recipe
from ovframe.runner import run_recipe
from ovframe.training import save_weights

P0 = torch.randn(3, 16, 64, generator=torch.Generator().manual_seed(11)) * 0.02


def write_recipe(tmp_path, name, tiny, adapter, task, dataset="{plugin: toy, n: 6}", expand_ratio=2.0):
    """A train-adapter recipe; boxes twice the tight box so that whole patches are background (prompted)."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: {name}\noutput_dir: {tmp_path / 'runs'}\ndevice: cpu\nseed: 3\n"
        + (f"dataset: {dataset}\n" if dataset else "")
        + f"text_encoder: {{plugin: clip-text, model: {tiny['model']}, pretrained: {tiny['pretrained']}, templates: single, "
        f"cache_dir: {tmp_path / 'text-cache'}}}\n"
        f"classifier: {{plugin: clip-masked-crop, model: {tiny['model']}, pretrained: {tiny['pretrained']}, expand_ratio: {expand_ratio}}}\n"
        f"adapter: {adapter}\ntask: {task}\n"
    )
    return path


def run(path, registry):
    return run_recipe(load_recipe(path, registry=registry), registry)


def losses(tmp_path, name):
    return [json.loads(line) for line in (tmp_path / "runs" / name / "loss.jsonl").read_text().splitlines()]


def test_segments_train_mpt_on_seen_classes_only(tmp_path, tiny, toy_registry):
    from support import SEEN, ToyDataset, ToyConfig

    save_weights(tmp_path / "p0.safetensors", {"prompts": P0})
    shared_before = load_file(tiny["pretrained"])
    task = "{plugin: train-adapter, steps: 4, batch_size: 4, checkpoint_every: 2, log_every: 1}"
    metrics = run(write_recipe(tmp_path, "mpt", tiny, f"{{plugin: mask-prompt-tuning, weights: {tmp_path / 'p0.safetensors'}}}", task), toy_registry)

    out = tmp_path / "runs" / "mpt"
    pairs = json.loads((out / "pairs-segments.json").read_text())["pairs"]
    data = ToyDataset(ToyConfig(n=6))
    expected = [[i, k] for i in range(6) for k in sorted(set(data[i].label[data[i].label >= 0].tolist())) if SEEN[k]]
    assert sorted(pairs) == expected  # one pair per segment, never the unseen class
    assert metrics["pairs"] == len(expected) and metrics["steps"] == 4 and metrics["lr"] == pytest.approx(2e-2)
    assert [r["step"] for r in losses(tmp_path, "mpt")] == [1, 2, 3, 4]
    weights = load_file(out / "adapter.safetensors")
    assert set(weights) == {"prompts"} and not torch.equal(weights["prompts"], P0)
    # the CLIP weights the text encoder and classifier share were not touched
    from ovframe_clip.config import ClipModelConfig
    from ovframe_clip.loading import load_clip

    loaded = load_clip(ClipModelConfig(**tiny))  # the process's shared copy
    assert all(torch.equal(loaded.model.state_dict()[k], v) for k, v in shared_before.items())


def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path, tiny, toy_registry, monkeypatch):
    import ovframe_clip.train as train_module

    save_weights(tmp_path / "p0.safetensors", {"prompts": P0})
    adapter = f"{{plugin: mask-prompt-tuning, weights: {tmp_path / 'p0.safetensors'}}}"
    task = "{plugin: train-adapter, steps: 6, batch_size: 4, checkpoint_every: 2, log_every: 1}"
    run(write_recipe(tmp_path, "straight", tiny, adapter, task), toy_registry)

    real, calls = train_module.contrastive_loss, {"n": 0}

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt("killed at step 3")
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "contrastive_loss", dying)
    broken = write_recipe(tmp_path, "broken", tiny, adapter, task)
    with pytest.raises(KeyboardInterrupt):
        run(broken, toy_registry)
    monkeypatch.setattr(train_module, "contrastive_loss", real)
    run(broken, toy_registry)
    assert losses(tmp_path, "broken") == losses(tmp_path, "straight")
    a = load_file(tmp_path / "runs" / "straight" / "adapter.safetensors")["prompts"]
    b = load_file(tmp_path / "runs" / "broken" / "adapter.safetensors")["prompts"]
    assert torch.equal(a, b)


def write_pairs(folder, with_sample_id=False):
    """Three image files with masks, and a JSONL listing them (one line pointing into the toy dataset)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    rng = np.random.default_rng(0)
    for i, noun in enumerate(["cat", "dog", "cat"]):
        Image.fromarray(rng.integers(0, 255, (20, 26, 3), dtype=np.uint8)).save(folder / f"im{i}.png")
        mask = np.zeros((20, 26), np.uint8)
        mask[2 + i : 12 + i, 3:15] = 255
        Image.fromarray(mask).save(folder / f"m{i}.png")
        lines.append(json.dumps({"image": f"im{i}.png", "mask": f"m{i}.png", "noun": noun}))
    if with_sample_id:
        mask = np.zeros((24, 24), np.uint8)
        mask[4:10, 4:10] = 1
        Image.fromarray(mask).save(folder / "toy.png")
        lines.append(json.dumps({"sample_id": "toy001", "mask": "toy.png", "noun": "red square"}))
    (folder / "pairs.jsonl").write_text("# mined pairs\n" + "\n".join(lines) + "\n")
    return folder / "pairs.jsonl"


def test_jsonl_pairs_train_full_finetune(tmp_path, tiny, toy_registry):
    pairs = write_pairs(tmp_path / "pairs", with_sample_id=True)
    task = f"{{plugin: train-adapter, epochs: 2, batch_size: 2, log_every: 1, pairs: {{source: jsonl, path: {pairs}}}}}"
    metrics = run(write_recipe(tmp_path, "ft", tiny, "full-finetune", task), toy_registry)
    assert metrics["pairs"] == 4 and metrics["nouns"] == 3 and metrics["steps"] == 4  # ceil(2 * 4 / 2)
    assert metrics["lr"] == pytest.approx(5e-6)
    weights = load_file(tmp_path / "runs" / "ft" / "adapter.safetensors")
    original = load_file(tiny["pretrained"])
    assert set(weights) == {k for k in original if k.startswith("visual.")}
    assert not torch.equal(weights["visual.conv1.weight"], original["visual.conv1.weight"])
    # background workers prefetch the very same batches
    task = task.replace("log_every: 1,", "log_every: 1, workers: 1,")
    run(write_recipe(tmp_path, "ft-workers", tiny, "full-finetune", task), toy_registry)
    assert losses(tmp_path, "ft-workers") == losses(tmp_path, "ft")


def test_bad_pairs_lines_are_reported_with_line_numbers(tmp_path, tiny, registry):
    (tmp_path / "bad.jsonl").write_text('{"image": "a.png", "mask": "m.png", "noun": "cat"}\nnot json\n{"mask": "m.png", "noun": "x"}\n')
    task = f"{{plugin: train-adapter, steps: 1, batch_size: 2, pairs: {{source: jsonl, path: {tmp_path / 'bad.jsonl'}}}}}"
    with pytest.raises(BadInput, match=r"line 2: not JSON(.|\n)*line 3: give exactly one"):
        run(write_recipe(tmp_path, "bad", tiny, "mask-prompt-tuning", task, dataset=None), registry)


def test_train_adapter_needs_an_adapter(tmp_path, tiny, registry):
    path = write_recipe(tmp_path, "noadapter", tiny, "mask-prompt-tuning", "{plugin: train-adapter, steps: 1}", dataset=None)
    path.write_text("\n".join(line for line in path.read_text().splitlines() if not line.startswith("adapter:")))
    with pytest.raises(BadInput, match="needs an `adapter:` section"):
        run(path, registry)


@pytest.mark.slow
@pytest.mark.distributed
def test_two_gloo_processes_average_the_shards(tmp_path, tiny, registry):
    """One step under torchrun with 2 processes equals AdamW on the mean of the two shards' losses."""
    from ovframe import Vocabulary
    from ovframe_clip.pairs import JsonlPairSource
    from ovframe_clip.train import PairBatches, contrastive_loss
    from clip_helpers import build

    pairs = write_pairs(tmp_path / "pairs")
    save_weights(tmp_path / "p0.safetensors", {"prompts": P0})
    adapter = f"{{plugin: mask-prompt-tuning, weights: {tmp_path / 'p0.safetensors'}}}"
    task = f"{{plugin: train-adapter, steps: 1, batch_size: 4, log_every: 1, pairs: {{source: jsonl, path: {pairs}}}}}"
    recipe = write_recipe(tmp_path, "ddp", tiny, adapter, task, dataset=None)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OVFRAME_PLUGINS": "clip"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "ovframe", "run", str(recipe)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    got = load_file(tmp_path / "runs" / "ddp" / "adapter.safetensors")["prompts"]
    assert (tmp_path / "runs" / "ddp" / "log.rank1.txt").exists()

    # the same step by hand: each rank's share, the mean of their losses, one AdamW step
    clf = build("classifier", {"plugin": "clip-masked-crop", **tiny, "expand_ratio": 2.0})
    clf.attach(build("adapter", {"plugin": "mask-prompt-tuning", "weights": str(tmp_path / "p0.safetensors")}))
    text_enc = build("text_encoder", {"plugin": "clip-text", **tiny, "templates": "single", "cache": False})
    source = JsonlPairSource(pairs, [json.loads(l) for l in pairs.read_text().splitlines()[1:]], None)
    nouns = sorted(set(source.nouns()))
    text = torch.nn.functional.normalize(text_enc.encode(Vocabulary(tuple(nouns))).embeddings, dim=-1)
    make = PairBatches(source, [nouns.index(n) for n in source.nouns()], clf.cropper, 2.0, 4, 3, None)
    loss = 0
    for rank in (0, 1):
        batch = make(0, rank, 2)
        loss = loss + contrastive_loss(clf.encoder(batch["images"], batch["masks"]), text, batch["nouns"], 100.0)[0] / 2
    opt = torch.optim.AdamW([clf.encoder.prompts], lr=2e-2, weight_decay=0.0)
    loss.backward()
    opt.step()
    torch.testing.assert_close(got, clf.encoder.prompts.detach(), rtol=1e-4, atol=1e-6)
    assert not torch.equal(got, P0)
