"""Reading images from disk into the records' layout (uint8 [3, H, W] RGB), within a size limit.

Memory grows with the pixels of an image (a proposal generator's masks are [N, H, W] floats), so an image
may have at most `max_image_pixels` pixels (default DEFAULT_MAX_IMAGE_PIXELS, 4096 x 4096; the `evaluate`
and `predict` tasks take `max_image_pixels`). The size is read from the file's header, before anything is
decoded: an image over the limit is refused (evaluate: recorded in failures.csv, the run goes on) or, with
`downscale=True` (predict), decoded and shrunk to fit (shrink_to_fit, which ovframe.api.Segmenter applies
to images of every kind). Unreadable files and decompression bombs are a
SampleError: reported and skipped, never the end of a run.
"""

from __future__ import annotations

import logging
import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

import numpy as np
import torch
from PIL import Image, ImageOps

from .config import DEFAULT_MAX_IMAGE_PIXELS
from .errors import BadInput, SampleError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
DECODE_LIMIT = 4 * DEFAULT_MAX_IMAGE_PIXELS
"""Above this many pixels an image is never decoded, not even to be shrunk (PIL's own bomb check is looser)."""

_limit = DEFAULT_MAX_IMAGE_PIXELS
log = logging.getLogger("ovframe")


@contextmanager
def pixel_limit(max_pixels: int) -> Iterator[None]:
    """Within the block, read_image and check_size refuse images over `max_pixels` pixels (background
    loader processes started in the block inherit it)."""
    global _limit
    old, _limit = _limit, max_pixels
    try:
        yield
    finally:
        _limit = old


def check_size(size: tuple[int, int], path: object, sample_id: str, max_pixels: int | None = None) -> None:
    """SampleError when an image of `size` (width, height) is over the limit."""
    limit = _limit if max_pixels is None else max_pixels
    w, h = size
    if w * h > limit:
        raise SampleError(
            sample_id,
            f"{path} is {w} x {h} = {w * h:,} pixels, over the limit of {limit:,} (task option max_image_pixels; "
            f"memory grows with the pixels of an image): downscale it, or raise the limit if you have the memory",
        )
    if w < 1 or h < 1:
        raise SampleError(sample_id, f"{path} is {w} x {h} pixels: empty")


def shrink_to_fit(im: Image.Image, max_pixels: int) -> Image.Image:
    """`im` shrunk (aspect kept) to at most `max_pixels` pixels; as it is when it fits. The one resize of
    over-limit images: `ovframe predict` (read_image with downscale) and ovframe.api.Segmenter (every
    kind of input) call it."""
    if im.width * im.height <= max_pixels:
        return im
    scale = math.sqrt(max_pixels / (im.width * im.height))
    target = (max(1, int(im.width * scale)), max(1, int(im.height * scale)))
    return im.resize(target, Image.Resampling.BILINEAR, reducing_gap=2.0)


def pil_to_tensor(im: Image.Image) -> torch.Tensor:
    """A PIL image in RGB mode -> uint8 [3, H, W]."""
    return torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


def read_image(
    path: str | os.PathLike | IO[bytes], sample_id: str | None = None, *, max_pixels: int | None = None,
    downscale: bool = False, name: str | None = None,
) -> torch.Tensor:
    """uint8 [3, H, W] RGB, EXIF orientation applied. Raises SampleError for unreadable files and for
    images over the pixel limit, unless `downscale`: then they are shrunk (aspect kept) to fit it.
    `path` may be an open binary file (bytes downloaded); `name` is what messages call it."""
    shown = name or str(path)
    sample_id = sample_id or shown
    limit = _limit if max_pixels is None else max_pixels
    try:
        with Image.open(path) as im:
            stored = im.size
            if not downscale or im.width * im.height > DECODE_LIMIT:
                check_size(im.size, shown, sample_id, limit if not downscale else DECODE_LIMIT)
            if downscale and im.width * im.height > limit:  # JPEG: decode at a reduced scale already
                scale = math.sqrt(limit / (im.width * im.height))
                im.draft("RGB", (math.ceil(im.width * scale), math.ceil(im.height * scale)))
            im.load()
            im = ImageOps.exif_transpose(im).convert("RGB")  # EXIF orientation first: it may swap the sides
            if downscale and stored[0] * stored[1] > limit:
                im = shrink_to_fit(im, limit)
                log.info("%s is %d x %d pixels, over the limit of %s (max_image_pixels): shrunk to %d x %d",
                         shown, *stored, f"{limit:,}", im.width, im.height)
    except SampleError:
        raise
    except Exception as e:  # whatever the decoder says: a truncated file, a bad header, a decompression bomb ...
        raise SampleError(sample_id, f"cannot read image {shown}: {type(e).__name__}: {str(e)[:200]}") from None
    return pil_to_tensor(im)


def find_images(inputs: list[str]) -> list[Path]:
    """Image files named directly, and the images under folders (recursively, sorted). BadInput naming
    every input that does not exist, and every folder without an image."""
    found: list[Path] = []
    missing, empty = [], []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not inside:
                empty.append(item)
            found += inside
        elif path.is_file():
            found.append(path)
        else:
            missing.append(item)
    problems = [f"{m}: no such file or folder" for m in missing]
    problems += [f"{e}: no image files in this folder (looked for {', '.join(IMAGE_SUFFIXES)})" for e in empty]
    if problems:
        raise BadInput("\n".join(problems))
    return found


def unreadable_images(paths: list[Path]) -> dict[Path, str]:
    """The files among `paths` that are not images a decoder recognises (headers only: fast), with why."""
    bad: dict[Path, str] = {}
    for path in paths:
        try:
            with Image.open(path):
                pass
        except Exception as e:
            bad[path] = f"{type(e).__name__}: {str(e)[:200]}"
    return bad


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
