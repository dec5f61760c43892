"""pretrain-clip: batches are a pure function of the step, the files it writes load (in open_clip and in
ovframe's CLIP components) and give the model it trained, and the zero-shot monitor crops as documented."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from ovframe.files import sha256_of
from ovframe.recipes import load_recipe
from ovframe.runner import run_recipe
from ovframe_synth.clip_model import OPENAI_MEAN, OPENAI_STD, build_clip, build_tokenizer, load_clip_files
from ovframe_synth.pretrain_clip import CaptionBatches
from ovframe_synth.zeroshot import masked_crop, zero_shot_regions

TINY = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 32, "layers": 1, "head_width": 16},
    "text_cfg": {"context_length": 64, "vocab_size": 8514, "width": 32, "heads": 2, "layers": 1,
                 "tokenizer_kwargs": {"bpe_path": "pkg://ovframe_synth/bpe_8k.txt.gz"}},
}


def test_batches_are_a_pure_function_of_the_step(registry):
    data = registry.get("dataset", "synth").build({"split": "train", "labels": "none", "num_images": 50, "image_size": 64})
    tokenizer = build_tokenizer(TINY)
    make = CaptionBatches(data, tokenizer, 64, OPENAI_MEAN, OPENAI_STD, 8, seed=3, caption="random")
    a, b = make(4, 0, 1), CaptionBatches(data, tokenizer, 64, OPENAI_MEAN, OPENAI_STD, 8, seed=3, caption="random")(4, 0, 1)
    assert torch.equal(a["images"], b["images"]) and torch.equal(a["tokens"], b["tokens"])
    assert not torch.equal(make(5, 0, 1)["images"], a["images"])
    halves = [make(4, r, 2) for r in (0, 1)]  # two processes share the global batch exactly
    assert torch.equal(torch.cat([h["images"] for h in halves]), a["images"])
    # the first pair: the image normalised by hand, the tokens of one of its own captions
    index = int(make._order(32 // 50)[32 % 50])
    sample = data[index]
    mean, std = torch.tensor(OPENAI_MEAN).view(3, 1, 1) * 255, torch.tensor(OPENAI_STD).view(3, 1, 1) * 255
    assert torch.allclose(a["images"][0], (sample.image.float() - mean) / std)
    assert any(torch.equal(a["tokens"][0], tokenizer([c])[0]) for c in sample.meta["captions"])
    # over the steps of one epoch every image comes once
    seen = [int(make._order(0)[p]) for s in range(7) for p in make.positions(s, 0, 1) if p < 50]
    assert sorted(seen) == list(range(50))


def test_keep_together_puts_blocks_in_one_batch(registry):
    data = registry.get("dataset", "synth").build({"split": "train", "labels": "none", "num_images": 41, "twins": True})
    make = CaptionBatches(data, build_tokenizer(TINY), 64, OPENAI_MEAN, OPENAI_STD, 8, seed=0, caption="first", keep_together=2)
    assert len(make) == 40  # whole blocks only
    order = make._order(3).tolist()
    assert sorted(order) == list(range(40))
    assert all(order[i] % 2 == 0 and order[i + 1] == order[i] + 1 for i in range(0, 40, 2))
    assert order != sorted(order)


def test_masked_crop_fills_the_background_with_the_mean():
    image = torch.randint(0, 256, (3, 40, 50), dtype=torch.uint8)
    mask = torch.zeros(40, 50, dtype=torch.bool)
    mask[10:30, 20:40] = True
    mask[10, 20] = False  # a background pixel inside the box
    crop = masked_crop(image, mask, 20, OPENAI_MEAN, OPENAI_STD)  # box 20 x 20: no resampling
    mean, std = torch.tensor(OPENAI_MEAN).view(3, 1, 1) * 255, torch.tensor(OPENAI_STD).view(3, 1, 1) * 255
    expected = (image[:, 10:30, 20:40].float() - mean) / std
    expected[:, 0, 0] = 0.0
    assert torch.allclose(crop, expected, atol=1e-4)


def _run(tmp_path, registry, name, extra="", model=TINY):
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: {name}\noutput_dir: {tmp_path / 'runs'}\ndevice: cpu\nseed: 1\n"
        "dataset: {plugin: synth, split: train, labels: none, num_images: 100, image_size: 64}\n"
        f"task:\n  plugin: pretrain-clip\n  model: {json.dumps(model)}\n"
        "  steps: 3\n  batch_size: 8\n  warmup_steps: 1\n  checkpoint_every: 2\n  log_every: 1\n"
        "  eval_dataset: {plugin: synth, split: val, image_size: 64}\n  eval_images: 3\n" + extra
    )
    recipe = load_recipe(path, registry=registry)
    return run_recipe(recipe, registry), tmp_path / "runs" / name


def test_pretraining_writes_files_that_load_as_the_trained_model(tmp_path, registry):
    metrics, run = _run(tmp_path, registry, "tiny")
    assert metrics["step"] == 3 and len((run / "loss.jsonl").read_text().splitlines()) == 3
    assert metrics["weights_sha256"] == sha256_of(run / "clip.safetensors")
    saved = json.loads((run / "clip.json").read_text())
    assert saved["model_cfg"] == TINY and saved["preprocess_cfg"] == {"mean": list(OPENAI_MEAN), "std": list(OPENAI_STD)}

    # an independent load with open_clip alone gives the same zero-shot figures as the task measured
    from open_clip.model import CLIP

    model = CLIP(**saved["model_cfg"]).eval()
    model.load_state_dict(load_file(str(run / "clip.safetensors")))
    val = registry.get("dataset", "synth").build({"split": "val", "image_size": 64})
    again = zero_shot_regions(model, build_tokenizer(TINY), val, 3, mean=OPENAI_MEAN, std=OPENAI_STD)
    assert again == {k: v for k, v in metrics.items() if k.startswith("zs_")}
    assert metrics["zs_regions"] > 6 and 0 <= metrics["zs_acc"] <= 1
    assert not torch.equal(model.visual.conv1.weight, build_clip(TINY).visual.conv1.weight)

    # float16 files are half the size and load to the same model up to fp16 rounding
    metrics16, run16 = _run(tmp_path, registry, "tiny16", "  save_dtype: float16\n")
    assert metrics16["weights_mb"] < 0.6 * metrics["weights_mb"]
    model16, _ = load_clip_files(run16 / "clip.json", run16 / "clip.safetensors")
    tokens = build_tokenizer(TINY)(["a photo of a violet star."])
    with torch.no_grad():
        assert torch.allclose(model16.encode_text(tokens), model.encode_text(tokens), atol=2e-2)


def test_clip_components_load_the_pretrained_files(tmp_path, registry):
    """The contract with ovframe_clip: `model: clip.json`, `pretrained: clip.safetensors`, the model's
    own BPE file named in the JSON by a pkg:// path."""
    _, run = _run(tmp_path, registry, "contract")
    from ovframe import Vocabulary

    encoder = registry.get("text_encoder", "clip-text").build(
        {"model": str(run / "clip.json"), "pretrained": str(run / "clip.safetensors"), "templates": ["{}"], "cache": False}
    )
    names = ("red circle", "grass", "violet star")
    got = encoder.encode(Vocabulary(names)).embeddings
    model, _ = load_clip_files(run / "clip.json", run / "clip.safetensors")
    with torch.no_grad():
        expected = F.normalize(model.encode_text(build_tokenizer(TINY)(list(names))), dim=-1)
    assert torch.allclose(got.float(), expected, atol=1e-5)


def test_zero_shot_scores_by_brute_force(registry):
    """The monitor against a recount written here, with a model that reads the mean colour of a crop."""

    class MeanColour(torch.nn.Module):  # image -> mean RGB; text -> a fixed random vector per prompt
        visual = type("V", (), {"image_size": 32})()

        def encode_image(self, x):
            return x.mean(dim=(2, 3))

        def encode_text(self, tokens):
            g = torch.Generator().manual_seed(0)
            table = torch.randn(100_000, 3, generator=g)
            return table[tokens.sum(dim=1) % 100_000]

    data = registry.get("dataset", "synth").build({"split": "val", "num_images": 4, "image_size": 48})
    tokenizer = build_tokenizer(TINY)
    model = MeanColour()
    got = zero_shot_regions(model, tokenizer, data, 4, template="{}", mean=OPENAI_MEAN, std=OPENAI_STD)
    text = F.normalize(model.encode_text(tokenizer(list(data.vocabulary.names))), dim=-1)
    rows = []
    for i in range(4):
        sample = data[i]
        for c in torch.unique(sample.label).tolist():
            crop = masked_crop(sample.image, sample.label == c, 32, OPENAI_MEAN, OPENAI_STD)
            best = int((F.normalize(crop.mean(dim=(1, 2)), dim=0) @ text.T).argmax())
            rows.append((c, best == c, data.vocabulary.seen[c]))
    acc = sum(ok for _, ok, _ in rows) / len(rows)
    per_class = {}
    for c, ok, _ in rows:
        per_class.setdefault(c, []).append(ok)
    macc = sum(sum(v) / len(v) for v in per_class.values()) / len(per_class)
    unseen = [ok for _, ok, s in rows if not s]
    assert got["zs_regions"] == len(rows)
    assert abs(got["zs_acc"] - acc) < 1e-6 and abs(got["zs_macc"] - macc) < 1e-6
    assert abs(got["zs_acc_unseen"] - sum(unseen) / len(unseen)) < 1e-6
    assert got["zs_per_class"] == {data.vocabulary.names[c]: round(sum(v) / len(v), 4) for c, v in per_class.items()}


def test_zero_shot_reports_colour_and_shape_of_things(registry):
    """zs_thing_colour / zs_thing_shape: each thing region named again among the 30 thing names only; recounted
    here with a model whose image feature is a given class's text feature (so its answers are known)."""
    data = registry.get("dataset", "synth").build({"split": "val", "num_images": 6, "image_size": 48})
    tokenizer = build_tokenizer(TINY)
    names = data.vocabulary.names
    table = F.normalize(torch.randn(len(names), 8, generator=torch.Generator().manual_seed(1)), dim=-1)
    prompts = {tuple(tokenizer([f"{n}"])[0].tolist()): k for k, n in enumerate(names)}
    regions = [(i, c) for i in range(6) for c in torch.unique(data[i].label).tolist()]
    # the answer for region r: a stuff class for thing regions 0, 3, 6 ... (wrong, and not a thing), else a
    # thing with the true colour and the shape moved by one, except every 4th region, answered right
    from ovframe_synth import world

    def answer(r, c):
        info = world.CLASSES[c]
        if r % 4 == 0:
            return c
        if info.is_thing and r % 3 == 0:
            return world.STUFF_IDS[r % 10]
        if info.is_thing:
            shapes = list(world.SHAPES)
            return world.CLASS_INDEX[f"{info.colour} {shapes[(shapes.index(info.shape) + 1) % 5]}"]
        return world.STUFF_IDS[(world.STUFF_IDS.index(c) + 1) % 10]

    answers = [answer(r, c) for r, (_, c) in enumerate(regions)]

    class Scripted(torch.nn.Module):
        visual = type("V", (), {"image_size": 16})()
        calls = 0

        def encode_image(self, x):
            out = table[answers[self.calls : self.calls + len(x)]]
            self.calls += len(x)
            return out

        def encode_text(self, tokens):
            return table[[prompts[tuple(t.tolist())] for t in tokens]]

    got = zero_shot_regions(Scripted(), tokenizer, data, 6, template="{}", mean=OPENAI_MEAN, std=OPENAI_STD, chunk=7)
    things = [(r, c) for r, (_, c) in enumerate(regions) if world.CLASSES[c].is_thing]
    # among thing names only, a thing region answered with a stuff class is named by its best thing score
    best_thing = []
    for r, c in things:
        scores = table[list(world.THING_IDS)] @ table[answers[r]]
        best_thing.append(world.THING_IDS[int(scores.argmax())])
    colour = sum(world.CLASSES[b].colour == world.CLASSES[c].colour for (r, c), b in zip(things, best_thing)) / len(things)
    shape = sum(world.CLASSES[b].shape == world.CLASSES[c].shape for (r, c), b in zip(things, best_thing)) / len(things)
    assert got["zs_thing_colour"] == pytest.approx(colour) and got["zs_thing_shape"] == pytest.approx(shape)
    assert 0 < shape < colour < 1
    by_class: dict[int, list[bool]] = {}
    for r, (_, c) in enumerate(regions):
        by_class.setdefault(c, []).append(answers[r] == c)
    mean = lambda ids: sum(sum(v) / len(v) for c, v in by_class.items() if c in ids) / len([c for c in by_class if c in ids])
    assert got["zs_macc_things"] == pytest.approx(mean(world.THING_IDS)) and got["zs_macc_stuff"] == pytest.approx(mean(world.STUFF_IDS))


@pytest.mark.distributed
@pytest.mark.slow
def test_two_gloo_processes_follow_the_single_process_curve(tmp_path):
    """Features gathered across processes: the mean of the local losses is the global CLIP loss, and
    DDP's averaged gradients are its gradients, so two processes train exactly as one."""
    import os
    import subprocess
    import sys

    curves = {}
    for procs in (1, 2):
        name = f"ddp{procs}"
        recipe = tmp_path / f"{name}.yaml"
        recipe.write_text(
            f"name: {name}\noutput_dir: {tmp_path / 'runs'}\ndevice: cpu\nseed: 2\n"
            "dataset: {plugin: synth, split: train, labels: none, num_images: 64, image_size: 64}\n"
            f"task:\n  plugin: pretrain-clip\n  model: {json.dumps(TINY)}\n  steps: 4\n  batch_size: 8\n"
            "  warmup_steps: 0\n  lr: 0.002\n  log_every: 1\n  eval_dataset: null\n"
        )
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs),
               "-m", "ovframe", "run", str(recipe)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert out.returncode == 0, out.stderr[-3000:]
        lines = (tmp_path / "runs" / name / "loss.jsonl").read_text().splitlines()
        curves[procs] = [json.loads(line) for line in lines]
    assert [r["step"] for r in curves[2]] == [1, 2, 3, 4]
    for a, b in zip(curves[1], curves[2]):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
    assert curves[1][-1]["loss"] != curves[1][0]["loss"]
