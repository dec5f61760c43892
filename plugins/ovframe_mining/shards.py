"""The output layout of a mining run, and reading it back.

    <run>/pairs/shard-00000.jsonl        the pairs of images [0, S) of the dataset, one JSON object a line:
        {"image_id": "000000139", "image": "/data/coco/train2017/000000139.jpg",   (image: when the dataset has files)
         "phrase": "teddy bear", "score": 0.91, "proposal": 17, "area": 5230,
         "mask": {"size": [H, W], "counts": "<COCO RLE>"}}
    <run>/pairs/shard-00000.stats.json   what the shard's images gave (captions skipped by reason, phrases, pairs ...)

Shard k holds the images [k S, (k+1) S) whatever the number of processes (process r of n mines the
shards r, r+n, ...). A shard is written in one piece, stats first, then the pairs, each by an atomic
rename: a shard whose .jsonl exists is complete, and a run killed at any point resumes by mining again
only the shards that are not, so no pair is lost or written twice.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ovframe.io import write_json, write_text

PAIRS_DIR = "pairs"


def shard_name(k: int) -> str:
    return f"shard-{k:05d}"


def is_complete(folder: Path, k: int) -> bool:
    return (folder / f"{shard_name(k)}.jsonl").exists() and (folder / f"{shard_name(k)}.stats.json").exists()


def write_shard(folder: Path, k: int, records: list[dict[str, Any]], stats: dict[str, Any]) -> None:
    write_json(folder / f"{shard_name(k)}.stats.json", stats)
    write_text(folder / f"{shard_name(k)}.jsonl", "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))


def remove_partial(folder: Path, k: int) -> None:
    """Leftovers of a shard whose writer was killed (temporary files, stats without pairs)."""
    if not folder.is_dir():
        return
    name = shard_name(k)
    for path in folder.glob(f".{name}.*.tmp"):
        path.unlink(missing_ok=True)
    if not (folder / f"{name}.jsonl").exists():
        (folder / f"{name}.stats.json").unlink(missing_ok=True)


def read_stats(folder: Path, k: int) -> dict[str, Any]:
    return json.loads((folder / f"{shard_name(k)}.stats.json").read_text(encoding="utf-8"))
