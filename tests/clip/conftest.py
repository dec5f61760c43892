"""Fixtures of the CLIP family's tests: tiny open_clip models written to disk, an isolated cache."""

from __future__ import annotations

import pytest
from clip_helpers import write_tiny


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> dict[str, str]:
    """Recipe keys (model, pretrained) of a tiny CLIP written as JSON config + safetensors."""
    return write_tiny(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Hash memo and text cache under the test's own folder, never in the user's home."""
    monkeypatch.setenv("OVFRAME_CACHE_DIR", str(tmp_path / "ovframe-cache"))
    return tmp_path / "ovframe-cache"
