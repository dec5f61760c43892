"""Reading images from disk into the records' layout (uint8 [3, H, W] RGB)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import SampleError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def read_image(path: str | os.PathLike, sample_id: str | None = None) -> torch.Tensor:
    """uint8 [3, H, W] RGB, EXIF orientation applied. Raises SampleError for unreadable files."""
    sample_id = sample_id or str(path)
    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im).convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        raise SampleError(sample_id, f"cannot read image {path}: {e}") from None
    return torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


def find_images(inputs: list[str]) -> list[Path]:
    """Image files named directly, and the images under folders (recursively, sorted)."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif path.is_file():
            found.append(path)
        else:
            from .errors import BadInput

            raise BadInput(f"{item}: no such file or folder")
    return found


def resize_image(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 [3, H, W] -> uint8 [3, h, w], resized the way the reference's test mapper does it.

    detectron2's ResizeTransform hands uint8 images to Pillow (`Image.resize((w, h), BILINEAR)`):
    a triangle filter whose support widens with the downscale factor (so it antialiases), computed
    in fixed point on the 8-bit pixels and rounded back to uint8. This calls Pillow the same way, so
    the result is Pillow's to the bit. Returned on the image's device.
    """
    h, w = size
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"resize_image takes uint8 [3,H,W], got {image.dtype} {tuple(image.shape)}")
    if tuple(image.shape[1:]) == (h, w):
        return image
    array = image.permute(1, 2, 0).contiguous().cpu().numpy()
    out = np.asarray(Image.fromarray(array).resize((w, h), Image.BILINEAR))
    return torch.from_numpy(out.copy()).permute(2, 0, 1).contiguous().to(image.device)


def resize_label(label: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """int [H, W] -> [h, w] by Pillow's NEAREST, which detectron2 uses for segmentation maps (as 32-bit
    integers, so IGNORE_INDEX and class ids above 255 survive). Returned on the label's device."""
    h, w = size
    if tuple(label.shape) == (h, w):
        return label
    array = label.cpu().numpy().astype(np.int32)
    out = np.asarray(Image.fromarray(array).resize((w, h), Image.NEAREST)).astype(np.int64)
    return torch.from_numpy(out).to(device=label.device, dtype=label.dtype)
