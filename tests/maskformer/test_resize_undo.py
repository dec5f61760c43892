"""The maskformer generator undoes its test resize and padding, checked on VALUES.

A stand-in network replaces MaskFormer: its mask logits, at 1/4 of the padded input as the real head's,
encode where each output cell lies in the padded frame (mask 0: the row, mask 1: the column, in input
pixels, cell centres at 4 i + 1.5, so that upsampling x4 gives back the pixel's own coordinate), and
mask 2 the share of padding pixels under the cell. After the generator's undo, the value at a pixel of
the sample must be the coordinate that pixel had in the network's input, written here from the
geometry alone. Leaving the padding in, cropping one pixel off, or resizing from the wrong frame fails.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ovframe import Sample, TextEmbeddings, Vocabulary
from ovframe.records import TEST_RESIZED_FROM
from ovframe_maskformer.config import MaskFormerConfig
from ovframe_maskformer.proposals import MaskFormerProposals

from mf_fakes import TINY

C = 8


class CoordinateNet(torch.nn.Module):
    """pred_masks [1, B, 3, Hp/4, Wp/4]: row, column (input pixels) and padding share of each stride-4 cell."""

    size_divisibility = 32
    embed_dim = C

    def __init__(self):
        super().__init__()
        self.inputs: list[torch.Tensor] = []

    def forward(self, images: torch.Tensor, text: torch.Tensor) -> dict[str, torch.Tensor]:
        self.inputs.append(images.clone())
        b, _, hp, wp = images.shape
        rows = (4 * torch.arange(hp // 4, dtype=torch.float32) + 1.5)[:, None].expand(hp // 4, wp // 4)
        cols = (4 * torch.arange(wp // 4, dtype=torch.float32) + 1.5)[None, :].expand(hp // 4, wp // 4)
        padding = F.avg_pool2d((images == 0).all(dim=1, keepdim=True).float(), 4)[:, 0]  # [B, Hp/4, Wp/4]
        masks = torch.stack([rows.expand(b, -1, -1), cols.expand(b, -1, -1), padding], dim=1)
        logits = torch.arange(b * 3 * (text.shape[0] + 1), dtype=torch.float32).view(1, b, 3, -1)
        return {"pred_logits": logits, "pred_masks": masks[None]}


def generator(**over) -> tuple[MaskFormerProposals, CoordinateNet]:
    gen = MaskFormerProposals(MaskFormerConfig(**{**TINY, **over}))
    gen.model = CoordinateNet()
    return gen, gen.model


def text() -> TextEmbeddings:
    return TextEmbeddings(Vocabulary(("a", "b")), F.normalize(torch.ones(2, C), dim=-1), "unit")


def image(h: int, w: int, seed: int = 0) -> torch.Tensor:
    # never exactly the pixel mean, so a normalised pixel is never 0 (0 is padding)
    return torch.randint(0, 256, (3, h, w), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def coordinate(n_in: int, n_out: int, n_pad: int) -> np.ndarray:
    """The mask value at output pixel i of an n_out-long axis when the network saw an n_in-long axis
    padded to n_pad: the input coordinate j that bilinear resizing (half-pixel centres, edges clamped)
    reads there, of c(j) = j clamped to [1.5, n_pad - 2.5] (the x4 upsampling's clamped edges)."""
    src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0)
    j0 = np.floor(src).astype(int)
    j1 = np.minimum(j0 + 1, n_in - 1)
    c = np.clip(np.arange(n_in, dtype=np.float64), 1.5, n_pad - 2.5)
    return c[j0] * (1 - (src - j0)) + c[j1] * (src - j0)


def check_coordinates(mask_logits: torch.Tensor, seen: tuple[int, int], size: tuple[int, int], padded: tuple[int, int]) -> None:
    """Mask 0/1 of a sample of `size` whose network input was `seen` (h', w') at the top left of `padded`."""
    rows = coordinate(seen[0], size[0], padded[0])[:, None] * np.ones(size[1])
    cols = np.ones(size[0])[:, None] * coordinate(seen[1], size[1], padded[1])[None, :]
    np.testing.assert_allclose(mask_logits[0].numpy(), rows, atol=1e-4)
    np.testing.assert_allclose(mask_logits[1].numpy(), cols, atol=1e-4)


def padded(h: int, w: int) -> tuple[int, int]:
    return -(-h // 32) * 32, -(-w // 32) * 32


def test_coordinates_are_exact_without_a_resize_and_padding_never_leaks_in():
    gen, net = generator(test_short_side=None)
    (p,) = gen.propose([Sample(image(50, 70), None, "a")], text())
    assert tuple(net.inputs[0].shape) == (1, 3, 64, 96)
    check_coordinates(p.mask_logits, (50, 70), (50, 70), (64, 96))
    rows = p.mask_logits[0].numpy()
    assert rows[-1, 0] == pytest.approx(49.0, abs=1e-4)  # last row of the image, not of the padded frame
    # cells wholly inside the image carry no padding (the last cells before the border blend, as the reference's)
    assert p.mask_logits[2, :44, :64].abs().max() < 1e-6


def test_pipeline_resized_samples_are_not_resized_again():
    gen, net = generator(test_short_side=48, test_max_size=1000)  # would be 48x67 if resized here
    resized = Sample(image(40, 56), None, "a", {TEST_RESIZED_FROM: (50, 70)})
    (p,) = gen.propose([resized], text())
    assert tuple(p.mask_logits.shape) == (3, 40, 56)
    mean = torch.tensor(TINY.get("pixel_mean", (123.675, 116.28, 103.53))).view(3, 1, 1)
    std = torch.tensor(TINY.get("pixel_std", (58.395, 57.12, 57.375))).view(3, 1, 1)
    x = net.inputs[0][0]
    torch.testing.assert_close(x[:, :40, :56], (resized.image.float() - mean) / std)
    assert not x[:, 40:].any() and not x[:, :, 56:].any()
    check_coordinates(p.mask_logits, (40, 56), (40, 56), (64, 64))


def test_own_resize_is_undone_back_to_the_sample_size():
    gen, net = generator(test_short_side=40, test_max_size=1000)
    sample = Sample(image(50, 70), None, "a")
    assert gen.test_size(50, 70) == (40, 56)
    (p,) = gen.propose([sample], text())
    assert tuple(p.mask_logits.shape) == (3, 50, 70) and tuple(net.inputs[0].shape) == (1, 3, 64, 64)
    check_coordinates(p.mask_logits, (40, 56), (50, 70), (64, 64))


@pytest.mark.parametrize("padding", ["per-image", "shared"])
def test_a_batch_of_different_sizes_undoes_each_images_own_padding(padding):
    gen, net = generator(test_short_side=None, batch_padding=padding)
    sizes = [(50, 70), (33, 47), (64, 30), (40, 62)]  # padded: 64x96, 64x64, 64x32, 64x64
    props = gen.propose([Sample(image(h, w, i), None, str(i)) for i, (h, w) in enumerate(sizes)], text())
    for p, size in zip(props, sizes):
        check_coordinates(p.mask_logits, size, size, padded(*size) if padding == "per-image" else (64, 96))
    if padding == "per-image":  # each image alone in its padded size, the two 64x64 ones together
        assert sorted(tuple(x.shape) for x in net.inputs) == [(1, 3, 64, 32), (1, 3, 64, 96), (2, 3, 64, 64)]
        assert props[1].class_logits.tolist() != props[3].class_logits.tolist()  # rows of the right image
    else:
        assert [tuple(x.shape) for x in net.inputs] == [(4, 3, 64, 96)]
