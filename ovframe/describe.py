"""A component's options in words: name, type, default, description (what `ovframe plugins NAME` prints).

Read from the component's pydantic Config alone (light: no torch). Options that are themselves
mappings (a fuser's `skip`, SAM's custom `model`) are listed with their keys as dotted names.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from .config import ComponentConfig

_BOUNDS = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"), ("min_length", "min length"), ("max_length", "max length"))


@dataclass(frozen=True)
class Option:
    name: str  # dotted for the keys of a nested mapping: skip.share_iou
    type: str
    default: Any  # REQUIRED when the recipe must give it
    description: str

    def to_json(self) -> dict[str, Any]:
        required = self.default is REQUIRED
        return {"name": self.name, "type": self.type, "required": required,
                **({} if required else {"default": _jsonable(self.default)}), "description": self.description}


class _Required:
    def __repr__(self) -> str:
        return "(required)"


REQUIRED: Any = _Required()


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, tuple):
        return list(value)
    return value


def type_name(annotation: Any) -> str:
    """A type as a recipe writer reads it: `float`, `a | b` for choices, `list[str]`, `X | null`."""
    if annotation is type(None):
        return "null"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(str(a) if not isinstance(a, str) else a for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is not None:
        inner = ", ".join("..." if a is Ellipsis else type_name(a) for a in args)
        base = getattr(origin, "__name__", str(origin))
        return f"{base}[{inner}]" if inner else base
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))


def _bounds(field: FieldInfo) -> str:
    out = []
    for meta in field.metadata:
        for attr, symbol in _BOUNDS:
            value = getattr(meta, attr, None)
            if value is not None:
                out.append(f"{symbol} {value}")
    return ", ".join(out)


def _default(field: FieldInfo) -> Any:
    if field.default_factory is not None:
        return field.default_factory()  # type: ignore[call-arg]
    return REQUIRED if field.default is PydanticUndefined else field.default


def _nested(annotation: Any) -> type[BaseModel] | None:
    """The mapping model an option holds (alone, or with None or names beside it)."""
    candidates = [annotation, *typing.get_args(annotation)]
    models = [a for a in candidates if isinstance(a, type) and issubclass(a, BaseModel)]
    return models[0] if len(models) == 1 else None


def options(config: type[BaseModel], prefix: str = "") -> list[Option]:
    """The options of a Config class, in declaration order, nested mappings flattened after their key."""
    out = []
    for name, field in config.model_fields.items():
        bounds = _bounds(field)
        kind = type_name(field.annotation) + (f" ({bounds})" if bounds else "")
        description = field.description or ""
        out.append(Option(prefix + name, kind, _default(field), description))
        nested = _nested(field.annotation)
        if nested is not None:
            out += options(nested, prefix=f"{prefix}{name}.")
    return out


def docstring(config: type[ComponentConfig]) -> str:
    import inspect

    return inspect.cleandoc(config.__doc__ or "")


def declarations(config: type[ComponentConfig], kind: str) -> dict[str, Any]:
    """What the component declares it needs from its recipe (the compatibility `ovframe validate` checks).

    Declarations that depend on the options (a property on the Config) are shown as 'depends on options'."""
    keys = {
        "proposals": ("needs_text", "needs_labels"),
        "classifier": ("needs_text", "needs_labels", "adapter_family"),
        "adapter": ("adapter_family",),
        "fuser": ("needs_classifier", "needs_proposal_classes"),
        "task": ("needs_sections", "runs_pipeline", "labelled_samples", "trains"),
    }.get(kind, ())
    out = {}
    for key in keys:
        value = getattr(config, key)
        out[key] = "depends on options" if isinstance(value, property) else _jsonable(value)
    return out


def _short(value: Any) -> str:
    """A default as YAML would spell it, cut to 40 characters."""
    import json

    if value is REQUIRED:
        return "(required)"
    value = _jsonable(value)
    if isinstance(value, str) and value and value == value.strip():
        text = value
    else:
        text = json.dumps(value, ensure_ascii=False)  # null, true, 0.7, [..], {..}, ""
    return text if len(text) <= 40 else text[:37] + "..."


def options_table(config: type[BaseModel]) -> str:
    """The options as aligned text: name, type, default, then the description wrapped beneath."""
    import textwrap

    rows = options(config)
    if not rows:
        return "  (no options)"
    name_w = max(len(o.name) for o in rows)
    type_w = min(max(len(o.type) for o in rows), 44)
    lines = [f"  {'option':<{name_w}}  {'type':<{type_w}}  default", f"  {'-' * name_w}  {'-' * type_w}  -------"]
    for o in rows:
        lines.append(f"  {o.name:<{name_w}}  {o.type:<{type_w}}  {_short(o.default)}")
        for line in textwrap.wrap(o.description, width=96):
            lines.append(f"  {'':<{name_w}}    {line}")
    return "\n".join(lines)


__all__ = ["Option", "REQUIRED", "declarations", "docstring", "options", "options_table", "type_name"]
