"""Registers the oracle components."""

from ovframe import hookimpl, lazy

from .config import GroundTruthMasksConfig, OracleClassifierConfig


@hookimpl
def register_proposal_generators(register):
    register(lazy("ovframe_oracle.oracle:GroundTruthMasks", name="ground-truth-masks", config=GroundTruthMasksConfig))


@hookimpl
def register_region_classifiers(register):
    register(lazy("ovframe_oracle.oracle:OracleClassifier", name="oracle", config=OracleClassifierConfig))
