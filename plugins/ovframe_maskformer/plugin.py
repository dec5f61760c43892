"""Registers the maskformer proposal generator and its training task."""

from ovframe import hookimpl, lazy

from .config import MaskFormerConfig, TrainProposalsConfig


@hookimpl
def register_proposal_generators(register):
    register(lazy("ovframe_maskformer.proposals:MaskFormerProposals", name="maskformer", config=MaskFormerConfig))


@hookimpl
def register_tasks(register):
    register(lazy("ovframe_maskformer.train:TrainProposals", name="train-proposals", config=TrainProposalsConfig))
