"""The d2 backbones against re-computations written here from the reference's semantics (detectron2's
MaskFormer/OVSeg Swin and ResNet), reading the plugin's tensors by their release key names.

The Swin re-computation never rolls, pads-and-partitions or reverses: it attends densely over the padded map
and decides, from coordinates alone, which tokens share a window of the map rolled by -window//2, which
relative-position bias applies and where the -100 region mask falls. A Swin that rolls before padding (timm),
builds the mask on the unpadded size, or skips the shift when a map fits one window, fails it."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ovframe import BadInput
from ovframe_maskformer.config import MaskFormerConfig
from ovframe_maskformer.model import build_backbone

WINDOW = 4
SWIN = {"embed_dim": 16, "depths": [2, 2, 2, 2], "num_heads": [1, 2, 2, 4], "window_size": WINDOW}


def randomise(module: torch.nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """Weights of trained scale (norms near identity, biases and bias tables that matter); returns the state."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, v in module.state_dict().items():
        if not v.is_floating_point():
            state[k] = v
        elif k.endswith("running_var"):
            state[k] = 0.5 + torch.rand(v.shape, generator=g)
        elif v.dim() == 1 and ("norm" in k or k.endswith(("running_mean",))) and not k.endswith("bias"):
            state[k] = (1 + 0.2 * torch.randn(v.shape, generator=g)) if k.endswith("weight") else 0.2 * torch.randn(v.shape, generator=g)
        elif k.endswith("bias"):
            state[k] = 0.2 * torch.randn(v.shape, generator=g)
        elif k.endswith("relative_position_bias_table"):
            state[k] = 2 * torch.randn(v.shape, generator=g)
        else:
            state[k] = torch.randn(v.shape, generator=g) / math.sqrt(v[0].numel())
    module.load_state_dict(state)
    return state


# -- Swin, recomputed densely --------------------------------------------------------------------------------
def roll_region(coord: torch.Tensor, n: int, shift: int) -> torch.Tensor:
    """Region of a coordinate of the rolled padded map: 0 before n - window, 1 before n - shift, 2 after."""
    return (coord >= n - WINDOW).long() + (coord >= n - shift).long()


def swin_attention(x: torch.Tensor, w: dict[str, torch.Tensor], heads: int, shifted: bool) -> torch.Tensor:
    """x [B, H, W, C] (after norm1) -> the block's attention output [B, H, W, C]."""
    b, h, wd, c = x.shape
    hp, wp = math.ceil(h / WINDOW) * WINDOW, math.ceil(wd / WINDOW) * WINDOW
    xp = torch.zeros(b, hp, wp, c, dtype=x.dtype)
    xp[:, :h, :wd] = x  # padded tokens are zeros and take part in attention
    shift = WINDOW // 2 if shifted else 0
    rows, cols = torch.meshgrid(torch.arange(hp), torch.arange(wp), indexing="ij")
    rr, cc = ((rows - shift) % hp).flatten(), ((cols - shift) % wp).flatten()  # coordinates in the rolled map
    window_id = (rr // WINDOW) * (wp // WINDOW) + cc // WINDOW
    dy = (rr % WINDOW)[:, None] - (rr % WINDOW)[None, :] + WINDOW - 1
    dx = (cc % WINDOW)[:, None] - (cc % WINDOW)[None, :] + WINDOW - 1
    bias = w["attn.relative_position_bias_table"].double()[dy * (2 * WINDOW - 1) + dx].permute(2, 0, 1)  # [heads, N, N]
    if shifted:
        label = roll_region(rr, hp, shift) * 3 + roll_region(cc, wp, shift)
        bias = bias + torch.where(label[:, None] != label[None, :], -100.0, 0.0).double()
    bias = bias.masked_fill(window_id[:, None] != window_id[None, :], float("-inf"))
    t = xp.reshape(b, hp * wp, c)
    qkv = t @ w["attn.qkv.weight"].double().T + w["attn.qkv.bias"].double()
    q, k, v = (z.reshape(b, -1, heads, c // heads).transpose(1, 2) for z in qkv.chunk(3, dim=-1))
    attn = torch.softmax(q @ k.transpose(-1, -2) * (c // heads) ** -0.5 + bias, dim=-1)
    out = (attn @ v).transpose(1, 2).reshape(b, hp * wp, c) @ w["attn.proj.weight"].double().T + w["attn.proj.bias"].double()
    return out.reshape(b, hp, wp, c)[:, :h, :wd]


def layer_norm(x: torch.Tensor, w: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], w[name + ".weight"].double(), w[name + ".bias"].double())


def linear(x: torch.Tensor, w: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    out = x @ w[name + ".weight"].double().T
    return out + w[name + ".bias"].double() if name + ".bias" in w else out


def swin_reference(image: torch.Tensor, w: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """The detectron2 Swin's stage outputs (NCHW, after norm{i}), in float64."""
    x = image.double()
    x = F.pad(x, (0, (-x.shape[-1]) % 4, 0, (-x.shape[-2]) % 4))  # the patch embedding pads to the patch size
    x = F.conv2d(x, w["patch_embed.proj.weight"].double(), w["patch_embed.proj.bias"].double(), stride=4).permute(0, 2, 3, 1)
    x = layer_norm(x, w, "patch_embed.norm")
    outs = []
    for i, depth in enumerate(SWIN["depths"]):
        for j in range(depth):  # the shift is on in every second block, whatever the map's size
            p = f"layers.{i}.blocks.{j}"
            blk = {k[len(p) + 1:]: v for k, v in w.items() if k.startswith(p + ".")}
            x = x + swin_attention(layer_norm(x, w, p + ".norm1"), blk, SWIN["num_heads"][i], shifted=j % 2 == 1)
            x = x + linear(F.gelu(linear(layer_norm(x, w, p + ".norm2"), w, p + ".mlp.fc1")), w, p + ".mlp.fc2")
        outs.append(layer_norm(x, w, f"norm{i}").permute(0, 3, 1, 2))
        if i < len(SWIN["depths"]) - 1:  # patch merging: odd sizes padded, neighbours in the order (0,0) (1,0) (0,1) (1,1)
            h, wd = x.shape[1:3]
            x = F.pad(x, (0, 0, 0, wd % 2, 0, h % 2))
            x = torch.cat([x[:, dy::2, dx::2] for dx in (0, 1) for dy in (0, 1)], dim=-1)
            x = linear(layer_norm(x, w, f"layers.{i}.downsample.norm"), w, f"layers.{i}.downsample.reduction")
    return outs


@pytest.mark.parametrize("size", [(128, 128), (98, 75), (40, 52)], ids=["no-padding", "padding-everywhere", "maps-smaller-than-the-window"])
def test_swin_is_the_reference_swin(size):
    """128x128: maps 32/16/8/4, multiples of the window; 98x75: patch padding, every map padded, odd merges;
    40x52: the last maps (3x4, 2x2) fit in one window and still shift."""
    torch.manual_seed(0)
    backbone = build_backbone(MaskFormerConfig(backbone="d2-swin-b", backbone_args=SWIN)).eval()
    weights = randomise(backbone)
    image = torch.randn(2, 3, *size)
    with torch.no_grad():
        got = backbone(image)
    want = swin_reference(image, weights)
    assert [tuple(g.shape) for g in got] == [tuple(t.shape) for t in want]
    for g, t in zip(got, want):
        torch.testing.assert_close(g.double(), t, atol=1e-5, rtol=1e-5)


# -- ResNet, recomputed with functional ops ------------------------------------------------------------------
def conv_bn(x: torch.Tensor, w: dict[str, torch.Tensor], name: str, stride: int = 1, dilation: int = 1) -> torch.Tensor:
    """detectron2 Conv2d(norm=FrozenBN): bias-free conv, padding keeps the size (dilated), then w * (x - mean) / sqrt(var + 1e-5) + b."""
    weight = w[name + ".weight"].double()
    x = F.conv2d(x, weight, stride=stride, padding=dilation * (weight.shape[-1] // 2), dilation=dilation)
    n = {k: w[f"{name}.norm.{k}"].double().view(1, -1, 1, 1) for k in ("weight", "bias", "running_mean", "running_var")}
    return n["weight"] * (x - n["running_mean"]) / torch.sqrt(n["running_var"] + 1e-5) + n["bias"]


def resnet_reference(image: torch.Tensor, w: dict[str, torch.Tensor], deeplab: bool, blocks: tuple[int, ...], multi_grid: tuple[int, ...]) -> list[torch.Tensor]:
    x = image.double()
    if deeplab:  # three 3x3 convs, the first with stride 2
        for n, s in ((1, 2), (2, 1), (3, 1)):
            x = F.relu(conv_bn(x, w, f"stem.conv{n}", stride=s))
    else:
        x = F.relu(conv_bn(x, w, "stem.conv1", stride=2))
    x = F.max_pool2d(x, 3, stride=2, padding=1)
    outs = []
    for stage, n in enumerate(blocks):
        for b in range(n):
            p = f"res{stage + 2}.{b}"
            stride = 2 if b == 0 and stage > 0 else 1  # in the 3x3 conv (stride_in_1x1: false)
            dilation = multi_grid[b] if stage == 3 else 1
            y = F.relu(conv_bn(x, w, p + ".conv1"))
            y = F.relu(conv_bn(y, w, p + ".conv2", stride=stride, dilation=dilation))
            y = conv_bn(y, w, p + ".conv3")
            x = F.relu(y + (conv_bn(x, w, p + ".shortcut", stride=stride) if b == 0 else x))
        outs.append(x)
    return outs


@pytest.mark.parametrize("preset, deeplab, blocks, multi_grid", [
    ("d2-r101c", True, (3, 4, 23, 3), (1, 2, 4)),
    ("d2-r50", False, (3, 4, 6, 3), (1, 1, 1)),
])
def test_resnet_is_detectron2s(preset, deeplab, blocks, multi_grid):
    narrow = {"stem_out_channels": 16, "res2_out_channels": 32, "width_per_group": 8}
    backbone = build_backbone(MaskFormerConfig(backbone=preset, backbone_args=narrow, backbone_norm="frozen")).eval()
    weights = randomise(backbone, seed=1)
    for k in weights:  # small last-BN scales, as trained ResNets have: activations stay O(1) through 33 blocks
        if k.endswith("conv3.norm.weight") and k.startswith("res"):
            weights[k] = weights[k] * 0.25
    backbone.load_state_dict(weights)
    assert all(not p.requires_grad for p in [*backbone.stem.parameters(), *backbone.res2.parameters()])  # FREEZE_AT 2
    assert backbone.strides == [4, 8, 16, 32] and backbone.channels == [32, 64, 128, 256]
    for size in ((64, 64), (67, 93)):
        image = torch.randn(1, 3, *size)
        with torch.no_grad():
            got = backbone(image)
        want = resnet_reference(image, weights, deeplab, blocks, multi_grid)
        for g, t in zip(got, want):
            assert g.shape == t.shape
            torch.testing.assert_close(g.double(), t, atol=1e-5, rtol=1e-5)


# -- ImageNet initialisation files -----------------------------------------------------------------------------
def test_swin_starts_from_the_official_swin_release_layout(tmp_path):
    """microsoft/Swin-Transformer's {"model": ...}: head, final norm and mask/index buffers dropped, norm{i} at identity."""
    cfg = MaskFormerConfig(backbone="d2-swin-b", backbone_args=SWIN)
    source = randomise(build_backbone(cfg), seed=3)
    official = {k: v for k, v in source.items() if not k.startswith("norm")}
    official.update({"head.weight": torch.zeros(10, 128), "head.bias": torch.zeros(10), "norm.weight": torch.ones(128),
                     "norm.bias": torch.zeros(128), "layers.0.blocks.1.attn_mask": torch.zeros(4, 16, 16)})
    from ovframe_maskformer.swin import relative_position_index

    official["layers.0.blocks.0.attn.relative_position_index"] = relative_position_index(WINDOW)
    torch.save({"model": official}, tmp_path / "swin_official.pth")
    model = build_backbone(cfg.model_copy(update={"backbone_pretrained": str(tmp_path / "swin_official.pth")}), str(tmp_path / "swin_official.pth"))
    got = model.state_dict()
    for k, v in official.items():
        if k in got:
            assert torch.equal(got[k], v), k
    assert torch.equal(got["norm2.weight"], torch.ones(64)) and torch.equal(got["norm2.bias"], torch.zeros(64))
    timm_layout = {k.replace("layers.1.", "layers_1."): v for k, v in official.items()}
    torch.save(timm_layout, tmp_path / "timm.pth")
    with pytest.raises(BadInput, match="timm's Swin layout"):
        build_backbone(cfg, str(tmp_path / "timm.pth"))
    with pytest.raises(BadInput, match="never unpickles"):
        build_backbone(cfg, str(tmp_path / "R-103.pkl"))


def test_resnet_starts_from_a_detectron2_layout_file(tmp_path):
    cfg = MaskFormerConfig(backbone="d2-r101c", backbone_args={"stem_out_channels": 16, "res2_out_channels": 32, "width_per_group": 8})
    source = randomise(build_backbone(cfg), seed=4)
    caffe2_style = {"backbone." + k: v for k, v in source.items() if not k.endswith(("running_mean", "running_var"))}
    from safetensors.torch import save_file

    save_file(caffe2_style, str(tmp_path / "r103.safetensors"))
    model = build_backbone(cfg, str(tmp_path / "r103.safetensors"))
    got = model.state_dict()
    assert torch.equal(got["res4.22.conv2.weight"], source["res4.22.conv2.weight"])
    assert torch.equal(got["stem.conv3.norm.running_var"], torch.ones(16))  # identity statistics, as detectron2 fills them
    torch.save({"model": {"stem.conv1.weight": torch.zeros(8, 3, 3, 3)}}, tmp_path / "wrong.pth")
    with pytest.raises(BadInput, match="not ImageNet weights of backbone d2-r101c"):
        build_backbone(cfg, str(tmp_path / "wrong.pth"))
