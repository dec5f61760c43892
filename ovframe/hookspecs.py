"""The hooks a plugin implements. Each registration hook gets a `register` callback.

    from ovframe import hookimpl, lazy

    @hookimpl
    def register_fusers(register):
        register(MyFuser)                                   # a class with `name` and `Config`
        register(lazy("my_pkg.heavy:MyFuser", name="my-fuser", config=MyFuserConfig))

`lazy(...)` defers importing the implementation (and torch) until a recipe builds the component, so
that `ovframe plugins` and `ovframe validate` stay fast. Every hook here is documented, with its
signature, in docs/writing-a-plugin.md (a test keeps the two in step).
"""

from __future__ import annotations

from typing import Callable

import pluggy

PROJECT = "ovframe"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[..., None]


@hookspec
def register_text_encoders(register: Register) -> None:
    """Register TextEncoder components (recipe section `text_encoder:`)."""


@hookspec
def register_proposal_generators(register: Register) -> None:
    """Register ProposalGenerator components (recipe section `proposals:`)."""


@hookspec
def register_region_classifiers(register: Register) -> None:
    """Register RegionClassifier components (recipe section `classifier:`)."""


@hookspec
def register_adapters(register: Register) -> None:
    """Register Adapter components (recipe section `adapter:`)."""


@hookspec
def register_fusers(register: Register) -> None:
    """Register Fuser components (recipe section `fuser:`)."""


@hookspec
def register_datasets(register: Register) -> None:
    """Register Dataset components (recipe section `dataset:`)."""


@hookspec
def register_tasks(register: Register) -> None:
    """Register Task components (recipe section `task:`): evaluate, predict, train-..."""
