"""Loading CLIP weights: safetensors, OpenAI layout, OVSeg's checkpoints, open_clip training checkpoints;
identity, once-per-process sharing, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from clip_helpers import TINY_CFG, build, reference_mpt, tiny_model, write_tiny

from ovframe import BadInput, MissingFiles
from ovframe.files import check_required_files

IMAGES = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def image_features(options):
    clf = build("classifier", {"plugin": "clip-masked-crop", **options})
    with torch.no_grad():
        return clf.encoder(IMAGES, torch.ones(3, 32, 32, dtype=torch.bool))


def text_features(options):
    enc = build("text_encoder", {"plugin": "clip-text", **options, "cache": False, "templates": "single"})
    with torch.no_grad():
        return enc.clip.encode_text(enc.tokenizer(["a photo of a cat.", "a photo of a dog."]))


def openai_state(model):
    """A state dict in OpenAI's layout: open_clip's keys plus OpenAI's three integer entries."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state.update(input_resolution=torch.tensor(32), context_length=torch.tensor(16), vocab_size=torch.tensor(49408))
    return state


def test_openai_format_loads_to_the_same_outputs_with_quickgelu(tiny, tmp_path):
    original = tiny_model(seed=3, quick_gelu=True)  # OpenAI's CLIP uses QuickGELU
    torch.save(openai_state(original), tmp_path / "openai.pt")
    options = {"model": tiny["model"], "pretrained": str(tmp_path / "openai.pt")}  # the JSON says nothing of GELU
    with torch.no_grad():
        torch.testing.assert_close(image_features(options), original.encode_image(IMAGES), rtol=0, atol=1e-6)
        tokens = build("text_encoder", {"plugin": "clip-text", **options}).tokenizer(["a photo of a cat.", "a photo of a dog."])
        torch.testing.assert_close(text_features(options), original.encode_text(tokens), rtol=1e-5, atol=1e-5)
    # the same weights read with plain GELU give other features: the detection matters
    forced = image_features({**options, "quick_gelu": False})
    assert (forced - original.encode_image(IMAGES)).abs().max() > 1e-4


def test_ovseg_checkpoint_gives_a_working_mpt_model(tiny, tmp_path):
    original = tiny_model(seed=4, quick_gelu=True)
    # OVSeg's released CLIP (ovseg_clip_l_9a1909.pth): OpenAI layout + visual.mask_embedding [depth, grid*grid, width]
    prompts = torch.randn(3, 16, 64, generator=torch.Generator().manual_seed(1))
    state = {**{k: v.clone() for k, v in original.state_dict().items()}, "visual.mask_embedding": prompts}
    torch.save(state, tmp_path / "ovseg_clip_tiny.pth")
    # ... and the full OVSeg detectron2 checkpoint, where CLIP sits under clip_adapter.clip_model.
    full = {"model": {**{f"clip_adapter.clip_model.{k}": v for k, v in state.items()},
                      "sem_seg_head.predictor.class_embed.weight": torch.zeros(2, 2)}, "iteration": 5}
    torch.save(full, tmp_path / "ovseg_full.pth")
    masks = torch.zeros(3, 32, 32, dtype=torch.bool)
    masks[:, 4:20, 8:28] = True
    for path in ("ovseg_clip_tiny.pth", "ovseg_full.pth"):
        clf = build("classifier", {"plugin": "clip-masked-crop", "model": tiny["model"], "pretrained": str(tmp_path / path)})
        clf.attach(build("adapter", {"plugin": "mask-prompt-tuning"}))
        assert torch.equal(clf.encoder.prompts, prompts)
        with torch.no_grad():
            got = clf.encoder(IMAGES, masks)
            torch.testing.assert_close(got, reference_mpt(original.visual, prompts, IMAGES, masks), rtol=1e-5, atol=1e-5)
    # a depth that does not match the checkpoint's prompts is a clear error
    clf = build("classifier", {"plugin": "clip-masked-crop", "model": tiny["model"], "pretrained": str(tmp_path / "ovseg_full.pth")})
    with pytest.raises(BadInput, match="checkpoint's visual.mask_embedding are \\(3, 16, 64\\)"):
        clf.attach(build("adapter", {"plugin": "mask-prompt-tuning", "depth": 2}))


def test_open_clip_training_checkpoint(tmp_path, tiny):
    original = tiny_model(seed=5)
    torch.save({"epoch": 5, "state_dict": {f"module.{k}": v for k, v in original.state_dict().items()}}, tmp_path / "epoch_5.pt")
    got = image_features({"model": tiny["model"], "pretrained": str(tmp_path / "epoch_5.pt")})
    torch.testing.assert_close(got, original.encode_image(IMAGES), rtol=0, atol=1e-6)


def test_model_config_in_open_clip_config_json_layout(tmp_path, tiny):
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CFG, "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3}}))
    clf = build("classifier", {"plugin": "clip-masked-crop", "model": str(tmp_path / "open_clip_config.json"), "pretrained": tiny["pretrained"]})
    assert clf.cropper.mean == (0.5, 0.5, 0.5)


def test_one_load_per_process_and_identity(tiny, tmp_path):
    text = build("text_encoder", {"plugin": "clip-text", **tiny})
    clf = build("classifier", {"plugin": "clip-masked-crop", **tiny})
    assert text.clip.visual is clf.encoder.visual
    assert text.model_id == clf.model_id
    from ovframe_clip.loading import weights_sha256

    assert text.model_id.endswith(weights_sha256(tiny["pretrained"]))
    copy = write_tiny(tmp_path / "copy")  # byte-identical weights elsewhere: the same identity
    assert build("text_encoder", {"plugin": "clip-text", **copy}).model_id == text.model_id


def test_pickled_objects_are_refused(tmp_path, tiny):
    torch.save({"weights": torch.zeros(2), "config": __import__("argparse").Namespace(a=1)}, tmp_path / "bad.pt")
    with pytest.raises(BadInput, match="weights_only=True"):
        image_features({"model": tiny["model"], "pretrained": str(tmp_path / "bad.pt")})


def test_weights_that_do_not_fit_the_model(tmp_path, tiny):
    state = {k: v for k, v in tiny_model().state_dict().items() if k != "visual.proj"}
    state["visual.conv1.weight"] = torch.zeros(64, 3, 4, 4)
    torch.save(state, tmp_path / "wrong.pt")
    with pytest.raises(BadInput, match="do not fit"):
        image_features({"model": tiny["model"], "pretrained": str(tmp_path / "wrong.pt")})


def test_missing_files_are_named_with_where_to_get_them(tiny, tmp_path):
    from ovframe import get_registry

    spec = get_registry().get("classifier", "clip-masked-crop")
    cfg = spec.config.model_validate({"model": "ViT-L-14", "pretrained": str(tmp_path / "ovseg_clip_l_9a1909.pth")})
    with pytest.raises(MissingFiles) as err:
        check_required_files(spec.load().required_files(cfg))
    assert "ovseg_clip_l_9a1909.pth" in str(err.value) and "facebookresearch/ov-seg" in str(err.value)
    text = get_registry().get("text_encoder", "clip-text")
    tcfg = text.config.model_validate({"model": "ViT-L-14", "pretrained": str(tmp_path / "ovseg_clip_l_9a1909.pth")})
    with pytest.raises(MissingFiles) as err:  # one checkpoint shared by two components is named once
        check_required_files(spec.load().required_files(cfg) + text.load().required_files(tcfg))
    assert len(err.value.missing) == 1
    adapter = get_registry().get("adapter", "mask-prompt-tuning")
    acfg = adapter.config.model_validate({"weights": str(tmp_path / "prompts.safetensors")})
    with pytest.raises(MissingFiles, match="train-adapter"):
        check_required_files(adapter.load().required_files(acfg))


def test_sha256_is_checked(tiny):
    with pytest.raises(BadInput, match="sha256"):
        image_features({**tiny, "sha256": "0" * 64})


def test_tags_and_names_are_validated(tiny):
    with pytest.raises(BadInput, match="tags only go with open_clip model names"):
        image_features({"model": tiny["model"], "pretrained": "openai"})
    with pytest.raises(BadInput, match="not an open_clip pretrained tag of ViT-B-16"):
        image_features({"model": "ViT-B-16", "pretrained": "no-such-tag"})
    with pytest.raises(BadInput, match="neither an open_clip model name"):
        image_features({"model": "ViT-B-61", "pretrained": "openai"})


def test_half_precision_weights_and_a_bpe_file_beside_the_json(tmp_path):
    """The synth family ships {"model_cfg", "preprocess_cfg"} JSON + fp16 safetensors, its own BPE merges."""
    import shutil

    import open_clip
    from safetensors.torch import save_file

    bpe = Path(open_clip.__file__).with_name("bpe_simple_vocab_16e6.txt.gz")
    shutil.copy(bpe, tmp_path / "merges.txt.gz")
    cfg = {**TINY_CFG, "text_cfg": {**TINY_CFG["text_cfg"], "tokenizer_kwargs": {"bpe_path": "merges.txt.gz"}}}
    (tmp_path / "m.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3}}))
    original = tiny_model(seed=6)
    save_file({k: v.half().contiguous() for k, v in original.state_dict().items()}, str(tmp_path / "m.safetensors"))
    options = {"model": str(tmp_path / "m.json"), "pretrained": str(tmp_path / "m.safetensors")}
    enc = build("text_encoder", {"plugin": "clip-text", **options})
    assert enc.tokenizer(["a teddy bear"]).tolist() == open_clip.tokenizer.SimpleTokenizer(context_length=16)(["a teddy bear"]).tolist()
    with torch.no_grad():
        for p in original.parameters():
            p.copy_(p.half().float())
        torch.testing.assert_close(image_features(options), original.encode_image(IMAGES), rtol=0, atol=1e-6)
