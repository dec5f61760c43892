"""The CLIP family's networks for `ovframe export` (ONNX): the region classifier's image tower with its
adapter, and the text tower.

classifier (mask prompt tuning)
    images      float [B, 3, S, S]   region crops, normalised (crops.py: the box of the thresholded mask,
                                     background filled, (x - 255 mean) / (255 std), bicubic to S x S)
    patch_mask  bool  [B, G]          G = grid*grid; True where the patch holds any region pixel (it keeps
                                     its token), False where the prompt replaces it
    prompts     float [depth, G | 1, width]   the adapter's prompts (saved beside the graph)
    -> embeddings float [B, C], L2-normalised
classifier (no adapter, full fine-tuning, background kept): images only.
text
    tokens      int64 [B, L]          the tokenizer's ids of the prompts (templates filled with a name)
    -> embeddings float [B, C], L2-normalised; a class embedding is the normalised mean over its prompts
Class probabilities (both): softmax over K of temperature * region embedding @ class embeddings.T.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ovframe.export import ExportGraph

from .encoders import MaskPromptEncoder, RegionEncoder


class _PromptedTower(nn.Module):
    def __init__(self, encoder: MaskPromptEncoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, images: torch.Tensor, patch_mask: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.encoder.forward_patches(images, patch_mask, prompts).float(), dim=-1)


class _PlainTower(nn.Module):
    def __init__(self, encoder: RegionEncoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.encoder(images, None).float(), dim=-1)


class _TextTower(nn.Module):
    def __init__(self, clip: nn.Module):
        super().__init__()
        self.clip = clip

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.clip.encode_text(tokens).float(), dim=-1)


def _batch() -> Any:
    return torch.export.Dim("batch", min=1, max=65536)


def classifier_graph(classifier: Any) -> ExportGraph:
    """The image tower of a `clip-masked-crop` / `clip-background-crop` classifier, adapter included."""
    encoder: RegionEncoder = classifier.encoder.eval()
    size = encoder.image_size
    g = torch.Generator().manual_seed(0)
    images = [torch.randn(b, 3, size, size, generator=g) for b in (2, 3)]
    cfg = classifier.config
    cropper = classifier.cropper
    notes: dict[str, Any] = {
        "image_size": size,
        "mean": list(cropper.mean),
        "std": list(cropper.std),
        "crop": "box of sigmoid(mask) > mask_thr (expanded by expand_ratio), "
        + ("background kept" if cropper.fill is None else f"background filled with {cropper.fill}")
        + ", normalised ((x - 255 mean) / (255 std)), bicubic to image_size x image_size",
        "mask_thr": cfg.mask_thr,
        "expand_ratio": cfg.expand_ratio,
        "temperature": cfg.temperature,
        "probabilities": "softmax over the K classes of temperature * embeddings @ text_embeddings.T",
        "model_id": encoder.model_id,
    }
    batch = _batch()
    if isinstance(encoder, MaskPromptEncoder):
        visual = encoder.visual
        grid = visual.grid_size[0] * visual.grid_size[1]
        masks = [torch.rand(b, grid, generator=g) > 0.4 for b in (2, 3)]
        prompts = encoder.prompts.detach().float()
        notes.update(
            patch_size=list(visual.patch_size),
            patch_mask="True where the patch (patch_size pixels of the resized region mask) holds any region "
            "pixel: it keeps its token; the others are replaced by the prompts (row-major patch order)",
            prompts=f"the adapter's (depth {prompts.shape[0]}), saved beside the graph (extras)",
        )
        return ExportGraph(
            module=_PromptedTower(encoder).eval(),
            inputs=(images[0], masks[0], prompts),
            input_names=["images", "patch_mask", "prompts"],
            output_names=["embeddings"],
            dynamic_shapes=({0: batch}, {0: batch}, None),
            check_inputs=(images[1], masks[1], prompts),
            extras={"prompts": prompts},
            notes=notes,
        )
    return ExportGraph(
        module=_PlainTower(encoder).eval(),
        inputs=(images[0],),
        input_names=["images"],
        output_names=["embeddings"],
        dynamic_shapes=({0: batch},),
        check_inputs=(images[1],),
        notes=notes,
    )


def text_graph(encoder: Any) -> ExportGraph:
    """The text tower of a `clip-text` encoder, tokens in, normalised embeddings out."""
    prompts = [["a photo of a red star.", "sand"], ["a photo of the sky.", "a rendering of a cat.", "a big wall"]]
    tokens = [encoder.tokenizer(p).to(torch.long) for p in prompts]
    return ExportGraph(
        module=_TextTower(encoder.clip).eval(),
        inputs=(tokens[0],),
        input_names=["tokens"],
        output_names=["embeddings"],
        dynamic_shapes=({0: _batch()},),
        check_inputs=(tokens[1],),
        notes={
            "context_length": int(tokens[0].shape[1]),
            "tokenizer": "the open_clip tokenizer of the model (model_id); ids padded with 0 to context_length",
            "templates": list(encoder.templates),
            "synonyms": encoder.config.synonyms,
            "class_embedding": "each template filled with the class name, embedded; the normalised mean over "
            "the templates (and, with synonyms: average, over the synonyms)",
            "model_id": encoder.model_id,
        },
    )
