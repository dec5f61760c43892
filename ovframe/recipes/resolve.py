"""From a recipe file to a validated Recipe: `extends:` chains, `${VAR:-default}`, `-o key=value` overrides."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import re
import types
import typing
from pathlib import Path
from typing import Any, Sequence

import yaml
from pydantic import BaseModel

from ..errors import BadInput, Location, RecipeError
from ..registry import KINDS, Registry
from .locate import locate_beside, locate_recipe
from .schema import Recipe, RecipeModel, validate
from .source import KeyPath, Tree, dotted, load_yaml_file, merge


def load_tree(path: str | Path, _chain: tuple[Path, ...] = ()) -> Tree:
    """Read a recipe file and everything it extends, deep-merged (the file itself wins)."""
    path = Path(path)
    resolved = path.resolve()
    tree = load_yaml_file(path)
    if not isinstance(tree.data, dict):
        raise RecipeError([(tree.where(()), "", "a recipe must be a mapping of keys to values")])
    expand_shorthands(tree)
    extends = tree.data.pop("extends", None)
    if extends is None:
        return tree
    bases = [extends] if isinstance(extends, str) else extends
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise RecipeError([(tree.where(("extends",)), "extends", "expected a path or a list of paths")])
    merged: Tree | None = None
    for i, base in enumerate(bases):
        where = tree.where(("extends", i) if isinstance(extends, list) else ("extends",))
        base_path = locate_beside(base, path)
        if base_path is None:
            looked = f"looked for {path.parent / base} and for a shipped recipe of that name"
            raise RecipeError([(where, "extends", f"cannot find {base!r} ({looked})")])
        if base_path.resolve() in (*_chain, resolved):
            cycle = " -> ".join(str(p) for p in (*_chain, resolved, base_path.resolve()))
            raise RecipeError([(where, "extends", f"cyclic extends: {cycle}")])
        base_tree = load_tree(base_path, (*_chain, resolved))
        base_tree.data.pop("abstract", None)  # being a fragment is not inherited
        merged = base_tree if merged is None else merge(merged, base_tree)
    assert merged is not None
    return merge(merged, tree)


def expand_shorthands(tree: Tree) -> None:
    """`fuser: clip-only` means `fuser: {plugin: clip-only}`; expand it so that merges see a section."""
    for kind in KINDS:
        if isinstance(tree.data.get(kind), str):
            tree.data[kind] = {"plugin": tree.data[kind]}
            if (kind,) in tree.locations:
                tree.locations[(kind, "plugin")] = tree.locations[(kind,)]


def parse_override(text: str, origin: str = "") -> tuple[KeyPath, str]:
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        where = f"{origin}: " if origin else ""
        raise BadInput(f"{where}bad override -o {text!r}: expected KEY.PATH=VALUE, for example -o fuser.lam=0.6")
    path = tuple(int(p) if p.isdigit() else p for p in key.split("."))
    return path, value


def apply_override(tree: Tree, path: KeyPath, value: Any, where: Location) -> Tree:
    """Set `path` to `value` with the merge semantics of `extends` (a changed plugin replaces its section)."""
    if not all(isinstance(p, str) for p in path):
        return _set_list_item(tree, path, value, where)
    if len(path) == 1 and path[0] in KINDS and isinstance(value, str):
        value = {"plugin": value}
    data: Any = value
    for p in reversed(path):
        data = {p: data}
    merged = merge(tree, Tree(data, {}))
    for i in range(1, len(path) + 1):
        if i == len(path) or path[:i] not in merged.locations:
            merged.locations[path[:i]] = where
    return merged


def _set_list_item(tree: Tree, path: KeyPath, value: Any, where: Location) -> Tree:
    tree = Tree(copy.deepcopy(tree.data), dict(tree.locations), set(tree.soft))  # variants share their base
    node = tree.data
    for p in path[:-1]:
        try:
            node = node[p]
        except (KeyError, IndexError, TypeError):
            raise RecipeError([(where, dotted(path), f"{dotted(path[:-1])} does not exist")]) from None
    try:
        node[path[-1]] = value
    except (IndexError, TypeError):
        raise RecipeError([(where, dotted(path), "no such list item")]) from None
    tree.locations[path] = where
    return tree


def _is_text(annotation: Any) -> bool:
    if annotation in (str, Path):
        return True
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return len(args) == 1 and _is_text(args[0])
    return False


def _is_optional(annotation: Any) -> bool:
    return type(None) in typing.get_args(annotation)


def _annotation_at(path: KeyPath, tree: Tree, registry: Registry) -> Any:
    """The schema's type at `path`, when the schema knows it (for typing `-o` values)."""
    head, rest = path[0], path[1:]
    if head in KINDS:
        if not rest:
            return None
        if rest == ("plugin",):
            return str
        section = tree.data.get(head) if isinstance(tree.data, dict) else None
        plugin = section if isinstance(section, str) else (section or {}).get("plugin")
        model: Any = registry.components[head].get(plugin).config if plugin in registry.components[head] else None
    else:
        model, rest = RecipeModel, path
    for p in rest:
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or p not in model.model_fields:
            return None
        model = model.model_fields[p].annotation
        if not isinstance(model, type):
            args = [a for a in typing.get_args(model) if isinstance(a, type) and issubclass(a, BaseModel)]
            model = args[0] if len(args) == 1 and p != rest[-1] else model
    return model


def apply_overrides(tree: Tree, overrides: Sequence[str], registry: Registry, origin: str) -> Tree:
    for text in overrides:
        path, raw = parse_override(text, origin)
        where = tree.where(path) or Location(origin)
        where = dataclasses.replace(where, note=f"set by -o {text}")
        annotation = _annotation_at(path, tree, registry)
        if _is_text(annotation):  # text is taken as written, except null for an optional one
            value: Any = None if raw.strip() in ("null", "~") and _is_optional(annotation) else raw
        else:
            try:
                value = yaml.safe_load(raw) if raw.strip() else ""
            except yaml.YAMLError as e:
                raise RecipeError([(where, dotted(path), f"cannot parse value {raw!r}: {e}")]) from None
        tree = apply_override(tree, path, value, where)
    return tree


def override_suffix(overrides: Sequence[str]) -> str:
    """A readable, stable name for what `-o` changed: `fuser.lam=0.5`, several sorted by key and joined
    by `+` (the last of a repeated key counts). Empty when `name` or `output_dir` is overridden (that
    places the run already). Long values or characters a folder name should not hold are cut or
    replaced, with a short hash of the full text appended so that different overrides never share one."""
    settings: dict[str, str] = {}
    for text in overrides:
        parse_override(text)  # a malformed override is reported here, as everywhere
        key, _, value = text.partition("=")
        settings[key.strip()] = value.strip()
    if not settings or {"name", "output_dir"} & set(settings):
        return ""
    parts = [f"{key}={value}" for key, value in sorted(settings.items())]
    slugs = [f"{slug(key)}={slug(value)}" for key, value in sorted(settings.items())]
    joined = "+".join(slugs)
    if slugs != parts or len(joined) > 64:
        digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:8]
        joined = f"{joined[:48].rstrip('+-.')}-{digest}"
    return joined


def slug(text: str) -> str:
    """Text fit for a folder name: runs of other characters become one '-'."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")


def place_by_overrides(tree: Tree, overrides: Sequence[str], key: str = "name") -> Tree:
    """Runs that differ only by `-o` get their own directory: `key` (the recipe's `name`, or the
    `output_dir` that holds a recipe set's variants) gets `+` and the overrides appended."""
    suffix = override_suffix(overrides)
    value = tree.data.get(key) if isinstance(tree.data, dict) else None
    if not suffix or not isinstance(value, str):
        return tree  # nothing to add, or a missing/bad key that validation reports
    return Tree({**tree.data, key: f"{value}+{suffix}"}, tree.locations, tree.soft)


def load_recipe(path: str | Path, overrides: Sequence[str] = (), registry: Registry | None = None) -> Recipe:
    """Load, merge, override and validate a recipe: a file, or a shipped recipe by name (`demo`).
    The run keeps the recipe's `name` (`ovframe run` also places the run by the overrides:
    place_by_overrides)."""
    from ..registry import get_registry

    registry = registry or get_registry()
    path = locate_recipe(path)
    tree = load_tree(path)
    tree = apply_overrides(tree, overrides, registry, str(path))
    return validate(tree, registry, str(path))
