"""`ovframe prepare DATASET --source DOWNLOAD`: the official downloads converted to the detectron2 layouts.

Each preparation restates the reference's conversion (MaskFormer / OVSeg datasets/prepare_*.py) as
facts, in code written here: see each module, and docs/datasets/<name>.md for the layouts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ovframe import BadInput

from ..sources import Source


def _table() -> dict[str, Callable[..., dict[str, int]]]:
    from .ade import prepare_ade150, prepare_ade847
    from .coco import prepare_coco_stuff
    from .pascal import prepare_pascal_context, prepare_voc20

    return {
        "ade20k-150": prepare_ade150,
        "ade20k-847": prepare_ade847,
        "pascal-context-59": prepare_pascal_context,
        "pascal-context-459": prepare_pascal_context,
        "pascal-voc-20": prepare_voc20,
        "coco-stuff-171": prepare_coco_stuff,
    }


def run_prepare(dataset: str, source: str, root: str, **options: Any) -> dict[str, int]:
    """Prepare `dataset` from `source` under `root`; returns counts of what was written."""
    prepare = _table()[dataset]
    import inspect

    allowed = [p for p in inspect.signature(prepare).parameters if p not in ("src", "root")]
    unknown = sorted(set(options) - set(allowed))
    if unknown == ["splits"]:
        raise BadInput(f"{dataset} has a single split (val), always prepared: drop --split")
    if unknown:
        raise BadInput(f"prepare {dataset}: unknown option(s) {unknown}; allowed: {allowed or 'none'}")
    root_path = Path(root).expanduser()
    with Source(source) as src:
        counts = prepare(src, root_path, **options)
    import sys

    summary = ", ".join(f"{v} {k}" for k, v in counts.items())
    print(f"{dataset}: {summary} (under {root_path})", file=sys.stderr)
    return counts
