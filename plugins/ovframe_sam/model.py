"""SAM networks: built from an architecture with segment_anything's own modules, and their weights.

segment_anything's builder reads checkpoints with a bare `torch.load` (it would unpickle anything), so
the network is built here from a SamArchitecture and the state dict is read by ovframe:

    .pth / .pt     torch.load(weights_only=True): tensors only; a file that carries code is refused
    .safetensors   train-sam's output; metadata `ovframe.sam.architecture` holds the architecture (JSON)

The architecture comes from the recipe (`model:`), else from the file: the safetensors metadata, or the
shapes of an official checkpoint (vit_b / vit_l / vit_h). Every key and shape is checked; errors name them.
"""

from __future__ import annotations

import json
import pickle
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ovframe import BadInput
from ovframe.loading import load_exact

from .config import HOW_TO_GET, OFFICIAL_CHECKPOINTS, OFFICIAL_ENCODERS, SamArchitecture, official_architecture

ARCH_KEY = "ovframe.sam.architecture"


def build_sam(arch: SamArchitecture) -> Any:
    """A segment_anything `Sam` of this architecture (random weights, eval mode)."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    grid = arch.image_size // arch.patch_size
    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=arch.image_size,
            patch_size=arch.patch_size,
            embed_dim=arch.encoder_embed_dim,
            depth=arch.encoder_depth,
            num_heads=arch.encoder_num_heads,
            mlp_ratio=arch.mlp_ratio,
            out_chans=arch.prompt_embed_dim,
            qkv_bias=True,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            use_rel_pos=True,
            window_size=arch.window_size,
            global_attn_indexes=tuple(arch.encoder_global_attn_indexes),
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=arch.prompt_embed_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(arch.image_size, arch.image_size),
            mask_in_chans=arch.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            transformer_dim=arch.prompt_embed_dim,
            transformer=TwoWayTransformer(
                depth=arch.decoder_depth,
                embedding_dim=arch.prompt_embed_dim,
                mlp_dim=arch.decoder_mlp_dim,
                num_heads=arch.decoder_num_heads,
            ),
            num_multimask_outputs=arch.num_multimask_outputs,
            iou_head_depth=arch.iou_head_depth,
            iou_head_hidden_dim=arch.iou_head_hidden_dim,
        ),
        pixel_mean=list(arch.pixel_mean),
        pixel_std=list(arch.pixel_std),
    )
    return sam.eval()


def read_state(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(state dict, safetensors metadata) of a weights file, never unpickling code."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), "pt") as f:
                return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
        except Exception as e:  # safetensors raises its own error types for truncated/corrupt files
            raise BadInput(f"{path}: not a readable safetensors file ({e}); get it again: {HOW_TO_GET}") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = [line.strip() for line in str(e).splitlines() if "global" in line.lower() and "weights_only" not in line]
        if not found:  # not a pickle at all (truncated, another format)
            raise BadInput(f"{path}: not a readable PyTorch checkpoint; get it again: {HOW_TO_GET}") from None
        raise BadInput(
            f"{path}: refused: the file holds Python objects other than tensors ({found[0]}), and ovframe never "
            f"unpickles code. Use an official SAM checkpoint or safetensors: {HOW_TO_GET}"
        ) from None
    except Exception as e:
        raise BadInput(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {e}); get it again: {HOW_TO_GET}") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # a training checkpoint that wraps the state dict
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BadInput(f"{path}: expected a SAM state dict (names -> tensors); {HOW_TO_GET}")
    return state, {}


def official_type(state: dict[str, torch.Tensor]) -> str | None:
    """vit_b / vit_l / vit_h when the state dict has an official SAM's image encoder, else None."""
    pos = state.get("image_encoder.pos_embed")
    if pos is None:
        return None
    depth = len({k.split(".")[2] for k in state if k.startswith("image_encoder.blocks.")})
    for name, enc in OFFICIAL_ENCODERS.items():
        if tuple(pos.shape) == (1, 64, 64, enc["encoder_embed_dim"]) and depth == enc["encoder_depth"]:
            return name
    return None


def _recorded(meta: dict[str, str], path: Path | None) -> SamArchitecture:
    """The architecture a weights file records; BadInput when it cannot be read (a damaged or foreign file)."""
    try:
        return SamArchitecture.model_validate(json.loads(meta[ARCH_KEY]))
    except (ValueError, TypeError, RecursionError) as e:  # JSON and pydantic errors alike
        raise BadInput(f"{path}: the SAM architecture recorded in these weights cannot be read ({type(e).__name__}); get the file again") from None


def architecture_for(model: Any, path: Path | None, state: dict[str, torch.Tensor] | None, meta: dict[str, str]) -> SamArchitecture:
    """The architecture to build: the recipe's `model`, else what the weights say."""
    if isinstance(model, SamArchitecture):
        return model
    if isinstance(model, str):
        return official_architecture(model)
    if ARCH_KEY in meta:
        return _recorded(meta, path)
    found = official_type(state) if state is not None else None
    if found is not None:
        return official_architecture(found)
    where = f"{path} records no architecture and is not an official SAM checkpoint" if path else "there are no weights"
    raise BadInput(f"proposals.model: {where}; give model: vit_b / vit_l / vit_h or a custom architecture")


def load_sam(model: Any, weights: str | Path | None) -> tuple[Any, SamArchitecture]:
    """Build the SAM of `model` (a SamModelConfig.model value) and load `weights` into it (None: random init)."""
    if weights is None:
        arch = architecture_for(model, None, None, {})
        return build_sam(arch), arch
    path = Path(weights)
    state, meta = read_state(path)
    arch = architecture_for(model, path, state, meta)
    if ARCH_KEY in meta and model is not None:
        saved = _recorded(meta, path)
        if saved != arch:
            diffs = [f"{k}: recipe {getattr(arch, k)!r}, weights {getattr(saved, k)!r}" for k in SamArchitecture.model_fields if getattr(arch, k) != getattr(saved, k)]
            raise BadInput(f"{path}: made for another SAM architecture than the recipe's: " + "; ".join(diffs) + " (or drop proposals.model to take the file's)")
    sam = build_sam(arch)
    load_exact(sam, state, path, "the SAM architecture", "Set proposals.model to the architecture the weights were made for.")
    return sam.eval(), arch


def save_sam(path: str | Path, sam: nn.Module, arch: SamArchitecture, dtype: torch.dtype = torch.float32, extra: dict[str, str] | None = None) -> None:
    """Atomic safetensors with the architecture in its metadata (what load_sam reads back)."""
    from ovframe.training import save_weights

    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in sam.state_dict().items()}
    save_weights(path, state, {ARCH_KEY: arch.model_dump_json(), **(extra or {})})
