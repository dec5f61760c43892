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


def test_load_exact_fills_every_tensor_casting_to_the_module_dtype():
    from ovframe.loading import load_exact

    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    state = {k: torch.full_like(v, 3.0).to(torch.float16) if v.is_floating_point() else v + 5 for k, v in net.state_dict().items()}
    load_exact(net, state, "w.safetensors", "the test network")
    for k, v in net.state_dict().items():
        assert v.dtype == (torch.float32 if state[k].is_floating_point() else state[k].dtype)
        assert torch.equal(v, state[k].to(v.dtype)), k


@pytest.mark.parametrize("change, words", [
    (lambda s: s.pop("0.bias"), r"missing 1 tensor\(s\), e.g. \['0.bias'\]"),
    (lambda s: s.update({"2.weight": torch.zeros(1)}), r"1 tensor\(s\) this architecture does not have, e.g. \['2.weight'\]"),
    (lambda s: s.update({"0.weight": torch.zeros(2, 4)}), r"shapes \(file vs architecture\): \['0.weight \(2, 4\) vs \(2, 3\)'\]"),
])
def test_load_exact_refuses_a_state_that_does_not_fit_and_loads_nothing(change, words):
    from ovframe import BadInput
    from ovframe.loading import load_exact

    net = torch.nn.Sequential(torch.nn.Linear(3, 2))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    state = {k: torch.ones_like(v) for k, v in before.items()}
    change(state)
    with pytest.raises(BadInput, match=r"^w\.pth: does not fit the test network: " + words + r"\. Give the right model\.$"):
        load_exact(net, state, "w.pth", "the test network", "Give the right model.")
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
