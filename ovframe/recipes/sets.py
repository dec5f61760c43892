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
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import RecipeError
from ..registry import Registry
from .locate import locate_beside
from .resolve import apply_override, apply_overrides, load_tree, parse_override, place_by_overrides
from .schema import Recipe, _problems, validate
from .source import Tree, load_yaml_file


class RecipeSetModel(BaseModel):
    """A recipe set: a base recipe and the variants to run from it."""

    model_config = ConfigDict(extra="forbid")
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


@dataclass
class RecipeSet:
    model: RecipeSetModel
    path: Path
    variants: list[Variant]

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
    """Read a recipe set and expand it into named variant trees (not yet validated)."""
    path = Path(path)
    tree = tree or load_yaml_file(path)
    try:
        model = RecipeSetModel.model_validate(tree.data)
    except ValidationError as e:
        raise RecipeError(_problems(e, tree, (), list(RecipeSetModel.model_fields))) from None
    base_path = locate_beside(model.base, path)
    if base_path is None:
        looked = f"looked for {path.parent / model.base} and for a shipped recipe of that name"
        raise RecipeError([(tree.where(("base",)), "base", f"cannot find {model.base!r} ({looked})")])
    base = load_tree(base_path)
    base.data.pop("abstract", None)

    named = list(model.variants.items()) or [("", {})]
    axes = list(model.matrix.items())
    for key, values in axes:
        if not values:
            raise RecipeError([(tree.where(("matrix", key)), f"matrix.{key}", "needs at least one value")])
    variants = []
    for (vname, vsettings), point in itertools.product(named, itertools.product(*(v for _, v in axes))):
        settings: list[tuple[str, Any, tuple]] = [(k, v, ("overrides", k)) for k, v in model.overrides.items()]
        settings += [(k, v, ("variants", vname, k)) for k, v in vsettings.items()]
        settings += [(k, v, ("matrix", k, model.matrix[k].index(v))) for (k, _), v in zip(axes, point)]
        parts = [vname] if vname else []
        parts += [f"{_axis_label(k)}={_slug(v)}" for (k, _), v in zip(axes, point)]
        name = "__".join(_slug(p) for p in parts) or "base"
        vtree = Tree(base.data, dict(base.locations), set(base.soft))
        for key, value, where_path in settings:
            keypath, _ = parse_override(f"{key}=")
            where = tree.where(where_path)
            vtree = apply_override(vtree, keypath, value, dataclasses.replace(where, note=f"variant {name}"))
        vtree.data = {**vtree.data, "name": name, "output_dir": f"{vtree.data.get('output_dir', 'runs')}/{model.name}"}
        own = {k: v for k, v, where_path in settings if where_path[0] != "overrides"}
        variants.append(Variant(name, own, vtree))
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise RecipeError([(tree.where(()), "", f"variants do not have distinct names: {names}")])
    return RecipeSet(model, path, variants)


def validate_set(rset: RecipeSet, registry: Registry, overrides: Sequence[str] = ()) -> list[Recipe]:
    """Validate every variant; all problems of all variants are reported together."""
    recipes, problems = [], []
    for v in rset.variants:
        try:
            tree = place_by_overrides(apply_overrides(v.tree, overrides, registry, str(rset.path)), overrides, "output_dir")
            recipes.append(validate(tree, registry, f"{rset.path} [{v.name}]"))
        except RecipeError as e:
            problems += [(where, f"[{v.name}] {key}" if key else f"[{v.name}]", msg) for where, key, msg in e.problems]
    if problems:
        raise RecipeError(problems)
    return recipes
