"""Building networks whose weights come from a file.

A network built the usual way first fills every parameter with random numbers (torch.nn.init), only to
overwrite them when its weights are loaded: for CLIP ViT-L/14 that is about 2 s of CPU at start-up
spent on numbers nobody reads. `skip_init()` builds without it.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


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
