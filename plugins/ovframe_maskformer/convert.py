"""Convert a released OVSeg / MaskFormer checkpoint (detectron2 layout) into `maskformer` weights.

    python -m ovframe_maskformer.convert ovseg_swinbase_vitL14_ft_mpt.pth weights/maskformer_swinb_ovseg.safetensors
    python -m ovframe_maskformer.convert ovseg_R101c_vitB16_ft_mpt.pth weights/maskformer_r101c_ovseg.safetensors

The checkpoint is read with torch.load(weights_only=True) (a {"model": state_dict, ...} dict; a detectron2 .pkl
of pickled NumPy arrays is refused). The architecture is read off the tensors: the backbone (the detectron2
Swin or ResNet of swin.py / resnet.py, named by the closest `d2-*` preset plus the numbers that differ),
queries, widths, decoder layers, CLIP dimension. Mapping:

    backbone.*                                  -> backbone.* (same names: the d2 backbones keep the release's)
    backbone.layers.i.blocks.j.attn.relative_position_index   checked against Swin's index, recomputed at load
    sem_seg_head.pixel_decoder.adapter_{n}      -> pixel_decoder.lateral_convs.{n-1}   (conv + GN)
    sem_seg_head.pixel_decoder.layer_{n}        -> pixel_decoder.output_convs.{n-1}
    sem_seg_head.pixel_decoder.mask_features    -> pixel_decoder.mask_features
    sem_seg_head.predictor.transformer.decoder.layers.{l} / .norm -> predictor.layers.{l} / predictor.decoder_norm
    sem_seg_head.predictor.{query_embed, input_proj, class_embed, mask_embed} -> predictor.*
    clip_adapter.non_object_embedding           -> no_object_embedding
Not converted, and reported: clip_adapter.clip_model.* (the fine-tuned CLIP with its mask prompts, which the
clip plugins read from the same file), clip_adapter.pixel_mean/pixel_std (CLIP's normalisation constants,
checked), criterion.* (training loss weights). Any other tensor stops the conversion: it would mean a layout
this converter does not know.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from ovframe import BadInput

from .config import D2_BACKBONES, SWIN_ARGS, MaskFormerConfig, d2_backbone_args

HEAD = "sem_seg_head."
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
NOT_CONVERTED = {
    "clip_adapter.clip_model.": "the fine-tuned CLIP (and its mask prompts): the clip plugins read it from this same file",
    "criterion.": "training loss weights",
    "clip_adapter.pixel_mean": "CLIP's pixel mean (checked: OpenAI's constants, which the clip plugins use)",
    "clip_adapter.pixel_std": "CLIP's pixel std (checked: OpenAI's constants, which the clip plugins use)",
    "pixel_mean": "ImageNet pixel mean (proposals.pixel_mean)",
    "pixel_std": "ImageNet pixel std (proposals.pixel_std)",
}


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


def _indices(state: dict[str, torch.Tensor], pattern: str) -> list[int]:
    return sorted({int(m.group(1)) for k in state for m in [re.match(pattern, k)] if m})


def infer_backbone(state: dict[str, torch.Tensor], name: str | None = None) -> tuple[str, dict[str, Any]]:
    """(d2 preset name, backbone_args: the numbers that differ from that preset) read off the backbone tensors."""
    b = "backbone."
    if b + "patch_embed.proj.weight" in state:
        family = "swin"
        layers = _indices(state, r"backbone\.layers\.(\d+)\.")
        table = [state[f"{b}layers.{i}.blocks.0.attn.relative_position_bias_table"] for i in layers]
        proj = state[b + "patch_embed.proj.weight"]
        args: dict[str, Any] = {
            "embed_dim": int(proj.shape[0]),
            "depths": [len(_indices(state, rf"backbone\.layers\.{i}\.blocks\.(\d+)\.")) for i in layers],
            "num_heads": [int(t.shape[1]) for t in table],
            "window_size": (round(table[0].shape[0] ** 0.5) + 1) // 2,
            "patch_size": int(proj.shape[-1]),
            "mlp_ratio": state[b + "layers.0.blocks.0.mlp.fc1.weight"].shape[0] / proj.shape[0],
            "patch_norm": b + "patch_embed.norm.weight" in state,
        }
    elif b + "stem.conv1.weight" in state:
        family = "resnet"
        deeplab = b + "stem.conv3.weight" in state
        res2 = [state[f"{b}res2.0.conv{n}.weight"] for n in (1, 2, 3)]
        blocks = tuple(len(_indices(state, rf"backbone\.res{s}\.(\d+)\.")) for s in (2, 3, 4, 5))
        depth = {(3, 4, 6, 3): 50, (3, 4, 23, 3): 101, (3, 8, 36, 3): 152}.get(blocks)
        if depth is None:
            raise BadInput(f"backbone: ResNet with {blocks} blocks per stage is not ResNet-50/101/152")
        groups = int(res2[0].shape[0] // res2[1].shape[1])
        args = {
            "depth": depth,
            "stem": "deeplab" if deeplab else "basic",
            "stem_out_channels": int(state[b + ("stem.conv3.weight" if deeplab else "stem.conv1.weight")].shape[0]),
            "res2_out_channels": int(res2[2].shape[0]),
            "width_per_group": int(res2[0].shape[0] // groups),
            "num_groups": groups,
        }
    else:
        raise BadInput("backbone: neither the detectron2 Swin (backbone.patch_embed.*) nor a detectron2 ResNet (backbone.stem.*)")
    if name is not None:
        if name not in D2_BACKBONES or D2_BACKBONES[name][0] != family:
            raise BadInput(f"--backbone {name}: the checkpoint holds a {family} backbone; use one of "
                           + ", ".join(n for n, (f, _) in D2_BACKBONES.items() if f == family))
        candidates = [name]
    else:
        candidates = [n for n, (f, _) in D2_BACKBONES.items() if f == family]

    def differences(preset: str) -> dict[str, Any]:
        full = d2_backbone_args(preset, {})[1]
        return {k: v for k, v in args.items() if full[k] != v}

    best = min(candidates, key=lambda n: len(differences(n)))
    return best, differences(best)


def infer_config(state: dict[str, torch.Tensor], nheads: int, backbone: str | None = None, **extra: Any) -> MaskFormerConfig:
    """The architecture the tensors imply (the decoder's nheads, and a ResNet's strides and dilations, cannot be
    read off them: they come from the preset)."""
    p = HEAD + "predictor."
    need = [p + "query_embed.weight", HEAD + "pixel_decoder.mask_features.weight", "clip_adapter.non_object_embedding"]
    missing = [k for k in need if k not in state]
    if missing:
        raise BadInput(f"not an OVSeg/MaskFormer checkpoint: no {missing}")
    name, args = infer_backbone(state, backbone)
    queries, hidden = state[p + "query_embed.weight"].shape
    layers = _indices(state, re.escape(p) + r"transformer\.decoder\.layers\.(\d+)\.")
    embed = _indices(state, re.escape(p) + r"class_embed\.layers\.(\d+)\.weight")
    levels = len(_indices(state, re.escape(HEAD) + r"pixel_decoder\.layer_(\d+)\."))
    stages = len(args.get("depths", SWIN_ARGS["depths"])) if D2_BACKBONES[name][0] == "swin" else 4
    out_norm = None
    if D2_BACKBONES[name][0] == "swin":
        out_norm = bool(_indices(state, r"backbone\.norm(\d+)\.weight"))
    return MaskFormerConfig(
        backbone=name,
        backbone_args=args,
        out_indices=tuple(range(stages - levels, stages)),
        out_norm=out_norm,
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


def convert_state(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """detectron2 keys -> this plugin's keys; returns (converted, {reason: count} of the tensors not converted)."""
    from .swin import relative_position_index

    out: dict[str, torch.Tensor] = {}
    report: Counter[str] = Counter()
    unknown: list[str] = []
    p = HEAD + "predictor."
    for k, v in state.items():
        if k.startswith("backbone.") and k.endswith(".relative_position_index"):
            window = round(v.shape[0] ** 0.5)
            if not torch.equal(v.long(), relative_position_index(window)):
                raise BadInput(f"{k} is not Swin's relative position index for a {window}x{window} window")
            report["Swin relative position index (checked, recomputed)"] += 1
        elif k.startswith("backbone."):
            out[k] = v
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
            reason = next((r for prefix, r in NOT_CONVERTED.items() if k == prefix or (prefix.endswith(".") and k.startswith(prefix))), None)
            if reason is None:
                unknown.append(k)
                continue
            if k in ("clip_adapter.pixel_mean", "clip_adapter.pixel_std"):
                want = torch.tensor(CLIP_MEAN if k.endswith("mean") else CLIP_STD) * 255.0
                if not torch.allclose(v.flatten().float(), want, rtol=1e-4):
                    raise BadInput(f"{k} is {v.flatten().tolist()}, not CLIP's {want.tolist()}: the clip plugins would normalise differently")
            report[reason] += 1
    if unknown:
        raise BadInput(f"{len(unknown)} tensor(s) of a layout this converter does not know, e.g. {unknown[:6]}; nothing was written")
    return out, dict(report)


def convert(src: str | Path, dst: str | Path, *, backbone: str | None = None, nheads: int = 8, **extra: Any) -> MaskFormerConfig:
    from .model import MaskFormerModel
    from .weights import load_state, save_maskformer

    state = read_checkpoint(src)
    cfg = infer_config(state, nheads, backbone, **extra)
    converted, report = convert_state(state)
    model = MaskFormerModel(cfg, int(cfg.embed_dim or 0))
    tmp = Path(str(dst) + ".unchecked.safetensors")
    from ovframe.training import save_weights

    save_weights(tmp, converted)
    try:
        load_state(model, tmp)  # every tensor present, every shape right
    finally:
        tmp.unlink(missing_ok=True)
    save_maskformer(dst, model, cfg, classes=[], text_model=f"converted from {Path(src).name}")
    print(f"converted {len(converted)} of {len(state)} tensors")
    for reason, count in report.items():
        print(f"  not converted: {count} tensor(s): {reason}")
    return cfg


def recipe_line(cfg: MaskFormerConfig, weights: str) -> str:
    """The `proposals:` section that loads the converted file (keys that differ from the defaults)."""
    arch = {k: v for k, v in cfg.model_dump(include=set(cfg.architecture())).items() if v != MaskFormerConfig.model_fields[k].get_default(call_default_factory=True)}
    arch.pop("embed_dim", None)  # read from the weights
    parts = [f"{k}: {list(v) if isinstance(v, tuple) else v}" for k, v in arch.items()]
    return "proposals: {plugin: maskformer, weights: " + weights + "".join(", " + p for p in parts) + "}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ovframe_maskformer.convert", description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", help="the released detectron2 checkpoint (.pth), e.g. ovseg_swinbase_vitL14_ft_mpt.pth")
    ap.add_argument("output", help="the safetensors file to write")
    ap.add_argument("--backbone", choices=list(D2_BACKBONES), help="the d2 preset to record (default: the closest to the tensors)")
    ap.add_argument("--nheads", type=int, default=8, help="decoder attention heads (not readable from the tensors; default %(default)s)")
    args = ap.parse_args(argv)
    try:
        cfg = convert(args.checkpoint, args.output, backbone=args.backbone, nheads=args.nheads)
    except BadInput as e:
        print(f"error: {e}")
        return 2
    print(f"wrote {args.output}\nrecipe: {recipe_line(cfg, args.output)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
