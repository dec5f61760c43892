"""Registers the mining family: the `mine-pairs` task and the caption datasets."""

from ovframe import hookimpl, lazy

from .config import CaptionFolderConfig, CocoCaptionsConfig, MinePairsConfig


@hookimpl
def register_datasets(register):
    register(lazy("ovframe_mining.captions:CocoCaptions", name="coco-captions", config=CocoCaptionsConfig))
    register(lazy("ovframe_mining.captions:CaptionFolder", name="caption-folder", config=CaptionFolderConfig))


@hookimpl
def register_tasks(register):
    register(lazy("ovframe_mining.mine:MinePairs", name="mine-pairs", config=MinePairsConfig))
