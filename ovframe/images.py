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
