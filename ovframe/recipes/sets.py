"""Recipe sets (ablation matrices): a base recipe, then named variants and/or a cartesian matrix.

    name: ade150_lambda
    base: ../ade150_mpt.yaml          # relative to this file
    overrides: {task.max_images: 100} # applied to every variant (optional)
    variants:                         # named points, each a map of dotted keys (optional)
      plain-clip: {adapter: null}
      mpt: {}
    matrix:                           # every combination of these values (optional)
      fuser.lam: [0.6, 0.7, 0.8]

With both, every variant is crossed with every matrix point. Each expanded variant is a recipe named
after its variant and its matrix values, written under runs/<set name>/.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Sequence
from typing import Any

from pydantic import Field, ValidationError

from ..config import StrictModel
from ..errors import BadInput, Location, RecipeError
from ..registry import Registry
from .locate import locate_beside
from .resolve import apply_override, apply_overrides, components_first, is_plain_setting, load_tree, parse_override, place_by_overrides, set_scalars
from .schema import Recipe, _problems, check_runnable, validate
from .source import Loc, Tree, dotted, load_yaml_file


class RecipeSetModel(StrictModel):
    """A recipe set: a base recipe and the variants to run from it."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+=-]*$")
    description: str = ""
    base: str = Field(description="the base recipe: a path relative to this file, or a shipped recipe's name")
    overrides: dict[str, Any] = Field(default_factory=dict, description="dotted keys set in every variant")
    variants: dict[str, dict[str, Any]] = Field(default_factory=dict, description="name -> dotted keys")
    matrix: dict[str, list[Any]] = Field(default_factory=dict, description="dotted key -> values to sweep")


@dataclass
class Variant:
    name: str
    settings: dict[str, Any]  # what sets this variant apart: dotted key -> value (the set's common overrides excluded)
    tree: Tree


class Variants(Sequence[Variant]):
    """The variants of a set, each built when asked for: a matrix of 2**15 points costs no memory."""

    def __init__(self, rset_tree: Tree, model: "RecipeSetModel", base: Tree):
        self.tree, self.model, self.base = rset_tree, model, base
        self.named = list(model.variants.items()) or [("", {})]
        self.axes = list(model.matrix.items())
        self._size = len(self.named)
        for _, values in self.axes:
            self._size *= len(values)
        # name parts, computed once: a variant's name is its named part and one part per axis
        self._named_parts = [[_slug(n)] if n else [] for n, _ in self.named]
        self._axis_parts = [[_slug(f"{_axis_label(k)}={_slug(v)}") for v in values] for k, values in self.axes]
        self._places: dict[tuple, Location] = {}
        self._keypaths: dict[str, tuple] = {}

    def __len__(self) -> int:
        return self._size

    def _point(self, i: int) -> tuple[int, list[int]]:
        """(index of the named variant, index of the value on each axis) of variant `i`."""
        picks = []
        for _, values in reversed(self.axes):
            i, r = divmod(i, len(values))
            picks.append(r)
        return i, picks[::-1]

    def name(self, i: int) -> str:
        return self._name(*self._point(i))

    def _name(self, named: int, picks: list[int]) -> str:
        parts = self._named_parts[named] + [axis[j] for axis, j in zip(self._axis_parts, picks)]
        return _shorten("__".join(parts) or "base")

    def __getitem__(self, i: int) -> Variant:  # type: ignore[override]
        if not 0 <= i < len(self):
            raise IndexError(i)
        named, picks = self._point(i)
        vname, vsettings = self.named[named]
        settings: list[tuple[str, Any, tuple]] = [(k, v, ("overrides", k)) for k, v in self.model.overrides.items()]
        settings += [(k, v, ("variants", vname, k)) for k, v in vsettings.items()]
        settings += [(k, values[j], ("matrix", k, j)) for (k, values), j in zip(self.axes, picks)]
        if len(settings) > 1:
            settings = components_first(settings, lambda s: (self._keypath(s[0], s[2]), s[1]))
        name = self._name(named, picks)
        note = f"variant {name}"
        output_dir = self.base.data.get("output_dir", "runs") if isinstance(self.base.data, dict) else "runs"
        for key, value, _ in settings:
            if key == "output_dir":
                output_dir = value
        here = self._where(("name",), note)
        settings += [("name", name, ("name",)), ("output_dir", output_dir and f"{output_dir}/{self.model.name}", ("name",))]
        vtree = self.base
        plain: list = []  # consecutive plain settings, applied in one pass
        for key, value, where_path in settings:
            keypath = self._keypath(key, where_path)
            where = here if where_path == ("name",) else self._where(where_path, note)
            if is_plain_setting(keypath, value):
                plain.append((keypath, value, Loc.at(where)))
                continue
            if plain:
                vtree, plain = set_scalars(vtree, plain), []

            def locate(sub: tuple, where_path: tuple = where_path) -> Location | None:
                return self._where(where_path + sub, note) if sub else None

            vtree = apply_override(vtree, keypath, value, where, locate)
        if plain:
            vtree = set_scalars(vtree, plain)
        own = {k: v for k, v, where_path in settings if where_path[0] in ("variants", "matrix")}
        return Variant(name, own, vtree)

    def _where(self, path: tuple, note: str) -> Location:
        found = self._places.get(path)
        if found is None:
            found = self._places[path] = self.tree.where(path) or Location(str(self.tree.loc.file))
        return Location(found.file, found.line, found.column, note)

    def _keypath(self, key: str, where_path: tuple) -> tuple:
        found = self._keypaths.get(key)
        if found is None:
            found = self._keypaths[key] = _keypath(key, self.tree, where_path)
        return found


MAX_NAME = 120
"""Variant names longer than this are cut and given a hash (they name folders)."""


def _shorten(name: str) -> str:
    if len(name) <= MAX_NAME:
        return name
    import hashlib

    return f"{name[: MAX_NAME - 9]}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def _keypath(key: str, tree: Tree, where_path: tuple) -> tuple:
    try:
        keypath, _ = parse_override(f"{key}=")
    except BadInput:
        raise RecipeError([(tree.where(where_path), dotted(where_path), f"{key!r} is not a dotted key such as fuser.lam")]) from None
    return keypath


@dataclass
class RecipeSet:
    model: RecipeSetModel
    path: Path
    variants: Variants

    @property
    def name(self) -> str:
        return self.model.name


def is_recipe_set(tree: Tree) -> bool:
    return isinstance(tree.data, dict) and "base" in tree.data


def _slug(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value) if isinstance(value, (dict, list)) else str(value)
    return re.sub(r"[^A-Za-z0-9_.+=-]+", "-", text).strip("-") or "x"


def _axis_label(key: str) -> str:
    """`fuser.lam` -> `lam`; `fuser.plugin` -> `fuser`."""
    parts = key.split(".")
    return parts[-2] if parts[-1] == "plugin" and len(parts) > 1 else parts[-1]


def expand(path: str | Path, tree: Tree | None = None) -> RecipeSet:
    """Read a recipe set; its variants are built (not yet validated) when asked for."""
    path = Path(path)
    tree = tree or load_yaml_file(path)
    try:
        model = RecipeSetModel.model_validate(tree.data)
    except ValidationError as e:
        raise RecipeError(_problems(e, tree, (), list(RecipeSetModel.model_fields))) from None
    problems = []
    for key, values in model.matrix.items():
        if not values:
            problems.append((tree.where(("matrix", key)), f"matrix.{key}", "needs at least one value"))
    for section, keys in [("overrides", model.overrides), ("matrix", model.matrix)] + [
        (("variants", n), v) for n, v in model.variants.items()
    ]:
        for key in keys:
            where_path = (*section, key) if isinstance(section, tuple) else (section, key)
            try:
                _keypath(key, tree, where_path)
            except RecipeError as e:
                problems += e.problems
    base_path = locate_beside(model.base, path)
    if base_path is None:
        looked = f"looked for {path.parent / model.base} and for a shipped recipe of that name"
        problems.append((tree.where(("base",)), "base", f"cannot find {model.base!r} ({looked})"))
    if problems:
        raise RecipeError(problems)
    base = load_tree(base_path)
    base.pop("abstract")
    variants = Variants(tree, model, base)
    seen: dict[str, int] = {}
    for i in range(len(variants)):
        name = variants.name(i)
        if name in seen:
            raise RecipeError(
                [(tree.where(()), "", f"two variants are both named {name!r} (variants {seen[name] + 1} and {i + 1}): "
                  "give the variants distinct names or the matrix distinct values")]
            )
        seen[name] = i
    return RecipeSet(model, path, variants)


def validate_set(
    rset: RecipeSet, registry: Registry, overrides: Sequence[str] = (), keep: bool = True, runnable: bool = False
) -> list[Recipe]:
    """Validate every variant; all problems of all variants are reported together (the first
    MAX_PROBLEMS of them). With keep=False nothing is kept (a matrix of any size in bounded memory)
    and the list is empty. `runnable`: also name the sections each variant's task needs and it lacks."""
    recipes: list[Recipe] = []
    problems: list = []
    memo: dict = {}
    for v in rset.variants:
        try:
            tree = place_by_overrides(apply_overrides(v.tree, overrides, registry, str(rset.path)), overrides, "output_dir")
            recipe = validate(tree, registry, f"{rset.path} [{v.name}]", memo)
            if runnable:
                check_runnable(recipe, registry)
            if keep:
                recipes.append(recipe)
        except RecipeError as e:
            problems += [(where, f"[{v.name}] {key}" if key else f"[{v.name}]", msg) for where, key, msg in e.problems]
    if problems:
        if len(problems) > MAX_PROBLEMS:
            more = len(problems) - MAX_PROBLEMS
            problems = problems[:MAX_PROBLEMS] + [(None, "", f"... and {more:,} more problems")]
        raise RecipeError(problems)
    return recipes


MAX_PROBLEMS = 200
"""The problems of a recipe set reported at most (a matrix can repeat one mistake thousands of times)."""
