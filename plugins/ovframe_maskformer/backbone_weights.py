"""ImageNet initialisation of the d2 backbones from local files (never downloaded, never unpickled).

- Swin: the official Swin Transformer release (`swin_base_patch4_window12_384_22k.pth`: {"model": state dict},
  the file MaskFormer/OVSeg convert to their `.pkl`), or the same tensors as safetensors. Its classification
  head and final `norm` are not part of the backbone; its `attn_mask` / `relative_position_index` buffers are
  recomputed here (the index is checked). The per-stage output norms `norm{i}` start at identity, as in
  detectron2 where the ImageNet file has none.
- ResNet: a detectron2-layout state dict (`stem.conv1.weight`, `res2.0.conv1.norm.running_mean` ...), .pth or
  safetensors, optionally under `backbone.`. detectron2's own `.pkl` files hold pickled NumPy arrays, which
  are not read: convert one where you trust it (`pickle.load` -> `torch.from_numpy` -> safetensors).
"""

from __future__ import annotations

import re

import torch
from torch import nn

from ovframe import BadInput
from ovframe.files import resolve_path


def read_state(path: str) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file or of a .pth read with weights_only=True ({"model"|"state_dict": ...} unwrapped)."""
    file = resolve_path(path)
    if str(file).endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(str(file))
    if str(file).endswith(".pkl"):
        raise BadInput(f"{file}: a detectron2 .pkl holds pickled NumPy arrays, which ovframe never unpickles; convert it "
                       "to safetensors where you trust it (pickle.load -> torch.from_numpy per array -> safetensors.torch.save_file)")
    try:
        obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:
        raise BadInput(f"{file}: cannot be read with torch.load(weights_only=True) ({type(e).__name__}: {str(e)[:200]})") from None
    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise BadInput(f"{file}: holds no state dict of tensors")
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def load_d2_backbone_weights(body: nn.Module, path: str, name: str) -> None:
    from .swin import D2SwinBackbone, relative_position_index

    state = {re.sub(r"^(module\.)?(backbone\.)?", "", k): v for k, v in read_state(path).items()}
    own = body.state_dict()
    if isinstance(body, D2SwinBackbone):
        for k, v in list(state.items()):
            if k.endswith("relative_position_index"):
                if not torch.equal(v.long(), relative_position_index(int(round(v.shape[0] ** 0.5)))):
                    raise BadInput(f"{path}: {k} is not Swin's relative position index; is this a Swin checkpoint?")
                del state[k]
        drop = [k for k in state if k.startswith(("head.", "norm.")) or k.endswith("attn_mask")]
        for k in drop:
            del state[k]
        optional = {k for k in own if re.match(r"norm\d+\.", k)}  # per-stage output norms: identity when absent
    else:
        optional = {k for k in own if k.endswith(("running_mean", "running_var"))}  # Caffe2-style BN: weight/bias only
    if any(k.startswith("layers_") for k in state):
        raise BadInput(f"{path}: this is timm's Swin layout; backbone {name} takes the official Swin release "
                       "(github.com/microsoft/Swin-Transformer, {'model': ...}) or a detectron2-layout file")
    missing = [k for k in own if k not in state and k not in optional]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        parts = [f"missing {len(missing)}, e.g. {missing[:4]}"] if missing else []
        parts += [f"{len(unexpected)} not in {name}, e.g. {unexpected[:4]}"] if unexpected else []
        parts += [f"shapes (file vs model): {shapes[:4]}"] if shapes else []
        raise BadInput(f"{path}: not ImageNet weights of backbone {name}: " + "; ".join(parts))
    for k in optional - set(state):
        if k.endswith("running_var"):  # detectron2 loads weight/bias-only BN with mean 0, variance 1
            state[k] = torch.ones_like(own[k])
    body.load_state_dict(state, strict=False)
