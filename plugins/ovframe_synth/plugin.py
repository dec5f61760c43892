"""Registers the synthetic benchmark: the `synth` dataset, and the `synth-export` and `pretrain-clip` tasks."""

from ovframe import hookimpl, lazy

from .config import PretrainClipConfig, SynthDatasetConfig, SynthExportConfig


@hookimpl
def register_datasets(register):
    register(lazy("ovframe_synth.dataset:SynthDataset", name="synth", config=SynthDatasetConfig))


@hookimpl
def register_tasks(register):
    register(lazy("ovframe_synth.export:SynthExport", name="synth-export", config=SynthExportConfig))
    register(lazy("ovframe_synth.pretrain_clip:PretrainClip", name="pretrain-clip", config=PretrainClipConfig))
