"""skip_init: networks whose weights come from a file are built without random initialisation."""

from __future__ import annotations

import pytest
import torch

from ovframe.loading import skip_init


def test_init_functions_do_nothing_inside_and_are_restored_after():
    originals = {n: getattr(torch.nn.init, n) for n in ("normal_", "kaiming_uniform_", "trunc_normal_", "zeros_")}
    t = torch.full((3, 4), 7.0)
    with skip_init():
        for name in originals:
            assert getattr(torch.nn.init, name)(t) is t
        torch.nn.Linear(4, 3)  # its reset_parameters() goes through torch.nn.init
    assert torch.equal(t, torch.full((3, 4), 7.0))
    assert {n: getattr(torch.nn.init, n) for n in originals} == originals
    with pytest.raises(RuntimeError):
        with skip_init():
            raise RuntimeError("a failed build")
    assert {n: getattr(torch.nn.init, n) for n in originals} == originals
    torch.nn.init.normal_(t)
    assert not torch.equal(t, torch.full((3, 4), 7.0))


def test_buffers_computed_in_the_constructor_are_still_computed():
    from open_clip.transformer import TextTransformer

    with skip_init():
        text = TextTransformer(context_length=8, vocab_size=50, width=16, heads=2, layers=1, output_dim=8)
    mask = text.attn_mask  # causal mask: -inf above the diagonal, a non-persistent buffer
    assert torch.equal(torch.isinf(mask), torch.ones(8, 8, dtype=torch.bool).triu(1))
