"""Fixtures of the SAM family's tests: a tiny SAM (random weights) written to disk, synth samples."""

from __future__ import annotations

import pytest

TINY = dict(
    image_size=64, patch_size=8, encoder_embed_dim=32, encoder_depth=2, encoder_num_heads=2, encoder_global_attn_indexes=(1,),
    window_size=4, prompt_embed_dim=32, mask_in_chans=8, decoder_depth=2, decoder_mlp_dim=64, decoder_num_heads=2,
    iou_head_hidden_dim=32,
)


@pytest.fixture(scope="session")
def tiny_arch():
    from ovframe_sam.config import SamArchitecture

    return SamArchitecture(**TINY)


@pytest.fixture(scope="session")
def tiny_sam(tiny_arch):
    import torch

    from ovframe_sam.model import build_sam

    torch.manual_seed(0)
    model = build_sam(tiny_arch)
    with torch.no_grad():  # random weights give logits of about 0.01; scaled, the masks have SAM-like logits
        for mlp in model.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(300.0)
    return model


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory, tiny_sam, tiny_arch) -> str:
    """The tiny SAM as train-sam writes it (safetensors with its architecture)."""
    from ovframe_sam.model import save_sam

    path = tmp_path_factory.mktemp("tiny-sam") / "sam.safetensors"
    save_sam(path, tiny_sam, tiny_arch)
    return str(path)


@pytest.fixture(scope="session")
def synth_samples():
    from ovframe import get_registry

    dataset = get_registry().build("dataset", {"plugin": "synth", "split": "val", "num_images": 4})
    return [dataset[i] for i in range(4)]
