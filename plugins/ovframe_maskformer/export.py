"""The MaskFormer network for `ovframe export` (ONNX): image in, the last decoder layer's outputs out.

    images            float [B, 3, H, W]   normalised ((x - pixel_mean) / pixel_std), zero-padded to multiples
                                           of size_divisibility (H and W stay free in the graph)
    -> class_embeddings float [B, Q, C]    L2-normalised query embeddings (vocabulary-free)
       mask_logits      float [B, Q, H/s, W/s]  s: the stride of the first backbone level fed to the FPN (4 usually)
Class logits against any vocabulary: temperature * class_embeddings @ [text_embeddings; no_object].T, [B, Q, K+1]
with the no-object column last (no_object is saved beside the graph, normalised). Masks: upsample bilinear to
the padded size, crop the padding, resize bilinear to the image (proposals.py).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ovframe.export import ExportGraph

from .model import MaskFormerModel


class _LastLayer(nn.Module):
    def __init__(self, model: MaskFormerModel):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.model
        feats = m.backbone(images)
        mask_features = m.pixel_decoder(feats)
        state = m.predictor(feats[-1])[-1]  # [B, Q, D]: the last decoder layer, the one proposals use
        masks = torch.einsum("bqc,bchw->bqhw", m.predictor.mask_embed(state), mask_features)
        return F.normalize(m.predictor.class_embed(state), dim=-1), masks


def proposals_graph(generator: Any) -> ExportGraph:
    """The network of a `maskformer` proposal generator (weights required)."""
    from ovframe import BadInput

    model: MaskFormerModel | None = generator.model
    if model is None:
        raise BadInput("maskformer has no weights to export: set `proposals.weights`")
    model.eval()
    cfg = generator.config
    div = max(cfg.size_divisibility, model.size_divisibility)
    side = -(-(cfg.test_short_side or 256) // div) * div
    g = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, side, side + div, generator=g)
    check = torch.randn(1, 3, side + div, max(div, side - div), generator=g)
    batch = torch.export.Dim("batch", min=1, max=1024)
    h = torch.export.Dim("height_blocks", min=1, max=4096 // div)
    w = torch.export.Dim("width_blocks", min=1, max=4096 // div)
    no_object = F.normalize(model.no_object_embedding.detach().float(), dim=-1)
    return ExportGraph(
        module=_LastLayer(model).eval(),
        inputs=(images,),
        input_names=["images"],
        output_names=["class_embeddings", "mask_logits"],
        dynamic_shapes=({0: batch, 2: div * h, 3: div * w},),
        check_inputs=(check,),
        extras={"no_object": no_object},
        notes={
            "pixel_mean": list(cfg.pixel_mean),
            "pixel_std": list(cfg.pixel_std),
            "size_divisibility": div,
            "test_short_side": cfg.test_short_side,
            "test_max_size": cfg.test_max_size,
            "temperature": model.temperature,
            "class_logits": "temperature * class_embeddings @ [normalised text embeddings; no_object].T -> "
            "[B, Q, K+1], no-object last",
            "mask_logits": f"at 1/{model.backbone.strides[0]} of the padded input: upsample bilinear to the padded "
            "size, crop the padding, resize bilinear to the image",
            "text_model": generator.text_model,
        },
    )
