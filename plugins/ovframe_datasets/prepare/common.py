"""Helpers shared by the preparations: names, decoding, copying, progress."""

from __future__ import annotations

import io
import re
from pathlib import PurePosixPath, Path
from typing import Iterable, Iterator, TypeVar

import numpy as np
from PIL import Image

from ovframe import BadInput
from ovframe.io import write_bytes

from ..sources import Source

T = TypeVar("T")
_STEM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
SPLIT_FOLDERS = {"val": "validation", "train": "training"}


def stem_of(name: str) -> str:
    """The file stem of a member, checked to be a plain name (output paths are built from it)."""
    stem = PurePosixPath(name).stem
    if not _STEM.match(stem):
        raise BadInput(f"unexpected file name {name!r} in the source; is it the official download?")
    return stem


def by_stem(names: Iterable[str]) -> dict[str, str]:
    return {stem_of(n): n for n in names}


def decode_indices(data: bytes, name: str) -> np.ndarray:
    """A PNG of class indices (grey or palette) as uint8 [H, W]."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if im.mode not in ("L", "P"):
                raise BadInput(f"{name}: a {im.mode} PNG; expected class indices (grey or palette PNG) as in the official download")
            return np.asarray(im, dtype=np.uint8).copy()
    except BadInput:
        raise
    except Exception as e:  # a corrupt file in the download
        raise BadInput(f"{name}: cannot decode ({e}); the download may be corrupt") from None


def copy_member(src: Source, name: str, dest: Path, data: bytes | None = None) -> bool:
    """Copy a member to `dest` unless it is already there (or is `dest` itself). True when written."""
    local = src.local_path(name)
    if dest.exists() and (local is None or dest.stat().st_size == local.stat().st_size):
        return False
    write_bytes(dest, data if data is not None else src.read(name))
    return True


def copy_images(src: Source, names: dict[str, str], dest_dir: Path, desc: str) -> int:
    """Copy the images {stem: member} to dest_dir/<stem>.jpg; the count written."""
    todo = {n: dest_dir / f"{s}.jpg" for s, n in names.items()}
    todo = {n: d for n, d in todo.items() if not d.exists()}
    written = 0
    for name, data in progress(src.read_many(todo), len(todo), desc):
        written += copy_member(src, name, todo[name], data)
    return written


def progress(items: Iterable[T], total: int, desc: str) -> Iterator[T]:
    from tqdm.auto import tqdm

    yield from tqdm(items, total=total, desc=desc, disable=None, dynamic_ncols=True, leave=False)


def wanted_splits(splits: str | Iterable[str] | None, default: tuple[str, ...], allowed: tuple[str, ...]) -> tuple[str, ...]:
    if splits is None:
        return default
    chosen = (splits,) if isinstance(splits, str) else tuple(splits)
    bad = [s for s in chosen if s not in allowed]
    if bad or not chosen:
        raise BadInput(f"splits {list(chosen)}: choose from {list(allowed)}")
    return chosen


def missing(what: str, src: Source, expected: str) -> BadInput:
    return BadInput(f"--source {src.path}: {what} not found. Expected {expected}")
