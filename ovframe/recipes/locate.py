"""Finding a recipe: a file on disk, or one shipped inside the package, by name.

The recipes of the repository's recipes/ folder install as the package `ovframe_recipes`, so from any
folder, after `pip install .`:

    ovframe run demo                    the shipped recipes/demo.yaml
    ovframe run synth/tune              a shipped recipe set
    ovframe run recipes/demo.yaml       the same (a path under recipes/ that is not on disk here)
    extends: ade150_mpt                 in your own recipe: the shipped one, unless a file beside yours has that name

A file on disk always wins over a shipped recipe of the same name.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path, PurePosixPath

from ..errors import BadInput

SHIPPED_PACKAGE = "ovframe_recipes"
FOLDER = "recipes"  # the repository folder the package is built from; `recipes/...` paths name shipped recipes
SUFFIXES = (".yaml", ".yml")


def shipped_root() -> Path | None:
    """The folder of the shipped recipes: the installed `ovframe_recipes`, or recipes/ of a source checkout."""
    spec = importlib.util.find_spec(SHIPPED_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    checkout = Path(__file__).resolve().parents[2]  # ovframe/recipes/locate.py -> the repository
    if (checkout / "pyproject.toml").is_file() and (checkout / FOLDER / "__init__.py").is_file():
        return checkout / FOLDER
    return None


def _shipped_relative(ref: str) -> PurePosixPath | None:
    """`demo`, `synth/tune.yaml`, `recipes/demo.yaml` -> a path inside the shipped folder; None if `ref`
    cannot name one (absolute, or climbing out with `..`)."""
    text = ref.replace("\\", "/")
    while text.startswith("./"):
        text = text[2:]
    if text == FOLDER or text.startswith(FOLDER + "/"):
        text = text[len(FOLDER) :].lstrip("/")
    rel = PurePosixPath(text or ".")
    if rel.is_absolute() or ".." in rel.parts or ":" in text:
        return None
    return rel


def find_shipped(ref: str, *, folder: bool = False) -> Path | None:
    """The shipped recipe (or, with `folder`, the shipped folder) that `ref` names, if there is one."""
    root = shipped_root()
    rel = _shipped_relative(ref)
    if root is None or rel is None:
        return None
    if folder:
        path = root / rel
        return path if path.is_dir() else None
    if not rel.name:
        return None
    names = [rel] if rel.suffix in SUFFIXES else [rel.with_name(rel.name + s) for s in SUFFIXES]
    for name in names:
        if (root / name).is_file():
            return root / name
    return None


def locate_recipe(ref: str | os.PathLike) -> Path:
    """The recipe file `ref` names: a path on disk, else a shipped recipe. BadInput when neither exists."""
    path = Path(os.path.expanduser(str(ref)))
    if path.is_file():
        return path
    shipped = find_shipped(str(ref))
    if shipped is not None:
        return shipped
    raise BadInput(f"{ref}: no such recipe file, and no shipped recipe of that name ({_shipped_hint()})")


def locate_beside(ref: str, beside: Path) -> Path | None:
    """What `extends:` or a set's `base:` names: a path relative to the file that says it, else a
    shipped recipe; None when neither exists."""
    path = beside.parent / os.path.expanduser(ref)
    if path.is_file():
        return path
    return find_shipped(ref)


def shipped_recipes() -> list[tuple[str, Path]]:
    """(name, path) of every shipped YAML file, names as `ovframe run NAME` takes them, sorted."""
    root = shipped_root()
    if root is None:
        return []
    files = sorted(p for p in root.rglob("*") if p.suffix in SUFFIXES and p.is_file())
    return [(p.relative_to(root).with_suffix("").as_posix(), p) for p in files]


def _shipped_hint() -> str:
    names = [n for n, _ in shipped_recipes() if not n.startswith("_") and "/_" not in n]
    names.sort(key=lambda n: ("/" in n, n))  # top-level recipes (demo, ade150_mpt ...) first
    if not names:
        return "no shipped recipes are installed"
    shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
    return f"shipped: {shown}; `ovframe recipes` lists them all"
