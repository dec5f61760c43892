"""The MaskFormer network with OVSeg's open-vocabulary class head, in plain torch (+ timm for timm backbones).

    image [B,3,H,W] (normalised, padded to a multiple of 32)
      -> backbone                                4 maps at strides 4, 8, 16, 32, NCHW: the detectron2 Swin / ResNet
                                                 of swin.py / resnet.py (`d2-*` names), or a timm model (features_only)
      -> FPN pixel decoder                       mask features [B, mask_dim, H/4, W/4]
      -> transformer decoder over the stride-32 map: Q queries, `dec_layers` layers (DETR, post-norm)
      -> per layer l: mask embedding MLP   -> mask logits  [L, B, Q, H/4, W/4]
                      class embedding MLP  -> q [.., C];  logits = T * norm(q) @ norm([t_1..t_K, no_object]).T
                                                              -> class logits [L, B, Q, K+1]

The text embeddings t_k come from the recipe's text encoder at run time; the no-object embedding is a
learned [1, C] parameter (init normal, std C^-0.5). Facts from reference/ovseg.md and the MaskFormer paper.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import D2_BACKBONES, MaskFormerConfig, d2_backbone_args


def c2_xavier_fill(module: nn.Module) -> None:
    """Caffe2's XavierFill (kaiming uniform with a=1), as detectron2 initialises convolutions."""
    nn.init.kaiming_uniform_(module.weight, a=1)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)


class ConvNorm(nn.Module):
    """Conv2d -> GroupNorm(32) -> optional ReLU (detectron2's Conv2d with norm="GN")."""

    def __init__(self, cin: int, cout: int, kernel: int, relu: bool):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False)
        self.norm = nn.GroupNorm(math.gcd(32, cout), cout)
        self.relu = relu
        c2_xavier_fill(self.conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.conv(x))
        return F.relu(x) if self.relu else x


def build_backbone(cfg: MaskFormerConfig, pretrained_file: str | None = None) -> nn.Module:
    """The recipe's backbone: forward(images) -> NCHW maps of `out_indices`, highest resolution first, with
    `.channels` and `.strides` lists. d2 backbones hold the release's key names directly under `backbone.`."""
    if cfg.backbone not in D2_BACKBONES:
        return TimmBackbone(cfg, pretrained_file)
    family, args = d2_backbone_args(cfg.backbone, cfg.backbone_args)
    try:
        if family == "swin":
            from .swin import D2SwinBackbone

            body: nn.Module = D2SwinBackbone(
                **args, drop_path_rate=cfg.backbone_drop_path, out_indices=tuple(cfg.out_indices), out_norm=bool(cfg.resolved_out_norm())
            )
        else:
            from .resnet import D2ResNetBackbone

            body = D2ResNetBackbone(**args, norm=cfg.backbone_norm, out_indices=tuple(cfg.out_indices))
    except (ValueError, TypeError, IndexError) as e:
        from ovframe import BadInput

        raise BadInput(f"maskformer backbone {cfg.backbone} with backbone_args {cfg.backbone_args}: {e}") from None
    if pretrained_file:
        from .backbone_weights import load_d2_backbone_weights

        load_d2_backbone_weights(body, pretrained_file, cfg.backbone)
    if family == "resnet":
        body.freeze(2 if cfg.backbone_freeze_at is None else cfg.backbone_freeze_at)
    return body


class TimmBackbone(nn.Module):
    """A timm model through features_only; returns NCHW maps, highest resolution first."""

    def __init__(self, cfg: MaskFormerConfig, pretrained_file: str | None = None):
        super().__init__()
        import timm

        kwargs: dict[str, Any] = {}
        if "swin" in cfg.backbone:  # free input sizes: pad to windows inside, masks made per input
            kwargs.update(strict_img_size=False, dynamic_img_size=True)
        try:
            self.body = timm.create_model(
                cfg.backbone, pretrained=False, features_only=True, out_indices=tuple(cfg.out_indices), **kwargs
            )
        except RuntimeError as e:  # timm: "Unknown model"
            from ovframe import BadInput

            raise BadInput(f"maskformer backbone {cfg.backbone!r}: {e}") from None
        if pretrained_file:
            load_timm_weights(self.body, pretrained_file, cfg.backbone)
        if cfg.backbone_norm == "frozen":
            from timm.layers import freeze_batch_norm_2d

            self.body = freeze_batch_norm_2d(self.body)
        info = self.body.feature_info
        self.channels: list[int] = list(info.channels())
        self.strides: list[int] = list(info.reduction())
        self.nhwc = str(getattr(self.body, "output_fmt", "NCHW")).endswith("NHWC")
        use_norm = self.nhwc if cfg.out_norm is None else cfg.out_norm
        self.out_norms = nn.ModuleList(nn.LayerNorm(c) for c in self.channels) if use_norm else None

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.body(x)
        out = []
        for i, f in enumerate(feats):
            if not self.nhwc:
                f = f.permute(0, 2, 3, 1)
            if self.out_norms is not None:
                f = self.out_norms[i](f)
            out.append(f.permute(0, 3, 1, 2).contiguous())
        return out


def load_timm_weights(body: nn.Module, path: str, name: str) -> None:
    """ImageNet weights of the backbone from a local file (safetensors, or a .pth read with weights_only=True)."""
    from ovframe import BadInput
    from ovframe.files import resolve_path

    file = resolve_path(path)
    try:
        if str(file).endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(str(file))
        else:
            state = torch.load(file, map_location="cpu", weights_only=True)
            state = state.get("state_dict", state.get("model", state)) if isinstance(state, dict) else state
    except Exception as e:  # truncated, not a checkpoint, pickled objects (refused by weights_only) ...
        raise BadInput(
            f"{file}: cannot be read as backbone weights ({type(e).__name__}: {str(e)[:200]}). backbone_pretrained takes "
            "a .safetensors file or a state dict saved with torch.save (read with weights_only=True); get the file again"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BadInput(f"{file}: backbone_pretrained must hold a state dict (names -> tensors)")
    import timm

    full = timm.create_model(name, pretrained=False)
    filter_fn = getattr(__import__(type(full).__module__, fromlist=["checkpoint_filter_fn"]), "checkpoint_filter_fn", None)
    if filter_fn is not None:
        state = filter_fn(state, full)
    own = body.state_dict()
    import re

    # features_only flattens "layers.0.x" into "layers_0.x"
    state = {k if k in own else re.sub(r"^(\w+)\.(\d+)\.", r"\1_\2.", k): v for k, v in state.items()}
    used = {k: v for k, v in state.items() if k in own}
    if not used:
        raise BadInput(f"{file}: no tensor of this file matches backbone {name!r}; is it that model's timm checkpoint?")
    wrong = [k for k, v in used.items() if v.shape != own[k].shape]
    if wrong:
        raise BadInput(f"{file}: shapes differ from backbone {name!r} for {wrong[:5]}")
    body.load_state_dict(used, strict=False)


class PixelDecoder(nn.Module):
    """FPN: top-down from the lowest resolution, nearest upsampling, lateral 1x1 + output 3x3 convs (GN)."""

    def __init__(self, in_channels: list[int], conv_dim: int, mask_dim: int):
        super().__init__()
        n = len(in_channels)
        # index i follows the backbone's order (highest resolution first); the last level has no lateral
        self.lateral_convs = nn.ModuleList(ConvNorm(c, conv_dim, 1, relu=False) for c in in_channels[:-1])
        self.output_convs = nn.ModuleList(
            ConvNorm(in_channels[i] if i == n - 1 else conv_dim, conv_dim, 3, relu=True) for i in range(n)
        )
        self.mask_features = nn.Conv2d(conv_dim, mask_dim, 3, padding=1)
        c2_xavier_fill(self.mask_features)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        y = self.output_convs[-1](feats[-1])
        for i in range(len(feats) - 2, -1, -1):
            lateral = self.lateral_convs[i](feats[i])
            y = lateral + F.interpolate(y, size=lateral.shape[-2:], mode="nearest")
            y = self.output_convs[i](y)
        return self.mask_features(y)


def sine_position_embedding(x: torch.Tensor, num_feats: int, temperature: float = 10000.0) -> torch.Tensor:
    """DETR's normalised sine embedding of a [B, C, H, W] map's positions -> [B, 2*num_feats, H, W]."""
    b, _, h, w = x.shape
    scale, eps = 2 * math.pi, 1e-6
    y_embed = torch.arange(1, h + 1, dtype=torch.float32, device=x.device)[:, None].expand(h, w)
    x_embed = torch.arange(1, w + 1, dtype=torch.float32, device=x.device)[None, :].expand(h, w)
    y_embed = y_embed / (h + eps) * scale
    x_embed = x_embed / (w + eps) * scale
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=x.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)
    pos_x = x_embed[..., None] / dim_t
    pos_y = y_embed[..., None] / dim_t
    pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=3).flatten(2)
    pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=3).flatten(2)
    pos = torch.cat((pos_y, pos_x), dim=2).permute(2, 0, 1)
    return pos[None].expand(b, -1, -1, -1).to(x.dtype)


class DecoderLayer(nn.Module):
    """DETR decoder layer: self-attention, cross-attention to the image, FFN; post-norm by default."""

    def __init__(self, d: int, nheads: int, ff: int, dropout: float, pre_norm: bool):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, nheads, dropout=dropout)
        self.multihead_attn = nn.MultiheadAttention(d, nheads, dropout=dropout)
        self.linear1, self.linear2 = nn.Linear(d, ff), nn.Linear(ff, d)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.dropout = nn.Dropout(dropout)
        self.dropout1, self.dropout2, self.dropout3 = nn.Dropout(dropout), nn.Dropout(dropout), nn.Dropout(dropout)
        self.pre_norm = pre_norm

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor, pos: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
        """tgt [Q, B, D], memory/pos [HW, B, D], query_pos [Q, B, D].

        need_weights=True is nn.MultiheadAttention's default, the reference's call: it takes torch's explicit
        attention path, whose results are bit-equal to the reference's (the fused path differs by ~1e-6)."""
        if self.pre_norm:
            t = self.norm1(tgt)
            tgt = tgt + self.dropout1(self.self_attn(t + query_pos, t + query_pos, t, need_weights=True)[0])
            t = self.norm2(tgt)
            tgt = tgt + self.dropout2(self.multihead_attn(t + query_pos, memory + pos, memory, need_weights=True)[0])
            t = self.norm3(tgt)
            return tgt + self.dropout3(self.linear2(self.dropout(F.relu(self.linear1(t)))))
        q = tgt + query_pos
        tgt = self.norm1(tgt + self.dropout1(self.self_attn(q, q, tgt, need_weights=True)[0]))
        tgt = self.norm2(tgt + self.dropout2(self.multihead_attn(tgt + query_pos, memory + pos, memory, need_weights=True)[0]))
        return self.norm3(tgt + self.dropout3(self.linear2(self.dropout(F.relu(self.linear1(tgt))))))


class MLP(nn.Module):
    """Linear layers with ReLU between them."""

    def __init__(self, cin: int, hidden: int, cout: int, layers: int):
        super().__init__()
        dims = [cin] + [hidden] * (layers - 1) + [cout]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class TransformerPredictor(nn.Module):
    """Queries attend to the lowest-resolution backbone map; every layer's output is kept (deep supervision)."""

    def __init__(self, cfg: MaskFormerConfig, in_channels: int, embed_dim: int):
        super().__init__()
        d = cfg.hidden_dim
        self.query_embed = nn.Embedding(cfg.num_queries, d)
        self.input_proj = nn.Conv2d(in_channels, d, 1) if in_channels != d else nn.Identity()
        if isinstance(self.input_proj, nn.Conv2d):
            c2_xavier_fill(self.input_proj)
        self.layers = nn.ModuleList(
            DecoderLayer(d, cfg.nheads, cfg.dim_feedforward, cfg.dropout, cfg.pre_norm) for _ in range(cfg.dec_layers)
        )
        self.decoder_norm = nn.LayerNorm(d)
        for p in [*self.layers.parameters()]:
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        self.mask_embed = MLP(d, d, cfg.mask_dim, 3)
        self.class_embed = MLP(d, cfg.embed_hidden_dim, embed_dim, cfg.embed_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, h, w] -> decoder states of every layer [L, B, Q, D] (each through the final norm)."""
        pos = sine_position_embedding(x, self.query_embed.weight.shape[1] // 2).flatten(2).permute(2, 0, 1)
        memory = self.input_proj(x).flatten(2).permute(2, 0, 1)  # [hw, B, D]
        b = x.shape[0]
        query_pos = self.query_embed.weight[:, None].expand(-1, b, -1)
        tgt = torch.zeros_like(query_pos)
        states = []
        for layer in self.layers:
            tgt = layer(tgt, memory, pos, query_pos)
            states.append(self.decoder_norm(tgt))
        return torch.stack(states).transpose(1, 2)


class MaskFormerModel(nn.Module):
    """The whole network. forward(images, text) -> {"pred_logits": [L,B,Q,K+1], "pred_masks": [L,B,Q,H/4,W/4]}.

    images: float [B, 3, H, W], normalised, H and W multiples of the backbone's largest stride.
    text:   float [K, C], rows L2-normalised (the vocabulary's text embeddings).
    """

    def __init__(self, cfg: MaskFormerConfig, embed_dim: int, pretrained_file: str | None = None):
        super().__init__()
        self.embed_dim = embed_dim
        self.out_indices = tuple(cfg.out_indices)
        self.temperature = float(cfg.temperature)
        self.backbone = build_backbone(cfg, pretrained_file)
        self.pixel_decoder = PixelDecoder(self.backbone.channels, cfg.conv_dim, cfg.mask_dim)
        self.predictor = TransformerPredictor(cfg, self.backbone.channels[-1], embed_dim)
        self.no_object_embedding = nn.Parameter(torch.randn(1, embed_dim) * embed_dim**-0.5)

    def backbone_out_index(self, stage: int) -> int:
        """Position of backbone stage `stage` among the features fed to the FPN."""
        return self.out_indices.index(stage)

    @property
    def size_divisibility(self) -> int:
        return max(self.backbone.strides)

    def class_logits(self, query_embeddings: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """[..., C] query embeddings, [K, C] text (rows L2-normalised, as TextEmbeddings are) -> [..., K+1] logits,
        the no-object column last. Divisions by the norms as the reference writes them (bit-equal logits)."""
        no_object = self.no_object_embedding / self.no_object_embedding.norm(dim=-1, keepdim=True)
        classes = torch.cat([text, no_object]).to(query_embeddings.dtype)
        q = query_embeddings / query_embeddings.norm(dim=-1, keepdim=True)
        return self.temperature * q @ classes.t()

    def forward(self, images: torch.Tensor, text: torch.Tensor) -> dict[str, torch.Tensor]:
        if text.ndim != 2 or text.shape[1] != self.embed_dim:
            raise ValueError(f"text embeddings must be [K, {self.embed_dim}], got {tuple(text.shape)}")
        feats = self.backbone(images)
        mask_features = self.pixel_decoder(feats)
        states = self.predictor(feats[-1])  # [L, B, Q, D]
        masks = torch.einsum("lbqc,bchw->lbqhw", self.predictor.mask_embed(states), mask_features)
        logits = self.class_logits(self.predictor.class_embed(states), text)
        return {"pred_logits": logits, "pred_masks": masks}
