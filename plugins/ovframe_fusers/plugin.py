"""Registers the fusers."""

from ovframe import hookimpl, lazy

from .config import ClipOnlyConfig, GeometricEnsembleConfig, ProposalOnlyConfig, SeenUnseenEnsembleConfig


@hookimpl
def register_fusers(register):
    register(lazy("ovframe_fusers.fusers:GeometricEnsemble", name="geometric-ensemble", config=GeometricEnsembleConfig))
    register(lazy("ovframe_fusers.fusers:SeenUnseenEnsemble", name="geometric-ensemble-seen-unseen", config=SeenUnseenEnsembleConfig))
    register(lazy("ovframe_fusers.fusers:ClipOnly", name="clip-only", config=ClipOnlyConfig))
    register(lazy("ovframe_fusers.fusers:ProposalOnly", name="proposal-only", config=ProposalOnlyConfig))
