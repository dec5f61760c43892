"""Registers the SAM family: the `sam` and `union` proposal generators and the `train-sam` task."""

from ovframe import hookimpl, lazy

from .config import SamConfig, TrainSamConfig, UnionConfig


@hookimpl
def register_proposal_generators(register):
    register(lazy("ovframe_sam.generator:SamProposals", name="sam", config=SamConfig))
    register(lazy("ovframe_sam.union:UnionProposals", name="union", config=UnionConfig))


@hookimpl
def register_tasks(register):
    register(lazy("ovframe_sam.train:TrainSam", name="train-sam", config=TrainSamConfig))
