"""The Swin Transformer exactly as detectron2's MaskFormer / OVSeg run it (the dense-prediction variant of
Swin-Transformer-Object-Detection), written here from its semantics. Parameter names are those of the
released checkpoints (`patch_embed.proj`, `layers.{i}.blocks.{j}.attn.qkv`, `layers.{i}.downsample.reduction`,
`norm{i}` ...), so a release converts by taking its `backbone.*` tensors as they are.

What it computes, where timm's Swin differs:
- the patch embedding pads the image (right, bottom) to a multiple of the patch size;
- in every block the normalised map is padded (right, bottom, zeros) to a multiple of the window FIRST, then
  rolled by -window//2 in odd blocks; the attention mask (-100 between tokens of different roll regions) is
  built on that padded size at every forward; padded tokens are attended to like any other. timm rolls, then
  pads, which groups other tokens into windows whenever a map is not a multiple of the window;
- the shift is on in every second block whatever the map size (timm turns it off when a map fits in one window);
- patch merging pads odd sizes and concatenates [x(0::2, 0::2), x(1::2, 0::2), x(0::2, 1::2), x(1::2, 1::2)];
- each output stage i passes its own LayerNorm `norm{i}` (`out_norm`), returned NCHW.

    image [B, 3, H, W] -> stage i map [B, C * 2**i, ceil(H / 2**(i+2)), ceil(W / 2**(i+2))]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MASK_VALUE = -100.0
"""Added to attention scores between tokens of different roll regions (the reference's value, not -inf)."""


def relative_position_index(window: int) -> torch.Tensor:
    """[N, N] (N = window**2): index into the [(2w-1)**2, heads] bias table of the offset between tokens i and j."""
    ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    dy = ys[:, None] - ys[None, :] + window - 1
    dx = xs[:, None] - xs[None, :] + window - 1
    return dy * (2 * window - 1) + dx


def to_windows(x: torch.Tensor, window: int) -> torch.Tensor:
    """[B, H, W, C] (H, W multiples of window) -> [B * nH * nW, window * window, C], windows in row-major order."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window * window, c)


def from_windows(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """Inverse of to_windows: [B * nH * nW, window * window, C] -> [B, h, w, C]."""
    c = windows.shape[-1]
    x = windows.view(-1, h // window, w // window, window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


def shifted_window_mask(hp: int, wp: int, window: int, shift: int, device: torch.device) -> torch.Tensor:
    """[nW, N, N] additive mask for the rolled, padded [hp, wp] map: 0 within a roll region, -100 across.

    Rows (and columns) fall in three regions: [0, hp - window), [hp - window, hp - shift), [hp - shift, hp).
    """
    def region(n: int) -> torch.Tensor:
        i = torch.arange(n, device=device)
        return (i >= n - window).long() + (i >= n - shift).long()

    label = (region(hp)[:, None] * 3 + region(wp)[None, :]).float()
    windows = to_windows(label[None, :, :, None], window).squeeze(-1)  # [nW, N]
    differ = windows[:, None, :] != windows[:, :, None]
    return torch.zeros(differ.shape, device=device).masked_fill(differ, MASK_VALUE)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window, with a learned bias per relative offset and head."""

    def __init__(self, dim: int, window: int, heads: int):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x [B*nW, N, C]; mask [nW, N, N] or None."""
        bw, n, c = x.shape
        q, k, v = self.qkv(x).reshape(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        attn = attn + bias.permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = (attn.view(bw // nw, nw, self.heads, n, n) + mask[None, :, None].to(attn.dtype)).view(bw, self.heads, n, n)
        attn = attn.softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(bw, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinBlock(nn.Module):
    """Pre-norm window attention (pad, then roll when shifted) and MLP, each with a residual and drop path."""

    def __init__(self, dim: int, heads: int, window: int, shift: int, mlp_ratio: float, drop_path: float):
        super().__init__()
        from timm.layers import DropPath

        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, h: int, w: int, mask: torch.Tensor) -> torch.Tensor:
        """x [B, h*w, C]; mask: the stage's shifted-window mask (used only when this block shifts)."""
        b, _, c = x.shape
        y = self.norm1(x).view(b, h, w, c)
        y = F.pad(y, (0, 0, 0, (-w) % self.window, 0, (-h) % self.window))
        hp, wp = y.shape[1], y.shape[2]
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        y = self.attn(to_windows(y, self.window), mask if self.shift else None)
        y = from_windows(y, self.window, hp, wp)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        y = y[:, :h, :w, :].reshape(b, h * w, c)
        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2x2 neighbours concatenated (odd sizes padded), LayerNorm, linear 4C -> 2C."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, _, c = x.shape
        x = F.pad(x.view(b, h, w, c), (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x.reshape(b, -1, 4 * c)))


class SwinStage(nn.Module):
    """Blocks alternating plain and shifted windows, then (but the last stage) patch merging."""

    def __init__(self, dim: int, depth: int, heads: int, window: int, mlp_ratio: float, drop_path: list[float], downsample: bool):
        super().__init__()
        self.window, self.shift = window, window // 2
        self.blocks = nn.ModuleList(
            SwinBlock(dim, heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio, drop_path[i]) for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        hp, wp = -(-h // self.window) * self.window, -(-w // self.window) * self.window
        mask = shifted_window_mask(hp, wp, self.window, self.shift, x.device)
        for block in self.blocks:
            x = block(x, h, w, mask)
        return x


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int, norm: bool):
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(3, dim, patch, stride=patch)
        self.norm = nn.LayerNorm(dim) if norm else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """[B, 3, H, W] -> tokens [B, h*w, C], h, w."""
        p = self.patch
        x = F.pad(x, (0, (-x.shape[-1]) % p, 0, (-x.shape[-2]) % p))
        x = self.proj(x)
        h, w = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)
        return (self.norm(x) if self.norm is not None else x), h, w


class D2SwinBackbone(nn.Module):
    """The whole backbone. forward(images [B, 3, H, W]) -> maps of `out_indices`, NCHW, highest resolution first."""

    def __init__(
        self,
        *,
        embed_dim: int = 128,
        depths: tuple[int, ...] = (2, 2, 18, 2),
        num_heads: tuple[int, ...] = (4, 8, 16, 32),
        window_size: int = 12,
        patch_size: int = 4,
        mlp_ratio: float = 4.0,
        patch_norm: bool = True,
        drop_path_rate: float = 0.0,
        out_indices: tuple[int, ...] = (0, 1, 2, 3),
        out_norm: bool = True,
    ):
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError(f"swin: depths {list(depths)} and num_heads {list(num_heads)} must have one entry per stage")
        self.out_indices = tuple(out_indices)
        self.patch_embed = PatchEmbed(patch_size, embed_dim, patch_norm)
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.channels_per_stage = [embed_dim * 2**i for i in range(len(depths))]
        self.layers = nn.ModuleList(
            SwinStage(
                self.channels_per_stage[i], depths[i], num_heads[i], window_size, mlp_ratio,
                rates[sum(depths[:i]) : sum(depths[: i + 1])], downsample=i < len(depths) - 1,
            )
            for i in range(len(depths))
        )
        for i in self.out_indices if out_norm else ():
            self.add_module(f"norm{i}", nn.LayerNorm(self.channels_per_stage[i]))
        self.out_norm = out_norm
        self.apply(_init_linear)

    @property
    def channels(self) -> list[int]:
        return [self.channels_per_stage[i] for i in self.out_indices]

    @property
    def strides(self) -> list[int]:
        return [self.patch_embed.patch * 2**i for i in self.out_indices]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x, h, w = self.patch_embed(x)
        outs = []
        for i, stage in enumerate(self.layers):
            x = stage(x, h, w)
            if i in self.out_indices:
                y = getattr(self, f"norm{i}")(x) if self.out_norm else x
                outs.append(y.view(-1, h, w, y.shape[-1]).permute(0, 3, 1, 2).contiguous())
            if stage.downsample is not None:
                x = stage.downsample(x, h, w)
                h, w = (h + 1) // 2, (w + 1) // 2
        return outs


def _init_linear(m: nn.Module) -> None:
    """Swin's initialisation: truncated normal (std 0.02) linear weights, zero biases; LayerNorms at identity."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
