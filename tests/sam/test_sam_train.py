"""train-sam: its prompts, its loss against a NumPy re-computation, and a short run that resumes exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from support import write

from ovframe import IGNORE_INDEX


def test_segments_are_connected_parts_of_each_class_and_skip_ignore():
    from ovframe_sam.prompts import segments_of

    label = np.full((10, 12), 0)
    label[1:4, 1:4] = 1
    label[6:9, 8:11] = 1  # a second part of class 1
    label[0, :] = IGNORE_INDEX
    label[5, 5] = 2  # one pixel: below min_area
    parts = segments_of(label, "components", min_area=2)
    assert len(parts) == 3 and not parts[:, 0].any()
    assert sorted(int(p.sum()) for p in parts) == [9, 9, sorted(int(p.sum()) for p in parts)[-1]]
    assert len(segments_of(label, "classes", min_area=2)) == 2


def test_first_prompts_lie_in_their_segment_and_boxes_stay_in_the_image():
    from ovframe_sam.prompts import box_of, first_prompts

    segs = np.zeros((3, 20, 30), dtype=bool)
    segs[0, 2:5, 3:9] = True
    segs[1, 10:19, 0:4] = True
    segs[2, 0:20, 25:30] = True
    is_box, points, boxes = first_prompts(segs, np.random.default_rng(0), box_prob=0.5, box_noise=0.1)
    for seg, (x, y) in zip(segs, points):
        assert seg[int(y), int(x)]
    assert (boxes[:, [0, 2]] >= 0).all() and (boxes[:, [0, 2]] <= 29).all() and (boxes[:, [1, 3]] <= 19).all()
    exact = first_prompts(segs, np.random.default_rng(0), box_prob=1.0, box_noise=0.0)[2]
    np.testing.assert_array_equal(exact, np.stack([box_of(s) for s in segs]))


def test_correction_points_come_from_the_error_region_with_the_right_label():
    from ovframe_sam.prompts import correction_points

    target = torch.zeros(3, 8, 8, dtype=torch.bool)
    target[:, 2:6, 2:6] = True
    predicted = target.clone()
    predicted[0, 2:6, 2:4] = False  # missed a part: the point must be positive, in the missed part
    predicted[1, 0, :] = True  # spilled: negative, in the spill
    points, labels = correction_points(predicted, target, torch.Generator().manual_seed(0))
    (x0, y0), (x1, y1), (x2, y2) = points.long().tolist()
    assert labels.tolist() == [1, 0, 1]
    assert 2 <= y0 < 6 and 2 <= x0 < 4
    assert y1 == 0
    assert target[2, y2, x2]  # no error: a positive point in the target


def test_loss_matches_a_numpy_recomputation():
    from ovframe_sam.loss import sam_loss

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (2, 3, 4, 5))
    iou_pred = rng.uniform(0, 1, (2, 3))
    target = rng.uniform(size=(2, 4, 5)) > 0.6
    mask, iou, info = sam_loss(torch.tensor(logits), torch.tensor(iou_pred), torch.tensor(target), 20.0, 1.0)

    def sig(x):
        return 1 / (1 + np.exp(-x))

    want_mask, want_iou = 0.0, 0.0
    for p in range(2):
        t = target[p].ravel().astype(float)
        per = []
        actual = []
        for s in range(3):
            x = logits[p, s].ravel()
            q = sig(x)
            ce = -(t * np.log(q) + (1 - t) * np.log(1 - q))
            p_t = q * t + (1 - q) * (1 - t)
            focal = np.mean((0.25 * t + 0.75 * (1 - t)) * ce * (1 - p_t) ** 2)
            dice = 1 - (2 * (q * t).sum() + 1) / (q.sum() + t.sum() + 1)
            per.append(20 * focal + dice)
            b = x > 0
            actual.append((b & (t > 0)).sum() / (b | (t > 0)).sum())
        want_mask += min(per)
        want_iou += np.mean((iou_pred[p] - np.array(actual)) ** 2)
        assert info["best"][p] == int(np.argmin(per))
    assert float(mask) == pytest.approx(want_mask, rel=1e-6)
    assert float(iou) == pytest.approx(want_iou, rel=1e-6)


TRAIN = """
name: tiny-sam
seed: 0
dataset: {plugin: synth, split: train, labels: seen, num_images: 50, image_size: 64}
proposals:
  plugin: sam
  model: {image_size: 64, patch_size: 8, encoder_embed_dim: 32, encoder_depth: 2, encoder_num_heads: 2,
          encoder_global_attn_indexes: [1], window_size: 4, prompt_embed_dim: 32, mask_in_chans: 8,
          decoder_mlp_dim: 64, decoder_num_heads: 2, iou_head_hidden_dim: 32}
task:
  plugin: train-sam
  steps: 4
  batch_size: 2
  masks_per_image: 3
  iterations: 2
  box_prob: 0.5
  checkpoint_every: 2
  log_every: 1
  eval_dataset: {plugin: synth, split: val, image_size: 64}
  eval_images: 2
"""


@pytest.mark.slow
def test_train_sam_writes_weights_that_load_and_resumes_exactly(registry, tmp_path, monkeypatch):
    """Four steps with iterative prompting; a run interrupted after its step-2 checkpoint, then resumed,
    ends with the same loss log and the same weights as an uninterrupted one."""
    from safetensors.torch import load_file

    import ovframe_sam.train as train
    from ovframe.recipes import load_recipe
    from ovframe.runner import run_recipe

    recipe_path = write(tmp_path / "t.yaml", TRAIN)
    full = run_recipe(load_recipe(recipe_path, [f"output_dir={tmp_path / 'a'}"], registry=registry), registry)
    assert full["step"] == 4 and set(full["eval"]) == {"point_miou", "point_best_miou", "box_miou", "segments"}
    weights = tmp_path / "a" / "tiny-sam" / "sam.safetensors"
    generator = registry.get("proposals", "sam").build({"weights": str(weights), "points_per_side": 4})
    assert generator.architecture.encoder_depth == 2

    calls = {"n": 0}
    original = train.compute_loss

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(train, "compute_loss", interrupted)
    second = load_recipe(recipe_path, [f"output_dir={tmp_path / 'b'}"], registry=registry)
    with pytest.raises(KeyboardInterrupt):
        run_recipe(second, registry)
    monkeypatch.setattr(train, "compute_loss", original)
    run_recipe(second, registry)
    log = lambda d: [json.loads(line) for line in (tmp_path / d / "tiny-sam" / "loss.jsonl").read_text().splitlines()]  # noqa: E731
    assert log("a") == log("b")
    a, b = load_file(str(weights)), load_file(str(tmp_path / "b" / "tiny-sam" / "sam.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
