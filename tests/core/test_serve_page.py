"""`ovframe serve`'s page logic without a server: what a request shows, and what it says when it cannot."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from ovframe.cli import main
from ovframe.errors import BadInput
from ovframe.records import Segmentation
from ovframe.results import make_result
from ovframe.serve import EXAMPLES_DIR, examples, legend_html, segment_page, table_rows
from ovframe.visualize import class_colours


class StubSegmenter:
    """Labels the left third class 0, the rest class 1 (of the names asked for); records its calls."""

    def __init__(self, error: Exception | None = None):
        self.calls, self.error = [], error

    def __call__(self, image, vocabulary):
        self.calls.append((image, vocabulary))
        if self.error is not None:
            raise self.error
        names = tuple(vocabulary) if len(vocabulary) > 1 else (*vocabulary, "others")
        labels = torch.ones(6, 9, dtype=torch.int64)
        labels[:, :3] = 0
        scores = torch.stack([(labels == k).float() * 0.8 + 0.1 for k in range(len(names))])
        picture = torch.from_numpy(np.asarray(image)).permute(2, 0, 1)
        return make_result(picture, Segmentation(scores=scores, labels=labels), names)


IMAGE = np.full((6, 9, 3), 120, dtype=np.uint8)


def test_a_request_shows_the_overlay_legend_and_table():
    page = segment_page(StubSegmenter(), IMAGE, "wall, red star, cloud")
    assert isinstance(page.overlay, Image.Image) and page.overlay.width >= 384  # small pictures are scaled up
    # 2/3 and 1/3 of the pixels, largest first; score: 0.9 of the 1.1 summed over the three classes at each pixel
    assert page.rows == [["red star", 66.67, round(0.9 / 1.1, 3)], ["wall", 33.33, round(0.9 / 1.1, 3)]]
    assert page.status.startswith("Segmented 9 x 6 px with 3 classes in ") and page.status.endswith("s: 2 found.")
    colours = class_colours(("wall", "red star", "cloud"))
    swatches = re.findall(r'background: rgb\((\d+), (\d+), (\d+)\)"></span><span class="ovf-name">([^<]+)<', page.legend)
    assert swatches == [(*map(str, colours[1]), "red star"), (*map(str, colours[0]), "wall")]  # the overlay's colours
    assert "not found: cloud" in page.legend


def test_one_name_gets_others_and_the_page_says_so():
    page = segment_page(StubSegmenter(), IMAGE, "red star")
    assert [r[0] for r in page.rows] == ["others", "red star"] and '"others" was added' in page.status


@pytest.mark.parametrize(
    "image, vocabulary, says",
    [
        (None, "a, b", "Upload a picture"),
        (IMAGE, "  ", "Type a vocabulary"),
        (IMAGE, None, "Type a vocabulary"),
        (IMAGE, "sky, sky", "Cannot segment this:** class names must be distinct; repeated: 'sky'"),
        (IMAGE, ", ,", "Cannot segment this:** the vocabulary needs at least one class name"),
    ],
)
def test_what_cannot_be_segmented_is_said_in_words(image, vocabulary, says):
    segmenter = StubSegmenter()
    page = segment_page(segmenter, image, vocabulary)
    assert says in page.status and page.overlay is None and page.rows == [] and segmenter.calls == []


def test_failures_of_the_pipeline_are_a_message_not_a_traceback():
    page = segment_page(StubSegmenter(BadInput("image 0: 99999 x 99999 is more than the limit")), IMAGE, "a, b")
    assert page.status == "**Cannot segment this:** image 0: 99999 x 99999 is more than the limit"
    page = segment_page(StubSegmenter(RuntimeError("out of <memory>")), IMAGE, "a, b")
    assert page.status == "**Segmentation failed:** RuntimeError: out of &lt;memory&gt; (the server's log has the details)"


def test_names_are_escaped_in_the_legend():
    page = segment_page(StubSegmenter(), IMAGE, "<b>bold</b>, x")
    assert "<b>" not in page.legend and "&lt;b&gt;bold&lt;/b&gt;" in page.legend


def test_the_shipped_examples_are_small_real_pictures():
    shipped = examples()
    assert len(shipped) == 3
    for example in shipped:
        assert example.image.parent == EXAMPLES_DIR and example.image.stat().st_size < 64_000
        with Image.open(example.image) as im:
            assert im.size == (128, 128) and im.mode == "RGB"
        assert len([n for n in example.vocabulary.split(",") if n.strip()]) >= 4


def test_legend_and_table_agree_with_the_result():
    result = StubSegmenter()(IMAGE, ("a", "b"))
    assert [r[0] for r in table_rows(result)] == [s.label for s in result.segments]
    assert abs(sum(r[1] for r in table_rows(result)) - 100) < 0.05
    assert legend_html(result).count('class="ovf-class"') == len(result.segments)


def test_without_gradio_serve_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # as if it were not installed
    assert main(["serve", "--port", "7999"]) == 2
    assert "ovframe serve needs Gradio: pip install 'ovframe[demo]'" in capsys.readouterr().err


def test_a_picture_over_the_pixel_limit_is_shrunk_and_the_page_says_so():
    from ovframe.api import to_image_tensor

    class Shrinking(StubSegmenter):
        max_image_pixels = 6 * 9  # as a Segmenter does: the picture shrunk to fit first

        def __call__(self, image, vocabulary):
            small = to_image_tensor(image, max_pixels=self.max_image_pixels).permute(1, 2, 0).numpy()
            return super().__call__(small, vocabulary)

    page = segment_page(Shrinking(), np.full((12, 18, 3), 120, dtype=np.uint8), "a, b")
    assert page.status.startswith("Segmented 9 x 6 px")
    assert "The picture (18 x 12 px) was shrunk to fit the limit of 54 pixels" in page.status
    assert "shrunk" not in segment_page(Shrinking(), IMAGE, "a, b").status
