"""A CLIP built from an open_clip model config, its tokenizer, and the two files it is shipped as.

The files are what ovframe's CLIP components load (`model: <json>`, `pretrained: <safetensors>`):
    clip.json          {"model_cfg": {embed_dim, vision_cfg, text_cfg, ...}, "preprocess_cfg": {mean, std}}
    clip.safetensors   the open_clip model's state_dict (float32 or float16)

A text_cfg may name its own BPE merges file, `tokenizer_kwargs: {bpe_path: ...}` (a smaller vocabulary
makes a much smaller token embedding); `pkg://PACKAGE/rel` paths, and paths relative to the JSON's
folder, are resolved as ovframe's CLIP loader resolves them.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable

import torch

from ovframe import BadInput
from ovframe.files import resolve_path
from ovframe.io import atomic_path, write_text

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def read_model_config(model: dict[str, Any] | str) -> dict[str, Any]:
    """The open_clip model config: given inline, or read from a JSON file (raw or {"model_cfg": ...})."""
    if isinstance(model, dict):
        cfg = copy.deepcopy(model)
    else:
        path = resolve_path(model)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise BadInput(f"cannot read the model config {path}: {e.strerror or e}") from None
        except ValueError as e:
            raise BadInput(f"{path}: not valid JSON ({e})") from None
        cfg = data.get("model_cfg", data) if isinstance(data, dict) else None
    if not isinstance(cfg, dict) or not {"embed_dim", "vision_cfg", "text_cfg"} <= set(cfg):
        raise BadInput(f"an open_clip model config needs embed_dim, vision_cfg and text_cfg; got {model!r:.200}")
    return cfg


def build_clip(model_cfg: dict[str, Any]) -> torch.nn.Module:
    """A randomly initialised open_clip CLIP of this config."""
    from open_clip.model import CLIP

    try:
        return CLIP(**copy.deepcopy(model_cfg))
    except TypeError as e:
        raise BadInput(f"model config: {e}") from None


def build_tokenizer(model_cfg: dict[str, Any], folder: Path | None = None) -> Callable[[list[str]], torch.Tensor]:
    """open_clip's SimpleTokenizer at the config's context length, with its own BPE file if it names one
    (pkg://, or a path relative to `folder`, the model JSON's folder, as ovframe's CLIP loader reads it)."""
    from open_clip.tokenizer import SimpleTokenizer

    text_cfg = model_cfg["text_cfg"]
    kwargs = dict(text_cfg.get("tokenizer_kwargs", {}))
    if isinstance(kwargs.get("bpe_path"), str):
        bpe = kwargs["bpe_path"]
        local = folder / bpe if folder is not None and not bpe.startswith("pkg://") else None
        kwargs["bpe_path"] = str(local if local is not None and local.exists() else resolve_path(bpe))
    tokenizer = SimpleTokenizer(context_length=int(text_cfg.get("context_length", 77)), **kwargs)
    vocab = int(text_cfg.get("vocab_size", 49408))
    if len(tokenizer.encoder) > vocab:
        raise BadInput(f"the tokenizer has {len(tokenizer.encoder)} tokens but text_cfg.vocab_size is {vocab}")
    return tokenizer


def save_clip(model: torch.nn.Module, model_cfg: dict[str, Any], out_dir: Path, *, mean=OPENAI_MEAN, std=OPENAI_STD,
              dtype: torch.dtype = torch.float32, stem: str = "clip") -> tuple[Path, Path]:
    """Write <stem>.json and <stem>.safetensors (atomically); return their paths."""
    from safetensors.torch import save_file

    config_path, weights_path = out_dir / f"{stem}.json", out_dir / f"{stem}.safetensors"
    write_text(config_path, json.dumps({"model_cfg": model_cfg, "preprocess_cfg": {"mean": list(mean), "std": list(std)}}, indent=2) + "\n")
    state = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous().clone()
             for k, v in model.state_dict().items()}
    with atomic_path(weights_path) as tmp:
        save_file(state, str(tmp))
    return config_path, weights_path


def load_clip_files(config_path: str | Path, weights_path: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A CLIP from the two files (float32, eval mode) and the JSON's contents."""
    from safetensors.torch import load_file

    data = json.loads(resolve_path(config_path).read_text(encoding="utf-8"))
    model = build_clip(data["model_cfg"])
    state = load_file(str(resolve_path(weights_path)))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return model.eval(), data
