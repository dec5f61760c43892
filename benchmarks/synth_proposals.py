"""Where the synthetic pipeline loses accuracy: the proposals' quality and CLIP's naming of them.

    OMP_NUM_THREADS=1 python benchmarks/synth_proposals.py [--images 100] [-o KEY=VALUE ...]

Runs recipes/demo.yaml's components (overrides as for `ovframe run -o`) on the first N synth val images:
1. per ground-truth segment, the best IoU among the binarised proposals (sigmoid > 0.5), and the
   recall at IoU 0.5, split into seen / unseen things / stuff;
2. per proposal, the ground-truth segment it overlaps most (IoU) and whether the classifier's top
   class is that segment's class, by IoU bucket and for things / stuff.
With `-o proposals.plugin=ground-truth-masks` part 2 gives the same classifier on perfect masks.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from ovframe.recipes import load_recipe
from ovframe.registry import get_registry
from ovframe_synth import world

DEMO = Path(__file__).resolve().parents[1] / "recipes" / "demo.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("-o", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    registry = get_registry()
    recipe = load_recipe(DEMO, args.overrides, registry=registry)
    build = lambda kind: registry.build(kind, recipe.section(kind).dump())  # noqa: E731
    data, proposals, classifier = build("dataset"), build("proposals"), build("classifier")
    if recipe.section("adapter") is not None:
        classifier.attach(build("adapter"))
    text = build("text_encoder").encode(data.vocabulary)

    best_iou: dict[str, list[float]] = {}
    rows = []  # per proposal: best IoU, named right, thing
    with torch.no_grad():
        for i in range(args.images):
            sample = data[i]
            props = proposals.propose([sample], text)[0]
            scores = classifier.classify([sample], [props], text, data.vocabulary)[0]
            binary = props.mask_logits.sigmoid() > 0.5  # [Q, H, W]
            classes = torch.unique(sample.label)
            truth = torch.stack([sample.label == c for c in classes])  # [M, H, W]
            inter = (binary[:, None] & truth[None]).flatten(2).sum(-1).float()
            union = (binary[:, None] | truth[None]).flatten(2).sum(-1).float()
            iou = inter / union.clamp(min=1)  # [Q, M]
            for m, c in enumerate(classes.tolist()):
                info = world.CLASSES[c]
                key = f"{'seen' if world.SEEN[c] else 'unseen'} {'things' if info.is_thing else 'stuff'}"
                best_iou.setdefault(key, []).append(float(iou[:, m].max()))
            best, match = iou.max(dim=1)
            for q in torch.nonzero(scores.valid).flatten().tolist():
                c = int(classes[match[q]])
                rows.append((float(best[q]), int(scores.probs[q].argmax()) == c, world.CLASSES[c].is_thing))

    print(f"proposal quality ({args.images} val images): per ground-truth segment, the best proposal IoU")
    print("| segments | count | mean best IoU | recall at 0.5 |\n|---|---|---|---|")
    for key in sorted(best_iou):
        v = np.asarray(best_iou[key])
        print(f"| {key} | {len(v)} | {v.mean():.2f} | {(v >= 0.5).mean():.2f} |")
    a = np.asarray(rows, dtype=float)
    print(f"\nnaming ({len(a)} valid proposals): share whose top class is that of the segment they overlap most")
    print("| best IoU | proposals | named right | things | stuff |\n|---|---|---|---|---|")
    for lo, hi in ((0.8, 1.01), (0.5, 0.8), (0.0, 0.5)):
        m = (a[:, 0] >= lo) & (a[:, 0] < hi)
        if m.any():
            part = lambda k: f"{a[m & (a[:, 2] == k), 1].mean():.2f}" if (m & (a[:, 2] == k)).any() else "-"  # noqa: E731
            print(f"| {lo:.1f}-{min(hi, 1.0):.1f} | {m.sum()} | {a[m, 1].mean():.2f} | {part(1)} | {part(0)} |")


if __name__ == "__main__":
    main()
