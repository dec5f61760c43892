"""The recipe schema: top-level keys, then each component section validated by its component's Config."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator

from ..config import ComponentConfig, StrictModel
from ..errors import Location, RecipeError
from ..registry import KINDS, ComponentSpec, Registry
from .source import KeyPath, Tree, dotted

SCRATCH_PREFIX = "x-"
"""Top-level keys starting with this are ignored: room for YAML anchors (`x-clip: &clip {...}`)."""

SECTION_ORDER = ("dataset", "vocabulary", "text_encoder", "proposals", "classifier", "adapter", "fuser", "task")


class VocabularySpec(StrictModel):
    """Replaces the dataset's class names (same count and order when labels are evaluated)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    names: list[str] | None = Field(None, description="class names, in label order")
    file: str | None = Field(None, description="a text file with one class name per line")
    seen: list[str] | None = Field(None, description="names of the classes seen in proposal training")

    @field_validator("names")
    @classmethod
    def _distinct(cls, names: list[str] | None) -> list[str] | None:
        if names is not None:
            check_class_names(names)
        return names


def check_class_names(names: list[str] | tuple[str, ...]) -> None:
    """ValueError unless the names are non-empty, distinct and one line each."""
    if not names:
        raise ValueError("needs at least one class name")
    blank = [i for i, n in enumerate(names) if not n.strip()]
    if blank:
        raise ValueError(f"class names may not be empty (item {blank[0]})")
    multiline = [n for n in names if "\n" in n or "\r" in n]
    if multiline:
        raise ValueError(f"a class name is one line: {multiline[0][:40]!r}")
    seen: set[str] = set()
    duplicates = []
    for n in names:
        if n.strip() in seen and n.strip() not in duplicates:
            duplicates.append(n.strip())
        seen.add(n.strip())
    if duplicates:
        raise ValueError(f"class names must be distinct; repeated: {', '.join(repr(d) for d in duplicates[:10])}")


DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d{1,4})?")


class RecipeModel(StrictModel):
    """Top-level keys of a recipe. Component sections are `{plugin: NAME, ...options}` or just `NAME`."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+=-]*$", max_length=200, description="names runs/<name>/")
    description: str = ""
    abstract: bool = Field(False, description="a fragment to extend, not a complete recipe")
    seed: int = Field(0, ge=0, le=2**64 - 1, description="seeds python, numpy and torch (0 .. 2**64-1)")
    device: str = Field("auto", description="auto (cuda when available), cpu, cuda, cuda:1 ..., mps")
    output_dir: str = Field("runs", min_length=1, description="runs are written to <output_dir>/<name>/")
    resolution: Literal["reference", "original"] = Field(
        "reference",
        description="reference: resize each image to the proposal generator's test size (uint8, bilinear as the "
        "reference), cut the CLIP crops and fuse there, resize the fused scores to the image's size (the authors' "
        "order); original: crops and fusion at the image's own size from resized mask logits",
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32",
        description="the proposal generator's and the region classifier's networks under autocast in bf16 or fp16 "
        "(GPUs: faster, less memory); crops, softmaxes and fusion stay fp32. fp32: no autocast",
    )
    task: dict[str, Any] | str = "evaluate"
    dataset: dict[str, Any] | str | None = None
    vocabulary: VocabularySpec | None = None
    text_encoder: dict[str, Any] | str | None = None
    proposals: dict[str, Any] | str | None = None
    classifier: dict[str, Any] | str | None = None
    adapter: dict[str, Any] | str | None = None
    fuser: dict[str, Any] | str | None = None

    @field_validator("device")
    @classmethod
    def _device(cls, device: str) -> str:
        if DEVICE.fullmatch(device):
            return device
        hint = ""
        if device.lower().startswith("gpu"):
            hint = f"; did you mean {'cuda' + device[3:]!r}?"
        elif device.lower() in ("cuda", "cpu", "mps", "auto") or device.lower().startswith("cuda"):
            hint = "; write it in lower case, with a number after cuda: (cuda:0)"
        raise ValueError(f"expected auto, cpu, cuda, cuda:N or mps{hint}")

    @field_validator("output_dir")
    @classmethod
    def _folder(cls, output_dir: str) -> str:
        problem = _folder_problem(output_dir)
        if problem:
            raise ValueError(problem)
        return output_dir


@functools.lru_cache(maxsize=64)
def _folder_problem(output_dir: str) -> str | None:
    """A file where the run folder or one of its parents should be (remembered: sets repeat one folder)."""
    path = Path(output_dir)
    for parent in (path, *path.parents):
        if parent.exists():
            if not parent.is_dir():
                return f"{parent} is a file; output_dir must be a folder (runs go to <output_dir>/<name>/)"
            break
    return None


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


def check_runnable(recipe: Recipe, registry: Registry | None = None) -> None:
    """RecipeError naming every section the recipe's task needs and the recipe does not have (what `ovframe
    validate` and the start of a run check: fragments being assembled may lack them)."""
    from ..compat import problems

    parts = {k: (s.spec.name, s.config) for k, s in recipe.sections.items()}
    found = [p for p in problems(parts, registry) if p.section == "task"]
    if found:
        where = recipe.tree.where(("task", "plugin")) if isinstance(recipe.top.task, dict) else recipe.tree.where(("task",))
        raise RecipeError([(where, "task", p.message) for p in found])


def _message(err: dict[str, Any]) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    got = err.get("input")
    if kind in ("model_type", "dict_type") or isinstance(got, (dict, list)):
        return msg
    return f"{msg} (got {got!r})"


NOT_OPTIONAL = "cannot be null: null switches off an optional section or option, and this one is not (leave the key out for its default)"


def _problems(e: ValidationError, tree: Tree, prefix: KeyPath, allowed: list[str]) -> list:
    out = []
    nulls = set()
    for err in e.errors():
        path = prefix + tuple(p for p in err["loc"] if isinstance(p, (str, int)))
        path = _strip_union_tags(path, tree)
        if "input" in err and err["input"] is None and err["type"] not in ("missing", "extra_forbidden"):
            if path not in nulls:  # one problem, not one per member of a union
                nulls.add(path)
                out.append((tree.where(path), dotted(path), NOT_OPTIONAL))
            continue
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
        elif (isinstance(data, dict) or data is None) and not isinstance(p, int) and ("[" in p or p in ("str", "none")):
            continue
        else:
            out.append(p)
            data = None
    return tuple(out)


Fit = Literal["task", "pipeline", "none"]
"""What a recipe's components must fit (ovframe.compat): its task (run, validate, show, predict), a
segmentation pipeline without the task (bench, Segmenter), or nothing (export builds one component)."""


def validate(tree: Tree, registry: Registry, origin: str, memo: dict | None = None, *, fit: Fit = "task") -> Recipe:
    """Validate a resolved recipe tree (extends merged, overrides applied); every problem is reported,
    and whether its components fit together for what the caller does with them (`fit`).

    `memo` (a dict kept across calls) remembers each distinct section's validation: the variants of a
    recipe set share most of their sections."""
    if not isinstance(tree.data, dict):
        raise RecipeError([(tree.where(()), "", "a recipe must be a mapping of keys to values")])
    data = {k: v for k, v in tree.data.items() if k != "extends" and not k.startswith(SCRATCH_PREFIX)}
    problems: list[tuple[Location | None, str, str]] = []
    top: RecipeModel | None = None
    try:
        top = RecipeModel.model_validate(data)
    except ValidationError as e:
        problems += _problems(e, tree, (), list(RecipeModel.model_fields))
    sections: dict[str, Section] = {}
    for kind in KINDS:
        raw = data.get(kind, RecipeModel.model_fields[kind].default)
        if raw is None or not isinstance(raw, (dict, str)):
            continue  # absent, or a wrong type that the top-level check reported
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
        result = _validate_section(spec, options, memo)
        if isinstance(result, ValidationError):
            problems.extend(_problems(result, tree, (kind,), ["plugin", *spec.config.model_fields]))
        elif isinstance(result, Exception):  # a plugin's validator crashed on input it did not expect
            problems.append((tree.where((kind,)), kind, (
                f"the options of {KINDS[kind].label[:-1]} {plugin!r} could not be checked: its validation failed with "
                f"{type(result).__name__}: {result} (an option of a wrong type? compare with `ovframe plugins --json`)"
            )))
        else:
            sections[kind] = Section(spec, result)
    if not problems and top is not None and not top.abstract and fit != "none":  # do the components fit? (their Configs say)
        from ..compat import problems as misfits

        parts = {k: (s.spec.name, s.config) for k, s in sections.items() if fit == "task" or k != "task"}
        for p in misfits(parts, registry, missing=False):
            raw = data.get(p.section, RecipeModel.model_fields[p.section].default)
            path = (p.section, "plugin") if isinstance(raw, dict) and "plugin" in raw else (p.section,)
            problems.append((tree.where(path), p.section, p.message))
    if problems or top is None:
        raise RecipeError(problems)
    return Recipe(top.name, top, sections, origin, tree)


def _validate_section(spec: ComponentSpec, options: dict[str, Any], memo: dict | None) -> ComponentConfig | Exception:
    key = None
    if memo is not None:
        key = (spec.kind, spec.name, _frozen(options))
        if key in memo:
            return memo[key]
    try:
        result: ComponentConfig | Exception = spec.config.model_validate(options)
    except ValidationError as e:
        result = e
    except Exception as e:  # noqa: BLE001 - a plugin's own validator may raise anything; never a traceback
        result = e
    if key is not None:
        memo[key] = result
    return result


def _frozen(value: Any) -> Any:
    """A hashable stand-in for recipe data (types kept apart: 1, 1.0 and true are different keys)."""
    if isinstance(value, dict):
        return ("{",) + tuple((k, _frozen(v)) if isinstance(v, (dict, list)) else (k, v.__class__, v) for k, v in value.items())
    if isinstance(value, list):
        return ("[",) + tuple(_frozen(v) if isinstance(v, (dict, list)) else (v.__class__, v) for v in value)
    return (value.__class__, value)
