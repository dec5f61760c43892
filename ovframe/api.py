"""One-call inference from Python: build a recipe's pipeline once, segment any images with any words.

    from ovframe.api import Segmenter
    seg = Segmenter.from_recipe("recipes/demo.yaml")
    result = seg.segment(["photo.jpg"], ["cat", "sofa", "wall"])[0]
    result.labels  # int64 [H, W], indices into the vocabulary you gave
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .images import read_image
from .recipes import load_recipe
from .records import Sample, Segmentation, Vocabulary
from .registry import get_registry
from .runner import RunContext, Timings, resolve_device

ImageLike = "str | os.PathLike | np.ndarray | torch.Tensor"


def to_image_tensor(image: object) -> torch.Tensor:
    """A path, an HxWx3 uint8 array, or a 3xHxW uint8 tensor -> uint8 [3, H, W]."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 array, got {image.dtype} {image.shape}")
        return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous()
    if isinstance(image, torch.Tensor):
        return image
    raise TypeError(f"cannot use {type(image).__name__} as an image")


class Segmenter:
    """A recipe's pipeline (text encoder, proposals, classifier + adapter, fuser), built once."""

    def __init__(self, ctx: RunContext):
        self.ctx = ctx
        self.pipeline = ctx.pipeline()

    @classmethod
    def from_recipe(cls, path: str | os.PathLike, overrides: Sequence[str] = (), device: str | None = None) -> "Segmenter":
        from .files import check_required_files
        from .runner import required_files

        registry = get_registry()
        recipe = load_recipe(path, list(overrides), registry=registry)
        check_required_files(required_files(recipe))
        ctx = RunContext(recipe, Path(recipe.top.output_dir) / recipe.name, registry, resolve_device(device or recipe.top.device))
        ctx.timings = Timings(ctx.device)
        return cls(ctx)

    @torch.no_grad()
    def segment(self, images: Sequence[object], vocabulary: Sequence[str] | Vocabulary) -> list[Segmentation]:
        """Segment `images` with the classes named in `vocabulary` (it replaces any dataset's)."""
        vocab = vocabulary if isinstance(vocabulary, Vocabulary) else Vocabulary(tuple(vocabulary))
        samples = [Sample(to_image_tensor(im), None, f"image{i}") for i, im in enumerate(images)]
        return self.pipeline.segment(samples, vocab)
