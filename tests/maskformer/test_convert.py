"""The converter of the released OVSeg checkpoints, on files with every key of the releases (ovseg_release.py),
and the shipped recipes loading what it writes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from ovframe import BadInput
from ovframe.recipes import load_recipe
from ovframe_maskformer.convert import convert, main
from ovframe_maskformer.proposals import MaskFormerProposals
from ovseg_release import R101C_VITB16, SWINB_VITL14, release_state, size_overrides, write_release

ROOT = Path(__file__).resolve().parents[2]


def expected_name(key: str) -> str | None:
    """Where the authors' key must land, written from their module layout (None: not converted)."""
    p = "sem_seg_head.predictor."
    if key.startswith("backbone."):
        return None if key.endswith("relative_position_index") else key
    if m := re.match(r"sem_seg_head\.pixel_decoder\.(adapter|layer)_(\d)\.(norm\.)?(weight|bias)$", key):
        kind = "lateral_convs" if m.group(1) == "adapter" else "output_convs"
        return f"pixel_decoder.{kind}.{int(m.group(2)) - 1}.{'norm' if m.group(3) else 'conv'}.{m.group(4)}"
    if key.startswith("sem_seg_head.pixel_decoder.mask_features."):
        return key[len("sem_seg_head."):]
    if key.startswith(p + "transformer.decoder.layers."):
        return "predictor.layers." + key[len(p + "transformer.decoder.layers."):]
    if key.startswith(p + "transformer.decoder.norm."):
        return "predictor.decoder_norm." + key.rsplit(".", 1)[1]
    if key.startswith(p):
        return "predictor." + key[len(p):]
    return "no_object_embedding" if key == "clip_adapter.non_object_embedding" else None


SHIPPED = {  # the shipped recipes that load converted release weights
    "swin": ["ade150_mpt.yaml", "pc59_mpt.yaml", "ade847_mpt.yaml", "pc459_mpt.yaml", "voc20_mpt.yaml",
             "maskformer/ovseg_swinb_proposals_only_ade150.yaml", "mining/coco_captions.yaml"],
    "resnet": ["ade150_r101c_vitb16_mpt.yaml"],
}


@pytest.mark.parametrize("release", [SWINB_VITL14, R101C_VITB16], ids=["swinb_vitl14", "r101c_vitb16"])
def test_every_tensor_of_a_release_is_converted_or_reported(tmp_path, capsys, registry, release):
    src = write_release(tmp_path, release, size="tiny")
    state = release_state(release, size="tiny")
    assert main([str(src), str(tmp_path / "out.safetensors")]) == 0
    report = capsys.readouterr().out
    assert "recipe: proposals: {plugin: maskformer" in report
    from safetensors.torch import load_file
    from ovframe_maskformer.weights import file_architecture

    out = load_file(str(tmp_path / "out.safetensors"))
    converted = {expected_name(k): v for k, v in state.items() if expected_name(k) is not None}
    assert set(out) == set(converted)
    for k, v in converted.items():
        assert torch.equal(out[k], v), k
    # what is not converted is counted, with its reason; the counts cover every other tensor of the file
    counts = {m.group(2): int(m.group(1)) for m in re.finditer(r"not converted: (\d+) tensor\(s\): (.+)", report)}
    assert sum(counts.values()) + len(out) == len(state)
    assert counts["the fine-tuned CLIP (and its mask prompts): the clip plugins read it from this same file"] == sum(
        k.startswith("clip_adapter.clip_model.") for k in state)
    arch = file_architecture(tmp_path / "out.safetensors")
    if release.backbone == "swin":
        assert (arch["backbone"], arch["out_norm"]) == ("d2-swin-b", True)
        assert (arch["backbone_args"]["embed_dim"], arch["backbone_args"]["num_heads"], arch["backbone_args"]["window_size"]) == (24, [1, 2, 4, 8], 12)
        assert counts["Swin relative position index (checked, recomputed)"] == 24
    else:
        assert (arch["backbone"], arch["out_norm"]) == ("d2-r101c", False)
        assert {k: arch["backbone_args"][k] for k in ("depth", "stem", "stem_out_channels", "res2_out_channels", "width_per_group")} == {
            "depth": 101, "stem": "deeplab", "stem_out_channels": 32, "res2_out_channels": 64, "width_per_group": 16}
    assert (arch["num_queries"], arch["dec_layers"], arch["hidden_dim"], arch["embed_dim"], arch["embed_hidden_dim"]) == (8, 6, 32, 32, 64)

    # every shipped recipe of this release loads the converted file, overriding sizes only (the recipes leave
    # out_norm and the other derived keys unset: what the converter records must satisfy them)
    for recipe in SHIPPED[release.backbone]:
        r = load_recipe(ROOT / "recipes" / recipe, [f"proposals.weights={tmp_path / 'out.safetensors'}", *size_overrides(release, "tiny")],
                        registry=registry)
        gen = MaskFormerProposals(r.section("proposals").config)
        assert gen.model is not None and gen.model.embed_dim == 32, recipe


def test_every_shipped_recipe_with_converted_weights_is_covered():
    names = {str(p.relative_to(ROOT / "recipes")) for p in (ROOT / "recipes").rglob("*.yaml")
             if ("abstract: true" not in p.read_text() and re.search(r"OVSEG_MASKFORMER|maskformer_\w+_ovseg", p.read_text())
                 or "extends: _base/ovseg" in p.read_text()) and "plugin: sam" not in p.read_text()}  # SAM replaces the MaskFormer
    assert names == set(SHIPPED["swin"]) | set(SHIPPED["resnet"])


def test_unknown_tensors_and_pickles_are_refused(tmp_path, capsys):
    state = release_state(R101C_VITB16, size="tiny")
    torch.save({"model": {**state, "sem_seg_head.predictor.class_embed_extra.weight": torch.zeros(2)}}, tmp_path / "odd.pth")
    assert main([str(tmp_path / "odd.pth"), str(tmp_path / "out.safetensors")]) == 2
    assert "class_embed_extra" in capsys.readouterr().out and not (tmp_path / "out.safetensors").exists()
    torch.save({"model": {"conv.weight": torch.zeros(1)}}, tmp_path / "other.pth")
    with pytest.raises(BadInput, match="not an OVSeg/MaskFormer checkpoint"):
        convert(tmp_path / "other.pth", tmp_path / "out.safetensors")
    (tmp_path / "pickle.pth").write_bytes(b"\x80\x04garbage")
    with pytest.raises(BadInput, match="weights_only"):
        convert(tmp_path / "pickle.pth", tmp_path / "out.safetensors")
