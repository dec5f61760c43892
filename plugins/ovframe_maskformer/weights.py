"""Trained MaskFormer weights: safetensors whose metadata records the architecture they were made for.

Metadata keys (all strings):
    ovframe.maskformer.architecture   JSON of MaskFormerConfig.architecture() (embed_dim filled in)
    ovframe.maskformer.classes        JSON list of the class names trained on (informative)
    ovframe.maskformer.text_model     model_id of the text encoder whose embeddings it was trained against
Loading compares the recipe's architecture with the file's and names every key that differs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ovframe import BadInput
from ovframe.loading import load_exact

from .config import MaskFormerConfig

ARCH_KEY = "ovframe.maskformer.architecture"
CLASSES_KEY = "ovframe.maskformer.classes"
TEXT_MODEL_KEY = "ovframe.maskformer.text_model"


def _normalised(arch: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(arch))


def architecture_of(cfg: MaskFormerConfig, embed_dim: int) -> dict[str, Any]:
    return _normalised({**cfg.architecture(), "embed_dim": embed_dim})


def read_metadata(path: str | Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:  # safetensors raises its own error types for truncated/corrupt files
        raise BadInput(f"{path}: not a readable safetensors file ({e}); train the weights again or get the file again") from None


def file_architecture(path: str | Path) -> dict[str, Any] | None:
    meta = read_metadata(path)
    if ARCH_KEY not in meta:
        return None
    try:
        arch = json.loads(meta[ARCH_KEY])
        int(arch["embed_dim"])
    except (ValueError, TypeError, KeyError, RecursionError) as e:
        raise BadInput(f"{path}: the architecture recorded in these weights cannot be read ({type(e).__name__}: {e}); get the file again") from None
    if not isinstance(arch, dict):
        raise BadInput(f"{path}: the architecture recorded in these weights is not a mapping; get the file again")
    return arch


def check_architecture(path: str | Path, cfg: MaskFormerConfig) -> dict[str, Any] | None:
    """Raise BadInput naming every architecture key where the recipe and the weights file differ.

    A key the recipe leaves unset (None: `embed_dim`, `out_norm` of a timm backbone) takes the file's value; a key
    the file does not record (written before the key existed) counts as its default. Returns the file's
    architecture (None when the file records none)."""
    saved = file_architecture(path)
    if saved is None:
        return None
    fields = MaskFormerConfig.model_fields
    defaults = _normalised({k: fields[k].get_default(call_default_factory=True) for k in fields if k in saved or k in cfg.architecture()})
    saved = {**defaults, **saved}
    wanted = _normalised(cfg.architecture())
    diffs = [
        f"{k}: the recipe has {wanted.get(k)!r}, the weights were trained with {saved.get(k)!r}"
        for k in wanted
        if wanted[k] is not None and wanted.get(k) != saved.get(k)
    ]
    if diffs:
        raise BadInput(
            f"{path}: these weights do not match the recipe's maskformer architecture:\n  "
            + "\n  ".join(diffs)
            + "\nSet those keys in the recipe's `proposals:` section as the weights have them, or use weights trained for this architecture."
        )
    return saved


def config_for_weights(cfg: MaskFormerConfig, saved: dict[str, Any]) -> MaskFormerConfig:
    """The recipe's config with the keys it leaves unset taken from the weights' architecture."""
    return cfg.model_copy(update={k: saved[k] for k in cfg.architecture() if getattr(cfg, k) is None and saved.get(k) is not None})


def save_maskformer(path: str | Path, model: torch.nn.Module, cfg: MaskFormerConfig, *, classes: list[str], text_model: str,
                    dtype: torch.dtype = torch.float32) -> None:
    from ovframe.training import save_weights

    meta = {
        ARCH_KEY: json.dumps(architecture_of(cfg, int(model.embed_dim))),
        CLASSES_KEY: json.dumps(list(classes)),
        TEXT_MODEL_KEY: text_model,
    }
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    save_weights(path, state, meta)


def load_state(model: torch.nn.Module, path: str | Path) -> None:
    """Load every tensor of the model from `path`; errors name the keys and shapes that differ."""
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except Exception as e:
        raise BadInput(f"{path}: not a readable safetensors file ({e})") from None
    load_exact(model, state, path, "the recipe's maskformer architecture")
