"""`mine-pairs` end to end on a caption folder whose right pairs are known (fake colour components):
the pairs, the counts of skipped captions, the summary; resume after kill -9; two processes; and the
pairs loading into train-adapter."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from mining_support import plugin_env, recipe_text
from ovframe.recipes import load_recipe
from ovframe.runner import run_recipe
from ovframe_mining import rle


def mine(tmp_path, registry, data, name="mined", **task):
    path = tmp_path / f"{name}.yaml"
    path.write_text(recipe_text(data, tmp_path / "runs", name, **task))
    return run_recipe(load_recipe(path, registry=registry), registry), tmp_path / "runs" / name


def read_pairs(run_dir):
    return [json.loads(line) for f in sorted((run_dir / "pairs").glob("shard-*.jsonl")) for line in f.read_text().splitlines()]


def test_mined_pairs_are_the_regions_the_captions_name(tmp_path, fakes_registry, caption_folder):
    data, truth = caption_folder
    metrics, run_dir = mine(tmp_path, fakes_registry, data)
    pairs = read_pairs(run_dir)
    # every image but the one with only broken captions: its two colour phrases, each on its exact region
    assert metrics["images"] == 10 and metrics["images_failed"] == 0 and metrics["images_without_phrases"] == 1
    assert len(pairs) == metrics["pairs"] == 18 and metrics["images_with_pairs"] == 9
    for pair in pairs:
        colour, noun = pair["phrase"].split()
        assert noun == "square"
        np.testing.assert_array_equal(rle.decode(pair["mask"]), truth[pair["image_id"]]["masks"][colour])
        assert pair["score"] == pytest.approx(0.8) and pair["image"].endswith(f"{pair['image_id']}.png")
    # broken captions are counted by reason and skipped; the line that is not JSON is reported by the dataset
    assert metrics["captions"] == 21 and metrics["captions_skipped"] == 3
    assert (metrics["captions_skipped_empty"], metrics["captions_skipped_too_long"], metrics["captions_skipped_not_utf8"]) == (1, 1, 1)
    # the summary: every phrase with its pairs, the histogram as CSV and PNG
    rows = list(csv.DictReader(open(run_dir / "phrases.csv")))
    assert sum(int(r["pairs"]) for r in rows) == 18 and metrics["unique_phrases"] == len(rows)
    hist = list(csv.DictReader(open(run_dir / "pairs_per_phrase.csv")))
    assert sum(int(r["phrases"]) for r in hist) == len(rows) and sum(int(r["pairs"]) for r in hist) == 18
    with Image.open(run_dir / "pairs_per_phrase.png") as im:
        assert im.size[0] > 100 and im.size[1] > 100


def test_threshold_top_k_and_min_area(tmp_path, fakes_registry, caption_folder):
    data, _ = caption_folder
    strict, _ = mine(tmp_path, fakes_registry, data, name="strict", threshold=0.81)
    assert strict["pairs"] == 0
    two, run_dir = mine(tmp_path, fakes_registry, data, name="two", top_k=2)
    assert two["pairs"] == 36  # the colour region, then the whole image (0.5 > the other colour's 0.2)
    big, _ = mine(tmp_path, fakes_registry, data, name="big", min_area=0.5)
    assert big["pairs"] == 18 and all(p["area"] == 32 * 32 for p in read_pairs(tmp_path / "runs" / "big"))


def test_the_recipes_resolution_is_honoured(tmp_path, fakes_registry, caption_folder):
    """`resolution: reference` (the default): proposals and classifier see the test-resized image, as in evaluate
    and predict; the masks written are the chosen proposals' logits resized (bilinear) to the image, thresholded.
    Checked against a re-computation from the resized image; `original` gives the exact regions."""
    from mining_fakes import ColourRegions, ColourWords
    from reference_order import np_bilinear, pil_resize

    from ovframe import Sample, Vocabulary

    data, truth = caption_folder
    for resolution in ("reference", "original"):
        text = recipe_text(data, tmp_path / "runs", resolution).replace("{plugin: colour-regions}", "{plugin: colour-regions, test_scale: 1.5}")
        (tmp_path / f"{resolution}.yaml").write_text(f"{text}resolution: {resolution}\n")
        metrics = run_recipe(load_recipe(tmp_path / f"{resolution}.yaml", registry=fakes_registry), fakes_registry)
        pairs = read_pairs(tmp_path / "runs" / resolution)
        assert metrics["pairs"] == len(pairs) == 18
        for pair in pairs:
            colour = pair["phrase"].split()[0]
            mask = rle.decode(pair["mask"])
            if resolution == "original":
                np.testing.assert_array_equal(mask, truth[pair["image_id"]]["masks"][colour])
                continue
            image = torch.from_numpy(np.array(Image.open(data / "images" / f"{pair['image_id']}.png"))).permute(2, 0, 1)
            resized = Sample(pil_resize(image, (48, 48)), None, "r")
            (props,) = ColourRegions(ColourRegions.Config()).propose([resized])
            (scores,) = ColourWords(ColourWords.Config()).classify([resized], [props], None, Vocabulary((pair["phrase"], "other thing")))
            logits = np_bilinear(props.mask_logits[pair["proposal"]].numpy()[None].astype(np.float64), (32, 32))[0]
            np.testing.assert_array_equal(mask, 1 / (1 + np.exp(-logits)) > 0.5)
            assert pair["score"] == pytest.approx(float(scores.probs[pair["proposal"], 0]))
            assert (mask != truth[pair["image_id"]]["masks"][colour]).any()  # the test size changed the mask's edges


def test_the_recipes_precision_is_honoured(tmp_path, fakes_registry, caption_folder):
    """`precision: bf16`: proposals and classifier run under autocast, as in evaluate and predict; the pairs are the same."""
    from mining_fakes import MATMUL_DTYPES

    data, truth = caption_folder
    text = recipe_text(data, tmp_path / "runs", "bf16")
    (tmp_path / "bf16.yaml").write_text(f"{text}precision: bf16\n")
    MATMUL_DTYPES.clear()
    metrics = run_recipe(load_recipe(tmp_path / "bf16.yaml", registry=fakes_registry), fakes_registry)
    assert set(MATMUL_DTYPES) == {("colour-regions", torch.bfloat16), ("colour-words", torch.bfloat16)}
    assert metrics["pairs"] == 18


def test_precision_against_labels(tmp_path, fakes_registry, caption_folder):
    """Judged against a labelled view of the same images (exported as a `folder` dataset): all right."""
    data, truth = caption_folder
    labelled = tmp_path / "labelled"
    (labelled / "labels").mkdir(parents=True)
    (labelled / "images").symlink_to(data / "images")
    names = ["red square", "green square", "blue square", "yellow square"]
    (labelled / "classes.txt").write_text("\n".join(names) + "\n")
    for sid, t in truth.items():
        label = np.full((32, 32), 255, np.uint8)
        for colour, m in t["masks"].items():
            label[m] = names.index(f"{colour} square")
        Image.fromarray(label).save(labelled / "labels" / f"{sid}.png")
    metrics, run_dir = mine(tmp_path, fakes_registry, data, name="judged", top_k=2,
                            precision={"dataset": {"plugin": "folder", "root": str(labelled)}})
    # of each phrase's two proposals, its region is right, the whole image overlaps it but has IoU < 0.5
    assert metrics["pairs_judged"] == 36 and metrics["pairs_unjudged"] == 0
    assert metrics["precision_iou50"] == 50.0 and metrics["precision_any"] == 100.0
    assert (run_dir / "precision_per_class.csv").exists()


def shards(run_dir):
    return {f.name: f.read_bytes() for f in sorted((run_dir / "pairs").iterdir())}


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_shards_and_two_processes_agree(tmp_path, caption_folder):
    data, _ = caption_folder
    env = plugin_env(tmp_path)
    runs = tmp_path / "runs"

    def recipe(name, delay=0.0):
        text = recipe_text(data, runs, name).replace("{plugin: colour-regions}", f"{{plugin: colour-regions, delay: {delay}}}")
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        return str(path)

    def ovframe(*args):
        return subprocess.Popen([sys.executable, "-m", "ovframe", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    clean = ovframe("run", recipe("clean", 0.0))
    assert clean.wait(120) == 0, clean.communicate()[1][-3000:]
    proc = ovframe("run", recipe("killed", 0.15))
    first = runs / "killed" / "pairs" / "shard-00000.jsonl"
    deadline = time.time() + 120
    while not first.exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    assert not (runs / "killed" / "metrics.json").exists()
    done = len(list((runs / "killed" / "pairs").glob("shard-*.jsonl")))
    assert 1 <= done < 3, f"the kill did not land mid-run ({done} of 3 shards)"
    again = ovframe("run", recipe("killed", 0.15))
    assert again.wait(120) == 0, again.communicate()[1][-3000:]
    assert shards(runs / "killed") == shards(runs / "clean")
    assert f"resuming: {done} of 3 shards already mined" in (runs / "killed" / "log.txt").read_text()
    assert json.loads((runs / "killed" / "metrics.json").read_text())["pairs"] == 18

    # two gloo processes split the shards and write the same ones
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29533",
           "-m", "ovframe", "run", recipe("two", 0.0)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert shards(runs / "two") == shards(runs / "clean")
    assert json.loads((runs / "two" / "metrics.json").read_text())["pairs"] == 18


def test_mined_pairs_train_an_adapter(tmp_path, fakes_registry, caption_folder, tiny_clip, monkeypatch):
    from ovframe import BadInput
    from ovframe_clip.config import MinedPairs
    from ovframe_clip.pairs import MinedPairSource

    monkeypatch.setenv("OVFRAME_CACHE_DIR", str(tmp_path / "cache"))
    data, truth = caption_folder
    _, run_dir = mine(tmp_path, fakes_registry, data)
    clip = f"model: {tiny_clip['model']}, pretrained: {tiny_clip['pretrained']}"
    source = f"{{source: mined-pairs, path: {run_dir}}}"
    recipe = tmp_path / "mpt.yaml"
    recipe.write_text(
        f"name: mpt\noutput_dir: {tmp_path / 'runs'}\n"
        f"text_encoder: {{plugin: clip-text, {clip}, templates: single}}\n"
        f"classifier: {{plugin: clip-masked-crop, {clip}}}\nadapter: {{plugin: mask-prompt-tuning, depth: 2}}\n"
        f"task: {{plugin: train-adapter, steps: 2, batch_size: 4, pairs: [{source}, {source}]}}\n"
    )
    metrics = run_recipe(load_recipe(recipe, registry=fakes_registry), fakes_registry)
    phrases = {p["phrase"] for p in read_pairs(run_dir)}
    assert metrics["pairs"] == 36 and metrics["nouns"] == len(phrases) and (tmp_path / "runs" / "mpt" / "adapter.safetensors").exists()

    class Ctx:  # the source alone: every pair's image and mask as mined
        def has(self, kind):
            return False

    src = MinedPairSource.build(Ctx(), MinedPairs(source="mined-pairs", path=str(run_dir)))
    for i, pair in enumerate(read_pairs(run_dir)):
        image, mask = src.load(i)
        assert image.shape == (3, 32, 32) and src.nouns()[i] == pair["phrase"]
        np.testing.assert_array_equal(mask.numpy(), truth[pair["image_id"]]["masks"][pair["phrase"].split()[0]])
    assert len(MinedPairSource.build(Ctx(), MinedPairs(source="mined-pairs", path=str(run_dir), min_score=0.9))) == 0
    shard = run_dir / "pairs" / "shard-00001.jsonl"
    shard.write_text(shard.read_text() + '{"image_id": "x", "phrase": "cat"}\n')
    with pytest.raises(BadInput, match=r"shard-00001.jsonl:\d+: KeyError"):
        MinedPairSource.build(Ctx(), MinedPairs(source="mined-pairs", path=str(run_dir)))
