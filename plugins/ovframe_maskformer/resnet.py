"""detectron2's ResNet as MaskFormer / OVSeg build it (`build_resnet_backbone`, `build_resnet_deeplab_backbone`),
written here from its semantics, with the parameter names of detectron2 checkpoints (`stem.conv1.weight`,
`stem.conv1.norm.running_var`, `res4.22.conv2.weight`, `res2.0.shortcut.norm.bias` ...).

- stem `basic`: 7x7/2 conv (64) -> ReLU -> 3x3/2 max pool; `deeplab` (R101c, "R-103"): three 3x3 convs
  (stride 2, 1, 1; widths out/2, out/2, out; stem out 128), ReLU after each -> 3x3/2 max pool;
- bottleneck blocks 1x1 -> 3x3 (dilated, grouped) -> 1x1, BN after each conv, ReLU after the first two and
  after the residual sum; a 1x1 projection shortcut (with its BN) when the channels change;
  `stride_in_1x1: false` puts a stage's stride in the 3x3 conv (MaskFormer's setting);
- res2 keeps the stem's stride; res3..res5 halve it unless dilated; res5 block b is dilated
  `res5_dilation * res5_multi_grid[b]` (R101c: 1, 2, 4 with stride 2 kept);
- norms are detectron2's FrozenBatchNorm2d (`norm: frozen`, the released configs) or trainable BatchNorm2d.

    image [B, 3, H, W] -> res2..res5 [B, 256 * 2**i, H / 2**(i+2), W / 2**(i+2)]  (strides 4, 8, 16, 32)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BLOCKS_PER_STAGE = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine buffers (detectron2's; eps 1e-5).

    A checkpoint that carries only weight and bias (Caffe2-style) leaves mean 0 and variance 1."""

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features) - eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad:  # as detectron2: a plain affine map, so no gradient is kept for the statistics
            scale = self.weight * (self.running_var + self.eps).rsqrt()
            shift = self.bias - self.running_mean * scale
            return x * scale.view(1, -1, 1, 1).to(x.dtype) + shift.view(1, -1, 1, 1).to(x.dtype)
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, training=False, eps=self.eps)


def make_norm(kind: str, channels: int) -> nn.Module:
    return FrozenBatchNorm2d(channels) if kind == "frozen" else nn.BatchNorm2d(channels)


class ConvNorm(nn.Conv2d):
    """A bias-free conv whose norm is its child `norm` (detectron2's Conv2d(norm=...): keys `conv.weight`, `conv.norm.*`)."""

    def __init__(self, cin: int, cout: int, kernel: int, *, stride: int = 1, padding: int = 0, dilation: int = 1,
                 groups: int = 1, norm: str = "frozen"):
        super().__init__(cin, cout, kernel, stride=stride, padding=padding, dilation=dilation, groups=groups, bias=False)
        self.norm = make_norm(norm, cout)
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")  # Caffe2's MSRAFill

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(super().forward(x))


class BasicStem(nn.Module):
    def __init__(self, out_channels: int, norm: str):
        super().__init__()
        self.conv1 = ConvNorm(3, out_channels, 7, stride=2, padding=3, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(F.relu(self.conv1(x)), kernel_size=3, stride=2, padding=1)


class DeepLabStem(nn.Module):
    def __init__(self, out_channels: int, norm: str):
        super().__init__()
        half = out_channels // 2
        self.conv1 = ConvNorm(3, half, 3, stride=2, padding=1, norm=norm)
        self.conv2 = ConvNorm(half, half, 3, padding=1, norm=norm)
        self.conv3 = ConvNorm(half, out_channels, 3, padding=1, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv3(F.relu(self.conv2(F.relu(self.conv1(x))))))
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


class Bottleneck(nn.Module):
    def __init__(self, cin: int, cout: int, bottleneck: int, *, stride: int, dilation: int, groups: int,
                 stride_in_1x1: bool, norm: str):
        super().__init__()
        self.shortcut = ConvNorm(cin, cout, 1, stride=stride, norm=norm) if cin != cout else None
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = ConvNorm(cin, bottleneck, 1, stride=s1, norm=norm)
        self.conv2 = ConvNorm(bottleneck, bottleneck, 3, stride=s3, padding=dilation, dilation=dilation, groups=groups, norm=norm)
        self.conv3 = ConvNorm(bottleneck, cout, 1, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv3(F.relu(self.conv2(F.relu(self.conv1(x)))))
        return F.relu(out + (self.shortcut(x) if self.shortcut is not None else x))


class D2ResNetBackbone(nn.Module):
    """forward(images [B, 3, H, W]) -> the maps of `out_indices` (0 = res2 ... 3 = res5), NCHW, highest resolution first."""

    def __init__(
        self,
        *,
        depth: int = 101,
        stem: str = "deeplab",
        stem_out_channels: int = 128,
        res2_out_channels: int = 256,
        width_per_group: int = 64,
        num_groups: int = 1,
        stride_in_1x1: bool = False,
        res4_dilation: int = 1,
        res5_dilation: int = 1,
        res5_multi_grid: tuple[int, ...] = (1, 2, 4),
        norm: str = "frozen",
        out_indices: tuple[int, ...] = (0, 1, 2, 3),
        freeze_at: int = 0,
    ):
        super().__init__()
        if depth not in BLOCKS_PER_STAGE:
            raise ValueError(f"resnet depth must be one of {sorted(BLOCKS_PER_STAGE)}, got {depth}")
        if len(res5_multi_grid) != BLOCKS_PER_STAGE[depth][3]:
            raise ValueError(f"res5_multi_grid needs {BLOCKS_PER_STAGE[depth][3]} entries, got {list(res5_multi_grid)}")
        self.out_indices = tuple(out_indices)
        self.stem = (DeepLabStem if stem == "deeplab" else BasicStem)(stem_out_channels, norm)
        cin, cout, bottleneck = stem_out_channels, res2_out_channels, num_groups * width_per_group
        self.channels_per_stage: list[int] = []
        self.stage_names: list[str] = []
        self._strides: list[int] = []
        stride = 4
        for idx, blocks in enumerate(BLOCKS_PER_STAGE[depth][: max(self.out_indices) + 1]):
            dilation = {2: res4_dilation, 3: res5_dilation}.get(idx, 1)
            first_stride = 1 if idx == 0 or dilation > 1 else 2
            stride *= first_stride
            self._strides.append(stride)
            dilations = [dilation * g for g in res5_multi_grid] if idx == 3 else [dilation] * blocks
            stage = nn.Sequential(*(
                Bottleneck(cin if b == 0 else cout, cout, bottleneck, stride=first_stride if b == 0 else 1,
                           dilation=dilations[b], groups=num_groups, stride_in_1x1=stride_in_1x1, norm=norm)
                for b in range(blocks)
            ))
            name = f"res{idx + 2}"
            self.add_module(name, stage)
            self.stage_names.append(name)
            self.channels_per_stage.append(cout)
            cin, cout, bottleneck = cout, cout * 2, bottleneck * 2
        self.freeze(freeze_at)

    def freeze(self, freeze_at: int) -> None:
        """detectron2's FREEZE_AT: 1 freezes the stem, k > 1 also res2..res{k} (parameters get no gradient)."""
        frozen = ([self.stem] if freeze_at >= 1 else []) + [getattr(self, f"res{i}") for i in range(2, freeze_at + 1)]
        for module in frozen:
            for p in module.parameters():
                p.requires_grad_(False)

    @property
    def channels(self) -> list[int]:
        return [self.channels_per_stage[i] for i in self.out_indices]

    @property
    def strides(self) -> list[int]:
        return [self._strides[i] for i in self.out_indices]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        outs = []
        for i, name in enumerate(self.stage_names):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return outs
