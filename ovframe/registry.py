"""The plugin registry: loads plugins from entry points and keeps the table of components.

Plugins come from the entry-point group `ovframe` (first-party ones too). Two environment variables
select them, by entry-point name, comma-separated:

    OVFRAME_PLUGINS        allow-list: load only these (unset: all; empty: none but the core)
    OVFRAME_BLOCK_PLUGINS  block-list: never load these

The core's own tasks are registered as a built-in plugin named `ovframe`, which cannot be blocked.
Importing this module does not import torch.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable

import pluggy

from . import hookspecs
from .config import ComponentConfig
from .errors import BadInput, PluginError

ENTRY_POINT_GROUP = "ovframe"
ALLOW_ENV = "OVFRAME_PLUGINS"
BLOCK_ENV = "OVFRAME_BLOCK_PLUGINS"
BUILTIN_PLUGINS = ("ovframe.tasks.plugin",)


@dataclass(frozen=True)
class Kind:
    """A kind of component: its recipe section, its registration hook and its words for people."""

    section: str
    hook: str
    label: str


KINDS: dict[str, Kind] = {
    k.section: k
    for k in (
        Kind("text_encoder", "register_text_encoders", "text encoders"),
        Kind("proposals", "register_proposal_generators", "proposal generators"),
        Kind("classifier", "register_region_classifiers", "region classifiers"),
        Kind("adapter", "register_adapters", "adapters"),
        Kind("fuser", "register_fusers", "fusers"),
        Kind("dataset", "register_datasets", "datasets"),
        Kind("task", "register_tasks", "tasks"),
    )
}


@dataclass(frozen=True)
class Lazy:
    """A component registered by import path, imported only when a recipe builds it."""

    target: str  # "package.module:ClassName"
    name: str
    config: type[ComponentConfig]


def lazy(target: str, *, name: str, config: type[ComponentConfig]) -> Lazy:
    """Register `target` ("pkg.module:Class") under `name` without importing it now."""
    if ":" not in target:
        raise ValueError(f"lazy target must look like 'package.module:ClassName', got {target!r}")
    return Lazy(target, name, config)


DECLARATIONS = tuple(sorted(name for name in ComponentConfig.__class_vars__ if not name.startswith("_")))
"""What a component needs from its recipe (needs_text, needs_classifier ...): declared on its Config."""


def check_declarations(cls: type, plugin: str) -> None:
    """A component class must not declare what its Config declares (ovframe.config): `ovframe validate` reads
    the Config without importing the class, so a value set on the class would be seen by the run only."""
    for klass in cls.__mro__:
        if klass.__module__ == "ovframe.interfaces":
            break
        for name in DECLARATIONS:
            if name in vars(klass) and not isinstance(vars(klass)[name], property):
                raise PluginError(
                    f"plugin {plugin!r}: {cls.__module__}.{cls.__qualname__} sets {name} = {vars(klass)[name]!r} on the "
                    f"component class; declare it on its Config instead ({name} = ... in "
                    f"{getattr(cls, 'Config', ComponentConfig).__name__}), where `ovframe validate` reads it without importing the component"
                )


@dataclass
class ComponentSpec:
    """One registered component."""

    kind: str
    name: str
    config: type[ComponentConfig]
    target: type | str
    plugin: str
    distribution: str
    _cls: type | None = field(default=None, repr=False)

    @property
    def summary(self) -> str:
        doc = (self.config.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    def load(self) -> type:
        """The component class (imported on first use), checked against its registration."""
        if self._cls is None:
            cls = self.target
            if isinstance(cls, str):
                module, _, attr = cls.partition(":")
                try:
                    cls = getattr(importlib.import_module(module), attr)
                except (ImportError, AttributeError) as e:
                    raise PluginError(
                        f"plugin {self.plugin!r} ({self.distribution}) registered {self.kind} {self.name!r} "
                        f"as {self.target!r}, which cannot be imported: {e}"
                    ) from e
            if getattr(cls, "name", None) != self.name or getattr(cls, "Config", None) is not self.config:
                raise PluginError(
                    f"plugin {self.plugin!r}: {cls.__module__}.{cls.__qualname__} declares name="
                    f"{getattr(cls, 'name', None)!r} and Config={getattr(cls, 'Config', None)!r}, but it was "
                    f"registered as {self.name!r} with {self.config.__name__}"
                )
            check_declarations(cls, self.plugin)
            self._cls = cls
        return self._cls

    def build(self, config: ComponentConfig | dict[str, Any]) -> Any:
        if not isinstance(config, self.config):
            config = self.config.model_validate(config)
        return self.load()(config)


@dataclass
class PluginInfo:
    name: str
    distribution: str
    version: str
    module: str
    hooks: list[str] = field(default_factory=list)
    components: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None


def _env_list(var: str) -> set[str] | None:
    value = os.environ.get(var)
    if value is None:
        return None
    return {p.strip() for p in value.split(",") if p.strip()}


@dataclass(frozen=True)
class Skipped:
    """An installed plugin that the environment told ovframe not to load."""

    name: str
    distribution: str
    value: str  # the entry point's "module" (or "module:object")
    reason: str  # "blocked by OVFRAME_BLOCK_PLUGINS=..." / "not in OVFRAME_PLUGINS=..."
    fix: str  # what to do to load it


class Registry:
    """Plugins and the components they register, by kind and name.

    Loading never stops at the first problem: plugins that fail to import, names in the allow/block
    lists that no installed plugin has (`warnings`), and clashes (two plugins of one name, one component
    name registered twice: `conflicts`) are all collected; `check()` refuses a registry with conflicts,
    naming every one, and `ovframe plugins` shows them.
    """

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.components: dict[str, dict[str, ComponentSpec]] = {k: {} for k in KINDS}
        self.skipped: dict[str, Skipped] = {}
        self.warnings: list[str] = []
        self.conflicts: list[str] = []

    # -- loading -------------------------------------------------------------------------
    def load_builtins(self) -> None:
        for module in BUILTIN_PLUGINS:
            self.add_plugin(importlib.import_module(module), name="ovframe", distribution="ovframe")

    def load_entry_points(self) -> None:
        allow, block = _env_list(ALLOW_ENV), _env_list(BLOCK_ENV) or set()
        entry_points = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
        self._check_env_names(allow, block, {ep.name for ep in entry_points})
        for ep in entry_points:
            dist = ep.dist.name if ep.dist else "?"
            version = ep.dist.version if ep.dist else "?"
            if ep.name in block:
                reason = f"blocked by {BLOCK_ENV}={os.environ.get(BLOCK_ENV, '')}"
                fix = f"take {ep.name!r} out of {BLOCK_ENV} (or unset it)"
            elif allow is not None and ep.name not in allow:
                reason = f"not in {ALLOW_ENV}={os.environ.get(ALLOW_ENV, '')}"
                fix = f"add {ep.name!r} to {ALLOW_ENV} (or unset it: all plugins load)"
            else:
                reason = fix = ""
            if reason:
                self.skipped.setdefault(ep.name, Skipped(ep.name, dist, ep.value, reason, fix))
                continue
            if ep.name in self.plugins:
                other = self.plugins[ep.name]
                self.conflicts.append(
                    f"two plugins are named {ep.name!r}: one from {other.distribution} {other.version} ({other.module}), "
                    f"one from {dist} {version} ({ep.value}); only the first is loaded"
                )
                continue
            try:
                module = ep.load()
            except Exception as e:  # a broken third-party plugin must not take the others down
                self.plugins[ep.name] = PluginInfo(ep.name, dist, version, ep.value, error=f"{type(e).__name__}: {e}")
                print(
                    f"ovframe: warning: plugin {ep.name!r} ({dist}) failed to load ({type(e).__name__}: {e}); "
                    f"skipped. Block it with {BLOCK_ENV}={ep.name} to silence this.",
                    file=sys.stderr,
                )
                continue
            self.add_plugin(module, name=ep.name, distribution=dist, version=version, strict=False)

    def _check_env_names(self, allow: set[str] | None, block: set[str], installed: set[str]) -> None:
        """Names in the allow/block lists that no installed plugin has (a typo) are warned about."""
        known = installed | {"ovframe"}
        for var, names in ((ALLOW_ENV, allow or set()), (BLOCK_ENV, block)):
            for name in sorted(names - known):
                close = difflib.get_close_matches(name, sorted(installed), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                message = (f"{var} names {name!r}, which no installed plugin is called{hint}; "
                           f"installed: {', '.join(sorted(installed)) or 'none'}")
                self.warnings.append(message)
                print(f"ovframe: warning: {message}", file=sys.stderr)

    def add_plugin(
        self, plugin: Any, *, name: str, distribution: str = "?", version: str | None = None, strict: bool = True
    ) -> None:
        """Register a plugin object (a module, usually) and collect the components it registers.

        A component name another plugin already registered is a conflict: with `strict` (the default,
        for plugins added by code) PluginError names them all; otherwise it is kept in `conflicts`."""
        if version is None:
            try:
                version = metadata.version(distribution)
            except metadata.PackageNotFoundError:
                version = "?"
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()
        except pluggy.PluginValidationError as e:
            if self.pm.has_plugin(name):
                self.pm.unregister(name=name)
            raise PluginError(
                f"plugin {name!r} ({distribution}) does not match ovframe's hooks: {e}\n"
                f"Update or uninstall it, or block it with {BLOCK_ENV}={name}."
            ) from e
        info = PluginInfo(name, distribution, version, getattr(plugin, "__name__", repr(plugin)))
        self.plugins[name] = info
        before = len(self.conflicts)
        for kind in KINDS.values():
            for impl in getattr(self.pm.hook, kind.hook).get_hookimpls():
                if impl.plugin_name != name:
                    continue
                info.hooks.append(kind.hook)
                impl.function(register=self._register_callback(kind.section, info))
        if strict and len(self.conflicts) > before:
            raise PluginError(conflicts_message(self.conflicts[before:]))

    def _register_callback(self, kind: str, info: PluginInfo) -> Callable[..., None]:
        def register(component: type | Lazy) -> None:
            if isinstance(component, Lazy):
                name, config, target = component.name, component.config, component.target
            else:
                name, config, target = getattr(component, "name", None), getattr(component, "Config", None), component
            if not isinstance(name, str) or not name:
                raise PluginError(f"plugin {info.name!r} registered a {kind} without a name: {component!r}")
            if not (isinstance(config, type) and issubclass(config, ComponentConfig)):
                raise PluginError(
                    f"plugin {info.name!r}: {kind} {name!r} needs a Config subclassing ovframe.ComponentConfig"
                )
            if isinstance(target, type):
                check_declarations(target, info.name)
            table = self.components[kind]
            if name in table:
                other = table[name]
                self.conflicts.append(
                    f"{KINDS[kind].label[:-1]} {name!r} is registered twice: by plugin {other.plugin!r} "
                    f"({other.distribution}) and by plugin {info.name!r} ({info.distribution})"
                )
                info.components.setdefault(kind, []).append(name)
                return
            table[name] = ComponentSpec(kind, name, config, target, info.name, info.distribution)
            info.components.setdefault(kind, []).append(name)

        return register

    def check(self) -> "Registry":
        """This registry, or PluginError naming every conflict (each command but `ovframe plugins` refuses to run)."""
        if self.conflicts:
            raise PluginError(conflicts_message(self.conflicts))
        return self

    # -- lookup --------------------------------------------------------------------------
    def get(self, kind: str, name: str) -> ComponentSpec:
        table = self.components[kind]
        if name in table:
            return table[name]
        raise BadInput(self.unknown_message(kind, name))

    def unknown_message(self, kind: str, name: str) -> str:
        table = self.components[kind]
        label = KINDS[kind].label[:-1]
        skipped = self.skipped_provider(kind, name)
        if skipped is not None:
            warnings = "".join(f" ({w})" for w in self.warnings)
            return (f"unknown {label} {name!r}: plugin {skipped.name!r} ({skipped.distribution}) registers it, but it is not "
                    f"loaded: {skipped.reason}. To use it, {skipped.fix}.{warnings}")
        close = difflib.get_close_matches(name, list(table), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        broken = [p.name for p in self.plugins.values() if p.error]
        if broken:
            hint += f" (plugins that failed to load: {', '.join(broken)})"
        if self.skipped:
            hint += f" (plugins not loaded: {'; '.join(f'{s.name}, {s.reason}' for s in self.skipped.values())})"
        for warning in self.warnings:
            hint += f" ({warning})"
        return f"unknown {label} {name!r}; registered: {', '.join(sorted(table)) or 'none'}.{hint}"

    def skipped_provider(self, kind: str, name: str) -> Skipped | None:
        """The plugin left out by OVFRAME_PLUGINS/OVFRAME_BLOCK_PLUGINS that would register `name` (its light
        registration module is imported into a scratch registry to find out; one that fails is passed over)."""
        for skipped in self.skipped.values():
            scratch = Registry()
            try:
                module = importlib.import_module(skipped.value.partition(":")[0])
                scratch.add_plugin(module, name=skipped.name, distribution=skipped.distribution, strict=False)
            except Exception:  # noqa: BLE001 - a plugin blocked because it is broken must not break the message
                continue
            if name in scratch.components[kind]:
                return skipped
        return None

    def build(self, kind: str, section: dict[str, Any]) -> Any:
        """Build a component from a recipe section: {"plugin": name, **options}."""
        options = dict(section)
        return self.get(kind, options.pop("plugin")).build(options)


_registry: Registry | None = None


def get_registry(*, allow_conflicts: bool = False) -> Registry:
    """The process-wide registry, loaded on first use. PluginError when two plugins clash (every clash is
    named), unless `allow_conflicts` (what `ovframe plugins` uses to show them)."""
    global _registry
    if _registry is None:
        registry = Registry()
        registry.load_builtins()
        registry.load_entry_points()
        _registry = registry
    return _registry if allow_conflicts else _registry.check()


def conflicts_message(conflicts: list[str]) -> str:
    lines = "\n".join(f"  - {c}" for c in conflicts)
    return (
        f"{len(conflicts)} plugin conflict(s):\n{lines}\n"
        f"Uninstall one of each pair, or block one with {BLOCK_ENV}=NAME[,NAME...] (by plugin name). "
        f"`ovframe plugins` lists every plugin and what it registers."
    )


def reset_registry() -> None:
    """Forget the loaded registry (tests; after changing OVFRAME_PLUGINS)."""
    global _registry
    _registry = None
