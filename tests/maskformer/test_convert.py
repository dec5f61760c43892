"""The converter from the detectron2 layout of the released OVSeg checkpoint, on a fabricated checkpoint of that layout."""

from __future__ import annotations

import re

import pytest
import timm
import torch

from ovframe import BadInput, Sample, TextEmbeddings, Vocabulary
from ovframe_maskformer.config import MaskFormerConfig
from ovframe_maskformer.convert import convert
from ovframe_maskformer.proposals import MaskFormerProposals

SWIN = "swin_tiny_patch4_window7_224"
H, CONV, Q, L, FF, C, EH = 32, 48, 6, 2, 64, 24, 40  # hidden, FPN, queries, layers, FFN, CLIP dim, class MLP


def detectron2_checkpoint() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(an OVSeg-layout state dict with random tensors, the timm-layout Swin weights it was made from)."""
    torch.manual_seed(0)
    timm_swin = timm.create_model(SWIN, pretrained=False).state_dict()
    d2: dict[str, torch.Tensor] = {}
    for k, v in timm_swin.items():
        if k.startswith(("head.", "norm.")):
            continue  # the dense-prediction Swin has per-stage norms instead
        # the original Swin downsamples at the end of stage i, timm at the start of stage i+1
        k = re.sub(r"layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) - 1}.downsample", k)
        d2["backbone." + k] = v
    for i, ch in enumerate([96, 192, 384, 768]):
        d2[f"backbone.norm{i}.weight"], d2[f"backbone.norm{i}.bias"] = torch.randn(ch), torch.randn(ch)
        d2[f"backbone.layers.{i}.blocks.0.attn.relative_position_index"] = torch.zeros(49, 49, dtype=torch.long)
        pd = "sem_seg_head.pixel_decoder."
        if i < 3:
            d2[f"{pd}adapter_{i + 1}.weight"] = torch.randn(CONV, ch, 1, 1)
            d2[f"{pd}adapter_{i + 1}.norm.weight"], d2[f"{pd}adapter_{i + 1}.norm.bias"] = torch.randn(CONV), torch.randn(CONV)
        d2[f"{pd}layer_{i + 1}.weight"] = torch.randn(CONV, ch if i == 3 else CONV, 3, 3)
        d2[f"{pd}layer_{i + 1}.norm.weight"], d2[f"{pd}layer_{i + 1}.norm.bias"] = torch.randn(CONV), torch.randn(CONV)
    d2["sem_seg_head.pixel_decoder.mask_features.weight"] = torch.randn(H, CONV, 3, 3)
    d2["sem_seg_head.pixel_decoder.mask_features.bias"] = torch.randn(H)
    p = "sem_seg_head.predictor."
    d2[p + "query_embed.weight"] = torch.randn(Q, H)
    d2[p + "input_proj.weight"], d2[p + "input_proj.bias"] = torch.randn(H, 768, 1, 1), torch.randn(H)
    for layer in range(L):
        t = f"{p}transformer.decoder.layers.{layer}."
        for attn in ("self_attn", "multihead_attn"):
            d2[t + f"{attn}.in_proj_weight"], d2[t + f"{attn}.in_proj_bias"] = torch.randn(3 * H, H), torch.randn(3 * H)
            d2[t + f"{attn}.out_proj.weight"], d2[t + f"{attn}.out_proj.bias"] = torch.randn(H, H), torch.randn(H)
        d2[t + "linear1.weight"], d2[t + "linear1.bias"] = torch.randn(FF, H), torch.randn(FF)
        d2[t + "linear2.weight"], d2[t + "linear2.bias"] = torch.randn(H, FF), torch.randn(H)
        for n in (1, 2, 3):
            d2[t + f"norm{n}.weight"], d2[t + f"norm{n}.bias"] = torch.randn(H), torch.randn(H)
    d2[p + "transformer.decoder.norm.weight"], d2[p + "transformer.decoder.norm.bias"] = torch.randn(H), torch.randn(H)
    for i, (a, b) in enumerate([(H, EH), (EH, C)]):
        d2[p + f"class_embed.layers.{i}.weight"], d2[p + f"class_embed.layers.{i}.bias"] = torch.randn(b, a), torch.randn(b)
    for i in range(3):
        d2[p + f"mask_embed.layers.{i}.weight"], d2[p + f"mask_embed.layers.{i}.bias"] = torch.randn(H, H), torch.randn(H)
    d2["clip_adapter.non_object_embedding"] = torch.randn(1, C)
    d2["clip_adapter.clip_model.visual.proj"] = torch.randn(8, C)  # the CLIP model: another component's
    d2["pixel_mean"] = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
    return d2, timm_swin


@pytest.mark.slow
def test_converts_the_detectron2_layout(tmp_path):
    d2, timm_swin = detectron2_checkpoint()
    src = tmp_path / "ovseg.pth"
    torch.save({"model": d2, "iteration": 120000}, src)
    dst = tmp_path / "converted.safetensors"
    cfg = convert(src, dst, backbone=SWIN, nheads=4)
    assert (cfg.hidden_dim, cfg.num_queries, cfg.dec_layers, cfg.dim_feedforward, cfg.embed_dim, cfg.embed_hidden_dim, cfg.conv_dim, cfg.mask_dim) == (H, Q, L, FF, C, EH, CONV, H)

    gen = MaskFormerProposals(MaskFormerConfig(**{**cfg.model_dump(), "weights": str(dst)}))
    ours = gen.model.state_dict()
    p = "sem_seg_head.predictor."
    pairs = {
        "no_object_embedding": "clip_adapter.non_object_embedding",
        "backbone.out_norms.2.bias": "backbone.norm2.bias",
        "backbone.body.layers_1.downsample.reduction.weight": "backbone.layers.0.downsample.reduction.weight",
        "backbone.body.layers_3.blocks.1.attn.qkv.weight": "backbone.layers.3.blocks.1.attn.qkv.weight",
        "pixel_decoder.lateral_convs.0.conv.weight": "sem_seg_head.pixel_decoder.adapter_1.weight",
        "pixel_decoder.lateral_convs.2.norm.weight": "sem_seg_head.pixel_decoder.adapter_3.norm.weight",
        "pixel_decoder.output_convs.3.conv.weight": "sem_seg_head.pixel_decoder.layer_4.weight",
        "pixel_decoder.output_convs.0.norm.bias": "sem_seg_head.pixel_decoder.layer_1.norm.bias",
        "predictor.layers.1.multihead_attn.in_proj_weight": p + "transformer.decoder.layers.1.multihead_attn.in_proj_weight",
        "predictor.decoder_norm.weight": p + "transformer.decoder.norm.weight",
        "predictor.class_embed.layers.1.weight": p + "class_embed.layers.1.weight",
        "predictor.query_embed.weight": p + "query_embed.weight",
    }
    for mine, theirs in pairs.items():
        assert torch.equal(ours[mine], d2[theirs]), mine

    # the backbone computes what timm's own Swin computes with the weights the checkpoint was made from
    full = timm.create_model(SWIN, pretrained=False).eval()
    full.load_state_dict(timm_swin)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        y = full.patch_embed(x)
        expected = []
        for stage in full.layers:
            y = stage(y)
            expected.append(y)
        got = gen.model.backbone.body(x)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)

    vocab = Vocabulary(("a", "b"))
    (props,) = gen.propose([Sample(torch.zeros(3, 40, 50, dtype=torch.uint8), None, "x")],
                           TextEmbeddings(vocab, torch.nn.functional.normalize(torch.randn(2, C), dim=-1)))
    assert props.mask_logits.shape == (Q, 40, 50) and props.class_logits.shape == (Q, 3)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_refuses_what_is_not_an_ovseg_checkpoint(tmp_path):
    src = tmp_path / "other.pth"
    torch.save({"model": {"conv.weight": torch.zeros(1)}}, src)
    with pytest.raises(BadInput, match="not an OVSeg/MaskFormer checkpoint"):
        convert(src, tmp_path / "out.safetensors", backbone=SWIN)
    (tmp_path / "pickle.pth").write_bytes(b"\x80\x04garbage")
    with pytest.raises(BadInput, match="weights_only"):
        convert(tmp_path / "pickle.pth", tmp_path / "out.safetensors", backbone=SWIN)
