"""Reading dense label files into int64 [H, W] with IGNORE_INDEX, and writing them.

8-bit labels (PNG mode L or P) use 255 as ignore; 16-bit labels (16-bit PNG, uint16 TIFF) use 65535,
as in the detectron2 layouts (ADE-847 and PC-459 are uint16 TIFF).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ovframe import IGNORE_INDEX, SampleError
from ovframe.images import check_size
from ovframe.io import atomic_path

IGNORE_8BIT = 255
IGNORE_16BIT = 65535
TIFF_SUFFIXES = (".tif", ".tiff")
_PNG_16BIT_MODES = ("I;16", "I;16B", "I;16L", "I")


def read_label_array(path: str | os.PathLike, sample_id: str) -> tuple[np.ndarray, int]:
    """The raw label values [H, W] and the file's ignore value. Raises SampleError when unreadable."""
    path = Path(path)
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            import tifffile

            with tifffile.TiffFile(path) as tif:
                shape = tif.pages[0].shape
                check_size((shape[1], shape[0]) if len(shape) >= 2 else (0, 0), path, sample_id)
                array = np.asarray(tif.asarray())
        else:
            with Image.open(path) as im:
                check_size(im.size, path, sample_id)  # before decoding: a label can be as large as its image
                im.load()
                if im.mode in ("L", "P"):
                    array = np.asarray(im, dtype=np.uint8)
                elif im.mode in _PNG_16BIT_MODES:
                    array = np.asarray(im).astype(np.uint16 if im.mode != "I" else np.int64)
                else:
                    raise SampleError(
                        sample_id,
                        f"label {path} is a {im.mode} image; labels must hold class indices in one channel "
                        f"(8-bit grey or palette PNG, 16-bit PNG or uint16 TIFF), not colours",
                    )
    except SampleError:
        raise
    except Exception as e:  # whatever the decoder says: truncated, bad header, decompression bomb ...
        raise SampleError(sample_id, f"cannot read label {path}: {type(e).__name__}: {str(e)[:200]}") from None
    if array.ndim != 2:
        raise SampleError(sample_id, f"label {path} has shape {array.shape}; expected a single-channel [H, W] image")
    ignore = IGNORE_8BIT if array.dtype == np.uint8 else IGNORE_16BIT
    return array, ignore


def read_label(path: str | os.PathLike, num_classes: int, sample_id: str) -> torch.Tensor:
    """int64 [H, W] with class indices in [0, num_classes) and IGNORE_INDEX for the ignore value."""
    array, ignore = read_label_array(path, sample_id)
    label = array.astype(np.int64)
    ignored = label == ignore
    label[ignored] = IGNORE_INDEX
    bad = (label >= num_classes) | (label < IGNORE_INDEX) | ((label < 0) & ~ignored)
    if bad.any():
        values = sorted({int(v) for v in array[bad][:1000]})[:8]
        raise SampleError(
            sample_id,
            f"label {path} has values {values} outside the {num_classes} classes (0..{num_classes - 1}) and the ignore value {ignore}",
        )
    return torch.from_numpy(label)


def write_label(path: str | os.PathLike, label: np.ndarray) -> None:
    """Write a uint8 label as PNG or a uint16 label as (zlib-compressed) TIFF or 16-bit PNG, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix.lower() in TIFF_SUFFIXES:
            import tifffile

            if label.dtype != np.uint16:
                raise ValueError(f"{path}: TIFF labels are uint16, got {label.dtype}")
            tifffile.imwrite(tmp, label, compression="zlib")
        else:
            if label.dtype not in (np.uint8, np.uint16):
                raise ValueError(f"{path}: PNG labels are uint8 or uint16, got {label.dtype}")
            Image.fromarray(label).save(tmp, format="PNG")
