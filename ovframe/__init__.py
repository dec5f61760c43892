"""ovframe: open-vocabulary semantic segmentation, every stage a plugin.

Importing `ovframe` is light (no torch): `hookimpl`, `lazy` and `ComponentConfig` are all a plugin's
registration module needs. Records and interfaces (which use torch) load on first access.
"""

from __future__ import annotations

from typing import Any

from .config import ComponentConfig
from .errors import BadInput, MissingFiles, OvframeError, RecipeError, RequiredFile, SampleError
from .hookspecs import hookimpl, hookspec
from .registry import get_registry, lazy

__version__ = "0.1.0"

_LAZY = {
    # records (ovframe.records)
    "Sample": "records", "Vocabulary": "records", "TextEmbeddings": "records", "Proposals": "records",
    "RegionScores": "records", "RegionSelection": "records", "Segmentation": "records", "IGNORE_INDEX": "records",
    # interfaces (ovframe.interfaces)
    "Component": "interfaces", "TextEncoder": "interfaces", "ProposalGenerator": "interfaces",
    "RegionClassifier": "interfaces", "Adapter": "interfaces", "Fuser": "interfaces",
    "Dataset": "interfaces", "Task": "interfaces",
    # running
    "RunContext": "runner", "ConfusionMatrix": "metrics",
}

__all__ = [
    "BadInput", "ComponentConfig", "MissingFiles", "OvframeError", "RecipeError", "RequiredFile",
    "SampleError", "get_registry", "hookimpl", "hookspec", "lazy", *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ovframe' has no attribute {name!r}")
