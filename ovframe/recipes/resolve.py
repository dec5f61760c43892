"""From a recipe file to a validated Recipe: `extends:` chains, `${VAR:-default}`, `-o key=value` overrides."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import types
import typing
from pathlib import Path
from typing import Any, Sequence

from pydantic import BaseModel

from ..errors import BadInput, Location, RecipeError
from ..registry import KINDS, Registry
from .locate import locate_beside, locate_recipe
from .schema import Fit, Recipe, RecipeModel, validate
from .source import KeyPath, Loc, Tree, dotted, load_yaml_file, merge, merge_value, parse_yaml


def load_tree(path: str | Path, _chain: tuple[Path, ...] = (), loaded: Tree | None = None) -> Tree:
    """Read a recipe file and everything it extends, deep-merged (the file itself wins). `loaded`: the
    file's own tree when the caller has already read it."""
    path = Path(path)
    resolved = path.resolve()
    tree = loaded if loaded is not None else load_yaml_file(path)
    if not isinstance(tree.data, dict):
        raise RecipeError([(tree.where(()), "", "a recipe must be a mapping of keys to values")])
    expand_shorthands(tree)
    extends_loc = tree.loc.children.get("extends")
    where_extends = tree.where(("extends",))
    extends = tree.pop("extends")
    if extends is None:
        return tree
    bases = [extends] if isinstance(extends, str) else extends
    if not isinstance(bases, list) or not bases or not all(isinstance(b, str) and b for b in bases):
        raise RecipeError([(where_extends, "extends", "expected a path or a list of paths")])
    merged: Tree | None = None
    for i, base in enumerate(bases):
        where = extends_loc.children[i].location() if isinstance(extends, list) else where_extends
        base_path = locate_beside(base, path)
        if base_path is None:
            looked = f"looked for {path.parent / base} and for a shipped recipe of that name"
            raise RecipeError([(where, "extends", f"cannot find {base!r} ({looked})")])
        if base_path.resolve() in (*_chain, resolved):
            cycle = " -> ".join(str(p) for p in (*_chain, resolved, base_path.resolve()))
            raise RecipeError([(where, "extends", f"cyclic extends: {cycle}")])
        if len(_chain) >= MAX_EXTENDS:
            raise RecipeError([(where, "extends", f"extends goes more than {MAX_EXTENDS} files deep")])
        base_tree = load_tree(base_path, (*_chain, resolved))
        base_tree.pop("abstract")  # being a fragment is not inherited
        merged = base_tree if merged is None else merge(merged, base_tree)
    assert merged is not None
    return merge(merged, tree)


MAX_EXTENDS = 32
"""How many files deep `extends:` may chain."""


def expand_shorthands(tree: Tree) -> None:
    """`fuser: clip-only` means `fuser: {plugin: clip-only}`; expand it so that merges see a section."""
    for kind in KINDS:
        value = tree.data.get(kind)
        if isinstance(value, str):
            loc = tree.loc.children[kind]
            tree.set_top(kind, {"plugin": value}, loc.with_children({"plugin": loc}))


def parse_override(text: str, origin: str = "") -> tuple[KeyPath, str]:
    key, sep, value = text.partition("=")
    key = key.strip()
    where = f"{origin}: " if origin else ""
    if not sep or not key or any(not part.strip() for part in key.split(".")):
        raise BadInput(f"{where}bad override -o {text!r}: expected KEY.PATH=VALUE, for example -o fuser.lam=0.6")
    path = tuple(int(p) if p.isascii() and p.isdigit() else p for p in key.split("."))
    if isinstance(path[0], int):
        raise BadInput(f"{where}bad override -o {text!r}: a recipe's keys are names ({path[0]} is a list index)")
    return path, value


def apply_override(tree: Tree, path: KeyPath, value: Any, where: Location, locate: Any = None) -> Tree:
    """Set `path` to `value` with the merge semantics of `extends` (a changed plugin replaces its section).

    Every key inside `value` is placed at `where`, or at `locate(subpath)` when given (a recipe set
    places a variant's mapping at its own lines)."""
    if len(path) == 1 and path[0] in KINDS and isinstance(value, str):
        value = {"plugin": value}
    elif len(path) > 1 and path[-1] == "plugin":  # the mapping that holds `plugin` changes component (or keeps it)
        path, value, locate = path[:-1], {"plugin": value}, None
    if not all(isinstance(p, str) for p in path):
        return _set_list_item(tree, path, value, where, locate)
    if is_plain_setting(path, value):
        return set_scalars(tree, [(path, value, Loc.at(where))])
    data: Any = value
    loc = _value_loc(value, where, locate, ())
    for p in reversed(path):
        data = {p: data}
        loc = Loc.at(where, {p: loc}, weak=True)
    return merge(tree, Tree(data, loc))


def is_plain_setting(path: KeyPath, value: Any) -> bool:
    """Whether setting `path` to `value` is a plain assignment (no merge of mappings, no plugin change)."""
    return (
        not isinstance(value, (dict, list)) and value is not None and path[-1] != "plugin"
        and all(isinstance(p, str) for p in path) and not (len(path) == 1 and path[0] in KINDS)
    )


def set_scalars(tree: Tree, items: Sequence[tuple[KeyPath, Any, Loc]]) -> Tree:
    """Several plain settings (is_plain_setting) in one pass: each mapping on the way is copied once,
    everything else is shared with `tree`. The same result as apply_override one at a time."""
    if not isinstance(tree.data, dict):
        for path, value, loc in items:
            tree = merge(tree, Tree(_nest(path, value), _nest_loc(path, loc)))
        return tree
    top = dict(tree.data)
    top_loc = tree.loc.with_children(dict(tree.loc.children))
    copied: dict[KeyPath, tuple[dict, Loc]] = {(): (top, top_loc)}
    for path, value, loc in items:
        node, node_loc = top, top_loc
        for i in range(len(path) - 1):
            here = path[: i + 1]
            if here in copied:
                node, node_loc = copied[here]
                continue
            p = path[i]
            child = node.get(p)
            if isinstance(child, dict):
                child = dict(child)
                child_loc = node_loc.children[p]
                child_loc = child_loc.with_children(dict(child_loc.children))
            else:  # replaced by a new mapping, as a merge would
                child, child_loc = {}, Loc(loc.file, loc.line, loc.column, loc.note, {}, True)
            node[p], node_loc.children[p] = child, child_loc
            copied[here] = (child, child_loc)
            node, node_loc = child, child_loc
        node[path[-1]] = value
        node_loc.children[path[-1]] = loc
    return Tree(top, top_loc)


def _nest(path: KeyPath, value: Any) -> Any:
    for p in reversed(path):
        value = {p: value}
    return value


def _nest_loc(path: KeyPath, loc: Loc) -> Loc:
    for p in reversed(path):
        loc = Loc(loc.file, loc.line, loc.column, loc.note, {p: loc}, True)
    return loc


def _value_loc(value: Any, where: Location, locate: Any, sub: KeyPath) -> Loc:
    at = (locate(sub) if locate is not None else None) or where
    if isinstance(value, dict):
        return Loc.at(at, {k: _value_loc(v, where, locate, sub + (k,)) for k, v in value.items()})
    if isinstance(value, list):
        return Loc.at(at, [_value_loc(v, where, locate, sub + (i,)) for i, v in enumerate(value)])
    return Loc.at(at)


def _set_list_item(tree: Tree, path: KeyPath, value: Any, where: Location, locate: Any = None) -> Tree:
    """Set one item of a list (`-o task.inputs.0=x.png`): copies only the containers on the way."""

    def setter(node: Any, loc: Loc, i: int) -> tuple[Any, Loc]:
        p = path[i]
        ok = (isinstance(node, dict) and isinstance(p, str) and p in node) or (
            isinstance(node, list) and isinstance(p, int) and p < len(node)
        )
        if i == len(path) - 1:
            if isinstance(node, list) and isinstance(p, int) and p < len(node):  # merged into the item, as a key's value is
                new_value, new_loc = merge_value(node[p], loc.children[p], value, _value_loc(value, where, locate, ()))
            elif isinstance(node, dict) and isinstance(p, str):
                return merge_value(node, loc, {p: value}, Loc.at(where, {p: _value_loc(value, where, locate, ())}, weak=True))
            else:
                raise RecipeError([(where, dotted(path), f"{dotted(path[:-1]) or 'the recipe'} has no item {p}")])
        else:
            if not ok:
                raise RecipeError([(where, dotted(path), f"{dotted(path[: i + 1])} does not exist")])
            new_value, new_loc = setter(node[p], loc.children[p], i + 1)
        copy_node, copy_children = (dict(node), dict(loc.children)) if isinstance(node, dict) else (list(node), list(loc.children))
        copy_node[p], copy_children[p] = new_value, new_loc
        return copy_node, loc.with_children(copy_children)

    data, loc = setter(tree.data, tree.loc, 0)
    return Tree(data, loc)


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
        plugin = section.get("plugin") if isinstance(section, dict) else section
        known = isinstance(plugin, str) and plugin in registry.components[head]
        model: Any = registry.components[head][plugin].config if known else None
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


def selected_section(path: KeyPath, value: Any) -> KeyPath | None:
    """The mapping whose component a setting selects (`proposals` for `proposals.plugin=sam` or
    `proposals={plugin: sam}`), or None when the setting selects none."""
    if len(path) > 1 and path[-1] == "plugin":
        return path[:-1]
    if (isinstance(value, dict) and "plugin" in value) or (len(path) == 1 and path[0] in KINDS and isinstance(value, str)):
        return path
    return None


T = typing.TypeVar("T")


def components_first(settings: Sequence[T], path_and_value: typing.Callable[[T], tuple[KeyPath, Any]]) -> list[T]:
    """The order in which to apply one batch of settings (a command line's `-o`s, a recipe set's variant):
    a setting inside a section that comes before the setting selecting that section's component moves to
    just after it, so that the keys given beside a new plugin are kept in whatever order they were written
    (`-o proposals.points_per_side=8 -o proposals.plugin=sam` is SAM with 8 points per side)."""
    out: list[T] = []
    for item in settings:
        section = selected_section(*path_and_value(item))
        if section is not None:
            inside = [
                t for t in out
                if (p := path_and_value(t)[0])[: len(section)] == section and len(p) > len(section)
                and selected_section(*path_and_value(t)) != section
            ]
            out = [t for t in out if not any(t is u for u in inside)] + [item] + inside
        else:
            out.append(item)
    return out


def _override_path_and_value(text: str) -> tuple[KeyPath, Any]:
    """What an `-o` sets, as far as its order matters (a mapping may name a plugin; null names none).
    A value that is not YAML is reported when it is applied."""
    path, raw = parse_override(text)
    try:
        return path, parse_yaml(raw, "-o", interpolate=False).data if raw.strip() else raw
    except RecipeError:
        return path, raw


def apply_overrides(tree: Tree, overrides: Sequence[str], registry: Registry, origin: str) -> Tree:
    for text in overrides:
        parse_override(text, origin)  # a malformed override is reported before any is applied
    for text in components_first(overrides, _override_path_and_value):
        path, raw = parse_override(text, origin)
        where = tree.where(path) or Location(origin)
        where = dataclasses.replace(where, note=f"set by -o {text}")
        annotation = _annotation_at(path, tree, registry)
        if _is_text(annotation):  # text is taken as written, except null for an optional one
            value: Any = None if raw.strip() in ("null", "~") and _is_optional(annotation) else raw
        else:
            try:
                value = parse_yaml(raw, "-o", interpolate=False).data if raw.strip() else ""
            except RecipeError as e:
                reason = "; ".join(message for _, _, message in e.problems)
                raise RecipeError([(where, dotted(path), f"cannot parse the value {raw!r}: {reason}")]) from None
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
    return set_scalars(tree, [((key,), f"{value}+{suffix}", tree.loc.children[key])])


def load_recipe(path: str | Path, overrides: Sequence[str] = (), registry: Registry | None = None, *, fit: Fit = "task") -> Recipe:
    """Load, merge, override and validate a recipe: a file, or a shipped recipe by name (`demo`).
    The run keeps the recipe's `name` (`ovframe run` also places the run by the overrides:
    place_by_overrides). `fit`: what its components are used for (see schema.validate)."""
    from ..registry import get_registry

    registry = registry or get_registry()
    path = locate_recipe(path)
    tree = load_tree(path)
    tree = apply_overrides(tree, overrides, registry, str(path))
    return validate(tree, registry, str(path), fit=fit)
