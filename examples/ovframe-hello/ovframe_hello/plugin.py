"""Hooks: a dataset (registered lazily, so listing plugins stays fast) and a fuser."""

from pydantic import Field

from ovframe import ComponentConfig, hookimpl, lazy


class SquaresConfig(ComponentConfig):
    """Coloured squares on a grey background, with labels: background, red square, green square."""

    n: int = Field(4, ge=1, description="number of images")
    size: int = Field(32, ge=8, description="image side in pixels")


class HardVoteConfig(ComponentConfig):
    """Each pixel takes the class of the most confident mask covering it (no soft sum)."""

    mask_thr: float = Field(0.5, gt=0, lt=1)
    needs_proposal_classes = False  # labels masks by the region classifier's scores alone


@hookimpl
def register_datasets(register):
    register(lazy("ovframe_hello.components:Squares", name="hello-squares", config=SquaresConfig))


@hookimpl
def register_fusers(register):
    register(lazy("ovframe_hello.components:HardVote", name="hard-vote", config=HardVoteConfig))
