"""Adapters of the CLIP region classifiers: mask prompt tuning, full fine-tuning, and both.

Each takes the classifier's RegionEncoder (see encoders.py) and returns the adapted one, with the
parameters a training run should update marked requires_grad. The shared, cached CLIP model is never
modified: an adapter that changes the image tower's weights works on its own copy.

Weights files (safetensors, written by train-adapter as runs/<name>/adapter.safetensors):
    mask-prompt-tuning   prompts [depth, grid*grid | 1, width]
    full-finetune        visual.* (the image tower's state dict)
    mpt+ft               prompts and visual.*
"""

from __future__ import annotations

import copy
import logging
from typing import Any, ClassVar

import torch

from ovframe import Adapter, BadInput, RequiredFile
from ovframe.files import resolve_path

from .config import FullFinetuneConfig, MaskPromptConfig, MaskPromptFinetuneConfig
from .encoders import MaskPromptEncoder, PlainEncoder, RegionEncoder, check_vit
from .loading import MASK_EMBEDDING_KEY, weights_sha256

log = logging.getLogger("ovframe.clip")

HOW_TO_GET = "made by a train-adapter run (runs/<name>/adapter.safetensors); see docs/clip.md"


def read_adapter_file(path_text: str, sha256: str | None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    path = resolve_path(path_text)
    if not path.is_file():
        raise BadInput(f"adapter weights {path} not found; {HOW_TO_GET}")
    if sha256 and weights_sha256(path) != sha256.lower():
        raise BadInput(f"{path}: sha256 does not match the pinned {sha256}; the file is corrupt or another version")
    try:
        with safe_open(str(path), "pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except Exception as e:
        raise BadInput(f"{path}: not a readable safetensors file ({e})") from None


def _required(path: str | None, sha256: str | None, what: str) -> list[RequiredFile]:
    return [RequiredFile(str(resolve_path(path)), what, HOW_TO_GET, sha256)] if path else []


def _check_model(meta: dict[str, str], encoder: RegionEncoder, path: str) -> None:
    made_for = meta.get("model_id")
    if made_for and made_for != encoder.model_id:
        log.warning("adapter weights %s were trained on CLIP %s, the classifier runs %s", path, made_for, encoder.model_id)


def _load_tower(visual: torch.nn.Module, tensors: dict[str, torch.Tensor], path: str) -> None:
    state = {k[len("visual."):]: v for k, v in tensors.items() if k.startswith("visual.")}
    try:
        result = visual.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise BadInput(f"{path}: image-tower weights do not fit this model ({str(e).splitlines()[0]})") from None
    if result.missing_keys or result.unexpected_keys:
        raise BadInput(
            f"{path}: image-tower weights do not fit this model: missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )


class _PromptSource:
    """Where prompts come from: a weights file, the checkpoint's visual.mask_embedding, or a fresh init."""

    config: Any
    name: str

    def prompts(self, encoder: RegionEncoder, tensors: dict[str, torch.Tensor] | None, path: str | None) -> torch.Tensor:
        cfg = self.config
        visual = encoder.visual
        try:
            check_vit(visual)
        except ValueError as e:
            raise BadInput(f"adapter {self.name!r}: {e}") from None
        grid = visual.grid_size[0] * visual.grid_size[1]
        width = visual.conv1.out_channels
        expected = (cfg.depth, 1 if cfg.shared else grid, width)
        layers = len(visual.transformer.resblocks)
        if cfg.depth > layers:
            raise BadInput(f"adapter {self.name!r}: depth {cfg.depth} exceeds the {layers} blocks of the image tower")
        if tensors is not None:
            if "prompts" not in tensors:
                raise BadInput(f"{path}: holds no `prompts` tensor (keys: {sorted(tensors)[:6]}); is it a mask-prompt file?")
            prompts, origin = tensors["prompts"], str(path)
        elif MASK_EMBEDDING_KEY in encoder.extras:
            prompts, origin = encoder.extras[MASK_EMBEDDING_KEY], f"the CLIP checkpoint's {MASK_EMBEDDING_KEY}"
        else:
            log.info("%s: fresh prompts %s (normal, std %g): train them with train-adapter", self.name, expected, cfg.init_std)
            return torch.randn(expected) * cfg.init_std
        if tuple(prompts.shape) != expected:
            raise BadInput(
                f"adapter {self.name!r}: the prompts of {origin} are {tuple(prompts.shape)}, the config and model "
                f"expect {expected} (depth {cfg.depth}, shared {cfg.shared}, grid {grid}, width {width}); "
                f"set depth/shared to match"
            )
        return prompts.float()


class MaskPromptTuning(_PromptSource, Adapter):
    name = "mask-prompt-tuning"
    Config = MaskPromptConfig
    train_defaults: ClassVar[dict[str, float]] = {"lr": 2e-2, "weight_decay": 0.0}

    @classmethod
    def required_files(cls, config: MaskPromptConfig):
        return _required(config.weights, config.sha256, "mask prompts (mask-prompt-tuning adapter weights)")

    def attach(self, model: RegionEncoder) -> MaskPromptEncoder:
        tensors = None
        if self.config.weights:
            tensors, meta = read_adapter_file(self.config.weights, self.config.sha256)
            _check_model(meta, model, self.config.weights)
        prompts = self.prompts(model, tensors, self.config.weights)
        model.visual.requires_grad_(False)
        return MaskPromptEncoder(model.visual, prompts, model.image_size, model.model_id, model.extras)


class FullFinetune(Adapter):
    name = "full-finetune"
    Config = FullFinetuneConfig
    train_defaults: ClassVar[dict[str, float]] = {"lr": 5e-6, "weight_decay": 0.2}

    @classmethod
    def required_files(cls, config: FullFinetuneConfig):
        return _required(config.weights, config.sha256, "fine-tuned image tower (full-finetune adapter weights)")

    def attach(self, model: RegionEncoder) -> PlainEncoder:
        visual = copy.deepcopy(model.visual)
        if self.config.weights:
            tensors, meta = read_adapter_file(self.config.weights, self.config.sha256)
            _check_model(meta, model, self.config.weights)
            _load_tower(visual, tensors, self.config.weights)
        else:
            log.info("full-finetune without weights: the image tower starts from the CLIP checkpoint (train it)")
        visual.requires_grad_(True)
        return PlainEncoder(visual, model.image_size, model.model_id, model.extras, save_visual=True)


class MaskPromptFinetune(_PromptSource, Adapter):
    name = "mpt+ft"
    Config = MaskPromptFinetuneConfig
    train_defaults: ClassVar[dict[str, float]] = {"lr": 2e-2, "weight_decay": 0.0}

    @classmethod
    def required_files(cls, config: MaskPromptFinetuneConfig):
        return _required(config.finetuned, config.finetuned_sha256, "fine-tuned image tower to start MPT+FT from") + _required(
            config.weights, config.sha256, "MPT+FT adapter weights (image tower and prompts)"
        )

    def attach(self, model: RegionEncoder) -> MaskPromptEncoder:
        cfg = self.config
        visual = model.visual
        tensors = None
        if cfg.weights:
            tensors, meta = read_adapter_file(cfg.weights, cfg.sha256)
            _check_model(meta, model, cfg.weights)
        tower_from = None
        if tensors is not None and any(k.startswith("visual.") for k in tensors):
            tower, tower_from = tensors, cfg.weights
        elif cfg.finetuned:
            tower, meta = read_adapter_file(cfg.finetuned, cfg.finetuned_sha256)
            _check_model(meta, model, cfg.finetuned)
            tower_from = cfg.finetuned
        if tower_from is not None:
            visual = copy.deepcopy(visual)
            _load_tower(visual, tower, tower_from)
        else:
            log.info("mpt+ft: no fine-tuned tower given; the CLIP checkpoint's own image tower is used")
        prompts = self.prompts(model, tensors, cfg.weights)
        visual.requires_grad_(False)
        return MaskPromptEncoder(visual, prompts, model.image_size, model.model_id, model.extras, save_visual=True)


def adapter_train_defaults(adapter: Adapter) -> dict[str, float]:
    return dict(getattr(adapter, "train_defaults", {}))
