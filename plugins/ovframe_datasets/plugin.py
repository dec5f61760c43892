"""Registers the datasets: the standard open-vocabulary benchmarks and image folders."""

from ovframe import hookimpl, lazy

from . import config as c

STANDARD = (
    ("ade20k-150", "Ade150", c.Ade150Config),
    ("ade20k-847", "Ade847", c.Ade847Config),
    ("pascal-context-59", "PascalContext59", c.PascalContext59Config),
    ("pascal-context-459", "PascalContext459", c.PascalContext459Config),
    ("pascal-voc-20", "PascalVoc20", c.PascalVoc20Config),
    ("coco-stuff-171", "CocoStuff171", c.CocoStuff171Config),
)


@hookimpl
def register_datasets(register):
    for name, cls, config in STANDARD:
        register(lazy(f"ovframe_datasets.standard:{cls}", name=name, config=config))
    register(lazy("ovframe_datasets.folder:FolderDataset", name="folder", config=c.FolderConfig))
