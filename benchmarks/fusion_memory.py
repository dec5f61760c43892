"""Memory and fusion time against the vocabulary size K, on the same images, each K in its own process.

    OMP_NUM_THREADS=1 python benchmarks/fusion_memory.py [--classes 40 400 4000] [--images 16] [--size 128]

The demo's pipeline (recipes/demo.yaml) segments the first --images synth val images (resized to
--size) with a vocabulary of K names: the 40 synth classes and K - 40 made-up ones (their text
embeddings are made and cached first, in a process of their own, so that the runs measured read them).
Per K: the peak resident memory of the whole process (models, images, everything), the fuse stage's ms
per image, and the same with the [K, H, W] scores kept (`return_scores`, what fusion did before it was
chunked). Figures are printed; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def vocabulary(k: int):
    from ovframe_synth import world

    from ovframe import Vocabulary

    names = [c.name for c in world.CLASSES]
    return Vocabulary(tuple(names + [f"made-up thing {i}" for i in range(k - len(names))]))


def child(k: int, images: int, size: int, scores: bool) -> None:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    from ovframe import Sample
    from ovframe.recipes import load_recipe
    from ovframe.registry import get_registry
    from ovframe.runner import RunContext

    registry = get_registry()
    recipe = load_recipe(ROOT / "recipes" / "demo.yaml", registry=registry)
    ctx = RunContext(recipe, Path("."), registry, torch.device("cpu"))
    dataset, pipeline = ctx.component("dataset"), ctx.pipeline()
    vocab = vocabulary(k)
    samples = []
    for i in range(images):
        s = dataset[i]
        image = s.image
        if size != image.shape[1]:
            image = F.interpolate(image[None].float(), size=(size, size), mode="bilinear").round().clamp(0, 255).to(torch.uint8)[0]
        samples.append(Sample(image, None, s.id))
    pipeline.encode(vocab)
    for start in range(0, images, 8):
        pipeline.segment(samples[start : start + 8], vocab, return_scores=scores)
    fuse = pipeline.timings.seconds["fuse"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"peak_mib": peak, "fuse_ms_per_image": 1000 * fuse / images}))


def run_child(k: int, args, scores: bool, cache: str) -> dict:
    env = {**os.environ, "OVFRAME_CACHE_DIR": cache, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, __file__, "--child", str(k), "--images", str(args.images), "--size", str(args.size)]
    out = subprocess.run(cmd + (["--scores"] if scores else []), env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, nargs="+", default=[40, 400, 4000])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--scores", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--warm", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.warm:  # embed the largest vocabulary once, into the cache the measured runs read
        from ovframe.recipes import load_recipe
        from ovframe.registry import get_registry

        registry = get_registry()
        section = load_recipe(ROOT / "recipes" / "demo.yaml", registry=registry).section("text_encoder")
        section.spec.build(section.config).encode(vocabulary(args.child))
        return
    if args.child is not None:
        child(args.child, args.images, args.size, args.scores)
        return
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "OVFRAME_CACHE_DIR": cache}
        subprocess.run([sys.executable, __file__, "--warm", "--child", str(max(args.classes))], env=env, check=True)
        rows = [(k, run_child(k, args, False, cache), run_child(k, args, True, cache)) for k in args.classes]
    base = rows[0][1]["peak_mib"]
    print(f"demo pipeline, {args.images} synth images at {args.size} px, CPU, 1 thread; peak RSS of the whole process")
    print(f"{'K':>6} {'peak MiB':>9} {'vs K=' + str(rows[0][0]):>9} {'fuse ms/img':>12} {'ms/img/1k cls':>14} "
          f"{'| with scores: peak MiB':>24} {'fuse ms/img':>12}")
    for k, chunked, kept in rows:
        print(f"{k:>6} {chunked['peak_mib']:>9.0f} {chunked['peak_mib'] / base:>8.2f}x {chunked['fuse_ms_per_image']:>12.1f} "
              f"{1000 * chunked['fuse_ms_per_image'] / k:>14.2f} {kept['peak_mib']:>24.0f} {kept['fuse_ms_per_image']:>12.1f}")


if __name__ == "__main__":
    main()
