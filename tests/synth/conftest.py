"""Scenes shared by the synth tests (generated once per session: about 3 ms each)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def val_scenes():
    from ovframe_synth.scene import make_scene

    return [make_scene(0, "val", i) for i in range(80)]
