"""The class lists shipped with the package (classes/*.txt): names in label order, and the official
ids some preparations map from (ADE20K-Full object ids, COCO category ids)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

CLASSES_DIR = Path(__file__).parent / "classes"

COUNTS = {
    "ade20k-150": 150,
    "ade20k-847": 847,
    "pascal-context-59": 59,
    "pascal-context-459": 459,
    "pascal-voc-20": 20,
    "coco-stuff-171": 171,
}


def class_file(dataset: str) -> Path:
    """The shipped class-name file of `dataset` (also usable as a recipe's `vocabulary.file`:
    pkg://ovframe_datasets/classes/<dataset>.txt)."""
    return CLASSES_DIR / f"{dataset}.txt"


def _lines(path: Path) -> tuple[str, ...]:
    return tuple(
        line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip() and not line.startswith("#")
    )


@lru_cache(maxsize=None)
def class_names(dataset: str) -> tuple[str, ...]:
    names = _lines(class_file(dataset))
    if len(names) != COUNTS[dataset]:  # a broken install, not a user error
        raise RuntimeError(f"{class_file(dataset)} has {len(names)} names, expected {COUNTS[dataset]}")
    return names


@lru_cache(maxsize=None)
def class_ids(dataset: str) -> tuple[int, ...]:
    """The official id of each class (classes/<dataset>.ids.txt), aligned with class_names."""
    ids = tuple(int(v) for v in _lines(CLASSES_DIR / f"{dataset}.ids.txt"))
    if len(ids) != COUNTS[dataset]:
        raise RuntimeError(f"{dataset}.ids.txt has {len(ids)} ids, expected {COUNTS[dataset]}")
    return ids
