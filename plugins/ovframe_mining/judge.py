"""Pair precision against ground truth: does a mined pair's mask cover the class its phrase names?

A phrase names class c when, lemmatised like the mined phrases, it equals or ends with c's name or one
of c's aliases ("striped violet star" ends with the alias "violet star" of "purple star"); the longest
match wins. A pair is right at IoU when its mask has IoU >= `iou` with the pixels of c in the image
(0 when c is absent), and right at any overlap when it covers at least one of them. Phrases that name
no class ("shape", "ground") are counted, not judged.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch

from ovframe import IGNORE_INDEX, BadInput
from ovframe.files import resolve_path

from .config import PrecisionConfig
from .phrases import PhraseExtractor


def empty_counts() -> dict[str, Any]:
    return {"judged": 0, "unjudged": 0, "by_class": {}, "unjudged_phrases": {}}


class Judge:
    def __init__(self, config: PrecisionConfig, dataset: Any | None, names: tuple[str, ...], seen: tuple[bool, ...] | None,
                 extractor: PhraseExtractor):
        self.config, self.dataset, self.names, self.seen = config, dataset, names, seen
        aliases: dict[str, list[str]] = {n: [n] for n in names}
        if config.aliases:
            path = resolve_path(config.aliases)
            try:
                extra = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise BadInput(f"precision.aliases {path}: cannot read it as JSON ({e})") from None
            if not isinstance(extra, dict) or not all(isinstance(v, list) for v in extra.values()):
                raise BadInput(f"precision.aliases {path}: expected {{class name: [phrases]}}")
            unknown = sorted(set(extra) - set(names))
            if unknown:
                raise BadInput(f"precision.aliases {path} names classes the labels do not have: {unknown[:5]}")
            for name, phrases in extra.items():
                aliases[name] += [str(p) for p in phrases]
        texts = [(k, a) for k, name in enumerate(names) for a in aliases[name]]
        normalised = extractor.normalise_many([a for _, a in texts])
        self.lookup: dict[str, int] = {}
        clashes = set()
        for (k, _), phrase in zip(texts, normalised):
            if phrase in self.lookup and self.lookup[phrase] != k:
                clashes.add(phrase)
            self.lookup.setdefault(phrase, k)
        for phrase in clashes:  # a phrase that names two classes names none for sure
            del self.lookup[phrase]

    def class_of(self, phrase: str) -> int | None:
        words = phrase.split()
        for i in range(len(words)):
            k = self.lookup.get(" ".join(words[i:]))
            if k is not None:
                return k
        return None

    def label(self, index: int, sample: Any) -> torch.Tensor:
        if self.dataset is None:
            if sample.label is None:
                raise BadInput(f"task.precision: sample {sample.id} has no label; give precision.dataset, a labelled view of the same images")
            return sample.label
        truth = self.dataset[index]
        if truth.id != sample.id or truth.label is None:
            raise BadInput(
                f"task.precision.dataset: sample {index} is {truth.id!r} (labelled: {truth.label is not None}), the mined one "
                f"{sample.id!r}; it must be a labelled view of the same images"
            )
        return truth.label

    def update(self, counts: dict[str, Any], label: torch.Tensor, phrase: str, mask: np.ndarray) -> None:
        k = self.class_of(phrase)
        if k is None:
            counts["unjudged"] += 1
            counts["unjudged_phrases"][phrase] = counts["unjudged_phrases"].get(phrase, 0) + 1
            return
        truth = (label == k).numpy()
        m = mask
        valid = (label != IGNORE_INDEX).numpy() | m  # ignore pixels outside the mask do not count
        inter = int((m & truth).sum())
        union = int(((m | truth) & valid).sum())
        iou = inter / union if union else 0.0
        row = counts["by_class"].setdefault(self.names[k], [0, 0, 0, 0.0])  # pairs, right at IoU, right at any, IoU sum
        row[0] += 1
        row[1] += int(iou >= self.config.iou)
        row[2] += int(inter > 0)
        row[3] += iou
        counts["judged"] += 1


def merge(total: dict[str, Any], part: dict[str, Any]) -> None:
    total["judged"] += part["judged"]
    total["unjudged"] += part["unjudged"]
    for name, row in part["by_class"].items():
        acc = total["by_class"].setdefault(name, [0, 0, 0, 0.0])
        for i, v in enumerate(row):
            acc[i] += v
    for phrase, n in part["unjudged_phrases"].items():
        total["unjudged_phrases"][phrase] = total["unjudged_phrases"].get(phrase, 0) + n


def precision_metrics(counts: dict[str, Any], iou: float, seen: dict[str, bool] | None) -> dict[str, Any]:
    """Pair-weighted precision over all judged pairs, and over pairs naming seen / unseen classes."""
    out: dict[str, Any] = {"pairs_judged": counts["judged"], "pairs_unjudged": counts["unjudged"]}
    pct = int(round(100 * iou))
    groups = {"": list(counts["by_class"])}
    if seen is not None:
        groups["_seen"] = [n for n in counts["by_class"] if seen.get(n, False)]
        groups["_unseen"] = [n for n in counts["by_class"] if not seen.get(n, False)]
    for suffix, names in groups.items():
        rows = [counts["by_class"][n] for n in names]
        pairs = sum(r[0] for r in rows)
        out[f"precision_iou{pct}{suffix}"] = round(100 * sum(r[1] for r in rows) / pairs, 2) if pairs else None
        out[f"precision_any{suffix}"] = round(100 * sum(r[2] for r in rows) / pairs, 2) if pairs else None
        out[f"pairs_judged{suffix}"] = pairs
    return out
