"""Checking the files a recipe needs before any work starts, and hashing them."""

from __future__ import annotations

import functools
import hashlib
import os
import re
from pathlib import Path

from .errors import BadInput, MissingFiles, RequiredFile


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def inspect_required_files(required: list[RequiredFile]) -> tuple[list[RequiredFile], dict[tuple[str, str | None], str]]:
    """(the missing files, {(path, sha256): what is wrong} for files whose sha256 is not the pinned one).

    A file several components need (one CLIP checkpoint for the text encoder and the classifier, or
    every variant of a recipe set) is looked at, and hashed, once."""
    unique: dict[tuple[str, str | None], RequiredFile] = {}
    for r in required:
        unique.setdefault((r.path, r.sha256), r)
    missing: dict[str, RequiredFile] = {}
    for r in unique.values():
        if not Path(r.path).exists():
            missing.setdefault(r.path, r)
    wrong: dict[tuple[str, str | None], str] = {}
    for key, r in unique.items():
        if r.sha256 and r.path not in missing and Path(r.path).is_file():
            actual = sha256_of(r.path)
            if actual != r.sha256.lower():
                wrong[key] = (
                    f"{r.path}: sha256 is {actual}, the recipe pins {r.sha256} ({r.what}). "
                    f"The file is corrupt or a different version; get it again: {r.how_to_get}"
                )
    return list(missing.values()), wrong


def check_required_files(required: list[RequiredFile]) -> None:
    """Raise MissingFiles naming every missing file; BadInput on a sha256 mismatch."""
    missing, wrong = inspect_required_files(required)
    if missing:
        raise MissingFiles(missing)
    if wrong:
        raise BadInput("\n".join(wrong.values()))


PACKAGE_SCHEME = "pkg://"
_PACKAGE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@functools.lru_cache(maxsize=1)
def shipping_packages() -> frozenset[str]:
    """Packages `pkg://` may name (besides ovframe_* ones, such as ovframe_recipes): ovframe and the
    top-level packages of the `ovframe` entry points (first-party and installed third-party plugins).
    Read from package metadata; nothing is imported."""
    from importlib import metadata

    names = {"ovframe"}
    for ep in metadata.entry_points(group="ovframe"):
        names.add(ep.value.split(":")[0].split(".")[0].strip())
    return frozenset(names)


def package_path_problem(text: str) -> str | None:
    """What is wrong with a `pkg://PACKAGE/rel/path`, checked without importing or reading anything."""
    package, sep, rel = text[len(PACKAGE_SCHEME):].partition("/")
    if not _PACKAGE_NAME.fullmatch(package):
        return f"{text}: expected pkg://PACKAGE/relative/path with PACKAGE a top-level package name (no dots)"
    if package not in shipping_packages() and not package.startswith("ovframe_"):
        return (
            f"{text}: pkg:// names a file shipped in ovframe or in a plugin package "
            f"({', '.join(sorted(shipping_packages()))}), not in {package!r}"
        )
    parts = rel.replace("\\", "/").split("/")
    if not sep or not rel or rel.startswith("/") or ".." in parts or ":" in parts[0]:
        return f"{text}: the path after pkg://{package}/ must be relative and stay inside the package (no .., no leading /)"
    return None


def resolve_path(path: str | os.PathLike) -> Path:
    """A recipe path: `pkg://PACKAGE/rel/path` names a file shipped inside ovframe or a plugin package
    (so a recipe works from any folder), contained in that package's folder; anything else is a
    filesystem path, `~` expanded."""
    text = str(path)
    if not text.startswith(PACKAGE_SCHEME):
        return Path(os.path.expanduser(text))
    problem = package_path_problem(text)
    if problem is not None:
        raise BadInput(problem)
    package, _, rel = text[len(PACKAGE_SCHEME):].partition("/")
    import importlib.util

    spec = importlib.util.find_spec(package)  # a top-level name: found, not imported
    if spec is None or not spec.submodule_search_locations:
        raise BadInput(f"{text}: package {package!r} is not installed")
    folder = Path(list(spec.submodule_search_locations)[0]).resolve()
    target = (folder / rel).resolve()
    if not target.is_relative_to(folder):
        raise BadInput(f"{text}: leads outside the package folder {folder} (through a link?)")
    return target
