"""Convert the released OVSeg / MaskFormer checkpoint (detectron2 layout) into `maskformer` weights.

    python -m ovframe_maskformer.convert ovseg_swinbase_vitL14_ft_mpt.pth maskformer_swinb_ovseg.safetensors

The checkpoint is read with torch.load(weights_only=True) (a {"model": state_dict} dict of tensors; a
detectron2 .pkl of pickled NumPy arrays is refused). The architecture is read off the tensors (queries,
widths, decoder layers, CLIP dimension); the backbone is named on the command line. Mapping:

    backbone.patch_embed / layers.i.blocks      -> backbone.body.* (timm's Swin; stage i's downsample moves to
                                                   stage i+1, as timm's own Swin checkpoint filter does)
    backbone.norm{i}                            -> backbone.out_norms.{i}
    sem_seg_head.pixel_decoder.adapter_{n}      -> pixel_decoder.lateral_convs.{n-1}   (conv + GN)
    sem_seg_head.pixel_decoder.layer_{n}        -> pixel_decoder.output_convs.{n-1}
    sem_seg_head.pixel_decoder.mask_features    -> pixel_decoder.mask_features
    sem_seg_head.predictor.transformer.decoder.layers.{l} / .norm -> predictor.layers.{l} / predictor.decoder_norm
    sem_seg_head.predictor.{query_embed, input_proj, class_embed, mask_embed} -> predictor.*
    clip_adapter.non_object_embedding           -> no_object_embedding
The CLIP model inside the checkpoint (clip_adapter.clip_model.*) and buffers (pixel_mean, criterion.*) are
left out: the region classifier and the text encoder are other components.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import torch

from ovframe import BadInput

from .config import MaskFormerConfig

HEAD = "sem_seg_head."
SKIPPED = ("clip_adapter.clip_model.", "pixel_mean", "pixel_std", "criterion.", "clip_adapter.pixel_")


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise BadInput(
            f"{path}: cannot be read safely with torch.load(weights_only=True) ({type(e).__name__}: {str(e)[:200]}). "
            "A detectron2 .pkl of NumPy arrays is not supported; use the released .pth checkpoint."
        ) from None
    state = obj.get("model", obj) if isinstance(obj, dict) else obj
    if not isinstance(state, dict) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise BadInput(f"{path}: holds no state dict of tensors")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def infer_config(state: dict[str, torch.Tensor], backbone: str, nheads: int, **extra: Any) -> MaskFormerConfig:
    """The architecture the tensors imply (nheads cannot be read off them)."""
    p = HEAD + "predictor."
    need = [p + "query_embed.weight", HEAD + "pixel_decoder.mask_features.weight", "clip_adapter.non_object_embedding"]
    missing = [k for k in need if k not in state]
    if missing:
        raise BadInput(f"not an OVSeg/MaskFormer checkpoint: no {missing}")
    queries, hidden = state[p + "query_embed.weight"].shape
    layers = sorted({int(m.group(1)) for k in state for m in [re.match(re.escape(p) + r"transformer\.decoder\.layers\.(\d+)\.", k)] if m})
    embed = sorted({int(m.group(1)) for k in state for m in [re.match(re.escape(p) + r"class_embed\.layers\.(\d+)\.weight", k)] if m})
    out_norms = sorted({int(m.group(1)) for k in state for m in [re.match(r"backbone\.norm(\d+)\.weight", k)] if m})
    return MaskFormerConfig(
        backbone=backbone,
        out_indices=tuple(out_norms) or (0, 1, 2, 3),
        out_norm=bool(out_norms),
        conv_dim=int(state[HEAD + "pixel_decoder.mask_features.weight"].shape[1]),
        mask_dim=int(state[HEAD + "pixel_decoder.mask_features.weight"].shape[0]),
        hidden_dim=int(hidden),
        num_queries=int(queries),
        dec_layers=len(layers),
        nheads=nheads,
        dim_feedforward=int(state[p + "transformer.decoder.layers.0.linear1.weight"].shape[0]),
        embed_dim=int(state["clip_adapter.non_object_embedding"].shape[1]),
        embed_hidden_dim=int(state[p + f"class_embed.layers.{embed[0]}.weight"].shape[0]),
        embed_layers=len(embed),
        **extra,
    )


def convert_state(state: dict[str, torch.Tensor], model: torch.nn.Module, backbone: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """detectron2 keys -> this plugin's keys; returns (converted, keys left out)."""
    import timm

    out: dict[str, torch.Tensor] = {}
    swin: dict[str, torch.Tensor] = {}
    left: list[str] = []
    p = HEAD + "predictor."
    for k, v in state.items():
        if k.startswith("backbone."):
            m = re.match(r"backbone\.norm(\d+)\.(.+)", k)
            if m:
                out[f"backbone.out_norms.{model.backbone_out_index(int(m.group(1)))}.{m.group(2)}"] = v
            else:
                swin[k[len("backbone."):]] = v
        elif (m := re.match(re.escape(HEAD) + r"pixel_decoder\.(adapter|layer)_(\d+)\.(norm\.)?(weight|bias)$", k)):
            kind = "lateral_convs" if m.group(1) == "adapter" else "output_convs"
            out[f"pixel_decoder.{kind}.{int(m.group(2)) - 1}.{'norm' if m.group(3) else 'conv'}.{m.group(4)}"] = v
        elif k.startswith(HEAD + "pixel_decoder.mask_features."):
            out[k[len(HEAD):]] = v
        elif k.startswith(p + "transformer.decoder.layers."):
            out["predictor.layers." + k[len(p + "transformer.decoder.layers."):]] = v
        elif k.startswith(p + "transformer.decoder.norm."):
            out["predictor.decoder_norm." + k[len(p + "transformer.decoder.norm."):]] = v
        elif k.startswith(tuple(p + n for n in ("query_embed.", "input_proj.", "class_embed.", "mask_embed."))):
            out["predictor." + k[len(p):]] = v
        elif k == "clip_adapter.non_object_embedding":
            out["no_object_embedding"] = v
        else:
            left.append(k)
    if swin:
        full = timm.create_model(backbone, pretrained=False)
        from timm.models.swin_transformer import checkpoint_filter_fn

        for k, v in checkpoint_filter_fn(swin, full).items():
            out["backbone.body." + re.sub(r"^layers\.(\d+)\.", r"layers_\1.", k)] = v
    return out, [k for k in left if not k.startswith(SKIPPED)]


def convert(src: str | Path, dst: str | Path, *, backbone: str = "swin_base_patch4_window12_384", nheads: int = 8, **extra: Any) -> MaskFormerConfig:
    from .model import MaskFormerModel
    from .weights import load_state, save_maskformer

    state = read_checkpoint(src)
    cfg = infer_config(state, backbone, nheads, **extra)
    model = MaskFormerModel(cfg, int(cfg.embed_dim or 0))
    converted, left = convert_state(state, model, backbone)
    tmp = Path(str(dst) + ".unchecked.safetensors")
    from ovframe.training import save_weights

    save_weights(tmp, converted)
    try:
        load_state(model, tmp)  # every tensor present, every shape right
    finally:
        tmp.unlink(missing_ok=True)
    save_maskformer(dst, model, cfg, classes=[], text_model=f"converted from {Path(src).name}")
    if left:
        print(f"left out {len(left)} tensor(s) this plugin does not use, e.g. {left[:5]}")
    return cfg


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ovframe_maskformer.convert", description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", help="the detectron2 checkpoint (.pth), e.g. ovseg_swinbase_vitL14_ft_mpt.pth")
    ap.add_argument("output", help="the safetensors file to write")
    ap.add_argument("--backbone", default="swin_base_patch4_window12_384", help="timm name of the backbone (default: %(default)s)")
    ap.add_argument("--nheads", type=int, default=8, help="decoder attention heads (not readable from the tensors; default %(default)s)")
    args = ap.parse_args(argv)
    try:
        cfg = convert(args.checkpoint, args.output, backbone=args.backbone, nheads=args.nheads)
    except BadInput as e:
        print(f"error: {e}")
        return 2
    arch = {k: v for k, v in cfg.architecture().items() if v != MaskFormerConfig.model_fields[k].default}
    print(f"wrote {args.output}\nrecipe: proposals: {{plugin: maskformer, weights: {args.output}"
          + "".join(f", {k}: {list(v) if isinstance(v, tuple) else v}" for k, v in arch.items()) + "}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
