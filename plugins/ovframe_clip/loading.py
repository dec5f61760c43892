"""Loading open_clip models and their weights, once per process.

`model` names an architecture: an open_clip model name, or an open_clip model-config JSON (a raw
`{"embed_dim", "vision_cfg", "text_cfg"}` or open_clip's `{"model_cfg": ..., "preprocess_cfg": ...}`).
`pretrained` names weights: an open_clip tag (resolved to open_clip's own cached download) or a local
file, read and recognised by checkpoints.py (open_clip, OpenAI and OVSeg layouts).

OpenAI and OVSeg weights were trained with QuickGELU, so `quick_gelu: auto` turns it on for them (open_clip's
plain `ViT-L-14` config uses GELU and would silently give different features).

The identity of a model (`model_id`, keying the text-embedding cache) is the architecture plus the
sha256 of the weights file; hashes are memoised on disk by (path, size, mtime).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ovframe import BadInput, RequiredFile
from ovframe.files import resolve_path
from ovframe.loading import skip_init

from .checkpoints import MASK_EMBEDDING_KEY, cache_root, read_checkpoint, weights_sha256  # noqa: F401 (re-exported)
from .config import ClipModelConfig

log = logging.getLogger("ovframe.clip")

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
MAX_CONFIG_BYTES = 16 * 2**20

OVSEG_HINT = (
    "OVSeg's released CLIP ViT-L/14 (mask-prompt tuned): the link in the README of "
    "https://github.com/facebookresearch/ov-seg; use it with `model: ViT-L-14`"
)


@dataclass
class LoadedClip:
    """An open_clip model with its weights, frozen, in eval mode. Shared: never modify it in place."""

    model: torch.nn.Module
    tokenizer: Callable[[list[str]], torch.Tensor]
    model_id: str
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights_format: str
    extras: dict[str, torch.Tensor] = field(default_factory=dict)


_LOADED: dict[tuple, LoadedClip] = {}


def clear_loaded() -> None:
    """Forget the process's loaded models (tests)."""
    _LOADED.clear()


# -- what the config names -------------------------------------------------------------------
def is_path(value: str) -> bool:
    return (
        value.startswith(("pkg://", "~", "/", "./", "../"))
        or "/" in value
        or os.sep in value
        or value.lower().endswith((".json", *WEIGHT_SUFFIXES))
    )


def required_files(cfg: ClipModelConfig) -> list[RequiredFile]:
    out = []
    if is_path(cfg.model):
        out.append(
            RequiredFile(
                str(resolve_path(cfg.model)),
                f"open_clip model config (JSON) named by `model: {cfg.model}`",
                _how_to_get(cfg.model, "it ships beside the weights it describes"),
            )
        )
    if is_path(cfg.pretrained):
        out.append(
            RequiredFile(
                str(resolve_path(cfg.pretrained)),
                f"CLIP weights for model {cfg.model}",
                _how_to_get(cfg.pretrained, _weights_hint(cfg)),
                cfg.sha256,
            )
        )
    return out


def _how_to_get(path: str, default: str) -> str:
    if path.startswith("pkg://"):
        package = path[len("pkg://"):].partition("/")[0]
        return f"shipped inside the Python package {package}; reinstall ovframe (pip install --force-reinstall --no-deps ovframe, or pip install -e . in a checkout)"
    return default


def _weights_hint(cfg: ClipModelConfig) -> str:
    name = Path(cfg.pretrained).name
    if name.startswith("ovseg_"):
        return OVSEG_HINT
    if is_path(cfg.model):
        return "the weights that go with this model config (a .safetensors state dict of the open_clip model)"
    return (
        f"a checkpoint of open_clip model {cfg.model}; or use a pretrained tag instead "
        f"(python -c \"import open_clip; print(open_clip.list_pretrained_tags_by_model('{cfg.model}'))\"), "
        f"downloaded once where there is internet (open_clip caches it under ~/.cache/huggingface)"
    )


# -- architectures ---------------------------------------------------------------------------
@dataclass
class Architecture:
    name: str  # for people and model ids
    identity: str  # name, or name + hash of the JSON config
    model_cfg: dict[str, Any] | None  # from a JSON file; None for an open_clip name
    preprocess: dict[str, Any]
    folder: Path | None = None  # of the JSON file: relative paths inside it are relative to it


def architecture(model: str) -> Architecture:
    import open_clip

    if is_path(model):
        path = resolve_path(model)
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_CONFIG_BYTES + 1)
            if len(raw) > MAX_CONFIG_BYTES:
                raise BadInput(f"{path}: larger than {MAX_CONFIG_BYTES // 2**20} MiB: not an open_clip model config")
            data = json.loads(raw)
        except OSError as e:
            raise BadInput(f"cannot read the model config {path}: {e.strerror or e}") from None
        except (ValueError, RecursionError) as e:
            raise BadInput(f"{path}: not valid JSON ({type(e).__name__}: {str(e)[:200]})") from None
        cfg = data.get("model_cfg", data) if isinstance(data, dict) else None
        if not isinstance(cfg, dict) or not {"embed_dim", "vision_cfg", "text_cfg"} <= set(cfg):
            raise BadInput(
                f"{path}: an open_clip model config needs embed_dim, vision_cfg and text_cfg "
                "(or open_clip_config.json's {\"model_cfg\": ...})"
            )
        preprocess = data.get("preprocess_cfg", {}) if "model_cfg" in data else {}
        digest = hashlib.sha256(raw).hexdigest()[:16]
        return Architecture(path.stem, f"{path.stem}#{digest}", cfg, preprocess, path.parent)
    if open_clip.get_model_config(model) is None:
        import difflib

        close = difflib.get_close_matches(model, open_clip.list_models(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise BadInput(
            f"model {model!r} is neither an open_clip model name nor a path to a model-config JSON.{hint} "
            "(open_clip.list_models() lists the names)"
        )
    return Architecture(model, model, None, {})


def _build(arch: Architecture, quick_gelu: bool | None) -> torch.nn.Module:
    import open_clip
    from open_clip.model import CLIP, CustomTextCLIP

    if arch.model_cfg is None:
        kwargs: dict[str, Any] = {} if quick_gelu is None else {"quick_gelu": quick_gelu}
        return open_clip.create_model(arch.name, pretrained=None, pretrained_text=False, **kwargs)
    cfg = copy.deepcopy(arch.model_cfg)
    if quick_gelu is not None:
        cfg["quick_gelu"] = quick_gelu
    custom_text = cfg.pop("custom_text", False) or "hf_model_name" in cfg.get("text_cfg", {})
    if "multimodal_cfg" in cfg:
        from open_clip.coca_model import CoCa

        cls: type = CoCa
    else:
        cls = CustomTextCLIP if custom_text else CLIP
    try:
        return cls(**cfg)
    except TypeError as e:
        raise BadInput(f"model config {arch.name}: {e}") from None


def _tokenizer(arch: Architecture) -> Callable[[list[str]], torch.Tensor]:
    import open_clip
    from open_clip.tokenizer import HFTokenizer, SimpleTokenizer

    if arch.model_cfg is None:
        return open_clip.get_tokenizer(arch.name)
    text_cfg = arch.model_cfg.get("text_cfg", {})
    context_length = int(text_cfg.get("context_length", 77))
    kwargs = dict(text_cfg.get("tokenizer_kwargs", {}))
    if isinstance(kwargs.get("bpe_path"), str):  # a model's own BPE merges: pkg://, or relative to the JSON
        bpe = kwargs["bpe_path"]
        local = arch.folder / bpe if arch.folder is not None and not bpe.startswith("pkg://") else None
        kwargs["bpe_path"] = str(local if local is not None and local.exists() else resolve_path(bpe))
    if text_cfg.get("hf_tokenizer_name"):
        return HFTokenizer(text_cfg["hf_tokenizer_name"], context_length=context_length, **kwargs)
    return SimpleTokenizer(context_length=context_length, **kwargs)


def _load_into(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, arch: Architecture) -> None:
    from open_clip.model import convert_to_custom_text_state_dict, resize_pos_embed

    if "positional_embedding" in state and not hasattr(model, "positional_embedding"):
        state = convert_to_custom_text_state_dict(state)
    scale = getattr(model, "logit_scale", None)
    if scale is not None and "logit_scale" in state and state["logit_scale"].ndim != scale.ndim:
        state["logit_scale"] = state["logit_scale"].reshape(scale.shape)
    if getattr(model, "logit_bias", None) is not None and "logit_bias" not in state:
        state["logit_bias"] = torch.zeros_like(model.logit_bias)
    resize_pos_embed(state, model)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        lines = [line.strip() for line in str(e).splitlines() if "size mismatch" in line][:4]
        raise BadInput(
            f"{path}: the weights do not fit model {arch.name}: {'; '.join(lines) or e}. "
            "Check that `model:` names the architecture these weights were trained with."
        ) from None
    if result.missing_keys or result.unexpected_keys:
        raise BadInput(
            f"{path}: the weights do not fit model {arch.name}: missing {result.missing_keys[:6]}, "
            f"unexpected {result.unexpected_keys[:6]}. Check that `model:` names the architecture these "
            "weights were trained with."
        )


def _resolve_weights(cfg: ClipModelConfig, arch: Architecture) -> tuple[Path, dict[str, Any]]:
    """The local weights file, and the open_clip pretrained config when `pretrained` is a tag."""
    if is_path(cfg.pretrained):
        path = resolve_path(cfg.pretrained)
        if not path.is_file():
            raise BadInput(f"CLIP weights {path} not found. Get them: {_weights_hint(cfg)}")
        return path, {}
    import open_clip
    from open_clip.pretrained import download_pretrained

    if arch.model_cfg is not None:
        raise BadInput(
            f"pretrained {cfg.pretrained!r} looks like an open_clip tag, but tags only go with open_clip model "
            f"names; give the path of the weights for {cfg.model}"
        )
    tag_cfg = open_clip.get_pretrained_cfg(arch.name, cfg.pretrained)
    if not tag_cfg:
        tags = open_clip.list_pretrained_tags_by_model(arch.name)
        raise BadInput(
            f"{cfg.pretrained!r} is not an open_clip pretrained tag of {arch.name} (tags: {', '.join(tags) or 'none'}) "
            "nor a path to a weights file"
        )
    try:
        path = Path(download_pretrained(tag_cfg))
    except Exception as e:  # no network, no cached copy
        raise BadInput(
            f"cannot get the weights of open_clip {arch.name} / {cfg.pretrained} ({type(e).__name__}: {e}). "
            "Download them once where there is internet (open_clip caches them under ~/.cache/huggingface), "
            "or point `pretrained:` at a local weights file."
        ) from None
    return path, tag_cfg


def load_clip(cfg: ClipModelConfig) -> LoadedClip:
    """The model `cfg` names, loaded once per process (shared by the text encoder and the classifiers)."""
    arch = architecture(cfg.model)
    path, tag_cfg = _resolve_weights(cfg, arch)
    st = os.stat(path)
    key = (arch.identity, os.path.realpath(path), st.st_size, st.st_mtime_ns, cfg.quick_gelu)
    digest = weights_sha256(path)
    if cfg.sha256 and digest != cfg.sha256.lower():
        raise BadInput(f"{path}: sha256 is {digest}, the recipe pins {cfg.sha256}; the file is corrupt or another version")
    if key in _LOADED:
        return _LOADED[key]
    state, fmt, extras = read_checkpoint(path, allow_torchscript=cfg.allow_torchscript)
    if isinstance(cfg.quick_gelu, bool):
        quick_gelu: bool | None = cfg.quick_gelu
    elif tag_cfg:
        quick_gelu = bool(tag_cfg.get("quick_gelu", False))
    elif fmt in ("openai", "ovseg"):
        quick_gelu = True
    else:
        quick_gelu = None
    with skip_init():  # every tensor is loaded next, and a missing one is an error
        model = _build(arch, quick_gelu)
    _load_into(model, state, path, arch)
    model.eval().requires_grad_(False)
    effective_qg = quick_gelu if quick_gelu is not None else bool((arch.model_cfg or {}).get("quick_gelu", False))
    preprocess = {**getattr(model.visual, "preprocess_cfg", {}), **arch.preprocess}
    mean = tuple(tag_cfg.get("mean") or preprocess.get("mean") or OPENAI_MEAN)
    std = tuple(tag_cfg.get("std") or preprocess.get("std") or OPENAI_STD)
    size = getattr(model.visual, "image_size", None)
    size = int(size[0] if isinstance(size, (tuple, list)) else size or 224)
    loaded = LoadedClip(
        model=model,
        tokenizer=_tokenizer(arch),
        model_id=f"{arch.identity}@{digest}{'+quickgelu' if effective_qg else ''}",
        image_size=size,
        mean=mean,  # type: ignore[arg-type]
        std=std,  # type: ignore[arg-type]
        weights_format=fmt,
        extras=extras,
    )
    log.info("loaded CLIP %s from %s (%s format)", arch.name, path, fmt)
    _LOADED[key] = loaded
    return loaded
