"""Masks as COCO run-length encoding (pycocotools), the form pairs are written in.

    {"size": [H, W], "counts": "<compressed COCO RLE as ASCII text>"}
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ovframe import BadInput


def _mask_utils() -> Any:
    try:
        from pycocotools import mask as mask_utils
    except ImportError:
        raise BadInput("pycocotools is not installed: pip install 'ovframe[mining]' (or pip install pycocotools)") from None
    return mask_utils


def encode(mask: np.ndarray) -> dict[str, Any]:
    """bool [H, W] -> JSON-ready RLE."""
    rle = _mask_utils().encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode(rle: dict[str, Any]) -> np.ndarray:
    """JSON RLE -> bool [H, W]."""
    counts = rle["counts"]
    return _mask_utils().decode({"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}).astype(bool)


def area(rle: dict[str, Any]) -> int:
    counts = rle["counts"]
    return int(_mask_utils().area({"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}))
