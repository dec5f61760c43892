"""Checking the files a recipe needs before any work starts, and hashing them."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .errors import BadInput, MissingFiles, RequiredFile


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def check_required_files(required: list[RequiredFile]) -> None:
    """Raise MissingFiles naming every missing file; BadInput on a sha256 mismatch."""
    missing = [r for r in required if not Path(r.path).exists()]
    if missing:
        raise MissingFiles(missing)
    for r in required:
        if r.sha256 and Path(r.path).is_file():
            actual = sha256_of(r.path)
            if actual != r.sha256.lower():
                raise BadInput(
                    f"{r.path}: sha256 is {actual}, the recipe pins {r.sha256} ({r.what}). "
                    f"The file is corrupt or a different version; get it again: {r.how_to_get}"
                )
