"""Base of every component's Config (light: pydantic only, importable without torch)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ComponentConfig(BaseModel):
    """Parameters of a component, validated from its recipe section.

    Unknown keys are rejected; instances are frozen so that a built component cannot drift from the
    recipe that describes it. Subclasses document each field (the docs and `ovframe plugins --json`
    show them).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())
