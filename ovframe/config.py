"""Base of every component's Config (light: pydantic only, importable without torch).

Every model a recipe is validated with derives from `StrictModel`, which refuses what pydantic's lax
mode would quietly convert or let through:
  - a boolean where a number is expected (`batch_size: true` is not 1) and a number where a boolean is;
  - integers outside 64 bits (unless the field sets its own bound), and NaN or infinite floats;
  - a `sha256` (or `*_sha256`) that is not 64 hexadecimal digits;
  - a `pkg://` path that leaves its package or names a package that is not ovframe's or a plugin's.
"""

from __future__ import annotations

import re
import types
import typing
from typing import Any, Callable, ClassVar, Literal

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

INT_MIN, INT_MAX = -(2**63), 2**63 - 1
DEFAULT_MAX_IMAGE_PIXELS = 4096 * 4096
"""The most pixels an image may have (task option max_image_pixels): memory grows with them (see ovframe.images)."""
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


class StrictModel(BaseModel):
    """A pydantic model for recipe input: unknown keys rejected, no silent bool/number coercion, finite floats."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _strict_input(cls, value: Any, info: ValidationInfo) -> Any:
        return strict_input(cls, value, info)


def strict_input(cls: type[BaseModel], value: Any, info: ValidationInfo) -> Any:
    """StrictModel's check of one field. A model that cannot derive from StrictModel (its discriminator
    field of a tagged union may have no validator) attaches it to its other fields:
    `_strict = field_validator("a", "b", mode="before")(strict_input)`."""
    check = _field_checks(cls).get(info.field_name or "")
    if check is not None:
        problem = check(value)
        if problem is not None:
            raise ValueError(problem)
    return value


Check = Callable[[Any], "str | None"]
_CHECKS: dict[type, dict[str, Check | None]] = {}


def _field_checks(cls: type[BaseModel]) -> dict[str, Check | None]:
    """Per field of `cls`, the function that finds what lax validation would let through (None: nothing to check)."""
    checks = _CHECKS.get(cls)
    if checks is None:
        checks = {}
        for name, info in cls.model_fields.items():
            parts = [
                c for c in (
                    value_check(info.annotation, _has_upper_bound(info.metadata)),
                    _sha256_check if name == "sha256" or name.endswith("_sha256") else None,
                    _package_paths_problem if _may_hold_text(info.annotation) else None,
                ) if c is not None
            ]
            checks[name] = None if not parts else parts[0] if len(parts) == 1 else _first_of(parts)
        _CHECKS[cls] = checks
    return checks


def _first_of(checks: list[Check]) -> Check:
    def check(value: Any) -> str | None:
        for c in checks:
            problem = c(value)
            if problem is not None:
                return problem
        return None

    return check


def _sha256_check(value: Any) -> str | None:
    if isinstance(value, str) and not _SHA256.fullmatch(value):
        return "a sha256 is 64 hexadecimal digits (print one with `sha256sum FILE`)"
    return None


def _has_upper_bound(metadata: list[Any]) -> bool:
    return any(isinstance(m, (annotated_types.Le, annotated_types.Lt)) for m in metadata)


def _members(annotation: Any) -> tuple[Any, ...] | None:
    origin = typing.get_origin(annotation)
    if origin is typing.Union or isinstance(annotation, types.UnionType):
        return typing.get_args(annotation)
    return None


def _may_hold_text(annotation: Any) -> bool:
    if annotation is str or annotation is Any:
        return True
    if typing.get_origin(annotation) is typing.Annotated:
        return _may_hold_text(typing.get_args(annotation)[0])
    members = _members(annotation)
    if members is not None:
        return any(_may_hold_text(m) for m in members)
    if typing.get_origin(annotation) in (list, tuple):
        return any(_may_hold_text(a) for a in typing.get_args(annotation) if a is not Ellipsis)
    return False


def value_problem(annotation: Any, value: Any, bounded: bool = False) -> str | None:
    """What is wrong with `value` for `annotation` that pydantic's lax mode would let pass, or None."""
    check = value_check(annotation, bounded)
    return None if check is None else check(value)


def value_check(annotation: Any, bounded: bool = False) -> Check | None:
    """A function finding what lax validation would let through for `annotation`; None when nothing can be."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return value_check(typing.get_args(annotation)[0], bounded)
    members = _members(annotation)
    if members is not None:
        optional = type(None) in members
        checks = [value_check(m, bounded) for m in members if m is not type(None)]
        if any(c is None for c in checks):
            return None  # a member takes anything pydantic accepts

        def union(value: Any) -> str | None:
            if value is None and optional:
                return None
            problems = [c(value) for c in checks]  # type: ignore[misc]
            return None if any(p is None for p in problems) else problems[0]

        return union
    if origin is Literal:
        choices = typing.get_args(annotation)
        listed = ", ".join(repr(v) for v in choices)

        def literal(value: Any) -> str | None:
            ok = any(value == v and type(value) is type(v) for v in choices)
            return None if ok else f"expected one of {listed}"

        return literal
    if annotation is bool:
        return _bool_check
    if annotation is int:
        return _int_check if not bounded else _no_bool
    if annotation is float:
        return _no_bool
    if origin in (list, tuple, set, frozenset):
        args = typing.get_args(annotation)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            item_checks = [value_check(a) for a in args]
            if all(c is None for c in item_checks):
                return None
            return _items(lambda i: item_checks[i] if i < len(item_checks) else None)
        item = value_check(args[0]) if args else None
        return None if item is None else _items(lambda i: item)
    if origin is dict:
        args = typing.get_args(annotation)
        item = value_check(args[1]) if len(args) == 2 else None
        if item is None:
            return None

        def mapping(value: Any) -> str | None:
            if isinstance(value, dict):
                for key, v in value.items():
                    problem = item(v)
                    if problem is not None:
                        return f"{key}: {problem}"
            return None

        return mapping
    return None


def _items(check_of: Callable[[int], Check | None]) -> Check:
    def items(value: Any) -> str | None:
        if isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                check = check_of(i)
                problem = check(v) if check is not None else None
                if problem is not None:
                    return f"item {i}: {problem}"
        return None

    return items


def _bool_check(value: Any) -> str | None:
    return "expected true or false" if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _no_bool(value: Any) -> str | None:
    return f"expected a number, got {str(value).lower()} (a boolean)" if isinstance(value, bool) else None


def _int_check(value: Any) -> str | None:
    if isinstance(value, bool):
        return _no_bool(value)
    number = value
    if isinstance(value, str) and len(value) < 40 and re.fullmatch(r"\s*[-+]?\d+\s*", value):
        number = int(value)
    if isinstance(number, int) and not INT_MIN <= number <= INT_MAX:
        return f"{number} is out of range (integers are 64-bit)"
    return None


def _package_paths_problem(value: Any) -> str | None:
    """The first problem of a `pkg://` path inside `value` (checked without importing anything)."""
    if isinstance(value, str):
        if value.startswith("pkg://"):
            from .files import package_path_problem

            return package_path_problem(value)
        return None
    if isinstance(value, (list, tuple)) and any(isinstance(v, str) and v.startswith("pkg://") for v in value):
        for item in value:
            problem = _package_paths_problem(item)
            if problem is not None:
                return problem
    return None


class ComponentConfig(StrictModel):
    """Parameters of a component, validated from its recipe section.

    Unknown keys are rejected; instances are frozen so that a built component cannot drift from the
    recipe that describes it. Subclasses document each field (the docs and `ovframe plugins --json`
    show them).

    The class variables below declare what the component needs from the rest of its recipe. They live
    here, not on the component class, so that `ovframe validate` checks a recipe's components against
    each other (ovframe.compat) without importing any of them (no torch, no weights). Each kind of
    component reads its own; a subclass sets them plainly (`needs_text = False`), or as a property when
    they depend on the values (a `union` of generators needs text when one of its members does).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=(), allow_inf_nan=False)

    # proposals, classifier
    needs_text: ClassVar[bool] = True
    """Reads the class names' text embeddings (a `text_encoder:` is needed). A proposal generator that does
    not is class-agnostic: its proposals carry no class logits."""
    needs_labels: ClassVar[bool] = False
    """Reads the samples' ground-truth labels (the oracle analyses): only tasks that segment labelled samples can use it."""
    # classifier (the adapters it takes), adapter (the classifiers it fits)
    adapter_family: ClassVar[str | None] = None
    """A classifier: the family of adapters it takes (None: none). An adapter: the family it belongs to
    (None: any classifier that takes adapters). `clip` for ovframe_clip's."""
    # fuser
    needs_classifier: ClassVar[bool] = True
    """Fuses the region classifier's scores (a `classifier:` is needed)."""
    needs_proposal_classes: ClassVar[bool] = True
    """Uses the proposals' own class opinion (a class-agnostic generator cannot feed it)."""
    # task
    needs_sections: ClassVar[tuple[str, ...]] = ()
    """Recipe sections the task builds; each must be there."""
    runs_pipeline: ClassVar[bool] = False
    """Segments images with the recipe's pipeline (proposals -> classifier -> fuser): the pipeline's rules apply."""
    labelled_samples: ClassVar[bool] = True
    """The samples it segments carry ground-truth labels (False for `predict`: the user's own images)."""
    trains: ClassVar[tuple[str, ...]] = ()
    """Recipe sections the task trains: they may start without weights (`cannot_segment` is not asked of them)."""

    def cannot_segment(self) -> str | None:
        """Why these options, valid as they are, cannot segment images (a network with no weights to load),
        or None. Asked of every section a task uses without training it, before any model loads."""
        return None


class TrainingConfig(ComponentConfig):
    """Options every training task shares (ovframe.training.Trainer reads them). Tasks subclass it and
    override the defaults with their method's hyper-parameters."""

    steps: int = Field(1000, ge=1, description="optimizer steps in all")
    batch_size: int = Field(8, ge=1, description="global batch size (split across processes under torchrun)")
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: Literal["poly", "cosine", "constant"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    warmup_factor: float = Field(0.001, ge=0, le=1, description="lr multiplier at step 0 of the warm-up")
    poly_power: float = Field(0.9, gt=0)
    grad_clip: float | None = Field(None, gt=0, description="max global gradient norm (None: no clipping)")
    amp: Literal["none", "bf16", "fp16"] = Field("none", description="mixed precision")
    checkpoint_every: int = Field(200, ge=1, description="steps between checkpoints (resume points)")
    keep_checkpoints: int = Field(2, ge=1)
    log_every: int = Field(10, ge=1, description="steps between lines of loss.jsonl")
