"""Helpers of the CLIP family's tests: tiny open_clip models, building components by name, references."""

from __future__ import annotations

import json

import torch

TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 64, "layers": 3, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def tiny_model(seed: int = 0, quick_gelu: bool = False) -> torch.nn.Module:
    """A tiny open_clip CLIP with deterministic random weights (LayerNorms perturbed too)."""
    from open_clip.model import CLIP

    torch.manual_seed(seed)
    model = CLIP(**{**TINY_CFG, "quick_gelu": quick_gelu}).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return model


def write_tiny(folder, seed: int = 0, quick_gelu: bool = False, name: str = "tiny") -> dict[str, str]:
    """<name>.json (open_clip model config) + <name>.safetensors; returns the recipe keys."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    cfg_path = folder / f"{name}.json"
    cfg_path.write_text(json.dumps(TINY_CFG))
    state = {k: v.contiguous() for k, v in tiny_model(seed, quick_gelu).state_dict().items()}
    weights = folder / f"{name}.safetensors"
    save_file(state, str(weights))
    return {"model": str(cfg_path), "pretrained": str(weights)}


def build(kind: str, options: dict):
    from ovframe import get_registry

    name = options.pop("plugin")
    return get_registry().get(kind, name).build(options)


def reference_mpt(visual, prompts: torch.Tensor, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mask prompt tuning written out by hand (reference/ovseg.md): an independent forward loop.

    A patch keeps its token when the ceil of its mean mask value is 1 (any region pixel); layer 0 blends
    before the class token and positions; after block i the patch tokens are blended with prompts[i+1]."""
    b = images.shape[0]
    p, g = visual.patch_size[0], visual.grid_size[0]
    keep = masks.float().reshape(b, g, p, g, p).mean(dim=(2, 4)).ceil().reshape(b, g * g, 1)
    x = visual.conv1(images).flatten(2).transpose(1, 2)
    x = x * keep + prompts[0] * (1 - keep)
    cls = visual.class_embedding.expand(b, 1, -1)
    x = visual.ln_pre(torch.cat([cls, x], dim=1) + visual.positional_embedding)
    for i, block in enumerate(visual.transformer.resblocks):
        x = block(x)
        if i + 1 < prompts.shape[0]:
            x = torch.cat([x[:, :1], x[:, 1:] * keep + prompts[i + 1] * (1 - keep)], dim=1)
    return visual.ln_post(x[:, 0]) @ visual.proj
