"""SAM networks and their weights: the official architectures, official-format checkpoints read with
weights_only, safetensors with the architecture, and refusals that name what is wrong."""

from __future__ import annotations

import os

import pytest
import torch

from ovframe import BadInput

REDUCED_VIT_B = dict(  # sam_vit_b's layout (12 blocks, global attention in 2, 5, 8, 11, 14-token windows) at a small width
    image_size=64, patch_size=16, encoder_embed_dim=24, encoder_depth=12, encoder_num_heads=12, window_size=2,
    prompt_embed_dim=16, mask_in_chans=8, decoder_mlp_dim=32, iou_head_hidden_dim=16,
)


@pytest.mark.parametrize("model_type", ["vit_b", "vit_l", "vit_h"])
def test_official_architectures_match_the_packages_builders(model_type):
    """Same tensor names and shapes as segment_anything's build_sam_* (built on the meta device: no memory)."""
    from segment_anything import sam_model_registry

    from ovframe_sam.config import official_architecture
    from ovframe_sam.model import build_sam, official_type

    with torch.device("meta"):
        theirs = sam_model_registry[model_type]().state_dict()
        ours = build_sam(official_architecture(model_type)).state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    assert official_type(theirs) == model_type


def sam_with(**options):
    from ovframe import get_registry

    return get_registry().get("proposals", "sam").build(
        {"points_per_side": 4, "max_proposals": 3, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, **options}
    )


def test_official_format_checkpoint_loads_with_weights_only(tmp_path, synth_samples):
    """A plain state dict saved by torch.save (the official checkpoints' format) at sam_vit_b's layout."""
    from ovframe_sam.config import SamArchitecture
    from ovframe_sam.model import build_sam

    arch = SamArchitecture(**REDUCED_VIT_B)
    torch.manual_seed(3)
    source = build_sam(arch)
    path = tmp_path / "sam_vit_b_small.pth"
    torch.save(source.state_dict(), path)
    generator = sam_with(weights=str(path), model=REDUCED_VIT_B)
    for name, tensor in source.state_dict().items():
        assert torch.equal(generator.model.state_dict()[name], tensor), name
    assert len(generator.propose(synth_samples[:1])[0]) >= 1
    with pytest.raises(BadInput, match="records no architecture and is not an official SAM checkpoint"):
        sam_with(weights=str(path))  # a custom width cannot be told from the file: the recipe must say it


def test_safetensors_carry_their_architecture(tiny_weights, tiny_sam, tiny_arch):
    generator = sam_with(weights=tiny_weights)  # no `model:`: taken from the file
    assert generator.architecture == tiny_arch
    assert all(torch.equal(generator.model.state_dict()[k], v) for k, v in tiny_sam.state_dict().items())
    with pytest.raises(BadInput, match="encoder_depth: recipe 3, weights 2"):
        sam_with(weights=tiny_weights, model={**tiny_arch.model_dump(), "encoder_depth": 3})


def test_weights_of_another_architecture_are_named(tmp_path, tiny_sam):
    path = tmp_path / "other.pth"
    torch.save(tiny_sam.state_dict(), path)
    with pytest.raises(BadInput, match=r"does not fit the SAM architecture: .*missing .*image_encoder.blocks"):
        sam_with(weights=str(path), model=REDUCED_VIT_B)


class Payload:
    """Unpickling this runs a shell command: what a malicious checkpoint does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_carries_code_is_refused_without_running_it(tmp_path, tiny_sam):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({**tiny_sam.state_dict(), "extra": Payload(marker)}, path)
    with pytest.raises(BadInput, match="refused: the file holds Python objects other than tensors"):
        sam_with(weights=str(path))
    assert not marker.exists()


def test_missing_weights_name_the_file_and_where_to_get_it(tmp_path):
    from ovframe import MissingFiles
    from ovframe.files import check_required_files
    from ovframe_sam.config import SamConfig
    from ovframe_sam.generator import SamProposals

    config = SamConfig(model="vit_h", weights=str(tmp_path / "sam_vit_h_4b8939.pth"))
    with pytest.raises(MissingFiles) as e:
        check_required_files(SamProposals.required_files(config))
    message = str(e.value)
    assert "sam_vit_h_4b8939.pth" in message and "dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth" in message


def test_a_corrupt_file_is_bad_input(tmp_path):
    for name in ("broken.pth", "broken.safetensors"):
        (tmp_path / name).write_bytes(b"not a checkpoint")
        with pytest.raises(BadInput, match="not a readable"):
            sam_with(weights=str(tmp_path / name), model="vit_b")
