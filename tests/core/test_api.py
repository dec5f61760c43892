"""ovframe.api.Segmenter, as a Hugging Face pipeline is used: one image or many, of every common kind,
a vocabulary as a list or one string, a result with names, labels, shares, segments (score, mask, RLE)
and an overlay."""

from __future__ import annotations

import functools
import http.server
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
from PIL import Image
from support import ToyConfig, ToyDataset, write

from ovframe.api import Segmenter, to_image_tensor, vocabulary_names
from ovframe.errors import BadInput
from ovframe.records import Segmentation
from ovframe.results import decode_rle, make_result

COLOURS = "{sky: [90, 160, 230], grass: [40, 160, 40], red square: [220, 30, 30], blue circle: [30, 30, 220]}"
VOCAB = ["sky", "grass", "red square", "blue circle"]


@pytest.fixture
def segmenter(tmp_path, toy_registry):
    recipe = write(
        tmp_path / "colour.yaml",
        f"name: colour\ndevice: cpu\ndataset: {{plugin: toy, n: 2}}\nproposals: {{plugin: grid, cells: 8}}\n"
        f"classifier: {{plugin: mean-colour, colours: {COLOURS}}}\nfuser: clip-only\n",
    )
    return Segmenter(recipe)


@pytest.fixture
def picture(tmp_path):
    """A toy image (uint8 [H, W, 3]) and its PNG file."""
    array = ToyDataset(ToyConfig(n=2, size=32))[1].image.permute(1, 2, 0).numpy()
    path = tmp_path / "photo.png"
    Image.fromarray(array).save(path)
    return array, path


def test_one_image_gives_a_result_with_names_labels_shares_and_segments(segmenter, picture):
    array, path = picture
    result = segmenter(path, "sky, grass, red square, blue circle")
    assert result.class_names == tuple(VOCAB) and result.size == (32, 32) and result.id == "photo"
    assert result.labels.shape == (32, 32) and result.labels.dtype == np.int64
    assert abs(sum(result.shares.values()) - 1) < 1e-9
    assert list(result.shares) == [s.label for s in result.segments]  # largest first
    assert [s.area for s in result.segments] == sorted((s.area for s in result.segments), reverse=True)
    for s in result.segments:
        assert np.array_equal(s.mask, result.labels == VOCAB.index(s.label)) and s.area == s.mask.sum()
        assert np.array_equal(decode_rle(s.rle), s.mask)
        x, y, w, h = s.bbox
        ys, xs = np.nonzero(s.mask)
        assert (x, y, x + w - 1, y + h - 1) == (xs.min(), ys.min(), xs.max(), ys.max())
        assert 0 < s.score <= 1
    assert result.segment("blue circle") is None or result.segment("blue circle").label == "blue circle"
    picture_ = result.overlay()
    assert picture_.width >= 2 * 384 and picture_.height >= 384  # input and prediction, scaled up
    assert "SegmentationResult('photo', 32x32" in repr(result)


def test_every_kind_of_image_gives_the_same_labels(segmenter, picture):
    array, path = picture
    expected = segmenter(path, VOCAB).labels
    rgba = np.concatenate([array, np.full((32, 32, 1), 7, np.uint8)], axis=2)
    kinds = {
        "str": str(path),
        "PIL": Image.fromarray(array),
        "PIL RGBA": Image.fromarray(rgba),
        "uint8 HWC": array,
        "float HWC": array.astype(np.float32) / 255,
        "RGBA HWC": rgba,
        "tensor CHW": torch.from_numpy(array).permute(2, 0, 1),
        "tensor HWC float": torch.from_numpy(array).double() / 255,
    }
    for kind, image in kinds.items():
        assert np.array_equal(segmenter(image, VOCAB).labels, expected), kind
    grey = array.mean(axis=2).round().astype(np.uint8)
    as_rgb = segmenter(np.repeat(grey[:, :, None], 3, axis=2), VOCAB).labels
    for image in (grey, grey[:, :, None], Image.fromarray(grey), torch.from_numpy(grey)):
        assert np.array_equal(segmenter(image, VOCAB).labels, as_rgb)


def test_images_over_the_pixel_limit_are_shrunk_as_predict_shrinks_them(segmenter, picture, tmp_path):
    """One resize for both doors: what predict reads from a file (read_image, downscale) is what the
    Segmenter segments, whatever the kind of image."""
    from ovframe.images import read_image

    array, path = picture
    limit = 20 * 20  # the 32 x 32 picture is over it: shrunk to 20 x 20
    expected = read_image(path, max_pixels=limit, downscale=True)
    assert tuple(expected.shape) == (3, 20, 20)
    kinds = {
        "path": path,
        "PIL": Image.fromarray(array),
        "uint8 HWC": array,
        "float HWC": array.astype(np.float32) / 255,
        "tensor CHW": torch.from_numpy(array).permute(2, 0, 1),
    }
    for kind, image in kinds.items():
        assert torch.equal(to_image_tensor(image, max_pixels=limit), expected), kind
    assert torch.equal(to_image_tensor(array, max_pixels=32 * 32), torch.from_numpy(array).permute(2, 0, 1))  # fits: kept

    recipe = segmenter.recipe.origin
    with_task = write(tmp_path / "with_task.yaml", "extends: colour.yaml\ntask: evaluate\n")
    for small in (Segmenter(recipe, max_image_pixels=limit), Segmenter(with_task, overrides=[f"task.max_image_pixels={limit}"])):
        assert small.max_image_pixels == limit
        for image in kinds.values():
            result = small(image, VOCAB)
            assert result.size == (20, 20) and result.image.shape[:2] == (20, 20)
    assert segmenter.max_image_pixels == 4096 * 4096 and segmenter(array, VOCAB).size == (32, 32)


def test_many_images_give_a_list(segmenter, picture):
    array, path = picture
    results = segmenter([path, array, Image.fromarray(array)], VOCAB, batch_size=2)
    assert isinstance(results, list) and len(results) == 3
    assert all(np.array_equal(r.labels, results[0].labels) for r in results)
    batch = segmenter(np.stack([array, array[::-1]]), VOCAB)  # a 4-D array is a batch
    assert len(batch) == 2 and np.array_equal(batch[1].labels, results[0].labels[::-1])
    assert len(segmenter(torch.from_numpy(np.stack([array] * 3)).permute(0, 3, 1, 2), VOCAB)) == 3
    assert len(segmenter.segment(path, VOCAB)) == 1  # segment() always gives a list


def test_urls_are_read(segmenter, picture, tmp_path):
    array, path = picture
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            base = f"http://127.0.0.1:{server.server_address[1]}"
            result = segmenter(f"{base}/photo.png?size=large", VOCAB)
            assert result.id == "photo" and np.array_equal(result.labels, segmenter(path, VOCAB).labels)
            with pytest.raises(BadInput, match="cannot read image .*/missing.png"):
                segmenter(f"{base}/missing.png", VOCAB)
        finally:
            server.shutdown()


def test_vocabularies(segmenter, picture):
    array, _ = picture
    assert vocabulary_names("sky, grass,red square") == ("sky", "grass", "red square")
    assert vocabulary_names(["road, route", "sky"]) == ("road, route", "sky")  # a list keeps synonyms
    assert np.array_equal(segmenter(array, "sky, grass").labels, segmenter(array, ["sky", "grass"]).labels)
    assert segmenter(array, "sky").class_names == ("sky", "others")
    assert segmenter(array).class_names == tuple(VOCAB)  # the recipe's (its dataset's) vocabulary
    for bad in ("sky, sky", "", [" "]):
        with pytest.raises(BadInput, match="class name"):
            segmenter(array, bad)


@pytest.mark.parametrize(
    "image, words",
    [
        (np.full((8, 8, 3), 255.0), "[0, 1]"),
        (np.zeros((8, 8, 2), np.uint8), "C = 1, 3 or 4"),
        (np.zeros((8, 8, 3), np.int32), "uint8, or float"),
        ([[1, 2], [3, 4]], "cannot use list"),
        ("no/such/file.png", "no/such/file.png"),
    ],
)
def test_bad_images_are_explained(segmenter, image, words):
    with pytest.raises(BadInput, match=words.replace("[", r"\[").replace("]", r"\]")):
        segmenter([image] if isinstance(image, list) else image, VOCAB)


def test_segment_scores_are_mean_normalised_class_probabilities():
    """Checked against a NumPy re-computation: probabilities (divided by their sum) and logits (softmax)."""
    g = np.random.default_rng(0)
    image = torch.zeros(3, 6, 5, dtype=torch.uint8)
    for scores in (g.random((3, 6, 5)), g.normal(size=(3, 6, 5)) * 3):
        seg = Segmentation.from_scores(torch.from_numpy(scores).float())
        result = make_result(image, seg, ["a", "b", "c"])
        labels = scores.argmax(axis=0)
        prob = scores / scores.sum(axis=0) if scores.min() >= 0 else np.exp(scores) / np.exp(scores).sum(axis=0)
        for s in result.segments:
            k = ["a", "b", "c"].index(s.label)
            assert s.score == pytest.approx(prob[k][labels == k].mean(), rel=1e-5)


def test_importing_the_api_is_light():
    code = "import sys, ovframe.api; print(sorted(m for m in ('torch', 'open_clip', 'PIL', 'pycocotools') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stderr
