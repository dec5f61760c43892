"""`ovframe export` of the CLIP family, run with onnxruntime on inputs it was not traced with, against
independent references: the hand-written MPT loop, open_clip's own image and text forwards."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from clip_helpers import TINY_CFG, reference_mpt, tiny_model
from support import write

from ovframe.cli import main
from ovframe.training import save_weights

ort = pytest.importorskip("onnxruntime")


def run(path, **inputs):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in inputs.items()})


@pytest.fixture
def no_unpickling(monkeypatch):
    """Export must never unpickle: any pickle load fails the test (torch.load only with weights_only=True)."""

    def refuse(*args, **kwargs):
        raise AssertionError("something was unpickled during export")

    class RefusingUnpickler(pickle.Unpickler):  # a class still: modules may subclass it at import
        def __init__(self, *args, **kwargs):
            refuse()

    real_torch_load = torch.load

    def safe_torch_load(*args, **kwargs):
        if kwargs.get("weights_only") is not True:
            refuse()
        return real_torch_load(*args, **kwargs)

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", RefusingUnpickler)
    monkeypatch.setattr(torch, "load", safe_torch_load)


@pytest.mark.slow
def test_exported_classifier_and_text_tower_match_independent_references(tiny, tmp_path, registry, capsys, no_unpickling):
    g = torch.Generator().manual_seed(3)
    prompts = 0.5 * torch.randn(3, 16, 64, generator=g)
    save_weights(tmp_path / "mpt.safetensors", {"prompts": prompts}, {})
    clip = f"model: {tiny['model']}, pretrained: {tiny['pretrained']}"
    recipe = write(
        tmp_path / "r.yaml",
        f"""
        name: tiny-export
        text_encoder: {{plugin: clip-text, {clip}, templates: single}}
        classifier: {{plugin: clip-masked-crop, {clip}}}
        adapter: {{plugin: mask-prompt-tuning, depth: 3, weights: {tmp_path / 'mpt.safetensors'}}}
        """,
    )
    out = tmp_path / "onnx"
    assert main(["export", str(recipe), "--stage", "all", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| classifier | embeddings | 2x32 |" in printed and "| text | embeddings | 3x32 |" in printed
    model = tiny_model(0)  # the weights `tiny` wrote, built again by open_clip

    # the region tower with MPT: batch 5 (exported with 2, checked with 3), the patch mask from pixel masks
    images = torch.randn(5, 3, 32, 32, generator=g)
    masks = torch.zeros(5, 32, 32, dtype=torch.bool)
    masks[0] = True
    masks[1, 3:20, 5:30] = True
    masks[2, 17, 9] = True
    masks[4, 8:24, 8:24] = True
    keep = masks.reshape(5, 4, 8, 4, 8).any(dim=4).any(dim=2).reshape(5, 16)  # a patch keeps its token if any pixel is region
    saved_prompts = np.load(out / "classifier.prompts.npy")
    np.testing.assert_array_equal(saved_prompts, prompts.numpy())
    (emb,) = run(out / "classifier.onnx", images=images, patch_mask=keep, prompts=saved_prompts)
    with torch.no_grad():
        expected = F.normalize(reference_mpt(model.visual, prompts, images, masks), dim=-1)
    np.testing.assert_allclose(emb, expected.numpy(), atol=2e-5, rtol=0)

    # the text tower: open_clip's own tokenizer and encode_text
    from open_clip.tokenizer import SimpleTokenizer

    tokens = SimpleTokenizer(context_length=TINY_CFG["text_cfg"]["context_length"])(["a photo of a cat.", "sand", "x", "a red star"])
    (text,) = run(out / "text.onnx", tokens=tokens)
    with torch.no_grad():
        np.testing.assert_allclose(text, F.normalize(model.encode_text(tokens), dim=-1).numpy(), atol=2e-5, rtol=0)

    manifest = json.loads((out / "classifier.json").read_text())
    assert manifest["inputs"] == [
        {"name": "images", "dtype": "float32", "shape": ["batch", 3, 32, 32]},
        {"name": "patch_mask", "dtype": "bool", "shape": ["batch", 16]},
        {"name": "prompts", "dtype": "float32", "shape": [3, 16, 64]},
    ]
    assert manifest["outputs"] == [{"name": "embeddings", "dtype": "float32", "shape": ["batch", 32]}]
    assert manifest["adapter"]["plugin"] == "mask-prompt-tuning" and manifest["notes"]["image_size"] == 32
    assert all(r["ok"] for r in manifest["check"]["results"])
    from ovframe.files import sha256_of

    assert manifest["sha256"] == sha256_of(out / "classifier.onnx")
    text_manifest = json.loads((out / "text.json").read_text())
    assert text_manifest["inputs"] == [{"name": "tokens", "dtype": "int64", "shape": ["batch", 16]}]
    assert text_manifest["notes"]["templates"] == ["a photo of a {}."]


def test_background_crop_graph_is_open_clips_image_forward(tiny, registry):
    """Without prompts the graph takes the images only (the ONNX path is the one tested above)."""
    from clip_helpers import build

    graph = build("classifier", {"plugin": "clip-background-crop", **tiny}).export_graph()
    assert graph.input_names == ["images"] and graph.output_names == ["embeddings"] and not graph.extras
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ours = graph.module(images)
        expected = F.normalize(tiny_model(0).encode_image(images), dim=-1)
    torch.testing.assert_close(ours, expected, atol=1e-6, rtol=0)
