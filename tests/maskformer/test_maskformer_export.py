"""`ovframe export --stage proposals`: the exported MaskFormer, run by onnxruntime at a batch size and input
size it was not traced with, gives the model's own last-layer mask logits and, with the saved no-object
embedding, its class logits against any vocabulary."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mf_fakes import TINY
from support import write

from ovframe.cli import main
from ovframe_maskformer.config import MaskFormerConfig
from ovframe_maskformer.model import MaskFormerModel
from ovframe_maskformer.weights import save_maskformer

ort = pytest.importorskip("onnxruntime")


@pytest.mark.slow
def test_exported_maskformer_matches_the_models_last_layer(tmp_path, registry, capsys):
    arch = {**TINY, "backbone": "resnet10t", "dec_layers": 1}  # the smallest network that has every part
    cfg = MaskFormerConfig(**arch, embed_dim=32)
    torch.manual_seed(0)
    model = MaskFormerModel(cfg, 32).eval()
    weights = tmp_path / "mf.safetensors"
    save_maskformer(weights, model, cfg, classes=["a", "b"], text_model="unit")
    options = ", ".join(f"{k}: {json.dumps(v)}" for k, v in arch.items())
    recipe = write(tmp_path / "r.yaml", f"name: mf\nproposals: {{plugin: maskformer, {options}, weights: {weights}}}\n")
    out = tmp_path / "onnx"
    assert main(["export", str(recipe), "--stage", "proposals", "--out", str(out)]) == 0
    assert "| proposals | mask_logits | 2x8x16x24 |" in capsys.readouterr().out  # traced at 2 x 64 x 96

    images = torch.randn(3, 3, 96, 32, generator=torch.Generator().manual_seed(1))
    session = ort.InferenceSession(str(out / "proposals.onnx"), providers=["CPUExecutionProvider"])
    class_embeddings, mask_logits = session.run(None, {"images": images.numpy()})
    text = F.normalize(torch.randn(5, 32, generator=torch.Generator().manual_seed(2)), dim=-1)
    with torch.no_grad():
        expected = model(images, text)
    np.testing.assert_allclose(mask_logits, expected["pred_masks"][-1].numpy(), atol=1e-4, rtol=1e-5)
    no_object = np.load(out / "proposals.no_object.npy")
    manifest = json.loads((out / "proposals.json").read_text())
    classes = np.concatenate([text.numpy(), no_object])  # the recipe for class logits the manifest states
    logits = manifest["notes"]["temperature"] * class_embeddings @ classes.T
    np.testing.assert_allclose(logits, expected["pred_logits"][-1].numpy(), atol=1e-3, rtol=1e-5)
    assert manifest["inputs"] == [{"name": "images", "dtype": "float32", "shape": ["batch", 3, "32*height_blocks", "32*width_blocks"]}]
    assert manifest["notes"]["size_divisibility"] == 32 and manifest["notes"]["pixel_mean"] == list(cfg.pixel_mean)
