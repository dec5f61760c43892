"""The core's tasks, registered like any plugin's."""

from __future__ import annotations

from ..hookspecs import hookimpl
from ..registry import lazy
from .config import EvaluateConfig, PredictConfig


@hookimpl
def register_tasks(register):
    register(lazy("ovframe.tasks.evaluate:Evaluate", name="evaluate", config=EvaluateConfig))
    register(lazy("ovframe.tasks.predict:Predict", name="predict", config=PredictConfig))
