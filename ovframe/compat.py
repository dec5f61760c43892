"""Whether a recipe's components fit together, decided from their Configs alone (no component imported).

Each Config declares what its component needs (ovframe.config.ComponentConfig's class variables:
needs_text, needs_labels, adapter_family, needs_classifier, needs_proposal_classes for components;
needs_sections, runs_pipeline, labelled_samples, trains for tasks; `cannot_segment()` of any Config).
`problems` reads those declarations and
says what does not fit, in words a user can act on. `ovframe validate` (through the recipe schema)
and the Pipeline (on the built components) both ask it, so a recipe that validates does not fail on
these grounds after its models have loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from .registry import Registry

Part = tuple[str, Any]
"""A recipe section as compatibility sees it: the component's name and its validated Config (or the
built component, whose properties show its Config's declarations)."""

PIPELINE = ("proposals", "classifier", "fuser")


@dataclass(frozen=True)
class Problem:
    section: str  # the recipe section the problem belongs to (where it is reported)
    message: str


def _label(kind: str) -> str:
    from .registry import KINDS

    return KINDS[kind].label[:-1]


def _names(registry: "Registry | None", kind: str, **wanted: object) -> str:
    """Registered components of `kind` whose Config class declares `wanted`, for suggestions."""
    if registry is None:
        return ""
    names = sorted(
        name for name, spec in registry.components[kind].items()
        if all(getattr(spec.config, key, None) == value for key, value in wanted.items())
    )
    return ", ".join(names)


def _hint(text: str, names: str) -> str:
    return f"{text} ({names})" if names else text


def problems(
    parts: Mapping[str, Part], registry: "Registry | None" = None, *, labelled: bool | None = None, missing: bool = True
) -> list[Problem]:
    """What does not fit among `parts` (recipe section -> (component name, Config)).

    With a `task` part, its declarations say which sections are in use; without one (a Pipeline of built
    components), the pipeline's sections are. `labelled`: whether the segmented samples have labels
    (default: as the task says; unknown without a task). `missing`: also name the sections the task
    needs that are not there (a recipe about to run; not a fragment being assembled). `registry` only adds
    suggestions to the messages.
    """
    out: list[Problem] = []
    task = parts.get("task")
    if task is not None:
        name, config = task
        for kind in config.needs_sections if missing else ():
            if kind not in parts:
                suggestions = _names(registry, kind)
                article = "an" if kind[0] in "aeiou" else "a"
                out.append(Problem("task", _hint(f"task {name!r} needs {article} `{kind}:` section", f"{_label(kind)}s: {suggestions}" if suggestions else "")))
        used = set(config.needs_sections) | (set(PIPELINE) if config.runs_pipeline else set())
        trained = set(config.trains)
        pipeline = config.runs_pipeline
        if labelled is None:
            labelled = config.labelled_samples
    else:
        used, trained, pipeline = set(PIPELINE), set(), True

    for kind in sorted(used - trained):
        part = parts.get(kind)
        check = getattr(part[1], "cannot_segment", None) if part is not None else None
        reason = check() if callable(check) else None
        if reason:
            out.append(Problem(kind, reason))

    fuser, proposals, classifier = parts.get("fuser"), parts.get("proposals"), parts.get("classifier")
    if pipeline and fuser is not None:
        fname, fconfig = fuser
        if fconfig.needs_classifier and classifier is None:
            out.append(Problem("fuser", _hint(
                f"fuser {fname!r} fuses the region classifier's scores, but the recipe has no `classifier:` section; add one "
                f"or use a fuser that needs none", _names(registry, "fuser", needs_classifier=False))))
        if fconfig.needs_proposal_classes and proposals is not None and not proposals[1].needs_text:
            out.append(Problem("fuser", _hint(
                f"fuser {fname!r} uses the proposals' own class opinion, but proposal generator {proposals[0]!r} is "
                f"class-agnostic (it gives masks only); use a fuser that labels the masks with the region classifier",
                _names(registry, "fuser", needs_proposal_classes=False))))

    for kind in ("proposals", "classifier"):
        part = parts.get(kind)
        if part is None or kind not in used:
            continue
        name, config = part
        if config.needs_text and "text_encoder" not in parts:
            out.append(Problem(kind, _hint(
                f"{_label(kind)} {name!r} reads the class names' text embeddings, but the recipe has no `text_encoder:` section",
                _names(registry, "text_encoder"))))
        if labelled is False and config.needs_labels:
            task_name = task[0] if task is not None else "this one"
            out.append(Problem(kind, f"{_label(kind)} {name!r} reads the samples' ground-truth labels, and task {task_name!r} "
                                     f"segments images without labels; use it to evaluate on a labelled dataset"))

    adapter = parts.get("adapter")
    if adapter is not None and {"adapter", "classifier"} & used:  # a built classifier gets the adapter attached
        aname, aconfig = adapter
        if classifier is None:
            out.append(Problem("adapter", f"adapter {aname!r} changes how a region classifier sees regions, but the recipe has "
                                          f"no `classifier:` section"))
        else:
            cname, cconfig = classifier
            family = cconfig.adapter_family
            if family is None:
                out.append(Problem("adapter", _hint(
                    f"classifier {cname!r} takes no adapters; remove `adapter:` or use a classifier that takes it",
                    _names(registry, "classifier", adapter_family=aconfig.adapter_family) if aconfig.adapter_family else "")))
            elif aconfig.adapter_family is not None and aconfig.adapter_family != family:
                out.append(Problem("adapter", _hint(
                    f"adapter {aname!r} is made for {aconfig.adapter_family!r} classifiers, but classifier {cname!r} takes "
                    f"{family!r} adapters", _names(registry, "classifier", adapter_family=aconfig.adapter_family))))
    return out


__all__ = ["Part", "Problem", "problems"]
