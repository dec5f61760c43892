"""Reading YAML into plain data plus the file:line:column of every key, and merging such trees.

A `Tree` is (data, locations): `data` is what yaml.safe_load would give; `locations` maps a key path
(a tuple of str keys and int list indices) to where it was written.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import Location, RecipeError

KeyPath = tuple[Any, ...]


@dataclass
class Tree:
    data: Any
    locations: dict[KeyPath, Location] = field(default_factory=dict)
    soft: set[KeyPath] = field(default_factory=set)  # inherited across a plugin change: see merge()

    def where(self, path: KeyPath) -> Location | None:
        """Location of `path`, or of its nearest ancestor that has one."""
        path = tuple(path)
        while True:
            if path in self.locations:
                return self.locations[path]
            if not path:
                return None
            path = path[:-1]


def dotted(path: KeyPath) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def parse_yaml(text: str, file: str) -> Tree:
    """Safe-load YAML text, recording where each key and item was written."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return Tree({}, {(): Location(file, 1, 1)})
        locations: dict[KeyPath, Location] = {}
        data = _construct(loader, node, (), locations, file)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file)
        raise RecipeError([(where, "", f"invalid YAML: {e.problem or e}")]) from None
    except yaml.YAMLError as e:
        raise RecipeError([(Location(file), "", f"invalid YAML: {e}")]) from None
    finally:
        loader.dispose()
    return Tree(data, locations)


def _loc(node: yaml.Node, file: str) -> Location:
    return Location(file, node.start_mark.line + 1, node.start_mark.column + 1)


def _construct(loader: yaml.SafeLoader, node: yaml.Node, path: KeyPath, locs: dict, file: str) -> Any:
    locs.setdefault(path, _loc(node, file))
    if isinstance(node, yaml.MappingNode):
        written = {id(k) for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"}
        loader.flatten_mapping(node)  # `<<: *anchor` pairs come first; keys written here override them
        out: dict[str, Any] = {}
        explicit: set[str] = set()
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise RecipeError([(_loc(key_node, file), dotted(path), f"keys must be strings, got {key!r}")])
            if id(key_node) in written:
                if key in explicit:
                    raise RecipeError([(_loc(key_node, file), dotted(path + (key,)), "duplicate key")])
                explicit.add(key)
            locs[path + (key,)] = _loc(key_node, file)
            out[key] = _construct(loader, value_node, path + (key,), locs, file)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(loader, item, path + (i,), locs, file) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def load_yaml_file(path: Path) -> Tree:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise RecipeError([(Location(str(path)), "", f"cannot read recipe: {e.strerror or e}")]) from None
    tree = parse_yaml(text, str(path))
    interpolate_env(tree)
    return tree


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate_env(tree: Tree) -> None:
    """Replace ${VAR} and ${VAR:-default} in every string value; `$${` escapes a literal `${`."""

    def visit(value: Any, path: KeyPath) -> Any:
        if isinstance(value, dict):
            return {k: visit(v, path + (k,)) for k, v in value.items()}
        if isinstance(value, list):
            return [visit(v, path + (i,)) for i, v in enumerate(value)]
        if isinstance(value, str) and "${" in value:
            return _substitute(value, tree.where(path), dotted(path))
        return value

    tree.data = visit(tree.data, ())


def _substitute(text: str, where: Location | None, key: str) -> str:
    def repl(m: re.Match) -> str:
        start = m.start()
        if start > 0 and text[start - 1] == "$":
            return m.group(0)
        var, default = m.group(1), m.group(2)
        if var in os.environ:
            return os.environ[var]
        if default is not None:
            return default
        raise RecipeError(
            [(where, key, f"environment variable {var} is not set; set it or write ${{{var}:-default}}")]
        )

    return _ENV.sub(repl, text).replace("$${", "${")


FRESH_ON_PLUGIN_CHANGE = {("dataset",)}
"""Sections that inherit nothing when their plugin changes: another dataset's root or split means
nothing to the new one (`-o dataset='{plugin: folder, root: R}'` reads R/images, not R/val/images)."""


def merge(base: Tree, child: Tree) -> Tree:
    """Deep-merge `child` over `base` (mappings merge; anything else replaces; None deletes a key).

    When a component section's `plugin` changes, the options inherited from the base become *soft*:
    validation keeps those the new plugin accepts (a model name, weights, a threshold ...) and drops the
    rest (λ does not apply to clip-only). Options written beside the new plugin are checked as usual.
    A dataset section whose plugin changes starts afresh (FRESH_ON_PLUGIN_CHANGE).
    """
    soft: set[KeyPath] = {p for p in base.soft | child.soft}
    data = _merge(base.data, child.data, (), soft)
    locations = {p: l for p, l in base.locations.items() if _still_there(data, p)}
    locations.update(child.locations)
    return Tree(data, locations, {p for p in soft if _still_there(data, p)})


def _merge(base: Any, child: Any, path: KeyPath, soft: set[KeyPath]) -> Any:
    if not (isinstance(base, dict) and isinstance(child, dict)):
        return child
    replaced = "plugin" in base and "plugin" in child and base["plugin"] != child["plugin"]
    if replaced and path in FRESH_ON_PLUGIN_CHANGE:
        soft.difference_update({p for p in soft if p[: len(path)] == path})
        return {key: value for key, value in child.items() if value is not None}
    out = dict(base)
    for key, value in child.items():
        if value is None:
            out.pop(key, None)
        elif replaced or key not in out:
            out[key] = value
            soft.discard(path + (key,))
        else:
            out[key] = _merge(out[key], value, path + (key,), soft)
    if replaced:
        soft.update(path + (key,) for key in base if key not in child)
    return out


def _still_there(data: Any, path: KeyPath) -> bool:
    for p in path:
        if isinstance(data, dict) and isinstance(p, str) and p in data:
            data = data[p]
        elif isinstance(data, list) and isinstance(p, int) and p < len(data):
            data = data[p]
        else:
            return False
    return True
