"""Release-shaped OVSeg checkpoints: every key of the authors' released files, with random values.

The key list and shapes are written here from the authors' model definitions and configs (not from this
project's modules), so that the converter and the recipes are tested against the files users download:

    ovseg_swinbase_vitL14_ft_mpt.pth   configs/ovseg_swinB_vitL_bs32_120k.yaml: D2SwinTransformer (embed 128,
                                       depths 2-2-18-2, heads 4-8-16-32, window 12, norm0..3), OpenVocabMaskFormerHead
                                       (FPN 256, 6 DETR layers, 100 queries, class MLP 256-1024-768), CLIP ViT-L/14
                                       with mask prompts [3, 256, 1024]
    ovseg_R101c_vitB16_ft_mpt.pth      configs/ovseg_R101c_vitB_bs32_120k.yaml: detectron2 ResNet-101, DeepLab stem
                                       128, FrozenBN (4 buffers each), class MLP 256-1024-512, CLIP ViT-B/16 with
                                       mask prompts [3, 196, 768]

Both files are {"model": state_dict, ...}. The state dict holds `backbone.*`, `sem_seg_head.*`,
`clip_adapter.clip_model.*` (OpenAI layout), `clip_adapter.non_object_embedding` [1, C],
`clip_adapter.pixel_mean`/`pixel_std` [1, 3, 1, 1] (CLIP's constants x 255) and `criterion.empty_weight` [172].
`size` narrows the widths that no key name depends on: "reduced" (Swin embed 24, heads 1-2-4-8; ResNet stem 32,
res2 64, bottleneck 16; CLIP widths 64; the MaskFormer head as released) keeps depths, windows, image/patch sizes
and the vocabulary; "tiny" also narrows the head (FPN and decoder 32, FFN 64, 8 queries, class MLP 64, CLIP 32)
for fast tests; "full" is the release. The same key names in every size.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class Release:
    file: str
    backbone: str  # "swin" | "resnet"
    clip_embed: int
    vision_width: int
    vision_layers: int
    patch: int
    text_width: int
    text_layers: int = 12
    image_size: int = 224


SWINB_VITL14 = Release("ovseg_swinbase_vitL14_ft_mpt.pth", "swin", 768, 1024, 24, 14, 768)
R101C_VITB16 = Release("ovseg_R101c_vitB16_ft_mpt.pth", "resnet", 512, 768, 12, 16, 512)


def swin_shapes(embed: int, depths: tuple[int, ...], heads: tuple[int, ...], window: int) -> dict[str, tuple[int, ...]]:
    s: dict[str, tuple[int, ...]] = {
        "backbone.patch_embed.proj.weight": (embed, 3, 4, 4), "backbone.patch_embed.proj.bias": (embed,),
        "backbone.patch_embed.norm.weight": (embed,), "backbone.patch_embed.norm.bias": (embed,),
    }
    for i, (depth, h) in enumerate(zip(depths, heads)):
        c = embed * 2**i
        for j in range(depth):
            b = f"backbone.layers.{i}.blocks.{j}."
            s.update({
                b + "norm1.weight": (c,), b + "norm1.bias": (c,),
                b + "attn.relative_position_bias_table": ((2 * window - 1) ** 2, h),
                b + "attn.relative_position_index": (window**2, window**2),
                b + "attn.qkv.weight": (3 * c, c), b + "attn.qkv.bias": (3 * c,),
                b + "attn.proj.weight": (c, c), b + "attn.proj.bias": (c,),
                b + "norm2.weight": (c,), b + "norm2.bias": (c,),
                b + "mlp.fc1.weight": (4 * c, c), b + "mlp.fc1.bias": (4 * c,),
                b + "mlp.fc2.weight": (c, 4 * c), b + "mlp.fc2.bias": (c,),
            })
        if i < len(depths) - 1:
            d = f"backbone.layers.{i}.downsample."
            s.update({d + "reduction.weight": (2 * c, 4 * c), d + "norm.weight": (4 * c,), d + "norm.bias": (4 * c,)})
    for i in range(len(depths)):
        s[f"backbone.norm{i}.weight"] = s[f"backbone.norm{i}.bias"] = (embed * 2**i,)
    return s


def resnet_shapes(stem: int, res2: int, width: int, blocks: tuple[int, ...] = (3, 4, 23, 3)) -> dict[str, tuple[int, ...]]:
    s: dict[str, tuple[int, ...]] = {}

    def conv(name: str, cout: int, cin: int, k: int) -> None:
        s[f"backbone.{name}.weight"] = (cout, cin, k, k)
        for buf in ("weight", "bias", "running_mean", "running_var"):
            s[f"backbone.{name}.norm.{buf}"] = (cout,)

    conv("stem.conv1", stem // 2, 3, 3)
    conv("stem.conv2", stem // 2, stem // 2, 3)
    conv("stem.conv3", stem, stem // 2, 3)
    cin, cout, mid = stem, res2, width
    for i, n in enumerate(blocks):
        for j in range(n):
            b = f"res{i + 2}.{j}"
            if j == 0:
                conv(b + ".shortcut", cout, cin, 1)
            conv(b + ".conv1", mid, cin if j == 0 else cout, 1)
            conv(b + ".conv2", mid, mid, 3)
            conv(b + ".conv3", cout, mid, 1)
        cin, cout, mid = cout, cout * 2, mid * 2
    return s


def head_shapes(in_channels: list[int], clip_embed: int, *, conv: int, hidden: int, queries: int, ff: int, embed_hidden: int,
                layers: int = 6) -> dict[str, tuple[int, ...]]:
    pd, p = "sem_seg_head.pixel_decoder.", "sem_seg_head.predictor."
    s: dict[str, tuple[int, ...]] = {}
    for n, c in enumerate(in_channels, start=1):
        if n < len(in_channels):
            s.update({f"{pd}adapter_{n}.weight": (conv, c, 1, 1), f"{pd}adapter_{n}.norm.weight": (conv,), f"{pd}adapter_{n}.norm.bias": (conv,)})
        s.update({f"{pd}layer_{n}.weight": (conv, c if n == len(in_channels) else conv, 3, 3),
                  f"{pd}layer_{n}.norm.weight": (conv,), f"{pd}layer_{n}.norm.bias": (conv,)})
    s.update({pd + "mask_features.weight": (hidden, conv, 3, 3), pd + "mask_features.bias": (hidden,)})
    for layer in range(layers):
        t = f"{p}transformer.decoder.layers.{layer}."
        for attn in ("self_attn", "multihead_attn"):
            s.update({t + f"{attn}.in_proj_weight": (3 * hidden, hidden), t + f"{attn}.in_proj_bias": (3 * hidden,),
                      t + f"{attn}.out_proj.weight": (hidden, hidden), t + f"{attn}.out_proj.bias": (hidden,)})
        s.update({t + "linear1.weight": (ff, hidden), t + "linear1.bias": (ff,), t + "linear2.weight": (hidden, ff), t + "linear2.bias": (hidden,)})
        for n in (1, 2, 3):
            s[t + f"norm{n}.weight"] = s[t + f"norm{n}.bias"] = (hidden,)
    s[p + "transformer.decoder.norm.weight"] = s[p + "transformer.decoder.norm.bias"] = (hidden,)
    s.update({p + "query_embed.weight": (queries, hidden), p + "input_proj.weight": (hidden, in_channels[-1], 1, 1), p + "input_proj.bias": (hidden,)})
    s.update({p + "class_embed.layers.0.weight": (embed_hidden, hidden), p + "class_embed.layers.0.bias": (embed_hidden,),
              p + "class_embed.layers.1.weight": (clip_embed, embed_hidden), p + "class_embed.layers.1.bias": (clip_embed,)})
    for i in range(3):
        s[p + f"mask_embed.layers.{i}.weight"], s[p + f"mask_embed.layers.{i}.bias"] = (hidden, hidden), (hidden,)
    return s


def clip_shapes(r: Release, vision_width: int, text_width: int, embed: int) -> dict[str, tuple[int, ...]]:
    """OpenAI CLIP (ViT) module keys, plus OVSeg's mask prompts, under clip_adapter.clip_model."""
    grid = r.image_size // r.patch
    c = "clip_adapter.clip_model."
    s: dict[str, tuple[int, ...]] = {
        c + "positional_embedding": (77, text_width), c + "text_projection": (text_width, embed), c + "logit_scale": (),
        c + "token_embedding.weight": (49408, text_width), c + "ln_final.weight": (text_width,), c + "ln_final.bias": (text_width,),
        c + "visual.class_embedding": (vision_width,), c + "visual.positional_embedding": (grid * grid + 1, vision_width),
        c + "visual.proj": (vision_width, embed), c + "visual.conv1.weight": (vision_width, 3, r.patch, r.patch),
        c + "visual.ln_pre.weight": (vision_width,), c + "visual.ln_pre.bias": (vision_width,),
        c + "visual.ln_post.weight": (vision_width,), c + "visual.ln_post.bias": (vision_width,),
        c + "visual.mask_embedding": (3, grid * grid, vision_width),
    }
    for prefix, width, layers in ((c + "visual.transformer", vision_width, r.vision_layers), (c + "transformer", text_width, r.text_layers)):
        for i in range(layers):
            b = f"{prefix}.resblocks.{i}."
            s.update({b + "attn.in_proj_weight": (3 * width, width), b + "attn.in_proj_bias": (3 * width,),
                      b + "attn.out_proj.weight": (width, width), b + "attn.out_proj.bias": (width,),
                      b + "ln_1.weight": (width,), b + "ln_1.bias": (width,), b + "ln_2.weight": (width,), b + "ln_2.bias": (width,),
                      b + "mlp.c_fc.weight": (4 * width, width), b + "mlp.c_fc.bias": (4 * width,),
                      b + "mlp.c_proj.weight": (width, 4 * width), b + "mlp.c_proj.bias": (width,)})
    return s


HEAD = {"conv": 256, "hidden": 256, "queries": 100, "ff": 2048, "embed_hidden": 1024}
TINY_HEAD = {"conv": 32, "hidden": 32, "queries": 8, "ff": 64, "embed_hidden": 64}


def widths(r: Release, size: str) -> dict[str, int]:
    if size == "full":
        return {"swin": 128, "stem": 128, "res2": 256, "mid": 64, "vision": r.vision_width, "text": r.text_width, "embed": r.clip_embed}
    clip = 64 if size == "reduced" else 32
    return {"swin": 24, "stem": 32, "res2": 64, "mid": 16, "vision": clip, "text": clip, "embed": clip}


def release_shapes(r: Release, size: str = "full") -> dict[str, tuple[int, ...]]:
    w = widths(r, size)
    if r.backbone == "swin":
        backbone = swin_shapes(w["swin"], (2, 2, 18, 2), (4, 8, 16, 32) if size == "full" else (1, 2, 4, 8), 12)
        channels = [w["swin"] * 2**i for i in range(4)]
    else:
        backbone = resnet_shapes(w["stem"], w["res2"], w["mid"])
        channels = [w["res2"] * 2**i for i in range(4)]
    return {
        **backbone, **head_shapes(channels, w["embed"], **(TINY_HEAD if size == "tiny" else HEAD)),
        **clip_shapes(r, w["vision"], w["text"], w["embed"]),
        "clip_adapter.non_object_embedding": (1, w["embed"]),
        "clip_adapter.pixel_mean": (1, 3, 1, 1), "clip_adapter.pixel_std": (1, 3, 1, 1),
        "criterion.empty_weight": (172,),
    }


def release_state(r: Release, size: str = "full", seed: int = 0) -> dict[str, torch.Tensor]:
    """Random values of trained-network scale: norms near identity, weights ~ 1/sqrt(fan-in), positive variances."""
    g = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for k, shape in release_shapes(r, size).items():
        leaf = k.rsplit(".", 1)[-1]
        if leaf == "relative_position_index":
            w = math.isqrt(shape[0])
            ys, xs = torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij")
            ys, xs = ys.flatten(), xs.flatten()
            v = (ys[:, None] - ys[None, :] + w - 1) * (2 * w - 1) + xs[:, None] - xs[None, :] + w - 1
        elif k == "criterion.empty_weight":
            v = torch.cat([torch.ones(171), torch.tensor([0.1])])
        elif k.startswith("clip_adapter.pixel_"):
            v = torch.tensor(CLIP_MEAN if k.endswith("mean") else CLIP_STD).view(1, 3, 1, 1) * 255.0
        elif leaf == "logit_scale":
            v = torch.tensor(math.log(100.0))
        elif leaf == "running_var":
            v = 0.5 + torch.rand(shape, generator=g)
        elif leaf in ("bias", "running_mean", "in_proj_bias"):
            v = 0.1 * torch.randn(shape, generator=g)
        elif len(shape) == 1 and ("norm" in k or "ln_" in k):
            v = 1 + 0.1 * torch.randn(shape, generator=g)
        elif len(shape) >= 2 and leaf in ("weight", "in_proj_weight", "proj", "text_projection") and "embedding" not in k:
            fan_in = math.prod(shape[1:]) if leaf != "proj" and leaf != "text_projection" else shape[0]
            v = torch.randn(shape, generator=g) / math.sqrt(fan_in)
        else:  # embeddings, bias tables, mask prompts, class embedding
            v = 0.02 * torch.randn(shape, generator=g) if "clip_model" in k else torch.randn(shape, generator=g)
        out[k] = v.reshape(shape) if v.dim() else v
    return out


def write_release(folder: Path, r: Release, size: str = "reduced", seed: int = 0) -> Path:
    """The release file as users download it: {"model": state, "iteration": ...} saved by torch.save."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / r.file
    torch.save({"model": release_state(r, size, seed), "iteration": 119999}, path)
    return path


def clip_model_json(folder: Path, r: Release, size: str = "reduced") -> Path:
    """An open_clip model config of the release's CLIP (reduced: the same depths, image and patch size, widths 64)."""
    w = widths(r, size)
    reduced = size != "full"
    cfg = {
        "embed_dim": w["embed"],
        "vision_cfg": {"image_size": r.image_size, "layers": r.vision_layers, "width": w["vision"], "patch_size": r.patch,
                       "head_width": 32 if reduced else 64},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": w["text"], "heads": 2 if reduced else w["text"] // 64,
                     "layers": r.text_layers},
    }
    path = folder / f"{Path(r.file).stem}_clip.json"
    path.write_text(json.dumps(cfg))
    return path


def size_overrides(r: Release, size: str = "reduced") -> list[str]:
    """The recipe overrides (sizes only) that describe a narrowed release."""
    if size == "full":
        return []
    if r.backbone == "swin":
        out = ["proposals.backbone_args.embed_dim=24", "proposals.backbone_args.num_heads=[1,2,4,8]"]
    else:
        out = ["proposals.backbone_args.stem_out_channels=32", "proposals.backbone_args.res2_out_channels=64",
               "proposals.backbone_args.width_per_group=16"]
    if size == "tiny":
        t = TINY_HEAD
        out += [f"proposals.conv_dim={t['conv']}", f"proposals.mask_dim={t['hidden']}", f"proposals.hidden_dim={t['hidden']}",
                f"proposals.num_queries={t['queries']}", f"proposals.dim_feedforward={t['ff']}", f"proposals.embed_hidden_dim={t['embed_hidden']}"]
    return out
