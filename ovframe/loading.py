"""Building networks whose weights come from a file.

A network built the usual way first fills every parameter with random numbers (torch.nn.init), only to
overwrite them when its weights are loaded: for CLIP ViT-L/14 that is about 2 s of CPU at start-up
spent on numbers nobody reads. `skip_init()` builds without it, and `load_exact()` then fills every
tensor, refusing a state dict that lacks one, has more, or has another shape (the check skip_init needs).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Mapping

if TYPE_CHECKING:
    import torch


@contextmanager
def skip_init() -> Iterator[None]:
    """Inside, torch.nn.init's functions leave tensors as they are (uninitialised memory).

    Only for a network whose every parameter and persistent buffer is loaded right after, with a check
    that none is missing (a missing one would keep garbage). Buffers computed in the constructor
    (attention masks, position tables) are still computed. Not thread-safe: build in one thread."""
    import torch

    init = torch.nn.init
    names = [n for n in dir(init) if n.endswith("_") and not n.startswith("_") and callable(getattr(init, n))]
    saved = {n: getattr(init, n) for n in names}

    def untouched(tensor, *args, **kwargs):
        return tensor

    try:
        for n in names:
            setattr(init, n, untouched)
        yield
    finally:
        for n, f in saved.items():
            setattr(init, n, f)


def load_exact(module: "torch.nn.Module", state: Mapping[str, "torch.Tensor"], source: str | Path, what: str, hint: str = "") -> None:
    """Load `state` into `module`: every tensor of the module's state dict, no other, each of the module's
    shape (cast to the module's dtype). Otherwise BadInput, nothing loaded: "`source`: does not fit `what`:"
    then the missing tensors, the ones the module does not have and the shapes that differ (a few of each),
    then `hint` (what to do)."""
    from .errors import BadInput

    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensor(s), e.g. {missing[:4]}")
        if unexpected:
            parts.append(f"{len(unexpected)} tensor(s) this architecture does not have, e.g. {unexpected[:4]}")
        if shapes:
            parts.append(f"shapes (file vs architecture): {shapes[:4]}")
        raise BadInput(f"{source}: does not fit {what}: " + "; ".join(parts) + (f". {hint}" if hint else ""))
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)
