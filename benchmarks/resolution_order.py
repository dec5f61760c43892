"""The two resolution orders side by side on the same images: mIoU of each and the pixels that change.

    OMP_NUM_THREADS=1 python benchmarks/resolution_order.py [--recipe demo] [--images 200] [-o KEY=VALUE ...]

Default: the shipped synthetic pipeline (recipes/demo.yaml) on 96-px scenes with its test short side
of 128, so every image is resized (96 -> 128), as ADE images are for the OVSeg recipes (short side 640).
Each batch goes through `resolution: reference` and `resolution: original` with the same components;
prints a Markdown table (mIoU, seen/unseen, pACC, seconds) and the share of pixels whose label differs.
"""

from __future__ import annotations

import argparse
import time

import torch

from ovframe.metrics import ConfusionMatrix
from ovframe.pipeline import Pipeline
from ovframe.recipes import load_recipe
from ovframe.registry import get_registry
from ovframe.runner import RunContext, resolve_device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="demo", help="a recipe file or a shipped recipe's name")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("-o", dest="overrides", action="append", default=None, metavar="KEY=VALUE",
                        help="recipe overrides (default: dataset.image_size=96, the synthetic scenes at 96 px)")
    args = parser.parse_args()
    overrides = ["dataset.image_size=96"] if args.overrides is None else args.overrides
    registry = get_registry()
    recipe = load_recipe(args.recipe, overrides, registry=registry)
    ctx = RunContext(recipe, recipe.top.output_dir, registry, resolve_device(recipe.top.device))
    parts = {k: ctx.component(k) for k in ("text_encoder", "proposals", "classifier", "fuser") if ctx.has(k)}
    dataset, vocabulary = ctx.component("dataset"), ctx.vocabulary()
    orders = ("reference", "original")
    pipes = {r: Pipeline(**{"text_encoder": None, "classifier": None, **parts}, resolution=r) for r in orders}
    confusion = {r: ConfusionMatrix(len(vocabulary)) for r in orders}
    seconds = dict.fromkeys(orders, 0.0)
    changed = pixels = resized = 0
    n = min(args.images, len(dataset))
    for start in range(0, n, args.batch_size):
        samples = [dataset[i] for i in range(start, min(n, start + args.batch_size))]
        labels = {}
        for r in orders:
            t = time.perf_counter()
            labels[r] = [seg.labels.cpu() for seg in pipes[r].segment(samples, vocabulary)]
            seconds[r] += time.perf_counter() - t
            for s, lab in zip(samples, labels[r]):
                confusion[r].update(lab, s.label)
        for s, a, b in zip(samples, labels["reference"], labels["original"]):
            changed += int((a != b).sum())
            pixels += a.numel()
            test = parts["proposals"].test_size(*s.size)
            resized += int(test is not None and tuple(test) != s.size)
    print(f"{recipe.name} with {' '.join(overrides) or 'no overrides'}: {n} images, {resized} of them resized for the test")
    print("| resolution | mIoU | mIoU seen | mIoU unseen | pACC | seconds |")
    print("|---|---|---|---|---|---|")
    for r in orders:
        m = confusion[r].summary(vocabulary.seen)
        print(f"| {r} | {m['mIoU']:.2f} | {m.get('mIoU_seen', float('nan')):.2f} | {m.get('mIoU_unseen', float('nan')):.2f} "
              f"| {m['pACC']:.2f} | {seconds[r]:.1f} |")
    print(f"pixels labelled differently by the two orders: {100.0 * changed / max(pixels, 1):.2f} % of {pixels}")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
