"""train-proposals: it learns (overfits fabricated scenes), resumes exactly, never sees unseen classes, and the
trained generator classifies against any vocabulary."""

from __future__ import annotations

import json
import random

import pytest
import torch
from safetensors import safe_open

from ovframe import IGNORE_INDEX, ConfusionMatrix, Vocabulary
from ovframe.recipes import load_recipe
from ovframe.registry import Registry
from ovframe.runner import run_recipe
from ovframe_maskformer import train as train_module
from ovframe_maskformer.config import TrainProposalsConfig
from ovframe_maskformer.mapper import SemanticMapper

import mf_fakes
from mf_fakes import TINY, WordTextEncoder


def make_registry() -> Registry:
    r = Registry()
    r.load_builtins()
    r.load_entry_points()
    mf_fakes.add_to(r)
    return r


def write_recipe(tmp_path, name, *, steps, task=None, dataset=None, proposals=TINY, text_dim=32):
    task = {
        "plugin": "train-proposals", "steps": steps, "batch_size": 4, "lr": 0.002, "warmup_steps": 10, "crop_size": 64,
        "min_size_train": [56, 64, 72, 80], "color_aug": False, "log_every": 10, "checkpoint_every": 100, **(task or {}),
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: {name}\noutput_dir: {tmp_path / 'runs'}\ndevice: cpu\nseed: 3\n"
        f"dataset: {json.dumps({'plugin': 'test-scenes', 'count': 6, **(dataset or {})})}\n"
        f"text_encoder: {{plugin: test-words, dim: {text_dim}}}\n"
        f"proposals: {json.dumps({'plugin': 'maskformer', **proposals})}\n"
        f"task: {json.dumps(task)}\n"
    )
    return path


def log_of(tmp_path, name):
    return [json.loads(line) for line in (tmp_path / "runs" / name / "loss.jsonl").read_text().splitlines()]


def generator(registry, weights, **over):
    return registry.get("proposals", "maskformer").build({**TINY, **over, "weights": str(weights)})


def miou(registry, gen, vocabulary, names=None):
    """mIoU of the proposal-only semantic map over the 6 training scenes, classes named `names`."""
    dataset = registry.get("dataset", "test-scenes").build({"count": 6})
    vocab = Vocabulary(tuple(names)) if names else vocabulary
    text = registry.get("text_encoder", "test-words").build({"dim": gen.model.embed_dim}).encode(vocab)
    fuser = registry.get("fuser", "proposal-only").build({})
    samples = [dataset[i] for i in range(len(dataset))]
    cm = ConfusionMatrix(len(vocab))
    for s, seg in zip(samples, fuser.fuse(gen.propose(samples, text), None, vocab)):
        cm.update(seg.labels, s.label)
    return cm.summary()["mIoU"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny maskformer trained for 250 steps on 6 fabricated scenes (about 30 s on one core)."""
    tmp = tmp_path_factory.mktemp("overfit")
    registry = make_registry()
    metrics = run_recipe(load_recipe(write_recipe(tmp, "overfit", steps=250, text_dim=256), registry=registry), registry)
    return tmp, registry, metrics


@pytest.mark.slow
def test_overfits_a_handful_of_fabricated_scenes(trained):
    tmp, registry, metrics = trained
    log = log_of(tmp, "overfit")
    assert log[-1]["step"] == 250
    first, last = log[0]["loss"], sum(r["loss"] for r in log[-3:]) / 3
    assert last < first / 4, (first, last)  # the loss falls; the mIoU below is the real check
    weights = tmp / "runs" / "overfit" / "maskformer.safetensors"
    assert metrics["weights"] == str(weights)
    with safe_open(str(weights), "pt") as f:
        meta = f.metadata()
    assert json.loads(meta["ovframe.maskformer.architecture"])["num_queries"] == 8
    assert json.loads(meta["ovframe.maskformer.classes"]) == list(mf_fakes.CLASSES)
    gen = generator(registry, weights)
    assert miou(registry, gen, Vocabulary(mf_fakes.CLASSES)) > 85.0


@pytest.mark.slow
def test_proposals_for_a_vocabulary_other_than_the_training_classes(trained):
    tmp, registry, _ = trained
    gen = generator(registry, tmp / "runs" / "overfit" / "maskformer.safetensors")
    encoder = registry.get("text_encoder", "test-words").build({"dim": 256})
    dataset = registry.get("dataset", "test-scenes").build({"count": 6})
    samples = [dataset[i] for i in range(3)]
    train_vocab = Vocabulary(mf_fakes.CLASSES)
    other = Vocabulary(("yellow disc", "cloud", "sky", "red square", "grass", "tree trunk"))  # reordered, with new names
    base = gen.propose(samples, encoder.encode(train_vocab))
    props = gen.propose(samples, encoder.encode(other))
    perm = [other.names.index(n) for n in train_vocab.names]
    for a, b in zip(base, props):
        assert b.class_logits.shape == (8, len(other) + 1)
        torch.testing.assert_close(b.mask_logits, a.mask_logits)  # masks do not depend on the words
        torch.testing.assert_close(b.class_logits[:, perm], a.class_logits[:, :4])  # a column per name, wherever it is
        torch.testing.assert_close(b.class_logits[:, -1], a.class_logits[:, -1])
    fuser = registry.get("fuser", "proposal-only").build({})
    for s, seg in zip(samples, fuser.fuse(props, None, other)):
        named = [other.names[int(k)] for k in seg.labels.flatten()]
        truth = [train_vocab.names[int(k)] for k in s.label.flatten()]
        agree = sum(x == y for x, y in zip(named, truth)) / len(truth)
        assert agree > 0.9  # the new names (cloud, tree trunk) steal no pixels from the learned classes
    # other words for the same things: the embedding of "square" is near that of "red square"
    # (a vocabulary of unrelated words is the control: only the embedding geometry can make the difference)
    synonyms = miou(registry, gen, None, names=("sky", "grass", "square", "disc"))
    unrelated = miou(registry, gen, None, names=("apple", "bridge", "cat", "door"))
    assert synonyms > unrelated + 30, (synonyms, unrelated)


def test_resume_gives_the_same_losses_and_weights(tmp_path, monkeypatch):
    registry = make_registry()
    small = {**TINY, "num_queries": 4, "dec_layers": 2}
    straight = write_recipe(tmp_path, "straight", steps=10, task={"log_every": 2, "checkpoint_every": 4}, proposals=small)
    run_recipe(load_recipe(straight, registry=registry), registry)

    calls = {"n": 0}
    real = train_module.compute_loss

    def crashing(model, batch, criterion):
        calls["n"] += 1
        if calls["n"] == 7:  # during step 6: the last checkpoint is step 4
            raise KeyboardInterrupt("simulated kill")
        return real(model, batch, criterion)

    broken = write_recipe(tmp_path, "broken", steps=10, task={"log_every": 2, "checkpoint_every": 4}, proposals=small)
    monkeypatch.setattr(train_module, "compute_loss", crashing)
    with pytest.raises(KeyboardInterrupt):
        run_recipe(load_recipe(broken, registry=registry), registry)
    monkeypatch.setattr(train_module, "compute_loss", real)
    assert sorted(p.name for p in (tmp_path / "runs" / "broken" / "checkpoints").iterdir()) == ["step-0000004"]
    run_recipe(load_recipe(broken, registry=registry), registry)

    a, b = log_of(tmp_path, "straight"), log_of(tmp_path, "broken")
    assert [r["step"] for r in b] == [2, 4, 6, 8, 10]
    assert a == b  # bit-identical losses and learning rates
    from safetensors.torch import load_file

    wa = load_file(str(tmp_path / "runs" / "straight" / "maskformer.safetensors"))
    wb = load_file(str(tmp_path / "runs" / "broken" / "maskformer.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_unseen_classes_are_never_trained_on(tmp_path):
    """(and bf16 mixed precision runs)"""
    registry = make_registry()
    WordTextEncoder.calls.clear()
    recipe = write_recipe(tmp_path, "seen", steps=2, dataset={"unseen": ["yellow disc"]}, task={"log_every": 1, "amp": "bf16"})
    metrics = run_recipe(load_recipe(recipe, registry=registry), registry)
    assert metrics["classes"] == 3
    assert WordTextEncoder.calls == [("sky", "grass", "red square")]  # the unseen name is never embedded
    with safe_open(str(tmp_path / "runs" / "seen" / "maskformer.safetensors"), "pt") as f:
        assert json.loads(f.metadata()["ovframe.maskformer.classes"]) == ["sky", "grass", "red square"]


@pytest.mark.parametrize("ignore_pixels", ["negative", "excluded"])
def test_ignore_pixels_reach_the_loss_as_the_option_says(tmp_path, monkeypatch, ignore_pixels):
    """excluded: each target carries a valid map, 0 exactly on unseen-class and padding pixels (here every
    other pixel belongs to a trained class); negative (the reference): no valid map, all pixels count."""
    from ovframe_maskformer import loss as loss_module

    batches = []
    original = loss_module.SetCriterion.__call__
    monkeypatch.setattr(loss_module.SetCriterion, "__call__", lambda self, out, targets: (batches.append(targets), original(self, out, targets))[1])
    registry = make_registry()
    recipe = write_recipe(tmp_path, ignore_pixels, steps=1, dataset={"unseen": ["yellow disc"]}, task={"ignore_pixels": ignore_pixels})
    run_recipe(load_recipe(recipe, registry=registry), registry)
    for target in batches[0]:
        if ignore_pixels == "negative":
            assert "valid" not in target
            continue
        valid = target["valid"].bool()
        assert valid.any() and not valid.all()
        assert torch.equal(target["masks"].bool().any(0), valid)


def test_mapper_makes_one_mask_per_class_and_ignores_unseen():
    cfg = TrainProposalsConfig(crop_size=48, min_size_train=[40, 48, 56], color_aug=True)
    mapper = SemanticMapper(cfg, torch.tensor([0, 1, 2, -1]))  # dataset class 3 is not trained on
    image, label = mf_fakes.scene(0, 64, 64, 0)
    assert (label == 3).any()
    ex = mapper(image, label, random.Random(5))
    again = mapper(image, label, random.Random(5))
    assert torch.equal(ex.image, again.image) and torch.equal(ex.label, again.label)  # a pure function of the seed
    assert ex.image.shape == (3, 48, 48) and ex.label.shape == (48, 48)
    present = sorted(set(ex.label.unique().tolist()) - {IGNORE_INDEX})
    assert ex.labels.tolist() == present and 3 not in present
    for c, m in zip(ex.labels.tolist(), ex.masks):
        assert torch.equal(m, ex.label == c)
    assert not ex.masks.any(0)[ex.label == IGNORE_INDEX].any()
    # without colour jitter, the pixels of each class keep their class's colour (flip and crop move both alike)
    plain = SemanticMapper(TrainProposalsConfig(crop_size=48, min_size_train=[64], color_aug=False), torch.tensor([0, 1, 2, 3]))
    for seed in range(4):
        ex = plain(image, label, random.Random(seed))
        red = ex.image[:, ex.label == 2]
        if red.numel():
            assert red[0].mean() > 150 and red[1].mean() < 90


def test_float16_weights_halve_the_file_and_load_into_float32(tmp_path):
    registry = make_registry()
    for dtype in ("float32", "float16"):
        run_recipe(load_recipe(write_recipe(tmp_path, dtype, steps=2, task={"save_dtype": dtype}), registry=registry), registry)
    full, half = (tmp_path / "runs" / d / "maskformer.safetensors" for d in ("float32", "float16"))
    with safe_open(str(half), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys() if f.get_tensor(k).is_floating_point()} == {torch.float16}
    assert half.stat().st_size < 0.55 * full.stat().st_size
    a, b = generator(registry, full), generator(registry, half)
    assert next(b.model.parameters()).dtype == torch.float32
    for (name, x), (_, y) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        if x.is_floating_point():
            torch.testing.assert_close(y, x.half().to(x.dtype), msg=name)
