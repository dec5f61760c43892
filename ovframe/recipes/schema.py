"""The recipe schema: top-level keys, then each component section validated by its component's Config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..config import ComponentConfig
from ..errors import Location, RecipeError
from ..registry import KINDS, ComponentSpec, Registry
from .source import KeyPath, Tree, dotted

SCRATCH_PREFIX = "x-"
"""Top-level keys starting with this are ignored: room for YAML anchors (`x-clip: &clip {...}`)."""

SECTION_ORDER = ("dataset", "vocabulary", "text_encoder", "proposals", "classifier", "adapter", "fuser", "task")


class VocabularySpec(BaseModel):
    """Replaces the dataset's class names (same count and order when labels are evaluated)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    names: list[str] | None = Field(None, description="class names, in label order")
    file: str | None = Field(None, description="a text file with one class name per line")
    seen: list[str] | None = Field(None, description="names of the classes seen in proposal training")


class RecipeModel(BaseModel):
    """Top-level keys of a recipe. Component sections are `{plugin: NAME, ...options}` or just `NAME`."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+=-]*$", description="names runs/<name>/")
    description: str = ""
    abstract: bool = Field(False, description="a fragment to extend, not a complete recipe")
    seed: int = 0
    device: str = Field("auto", description="auto (cuda when available), cpu, cuda, cuda:1 ...")
    output_dir: str = Field("runs", description="runs are written to <output_dir>/<name>/")
    resolution: Literal["reference", "original"] = Field(
        "reference",
        description="reference: resize each image to the proposal generator's test size (uint8, bilinear as the "
        "reference), cut the CLIP crops and fuse there, resize the fused scores to the image's size (the authors' "
        "order); original: crops and fusion at the image's own size from resized mask logits",
    )
    task: dict[str, Any] | str = "evaluate"
    dataset: dict[str, Any] | str | None = None
    vocabulary: VocabularySpec | None = None
    text_encoder: dict[str, Any] | str | None = None
    proposals: dict[str, Any] | str | None = None
    classifier: dict[str, Any] | str | None = None
    adapter: dict[str, Any] | str | None = None
    fuser: dict[str, Any] | str | None = None


@dataclass
class Section:
    """A validated component section."""

    spec: ComponentSpec
    config: ComponentConfig

    def dump(self) -> dict[str, Any]:
        return {"plugin": self.spec.name, **self.config.model_dump(mode="json")}


@dataclass
class Recipe:
    """A resolved, validated recipe."""

    name: str
    top: RecipeModel
    sections: dict[str, Section]
    origin: str  # the file it came from (plus overrides)
    tree: Tree = field(repr=False)

    @property
    def seed(self) -> int:
        return self.top.seed

    def section(self, kind: str) -> Section | None:
        return self.sections.get(kind)

    def resolved(self) -> dict[str, Any]:
        """Everything that changes a number, defaults filled in (what `ovframe show` prints)."""
        out: dict[str, Any] = {
            k: v for k, v in self.top.model_dump(mode="json").items() if k not in KINDS and k != "vocabulary"
        }
        if self.top.vocabulary is not None:
            out["vocabulary"] = self.top.vocabulary.model_dump(mode="json", exclude_none=True)
        for kind in SECTION_ORDER:
            if kind in self.sections:
                out[kind] = self.sections[kind].dump()
        return out


def _message(err: dict[str, Any]) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    got = err.get("input")
    if kind in ("model_type", "dict_type") or isinstance(got, (dict, list)):
        return msg
    return f"{msg} (got {got!r})"


def _problems(e: ValidationError, tree: Tree, prefix: KeyPath, allowed: list[str]) -> list:
    out = []
    for err in e.errors():
        path = prefix + tuple(p for p in err["loc"] if isinstance(p, (str, int)))
        path = _strip_union_tags(path, tree)
        message = _message(err)
        if err["type"] == "extra_forbidden":
            message += f"; allowed keys: {', '.join(allowed)}"
        out.append((tree.where(path), dotted(path), message))
    return out


def _strip_union_tags(path: KeyPath, tree: Tree) -> KeyPath:
    # pydantic names union members in loc ("dict[str,any]", "str"); keep only real keys.
    data, out = tree.data, []
    for p in path:
        if isinstance(data, dict) and p in data:
            data = data[p]
            out.append(p)
        elif isinstance(data, list) and isinstance(p, int) and p < len(data):
            data = data[p]
            out.append(p)
        elif isinstance(data, dict) and not isinstance(p, int) and ("[" in p or p in ("str", "none")):
            continue
        else:
            out.append(p)
            data = None
    return tuple(out)


def validate(tree: Tree, registry: Registry, origin: str) -> Recipe:
    """Validate a resolved recipe tree (extends merged, overrides applied)."""
    if not isinstance(tree.data, dict):
        raise RecipeError([(tree.where(()), "", "a recipe must be a mapping of keys to values")])
    data = {k: v for k, v in tree.data.items() if k != "extends" and not k.startswith(SCRATCH_PREFIX)}
    try:
        top = RecipeModel.model_validate(data)
    except ValidationError as e:
        raise RecipeError(_problems(e, tree, (), list(RecipeModel.model_fields))) from None

    problems: list[tuple[Location | None, str, str]] = []
    sections: dict[str, Section] = {}
    for kind in KINDS:
        raw = getattr(top, kind)
        if raw is None:
            continue
        options = {"plugin": raw} if isinstance(raw, str) else dict(raw)
        plugin = options.pop("plugin", None)
        if not isinstance(plugin, str):
            problems.append((tree.where((kind,)), kind, f"a component section needs `plugin: NAME` ({KINDS[kind].label})"))
            continue
        if plugin not in registry.components[kind]:
            path = (kind, "plugin") if isinstance(raw, dict) else (kind,)
            problems.append((tree.where(path), dotted(path), registry.unknown_message(kind, plugin)))
            continue
        spec = registry.get(kind, plugin)
        for key in [k for k in options if (kind, k) in tree.soft and k not in spec.config.model_fields]:
            del options[key]  # inherited from a section of another plugin, which this one does not take
        try:
            sections[kind] = Section(spec, spec.config.model_validate(options))
        except ValidationError as e:
            allowed = ["plugin", *spec.config.model_fields]
            problems.extend(_problems(e, tree, (kind,) if isinstance(raw, dict) else (kind,), allowed))
    if problems:
        raise RecipeError(problems)
    return Recipe(top.name, top, sections, origin, tree)
