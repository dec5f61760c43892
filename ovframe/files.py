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
    """Raise MissingFiles naming every missing file; BadInput on a sha256 mismatch.

    A file several components need (one CLIP checkpoint for the text encoder and the classifier) is
    named, and hashed, once."""
    unique: dict[tuple[str, str | None], RequiredFile] = {}
    for r in required:
        unique.setdefault((r.path, r.sha256), r)
    missing: dict[str, RequiredFile] = {}
    for r in unique.values():
        if not Path(r.path).exists():
            missing.setdefault(r.path, r)
    if missing:
        raise MissingFiles(list(missing.values()))
    for r in unique.values():
        if r.sha256 and Path(r.path).is_file():
            actual = sha256_of(r.path)
            if actual != r.sha256.lower():
                raise BadInput(
                    f"{r.path}: sha256 is {actual}, the recipe pins {r.sha256} ({r.what}). "
                    f"The file is corrupt or a different version; get it again: {r.how_to_get}"
                )


PACKAGE_SCHEME = "pkg://"


def resolve_path(path: str | os.PathLike) -> Path:
    """A recipe path: `pkg://PACKAGE/rel/path` names a file shipped inside an installed package
    (so a recipe works from any folder); anything else is a filesystem path, `~` expanded."""
    text = str(path)
    if text.startswith(PACKAGE_SCHEME):
        package, _, rel = text[len(PACKAGE_SCHEME):].partition("/")
        import importlib.util

        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise BadInput(f"{text}: package {package!r} is not installed")
        return Path(list(spec.submodule_search_locations)[0]) / rel
    return Path(os.path.expanduser(text))
