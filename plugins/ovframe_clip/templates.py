"""Prompt template sets. Each template holds one "{}" where the class name goes."""

from __future__ import annotations

from typing import Sequence

from ovframe import BadInput

# The 14 templates of ViLD that OVSeg ensembles (their exact strings: some lack the final period).
VILD = (
    "a photo of a {}.",
    "This is a photo of a {}",
    "There is a {} in the scene",
    "There is the {} in the scene",
    "a photo of a {} in the scene",
    "a photo of a small {}.",
    "a photo of a medium {}.",
    "a photo of a large {}.",
    "This is a photo of a small {}.",
    "This is a photo of a medium {}.",
    "This is a photo of a large {}.",
    "There is a small {} in the scene.",
    "There is a medium {} in the scene.",
    "There is a large {} in the scene.",
)

SINGLE = ("a photo of a {}.",)


def imagenet() -> tuple[str, ...]:
    """CLIP's 80 ImageNet templates, as open_clip ships them."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    return tuple(t("{}") for t in OPENAI_IMAGENET_TEMPLATES)


def template_set(spec: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(spec, str):
        if spec == "vild":
            return VILD
        if spec == "imagenet":
            return imagenet()
        if spec == "single":
            return SINGLE
        raise BadInput(f"unknown template set {spec!r}: use vild, imagenet, single or a list of templates")
    templates = tuple(spec)
    if not templates:
        raise BadInput("templates: the list is empty; give at least one template such as 'a photo of a {}.'")
    bad = [t for t in templates if t.count("{}") != 1]
    if bad:
        raise BadInput(f"templates: each needs exactly one {{}} where the class name goes; these do not: {bad[:5]}")
    return templates


def fill(template: str, name: str) -> str:
    return template.replace("{}", name)
