"""Shared fixtures: a fresh registry per test, and a way to add test-only plugins to it."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def registry(monkeypatch):
    """The process registry, reloaded from entry points for this test and forgotten afterwards."""
    from ovframe import registry as reg

    reg.reset_registry()
    r = reg.get_registry()
    yield r
    reg.reset_registry()


@pytest.fixture
def toy_registry(registry):
    """The registry plus the test-only `toy` dataset."""
    from support import ToyPlugin

    registry.add_plugin(ToyPlugin(), name="toy")
    return registry

