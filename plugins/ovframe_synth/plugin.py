"""Registers the synthetic benchmark: the `synth` dataset and the `synth-export` task."""

from ovframe import hookimpl, lazy

from .config import SynthDatasetConfig, SynthExportConfig


@hookimpl
def register_datasets(register):
    register(lazy("ovframe_synth.dataset:SynthDataset", name="synth", config=SynthDatasetConfig))


@hookimpl
def register_tasks(register):
    register(lazy("ovframe_synth.export:SynthExport", name="synth-export", config=SynthExportConfig))
