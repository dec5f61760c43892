"""Region encoders: the image model a CLIP region classifier hands to its adapter.

The contract (what `Adapter.attach` receives and must return):

    encoder(images, masks) -> embeddings
        images  float [B, 3, S, S], normalised with the model's mean/std (S = encoder.image_size)
        masks   bool  [B, S, S], True on the region (all True when the classifier keeps the background)
        returns float [B, C], not normalised
    encoder.visual          the open_clip image tower it runs
    encoder.image_size      S
    encoder.model_id        identity of the CLIP weights it started from
    encoder.extras          tensors the checkpoint carried beyond the model (visual.mask_embedding of OVSeg)
    encoder.adapter_state() the tensors an adapter's weights file holds ({} for the plain encoder)

Parameters that a training run should update have requires_grad=True; everything else is frozen.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


class RegionEncoder(nn.Module):
    def __init__(self, visual: nn.Module, image_size: int, model_id: str, extras: dict[str, torch.Tensor] | None = None):
        super().__init__()
        self.visual = visual
        self.image_size = int(image_size)
        self.model_id = model_id
        self.extras = dict(extras or {})

    def adapter_state(self) -> dict[str, torch.Tensor]:
        return {}

    def describe(self) -> dict[str, Any]:
        """Metadata written beside adapter weights."""
        return {"model_id": self.model_id}


class PlainEncoder(RegionEncoder):
    """CLIP's own image forward; the masks are not used (they are already painted into the pixels)."""

    def __init__(self, *args: Any, save_visual: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.save_visual = save_visual

    def forward(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
        return self.visual(images)

    def adapter_state(self) -> dict[str, torch.Tensor]:
        if not self.save_visual:
            return {}
        return {f"visual.{k}": v for k, v in self.visual.state_dict().items()}


def patch_keep(masks: torch.Tensor, patch_size: tuple[int, int]) -> torch.Tensor:
    """bool [B, S, S] region masks -> bool [B, grid*grid]: True for patches with ANY region pixel.

    A patch is replaced by the prompt only when ALL its pixels are background (the reference's ceil of
    the per-patch mean of the binary mask)."""
    pooled = F.max_pool2d(masks[:, None].float(), kernel_size=patch_size, stride=patch_size)
    return pooled.flatten(1) > 0


class MaskPromptEncoder(RegionEncoder):
    """Mask prompt tuning on an open_clip VisionTransformer.

    prompts: float [depth, grid*grid, width] (one token per patch) or [depth, 1, width] (shared).
    Layer 0: the patch tokens out of conv1 whose patch is all background become prompts[0], BEFORE the
    class token is prepended and the positional embedding added (so prompts get positions and ln_pre).
    Deep: after block i, for d = i + 1 < depth, those patch tokens are overwritten with prompts[d].
    The class token is never touched. Output: the tower's own pooling, ln_post and projection.
    """

    def __init__(self, visual: nn.Module, prompts: torch.Tensor, *args: Any, save_visual: bool = False, **kwargs: Any):
        super().__init__(visual, *args, **kwargs)
        check_vit(visual)
        grid = visual.grid_size[0] * visual.grid_size[1]
        width = visual.conv1.out_channels
        layers = len(visual.transformer.resblocks)
        if prompts.ndim != 3 or prompts.shape[1] not in (1, grid) or prompts.shape[2] != width:
            raise ValueError(
                f"mask prompts must be [depth, {grid} or 1, {width}] for this image tower, got {tuple(prompts.shape)}"
            )
        if prompts.shape[0] > layers:
            raise ValueError(f"prompt depth {prompts.shape[0]} exceeds the {layers} blocks of the image tower")
        self.prompts = nn.Parameter(prompts.detach().clone().float())
        self.save_visual = save_visual

    @property
    def depth(self) -> int:
        return int(self.prompts.shape[0])

    def adapter_state(self) -> dict[str, torch.Tensor]:
        state = {"prompts": self.prompts}
        if self.save_visual:
            state.update({f"visual.{k}": v for k, v in self.visual.state_dict().items()})
        return state

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "depth": self.depth, "shared": self.prompts.shape[1] == 1}

    def forward(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        if masks.shape != (images.shape[0], images.shape[2], images.shape[3]):
            raise ValueError(f"masks must be [B, S, S] like the images {tuple(images.shape)}, got {tuple(masks.shape)}")
        return self.forward_patches(images, patch_keep(masks, self.visual.patch_size), self.prompts)

    def forward_patches(self, images: torch.Tensor, keep: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        """The forward from the patch mask: keep bool [B, grid*grid] (True: the patch keeps its token),
        prompts [depth, grid*grid | 1, width] (what `ovframe export` takes as inputs)."""
        v = self.visual
        keep = keep[..., None]  # [B, grid*grid, 1]
        prompts = prompts.to(images.dtype)
        x = v.conv1(images)  # [B, width, g, g]
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)  # [B, g*g, width]
        x = torch.where(keep, x, prompts[0])
        cls = v.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
        x = v.ln_pre(x)
        transformer = v.transformer
        batch_first = getattr(transformer, "batch_first", True)
        for i, block in enumerate(transformer.resblocks):
            h = x if batch_first else x.transpose(0, 1)
            if transformer.grad_checkpointing and torch.is_grad_enabled():
                h = checkpoint(block, h, use_reentrant=False)
            else:
                h = block(h)
            x = h if batch_first else h.transpose(0, 1)
            if i + 1 < prompts.shape[0]:
                x = torch.cat([x[:, :1], torch.where(keep, x[:, 1:], prompts[i + 1])], dim=1)
        pooled, _ = v._pool(x)
        if v.proj is not None:
            pooled = pooled @ v.proj
        return pooled


def check_vit(visual: nn.Module) -> None:
    """Raise ValueError unless `visual` is an open_clip VisionTransformer that MPT can drive."""
    from open_clip.transformer import VisionTransformer

    if not isinstance(visual, VisionTransformer):
        raise ValueError(
            f"mask prompt tuning needs an open_clip VisionTransformer image tower; this model's is "
            f"{type(visual).__name__} (ResNet and timm towers have no patch tokens to replace)"
        )
