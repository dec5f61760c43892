"""The registry: entry points, allow/block lists, duplicate names, lazy components."""

from __future__ import annotations

import pytest

from ovframe import ComponentConfig, hookimpl, lazy
from ovframe.errors import BadInput, PluginError
from ovframe.interfaces import Fuser
from ovframe.registry import Registry, get_registry, reset_registry


class DupConfig(ComponentConfig):
    """A fuser that clashes with a first-party name."""


class Dup(Fuser):
    name = "clip-only"
    Config = DupConfig

    def fuse(self, proposals, scores, vocabulary, output_sizes=None):
        raise NotImplementedError


def fresh(monkeypatch, **env):
    for key in ("OVFRAME_PLUGINS", "OVFRAME_BLOCK_PLUGINS"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reset_registry()
    return get_registry()


def test_first_party_plugins_load_from_entry_points(monkeypatch):
    r = fresh(monkeypatch)
    assert {"ovframe", "fusers", "oracle"} <= set(r.plugins)
    assert r.get("fuser", "geometric-ensemble").plugin == "fusers"
    assert r.get("task", "evaluate").plugin == "ovframe"  # the core's tasks are a plugin too
    assert "register_fusers" in r.plugins["fusers"].hooks


def test_allow_list_and_block_list(monkeypatch):
    r = fresh(monkeypatch, OVFRAME_PLUGINS="fusers")
    assert set(r.plugins) == {"ovframe", "fusers"}
    r = fresh(monkeypatch, OVFRAME_BLOCK_PLUGINS="oracle, fusers")
    assert "oracle" not in r.plugins and "fusers" not in r.plugins
    assert "ground-truth-masks" not in r.components["proposals"]
    r = fresh(monkeypatch, OVFRAME_PLUGINS="")
    assert set(r.plugins) == {"ovframe"}
    reset_registry()


def test_duplicate_component_name_names_both_plugins(monkeypatch):
    r = fresh(monkeypatch)

    class Clash:
        @hookimpl
        def register_fusers(self, register):
            register(Dup)

    with pytest.raises(PluginError) as e:
        r.add_plugin(Clash(), name="clashing", distribution="clash-dist")
    message = str(e.value)
    assert "'clip-only' is registered twice" in message
    assert "plugin 'fusers' (ovframe)" in message and "plugin 'clashing' (clash-dist)" in message
    reset_registry()


def test_unknown_component_lists_the_registered_names(monkeypatch):
    r = fresh(monkeypatch)
    with pytest.raises(BadInput) as e:
        r.get("fuser", "geometric")
    assert "registered: clip-only, geometric-ensemble, geometric-ensemble-seen-unseen, proposal-only" in str(e.value)
    reset_registry()


def test_lazy_components_are_imported_on_build_and_checked():
    r = Registry()

    class Wrong:
        @hookimpl
        def register_fusers(self, register):
            register(lazy("ovframe_fusers.fusers:ClipOnly", name="my-fuser", config=DupConfig))
            register(lazy("no_such_module_ovf:Thing", name="ghost", config=DupConfig))

    r.add_plugin(Wrong(), name="wrong")
    with pytest.raises(PluginError, match="declares name='clip-only'"):
        r.get("fuser", "my-fuser").load()
    with pytest.raises(PluginError, match="cannot be imported"):
        r.get("fuser", "ghost").load()


def test_a_hookimpl_with_a_wrong_signature_is_refused():
    r = Registry()

    class Bad:
        @hookimpl
        def register_fusers(self, register, extra):
            pass

    with pytest.raises(PluginError, match="plugin 'bad'"):
        r.add_plugin(Bad(), name="bad")


def test_a_component_needs_a_config():
    r = Registry()

    class NoConfig:
        @hookimpl
        def register_fusers(self, register):
            register(type("X", (), {"name": "x"}))

    with pytest.raises(PluginError, match="needs a Config"):
        r.add_plugin(NoConfig(), name="noconfig")
