"""Sources of (image, region mask, noun) pairs for train-adapter.

A source is indexed 0..len-1; `nouns()` lists every pair's noun (cheap: no image is read) and
`load(i)` reads pair i's image and mask. Two sources:

segments  one pair per ground-truth segment (all pixels of one class in one image) of the recipe's
          dataset: the paper's manual-label baseline. Classes the vocabulary marks unseen are skipped.
          The index (image, class) is built once, by rank 0, and kept in the run directory.
jsonl     pairs listed in a JSON Lines file, one object a line (how mined caption pairs plug in):
              {"image": "images/0001.jpg", "mask": "masks/0001_3.png", "noun": "teddy bear"}
              {"sample_id": "000000139", "mask": "masks/000000139_0.png", "noun": "sofa"}
          "image" is an image file, or "sample_id" names a sample of the recipe's dataset; "mask" is a
          PNG of the image's size, non-zero on the region. Relative paths are relative to the JSONL file.
          Blank lines and lines starting with # are skipped.
mined-pairs  the shards of a mine-pairs run (ovframe_mining; docs/mining.md), one object a line:
              {"image_id": "000000139", "image": "/data/coco/train2017/000000139.jpg", "phrase": "teddy bear",
               "score": 0.91, "mask": {"size": [H, W], "counts": "<COCO RLE>"}, ...}
          "image" (optional) is the image file, else "image_id" names a sample of the recipe's dataset;
          the mask is decoded with pycocotools. Pairs below `min_score` are left out.
A list of sources is one source: their pairs one after the other (the paper's "both").
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from ovframe import IGNORE_INDEX, BadInput, SampleError
from ovframe.files import resolve_path
from ovframe.images import read_image
from ovframe.io import write_json

from .config import JsonlPairs, MinedPairs, SegmentPairs

log = logging.getLogger("ovframe.clip")


class PairSource(Protocol):
    def __len__(self) -> int: ...

    def nouns(self) -> list[str]:
        """The noun of every pair, in index order."""

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(uint8 [3, H, W] image, bool [H, W] region) of pair `index`; SampleError if unreadable."""


class SegmentPairSource:
    """One pair per ground-truth segment of a labelled dataset."""

    def __init__(self, dataset: Any, names: tuple[str, ...], pairs: list[tuple[int, int]]):
        self.dataset, self.names, self.pairs = dataset, names, pairs
        self._last: tuple[int, Any] | None = None

    @classmethod
    def build(cls, ctx: Any, spec: SegmentPairs) -> "SegmentPairSource":
        dataset = ctx.component("dataset")
        vocabulary = ctx.vocabulary()
        allowed = list(range(len(vocabulary)))
        if vocabulary.seen is not None and spec.seen_only:
            allowed = [k for k in allowed if vocabulary.seen[k]]
            log.info("segments: training on the %d seen classes of %d (unseen ones are never used)", len(allowed), len(vocabulary))
        elif vocabulary.seen is None:
            log.info("segments: the vocabulary marks no seen classes; every class is used")
        fingerprint = {
            "dataset": ctx.recipe.sections["dataset"].dump(),
            "size": len(dataset),
            "names": list(vocabulary.names),
            "classes": allowed,
            "min_pixels": spec.min_pixels,
        }
        path = ctx.out_dir / "pairs-segments.json"
        if ctx.is_main:
            pairs = _read_index(path, fingerprint)
            if pairs is None:
                pairs = _index_segments(ctx, dataset, set(allowed), spec.min_pixels)
                write_json(path, {"fingerprint": fingerprint, "pairs": pairs})
        if ctx.world_size > 1:
            import torch.distributed as dist

            dist.barrier()
        if not ctx.is_main:
            pairs = _read_index(path, fingerprint)
            if pairs is None:
                raise RuntimeError(f"{path}: the pair index written by rank 0 cannot be read")
        return cls(dataset, vocabulary.names, [tuple(p) for p in pairs])  # type: ignore[misc]

    def __len__(self) -> int:
        return len(self.pairs)

    def nouns(self) -> list[str]:
        return [self.names[k] for _, k in self.pairs]

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_index, k = self.pairs[index]
        if self._last is not None and self._last[0] == image_index:
            sample = self._last[1]
        else:
            sample = self.dataset[image_index]
            self._last = (image_index, sample)
        return sample.image, sample.label == k


def _read_index(path: Path, fingerprint: dict[str, Any]) -> list | None:
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data["pairs"] if data.get("fingerprint") == fingerprint else None


def _index_segments(ctx: Any, dataset: Any, allowed: set[int], min_pixels: int) -> list[list[int]]:
    pairs: list[list[int]] = []
    skipped = 0
    for i in ctx.progress(range(len(dataset)), total=len(dataset), desc="index segments"):
        try:
            sample = dataset[i]
        except SampleError as e:
            log.warning("segments: skipped %s: %s", e.sample_id, e.reason)
            skipped += 1
            continue
        if sample.label is None:
            skipped += 1
            continue
        label = sample.label[sample.label != IGNORE_INDEX]
        counts = torch.bincount(label.flatten(), minlength=1)
        for k in torch.nonzero(counts >= min_pixels).flatten().tolist():
            if k in allowed:
                pairs.append([i, k])
    ctx.log.info("segments: %d pairs from %d images (%d skipped)", len(pairs), len(dataset) - skipped, skipped)
    return pairs


class DatasetImages:
    """The images of the recipe's dataset by sample id (the id index is built on first use)."""

    def __init__(self, dataset: Any):
        self.dataset = dataset
        self._ids: dict[str, int] | None = None

    def image(self, sample_id: str, pair_id: str) -> torch.Tensor:
        if self._ids is None:
            self._ids = {self.dataset.sample_id(i): i for i in range(len(self.dataset))}
        if sample_id not in self._ids:
            raise SampleError(pair_id, f"the dataset has no sample {sample_id!r}")
        return self.dataset[self._ids[sample_id]].image


class JsonlPairSource:
    """Pairs listed in a JSONL file (see the module docstring for the format)."""

    def __init__(self, path: Path, records: list[dict[str, Any]], dataset: Any | None):
        self.path, self.records = path, records
        self.images = DatasetImages(dataset) if dataset is not None else None

    @classmethod
    def build(cls, ctx: Any, spec: JsonlPairs) -> "JsonlPairSource":
        path = resolve_path(spec.path)
        records, problems = [], []
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise BadInput(f"cannot read the pairs file {path}: {e.strerror or e}") from None
        for n, line in enumerate(lines, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                rec = json.loads(line)
            except ValueError as e:
                problems.append(f"line {n}: not JSON ({e})")
                continue
            problem = _check_record(rec)
            if problem:
                problems.append(f"line {n}: {problem}")
                continue
            records.append(rec)
        if problems:
            raise BadInput(
                f"{path}: {len(problems)} bad line(s):\n  " + "\n  ".join(problems[:10])
                + '\nEach line is {"image": PATH or "sample_id": ID, "mask": PNG PATH, "noun": TEXT}.'
            )
        needs_dataset = any("sample_id" in r for r in records)
        if needs_dataset and not ctx.has("dataset"):
            raise BadInput(f"{path}: lines name dataset samples (sample_id), so the recipe needs a `dataset:` section")
        return cls(path, records, ctx.component("dataset") if needs_dataset else None)

    def __len__(self) -> int:
        return len(self.records)

    def nouns(self) -> list[str]:
        return [r["noun"] for r in self.records]

    def _file(self, rel: str) -> Path:
        p = Path(rel).expanduser()
        return p if p.is_absolute() else self.path.parent / p

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rec = self.records[index]
        pair_id = f"{self.path.name}:{index}"
        if "image" in rec:
            image = read_image(self._file(rec["image"]), pair_id)
        else:
            assert self.images is not None
            image = self.images.image(rec["sample_id"], pair_id)
        mask = _read_mask(self._file(rec["mask"]), pair_id)
        if tuple(mask.shape) != tuple(image.shape[1:]):
            raise SampleError(pair_id, f"mask {rec['mask']} is {tuple(mask.shape)}, its image {tuple(image.shape[1:])}")
        return image, mask


def _check_record(rec: Any) -> str | None:
    if not isinstance(rec, dict):
        return "not a JSON object"
    if ("image" in rec) == ("sample_id" in rec):
        return 'give exactly one of "image" and "sample_id"'
    for key in ("mask", "noun"):
        if not isinstance(rec.get(key), str) or not rec[key].strip():
            return f'"{key}" must be a non-empty string'
    extra = set(rec) - {"image", "sample_id", "mask", "noun", "id"}
    if extra:
        return f"unknown keys {sorted(extra)}"
    return None


def _read_mask(path: Path, pair_id: str) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            arr = np.asarray(im)
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise SampleError(pair_id, f"cannot read mask {path}: {e}") from None
    if arr.ndim == 3:
        arr = arr.any(axis=2)
    return torch.from_numpy(arr != 0)


class MinedPairSource:
    """The pairs of a mine-pairs run (see the module docstring)."""

    def __init__(self, path: Path, pairs: list[tuple[str, str | None, str, tuple[int, int], str]], dataset: Any | None):
        self.path, self.pairs = path, pairs  # (image id, image file or None, phrase, (H, W), RLE counts)
        self.images = DatasetImages(dataset) if dataset is not None else None

    @classmethod
    def build(cls, ctx: Any, spec: MinedPairs) -> "MinedPairSource":
        path = resolve_path(spec.path)
        folder = path / "pairs" if (path / "pairs").is_dir() else path
        files = [path] if path.is_file() else sorted(folder.glob("shard-*.jsonl"))
        if not files:
            raise BadInput(f"{path}: no mined pairs (shard-*.jsonl); make them with a mine-pairs recipe (docs/mining.md)")
        pairs, problems, below = [], [], 0
        for file in files:
            with open(file, encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        rec = json.loads(line)
                        mask = rec["mask"]
                        item = (str(rec["image_id"]), rec.get("image"), str(rec["phrase"]),
                                (int(mask["size"][0]), int(mask["size"][1])), str(mask["counts"]))
                        score = float(rec.get("score", 1.0))
                    except (ValueError, KeyError, TypeError, IndexError) as e:
                        problems.append(f"{file.name}:{n}: {type(e).__name__}: {e}")
                        continue
                    if not item[2].strip():
                        problems.append(f"{file.name}:{n}: empty phrase")
                    elif score < spec.min_score:
                        below += 1
                    else:
                        pairs.append(item)
        if problems:
            raise BadInput(f"{path}: {len(problems)} bad line(s) in the mined pairs:\n  " + "\n  ".join(problems[:10]))
        if below:
            log.info("mined-pairs: %d pairs below min_score %g left out", below, spec.min_score)
        needs_dataset = any(p[1] is None for p in pairs)
        if needs_dataset and not ctx.has("dataset"):
            raise BadInput(f"{path}: pairs name dataset samples (image_id without image), so the recipe needs the mined `dataset:`")
        _mask_utils()  # fail now, not at the first batch
        return cls(path, pairs, ctx.component("dataset") if needs_dataset else None)

    def __len__(self) -> int:
        return len(self.pairs)

    def nouns(self) -> list[str]:
        return [p[2] for p in self.pairs]

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_id, file, _, size, counts = self.pairs[index]
        pair_id = f"{self.path.name}:{image_id}:{index}"
        if file is not None:
            image = read_image(Path(file), pair_id)
        else:
            assert self.images is not None
            image = self.images.image(image_id, pair_id)
        mask = torch.from_numpy(_mask_utils().decode({"size": list(size), "counts": counts.encode("ascii")}).astype(bool))
        if tuple(mask.shape) != tuple(image.shape[1:]):
            raise SampleError(pair_id, f"mask is {tuple(mask.shape)}, its image {tuple(image.shape[1:])}")
        return image, mask


def _mask_utils() -> Any:
    try:
        from pycocotools import mask as mask_utils
    except ImportError:
        raise BadInput("mined pairs hold COCO RLE masks, read with pycocotools: pip install 'ovframe[mining]'") from None
    return mask_utils


class ConcatSource:
    """Several sources as one: the pairs of the first, then of the second ..."""

    def __init__(self, sources: list[PairSource]):
        self.sources = sources
        self.offsets = [0]
        for source in sources:
            self.offsets.append(self.offsets[-1] + len(source))

    def __len__(self) -> int:
        return self.offsets[-1]

    def nouns(self) -> list[str]:
        return [n for source in self.sources for n in source.nouns()]

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        for source, start, end in zip(self.sources, self.offsets, self.offsets[1:]):
            if start <= index < end:
                return source.load(index - start)
        raise IndexError(index)


def build_source(ctx: Any, spec: SegmentPairs | JsonlPairs | MinedPairs | list) -> PairSource:
    if isinstance(spec, list):
        sources = [build_source(ctx, s) for s in spec]
        for s, one in zip(spec, sources):
            log.info("pairs: %d from %s", len(one), s.source)
        return sources[0] if len(sources) == 1 else ConcatSource(sources)
    if isinstance(spec, MinedPairs):
        return MinedPairSource.build(ctx, spec)
    if isinstance(spec, JsonlPairs):
        return JsonlPairSource.build(ctx, spec)
    return SegmentPairSource.build(ctx, spec)
