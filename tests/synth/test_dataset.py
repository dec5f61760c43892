"""The `synth` dataset: its label views (all, seen with unseen pixels ignored, none), the refusal of
unseen labels for training, ids, meta, and disjoint splits."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from ovframe import IGNORE_INDEX, RecipeError
from ovframe.recipes import load_recipe
from ovframe_synth import world


def build(registry, **options):
    return registry.get("dataset", "synth").build(options)


def test_val_is_labelled_with_every_class(registry):
    data = build(registry, split="val", num_images=4)
    assert data.vocabulary.names == world.CLASS_NAMES and data.vocabulary.seen == world.SEEN
    assert len(data) == 4
    for i in range(4):
        sample, scene = data[i], data.scene(i)
        assert sample.image.shape == (3, 128, 128) and sample.label.dtype.is_floating_point is False
        assert np.array_equal(sample.label.numpy(), scene.label)
        assert np.array_equal(sample.image.permute(1, 2, 0).numpy(), scene.image)
        assert sample.meta["captions"] == [c.text for c in scene.captions]


def test_train_view_ignores_unseen_pixels_and_names(registry):
    data = build(registry, split="train", num_images=40)
    vocab = data.vocabulary
    assert set(vocab.names) == {c.name for c in world.CLASSES if c.seen} and all(vocab.seen)
    unseen_pixels = 0
    for i in range(len(data)):
        sample, scene = data[i], data.scene(i)
        label = sample.label.numpy()
        is_unseen = ~np.asarray(world.SEEN)[scene.label]
        assert np.array_equal(label == IGNORE_INDEX, is_unseen)
        names = np.asarray(vocab.names)[label[~is_unseen]]
        assert (names == np.asarray(world.CLASS_NAMES)[scene.label[~is_unseen]]).all()
        assert all(obj["class"] in vocab.names for obj in sample.meta["objects"])
        unseen_pixels += int(is_unseen.sum())
    assert unseen_pixels > 0, "unseen classes appear in training images (only their labels are withheld)"


def test_train_with_all_labels_is_refused(registry, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\ndataset: {plugin: synth, split: train, labels: all}\ntask: evaluate\n")
    with pytest.raises(RecipeError, match="labels: all is refused for split: train"):
        load_recipe(path, registry=registry)
    # an analysis that never trains (mined-pair precision) may read them, and sees the same images
    full = build(registry, split="train", labels="all", analysis=True, num_images=2)
    seen = build(registry, split="train", labels="seen", num_images=2)
    assert full.vocabulary.names == world.CLASS_NAMES and full[1].id == seen[1].id
    assert (full[1].image == seen[1].image).all() and (full[1].label >= 0).all()


def test_caption_view_has_no_labels(registry):
    data = build(registry, split="train", labels="none", num_images=2)
    sample = data[1]
    assert sample.label is None and "objects" not in sample.meta and len(sample.meta["captions"]) == 5
    assert data.vocabulary.names == world.CLASS_NAMES


def test_ids_ranges_and_defaults(registry):
    val, train = build(registry), build(registry, split="train")
    assert len(val) == 200 and len(train) == 100_000
    assert val.config.labels == "all" and train.config.labels == "seen"
    assert val.sample_id(7) == val[7].id == "val-s0-000007"
    with pytest.raises(IndexError):
        val[200]


def test_train_and_val_share_no_image(registry):
    def hashes(data):
        return {hashlib.sha256(data.scene(i).image.tobytes()).hexdigest() for i in range(60)}

    assert not hashes(build(registry, split="train", labels="none")) & hashes(build(registry, split="val"))


def test_options_reach_the_generator(registry):
    data = build(registry, image_size=96, objects=[3, 3], captions=2, num_images=3, seed=5)
    for i in range(3):
        sample, scene = data[i], data.scene(i)
        assert sample.image.shape == (3, 96, 96) and len(scene.objects) == 3 and len(sample.meta["captions"]) == 2
        assert scene.key == (5, "val", i)


def test_twins_come_in_consecutive_pairs(registry):
    data = build(registry, split="train", labels="none", twins=True, num_images=8)
    plain = build(registry, split="train", labels="none", num_images=8)
    for k in range(4):
        first, second = data.scene(2 * k), data.scene(2 * k + 1)
        assert np.array_equal(first.label, plain.scene(k).label)
        assert [r.class_id for r in second.stuff] == [r.class_id for r in first.stuff]
        assert {world.CLASSES[o.class_id].colour for o in second.objects} <= {world.CLASSES[o.class_id].colour for o in first.objects}
        assert [o.class_id for o in second.objects] != [o.class_id for o in first.objects]


def test_object_photo_backdrops_are_ignored(registry):
    data = build(registry, split="train", labels="seen", cutouts=1.0, num_images=12, image_size=64)
    unseen_seen = set()
    for i in range(12):
        scene, label = data.scene(i), data[i].label.numpy()
        (obj,) = scene.objects
        assert (label[scene.label == -1] == IGNORE_INDEX).all()
        seen = world.SEEN[obj.class_id]
        unseen_seen.add(seen)
        assert (label[obj.visible] == (data.vocabulary.names.index(world.CLASSES[obj.class_id].name) if seen else IGNORE_INDEX)).all()
    assert unseen_seen == {True, False}, "both kinds of object among these photos"
