"""The docs keep up with the code: every hook is documented with its signature."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from ovframe import hookspecs

DOCS = Path(__file__).resolve().parents[2] / "docs"
HOOKS = [name for name, f in vars(hookspecs).items() if inspect.isfunction(f) and name.startswith("register_")]


def test_there_are_hooks():
    assert len(HOOKS) == 7


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_with_its_signature(hook):
    params = ", ".join(inspect.signature(getattr(hookspecs, hook)).parameters)
    assert f"### `{hook}({params})`" in (DOCS / "writing-a-plugin.md").read_text()


def test_documented_hooks_exist():
    text = (DOCS / "writing-a-plugin.md").read_text()
    documented = {line.split("`")[1].split("(")[0] for line in text.splitlines() if line.startswith("### `register_")}
    assert documented == set(HOOKS)
