"""`resolution: reference | original`: where the pipeline resizes, crops and fuses (reference/ovseg.md).

The reference order, written here from its formulas: resize the uint8 image to the generator's test
size (Pillow bilinear, as detectron2's test mapper), propose, classify and fuse at that size, resize the
fused score map to the image's size (bilinear, half-pixel centres), argmax.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ovframe import Proposals, ProposalGenerator, RegionClassifier, RegionScores, Sample, Vocabulary
from ovframe.config import ComponentConfig
from ovframe.images import resize_image, resize_label
from ovframe.pipeline import Pipeline
from ovframe.records import TEST_RESIZED_FROM, Segmentation

from reference_order import np_bilinear, pil_resize


def smooth_image(h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, 5, 7, generator=g) * 255
    img = torch.nn.functional.interpolate(low, size=(h, w), mode="bicubic", align_corners=False)[0]
    return (img + torch.rand(3, h, w, generator=g) * 30).clamp(0, 255).to(torch.uint8)


# -- the pieces ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("src,dst", [((37, 53), (96, 137)), ((120, 90), (43, 32)), ((50, 50), (50, 77))])
def test_image_resize_is_pillows_bilinear_on_uint8(src, dst):
    image = smooth_image(*src)
    out = resize_image(image, dst)
    assert out.dtype == torch.uint8 and tuple(out.shape) == (3, *dst)
    assert torch.equal(out, pil_resize(image, dst))
    # the geometry is the expected one: within one grey level of a float antialiased bilinear resize
    ref = torch.nn.functional.interpolate(image[None].float(), size=dst, mode="bilinear", align_corners=False, antialias=True)[0]
    assert (out.float() - ref).abs().max() <= 1.0


def test_label_resize_is_nearest_at_pixel_centres():
    label = torch.arange(6 * 10).view(6, 10) - 1  # -1 = ignore survives
    out = resize_label(label, (4, 25))
    want = np.asarray(Image.fromarray(label.numpy().astype(np.int32)).resize((25, 4), Image.NEAREST))
    assert torch.equal(out, torch.from_numpy(want.astype(np.int64)))


def test_scores_are_resized_bilinearly_before_the_argmax():
    g = torch.Generator().manual_seed(3)
    scores = torch.rand(5, 9, 13, generator=g)
    seg = Segmentation.from_scores(scores, (31, 20))
    want = np_bilinear(scores.numpy().astype(np.float64), (31, 20))
    np.testing.assert_allclose(seg.scores.numpy(), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(seg.labels.numpy(), want.argmax(0))
    assert Segmentation.from_scores(scores, (9, 13)).scores is scores  # already at the size: untouched


# -- the order, with components whose outputs are known ---------------------------------------------
class Seen:
    """What each stage was given."""

    def __init__(self):
        self.proposed: list[Sample] = []
        self.classified: list[Sample] = []


class _Config(ComponentConfig):
    needs_text = False


class Recording:
    """A test component without options that notes what it is given in `seen`."""

    Config = _Config

    def __init__(self, seen: Seen):
        super().__init__(_Config())  # type: ignore[call-arg]
        self.seen = seen


class StripesAtTestSize(Recording, ProposalGenerator):
    """Three horizontal soft stripes; wants the image at 1.5x."""

    name = "stripes"

    def test_size(self, h, w):
        return round(h * 1.5), round(w * 1.5)

    def propose(self, samples, text=None):
        self.seen.proposed += samples
        out = []
        for s in samples:
            h, w = s.size
            y = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w)
            x = torch.arange(w, dtype=torch.float32)[None].expand(h, w)
            centres = torch.tensor([0.2, 0.5, 0.8])[:, None, None] * h
            out.append(Proposals(((h / 6) - (y[None] - centres).abs()) / 2 + 0.05 * x[None]))
        return out


class RedAmount(Recording, RegionClassifier):
    """Scores each stripe by the mean red of the pixels it covers (sigmoid > 0.5): [red, not red]."""

    name = "red-amount"

    def classify(self, samples, proposals, text, vocabulary):
        self.seen.classified += samples
        out = []
        for s, p in zip(samples, proposals):
            regions = p.mask_logits.sigmoid() > 0.5
            red = torch.stack([s.image[0].float()[r].mean() / 255 for r in regions])
            out.append(RegionScores(torch.stack([red, 1 - red], dim=1), regions.flatten(1).any(1)))
        return out


def clip_only():
    from ovframe import get_registry

    return get_registry().get("fuser", "clip-only").build({})


def test_reference_order_resizes_crops_and_fuses_at_test_size_then_resizes_scores():
    seen = Seen()
    pipe = Pipeline(text_encoder=None, proposals=StripesAtTestSize(seen), classifier=RedAmount(seen), fuser=clip_only())
    images = [smooth_image(20, 30, 1), smooth_image(17, 23, 2)]
    samples = [Sample(im, torch.zeros(im.shape[1:], dtype=torch.int64), f"s{i}") for i, im in enumerate(images)]
    segs = pipe.segment(samples, Vocabulary(("red", "other")), return_scores=True)
    for s, seg, given, classified in zip(samples, segs, seen.proposed, seen.classified):
        h, w = s.size
        test = (round(h * 1.5), round(w * 1.5))
        # proposals and crops saw the same resized uint8 image, marked with its original size
        assert given is classified and given.size == test and given.meta[TEST_RESIZED_FROM] == (h, w)
        assert torch.equal(given.image, pil_resize(s.image, test)) and given.label.shape == test
        # independent recomputation: stripes at the test size, red of each, fusion, resize, argmax
        (props,) = StripesAtTestSize(Seen()).propose([Sample(pil_resize(s.image, test), None, "x")])
        m = props.mask_logits.numpy().astype(np.float64)
        img = pil_resize(s.image, test)[0].numpy().astype(np.float64)
        regions = 1 / (1 + np.exp(-m)) > 0.5
        red = np.array([img[r].mean() / 255 for r in regions])
        semseg = np.einsum("qk,qhw->khw", np.stack([red, 1 - red], 1), 1 / (1 + np.exp(-m)))
        want = np_bilinear(semseg, (h, w))
        assert tuple(seg.labels.shape) == (h, w)
        np.testing.assert_array_equal(seg.labels.numpy(), want.argmax(0))
        np.testing.assert_allclose(seg.scores.numpy(), want, rtol=1e-4, atol=1e-5)
    assert {"test_resize", "propose", "classify", "fuse"} <= set(pipe.timings.seconds)


def test_original_order_gives_the_generator_the_image_as_it_is():
    seen = Seen()
    pipe = Pipeline(
        text_encoder=None, proposals=StripesAtTestSize(seen), classifier=RedAmount(seen), fuser=clip_only(), resolution="original"
    )
    sample = Sample(smooth_image(20, 30), None, "s")
    (seg,) = pipe.segment([sample], Vocabulary(("red", "other")))
    assert seen.proposed[0] is sample and seen.classified[0] is sample
    assert TEST_RESIZED_FROM not in seen.proposed[0].meta and tuple(seg.labels.shape) == (20, 30)


def test_unknown_resolution_is_refused():
    from ovframe import BadInput

    with pytest.raises(BadInput, match="reference, original"):
        Pipeline(text_encoder=None, proposals=StripesAtTestSize(Seen()), classifier=RedAmount(Seen()), fuser=clip_only(), resolution="native")
