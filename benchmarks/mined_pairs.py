"""How mined pairs go wrong: the masks of pairs judged against the synthetic ground truth.

    OMP_NUM_THREADS=1 python benchmarks/mined_pairs.py runs/synth-mine-pairs [--images 1000]

Reads a mine-pairs run that has `task.precision` (its recipe.yaml gives the labelled dataset and the
aliases), judges the pairs of its first N images as the run did, and prints, for things and stuff,
seen and unseen: pairs, right at IoU >= 0.5, mean IoU, and the mask's pixel precision (share of the
mask on the named class) and recall (share of the class's pixels the mask covers); then, among pairs
that overlap their class but miss IoU 0.5, how many masks are too large (precision < 0.5, recall >= 0.5),
too small (recall < 0.5, precision >= 0.5) or both. Last, what the contrastive loss of train-adapter
sees in batches of 256 of all the run's pairs (10 random batches): distinct phrases per batch, distinct
classes they name, and the share of pairs that another distinct phrase of the batch names the same class
of (the loss pushes them apart: false negatives).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import yaml

from ovframe.io import markdown_table
from ovframe.registry import get_registry
from ovframe_mining import rle
from ovframe_mining.config import MinePairsConfig
from ovframe_mining.judge import Judge
from ovframe_mining.phrases import PhraseExtractor
from ovframe_synth import world


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--images", type=int, default=1000)
    args = parser.parse_args()
    recipe = yaml.safe_load((args.run / "recipe.yaml").read_text())
    cfg = MinePairsConfig.model_validate({k: v for k, v in recipe["task"].items() if k != "plugin"})
    registry = get_registry()
    section = dict(cfg.precision.dataset or recipe["dataset"])
    truth = registry.get("dataset", section.pop("plugin")).build(section)
    judge = Judge(cfg.precision, truth, truth.vocabulary.names, truth.vocabulary.seen, PhraseExtractor(cfg.phrases))
    index = {truth.sample_id(i): i for i in range(min(args.images, len(truth)))}
    groups: dict[str, list[tuple[float, float, float]]] = {}
    for shard in sorted((args.run / "pairs").glob("shard-*.jsonl")):
        for line in shard.read_text().splitlines():
            pair = json.loads(line)
            if pair["image_id"] not in index:
                continue
            k = judge.class_of(pair["phrase"])
            if k is None:
                continue
            label = truth[index[pair["image_id"]]].label.numpy()
            m, c = rle.decode(pair["mask"]), label == k
            inter = float((m & c).sum())
            iou = inter / max(1.0, float((m | c).sum()))
            info = world.CLASSES[world.CLASS_INDEX[truth.vocabulary.names[k]]]
            group = f"{'things' if info.is_thing else 'stuff'} {'seen' if info.seen else 'unseen'}"
            groups.setdefault(group, []).append((iou, inter / max(1.0, float(m.sum())), inter / max(1.0, float(c.sum()))))
    rows = []
    for group in ("things seen", "things unseen", "stuff seen", "stuff unseen"):
        a = np.asarray(groups.get(group, []), dtype=float).reshape(-1, 3)
        miss = a[(a[:, 0] < 0.5) & (a[:, 1] > 0)]
        share = lambda sel: round(100 * float(sel.mean()), 1) if len(miss) else float("nan")  # noqa: E731
        rows.append({
            "pairs": group, "n": len(a), "IoU>=0.5 %": round(100 * float((a[:, 0] >= 0.5).mean()), 1),
            "mean IoU": round(float(a[:, 0].mean()), 3), "pixel precision": round(float(a[:, 1].mean()), 3),
            "pixel recall": round(float(a[:, 2].mean()), 3), "missed, overlapping": len(miss),
            "too large %": share((miss[:, 1] < 0.5) & (miss[:, 2] >= 0.5)),
            "too small %": share((miss[:, 2] < 0.5) & (miss[:, 1] >= 0.5)),
            "both %": share((miss[:, 1] < 0.5) & (miss[:, 2] < 0.5)),
        })
    print(f"{args.run}: pairs of the first {len(index)} images naming a class")
    print(markdown_table(rows))
    print(markdown_table([batch_stats(args.run, judge)]))


def batch_stats(run: Path, judge: Judge, batch: int = 256, batches: int = 10) -> dict[str, float]:
    phrases = [json.loads(line)["phrase"] for shard in sorted((run / "pairs").glob("shard-*.jsonl")) for line in shard.open()]
    rng = np.random.default_rng(0)
    distinct, classes, false_neg = [], [], []
    for _ in range(batches):
        chosen = [phrases[i] for i in rng.choice(len(phrases), batch, replace=False)]
        named = {p: judge.class_of(p) for p in set(chosen)}
        by_class: dict[int, set[str]] = {}
        for p, k in named.items():
            if k is not None:
                by_class.setdefault(k, set()).add(p)
        distinct.append(len(named))
        classes.append(len(by_class))
        false_neg.append(np.mean([named[p] is not None and len(by_class[named[p]]) > 1 for p in chosen]))
    return {"batch": batch, "distinct phrases": float(np.mean(distinct)), "classes they name": float(np.mean(classes)),
            "pairs with a same-class pair under another phrase %": round(100 * float(np.mean(false_neg)), 1)}


if __name__ == "__main__":
    main()
