"""The maskformer network and proposal generator: backbones, shapes, the open-vocabulary head, pre/post-processing, weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ovframe import BadInput, MissingFiles, Sample, TextEmbeddings, Vocabulary
from ovframe.files import check_required_files
from ovframe_maskformer.config import MaskFormerConfig
from ovframe_maskformer.model import MaskFormerModel
from ovframe_maskformer.proposals import MaskFormerProposals
from ovframe_maskformer.weights import save_maskformer

from mf_fakes import TINY

C = 16


def text(names=("cat", "dog", "sky")) -> TextEmbeddings:
    g = torch.Generator().manual_seed(0)
    return TextEmbeddings(Vocabulary(tuple(names)), F.normalize(torch.randn(len(names), C, generator=g), dim=-1), "unit")


def tiny(**over) -> MaskFormerConfig:
    return MaskFormerConfig(**{**TINY, **over})


@pytest.mark.parametrize(
    "backbone,indices,nhwc",
    [("resnet18", (1, 2, 3, 4), False), ("swin_tiny_patch4_window7_224", (0, 1, 2, 3), True)],
)
def test_backbones_give_features_at_strides_4_to_32_for_free_sizes(backbone, indices, nhwc):
    torch.manual_seed(0)
    model = MaskFormerModel(tiny(backbone=backbone, out_indices=indices), C).eval()
    assert model.backbone.nhwc is nhwc
    assert model.backbone.strides == [4, 8, 16, 32]
    x = torch.randn(1, 3, 96, 160)
    feats = model.backbone(x)
    assert [tuple(f.shape) for f in feats] == [(1, c, 96 // s, 160 // s) for c, s in zip(model.backbone.channels, [4, 8, 16, 32])]
    with torch.no_grad():
        out = model(x, text().embeddings)
    assert out["pred_logits"].shape == (2, 1, 8, 4)  # [layers, B, Q, K+1]
    assert out["pred_masks"].shape == (2, 1, 8, 24, 40)  # at 1/4 of the input


def test_class_head_is_temperature_times_cosine_against_text_plus_no_object():
    torch.manual_seed(0)
    model = MaskFormerModel(tiny(), C).eval()
    t = text().embeddings
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = model(x, t)
        states = model.predictor(model.backbone(x)[-1])
        q = model.predictor.class_embed(states)
    classes = torch.cat([t, model.no_object_embedding / model.no_object_embedding.norm()])
    expected = 100.0 * (q / q.norm(dim=-1, keepdim=True)) @ classes.t()
    torch.testing.assert_close(out["pred_logits"], expected, rtol=1e-5, atol=1e-4)
    # a vocabulary of other size and order: columns follow the names
    t2 = torch.cat([t[2:], t[:1], F.normalize(torch.randn(4, C), dim=-1)])
    with torch.no_grad():
        logits2 = model(x, t2)["pred_logits"]
    assert logits2.shape[-1] == 6 + 1
    torch.testing.assert_close(logits2[..., 0], out["pred_logits"][..., 2])
    torch.testing.assert_close(logits2[..., 1], out["pred_logits"][..., 0])
    torch.testing.assert_close(logits2[..., -1], out["pred_logits"][..., -1])


def test_no_object_embedding_init_std_is_c_to_the_minus_half():
    torch.manual_seed(0)
    e = MaskFormerModel(tiny(embed_hidden_dim=8), 768).no_object_embedding
    assert e.shape == (1, 768)
    assert e.std().item() == pytest.approx(768**-0.5, rel=0.15)


def _weights(tmp_path, cfg: MaskFormerConfig):
    torch.manual_seed(1)
    model = MaskFormerModel(cfg, C)
    path = tmp_path / "w.safetensors"
    save_maskformer(path, model, cfg, classes=["cat", "dog", "sky"], text_model="unit")
    return path, model.eval()


def test_propose_undoes_resize_and_padding(tmp_path):
    cfg = tiny(test_short_side=None)
    path, model = _weights(tmp_path, cfg)
    gen = MaskFormerProposals(MaskFormerConfig(**{**TINY, "test_short_side": None, "weights": str(path)}))
    image = torch.randint(0, 256, (3, 50, 70), dtype=torch.uint8)
    (props,) = gen.propose([Sample(image, None, "a")], text())
    assert props.mask_logits.shape == (8, 50, 70) and props.class_logits.shape == (8, 4)
    # independent recomputation: normalise, pad to 64x96 with zeros, run, upsample to 64x96, crop
    mean = torch.tensor(cfg.pixel_mean).view(3, 1, 1)
    std = torch.tensor(cfg.pixel_std).view(3, 1, 1)
    x = torch.zeros(1, 3, 64, 96)
    x[0, :, :50, :70] = (image.float() - mean) / std
    with torch.no_grad():
        out = model(x, text().embeddings)
    ref = F.interpolate(out["pred_masks"][-1], size=(64, 96), mode="bilinear", align_corners=False)[0, :, :50, :70]
    torch.testing.assert_close(props.mask_logits, ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(props.class_logits, out["pred_logits"][-1, 0], rtol=1e-4, atol=1e-4)
    # with a test-time resize the proposals still come back at the sample's size
    resized = MaskFormerProposals(MaskFormerConfig(**{**TINY, "test_short_side": 40, "weights": str(path)}))
    props2 = resized.propose([Sample(image, None, "a"), Sample(image[:, :33, :47], None, "b")], text())
    assert [tuple(p.mask_logits.shape) for p in props2] == [(8, 50, 70), (8, 33, 47)]


def test_weights_that_do_not_match_the_recipe_fail_naming_the_keys(tmp_path):
    path, _ = _weights(tmp_path, tiny())
    with pytest.raises(BadInput) as err:
        MaskFormerProposals(MaskFormerConfig(**{**TINY, "hidden_dim": 64, "num_queries": 16, "weights": str(path)}))
    msg = str(err.value)
    assert "hidden_dim: the recipe has 64, the weights were trained with 32" in msg
    assert "num_queries: the recipe has 16, the weights were trained with 8" in msg
    with pytest.raises(BadInput, match="embed_dim"):
        MaskFormerProposals(MaskFormerConfig(**{**TINY, "embed_dim": 512, "weights": str(path)}))
    ok = MaskFormerProposals(MaskFormerConfig(**{**TINY, "weights": str(path)}))
    assert ok.model.embed_dim == C  # taken from the file
    with pytest.raises(BadInput, match="trained against 16-d"):
        ok.propose([Sample(torch.zeros(3, 32, 32, dtype=torch.uint8), None, "a")],
                   TextEmbeddings(Vocabulary(("a",)), torch.ones(1, 8) / 8**0.5))
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(BadInput, match="not a readable safetensors"):
        MaskFormerProposals(MaskFormerConfig(**{**TINY, "weights": str(tmp_path / "bad.safetensors")}))


def test_missing_weights_are_named_with_how_to_get_them(tmp_path):
    cfg = MaskFormerConfig(**{**TINY, "weights": str(tmp_path / "nowhere.safetensors")})
    files = MaskFormerProposals.required_files(cfg)
    assert [f.path for f in files] == [str(tmp_path / "nowhere.safetensors")]
    assert "train-proposals" in files[0].how_to_get
    with pytest.raises(MissingFiles, match="nowhere.safetensors"):
        check_required_files(files)
    untrained = MaskFormerProposals(MaskFormerConfig(**TINY))
    with pytest.raises(BadInput, match="no weights"):
        untrained.propose([Sample(torch.zeros(3, 32, 32, dtype=torch.uint8), None, "a")], text())


@pytest.mark.parametrize("backbone,indices", [("resnet18", (1, 2, 3, 4)), ("swin_tiny_patch4_window7_224", (0, 1, 2, 3))])
def test_backbone_pretrained_file_is_loaded(tmp_path, backbone, indices):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(5)
    full = timm.create_model(backbone, pretrained=False)
    path = tmp_path / "imagenet.safetensors"
    save_file({k: v.contiguous() for k, v in full.state_dict().items()}, str(path))
    cfg = tiny(backbone=backbone, out_indices=indices, backbone_pretrained=str(path))
    assert [f.path for f in MaskFormerProposals.required_files(cfg)] == [str(path)]
    gen = MaskFormerProposals(cfg)
    model = gen.build_untrained(C)
    body = model.backbone.body.state_dict()
    name = "layers_2.blocks.1.attn.qkv.weight" if "swin" in backbone else "layer3.1.conv2.weight"
    assert torch.equal(body[name], full.state_dict()[name.replace("layers_2", "layers.2")])
    with pytest.raises(BadInput, match="no tensor of this file matches"):
        save_file({"something.else": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
        MaskFormerProposals(tiny(backbone=backbone, out_indices=indices, backbone_pretrained=str(tmp_path / "other.safetensors"))).build_untrained(C)
