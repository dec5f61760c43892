"""The text-embedding cache: encoding a vocabulary with every name cached (hit) against none (miss).

    OMP_NUM_THREADS=1 python benchmarks/text_cache.py [--names 4000] [--repeats 3]

The CLIP of recipes/demo.yaml (its text tower) with the 14 ViLD templates; --names made-up class names.
A miss embeds every name (names x 14 prompts through the text tower) and writes the packed cache
file; a hit is a new encoder (as a new run would build) reading that file. Best of --repeats for the
hit, one miss (it is long). Figures are printed; nothing is asserted.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--names", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from ovframe import Vocabulary
    from ovframe.recipes import load_recipe
    from ovframe.registry import get_registry

    registry = get_registry()
    recipe = load_recipe(ROOT / "recipes" / "demo.yaml", registry=registry)
    section = recipe.section("text_encoder")
    vocabulary = Vocabulary(tuple(f"thing number {i}" for i in range(args.names)))
    with tempfile.TemporaryDirectory() as tmp:
        options = {**section.config.model_dump(), "cache_dir": tmp}

        def build():
            return section.spec.build(options)

        encoder = build()
        start = time.perf_counter()
        missed = encoder.encode(vocabulary)
        t_miss = time.perf_counter() - start
        size = encoder.cache.path.stat().st_size
        t_hit = float("inf")
        for _ in range(args.repeats):
            fresh = build()
            start = time.perf_counter()
            hit = fresh.encode(vocabulary)
            t_hit = min(t_hit, time.perf_counter() - start)
        assert fresh.cache.hits == args.names and torch.equal(hit.embeddings, missed.embeddings)
    print(f"CPU threads: {args.threads}; demo CLIP text tower, 14 ViLD templates; cache file {size / 2**20:.1f} MiB")
    print(f"{'names':>6} {'miss s':>9} {'hit ms':>9} {'hit per name us':>16} {'miss / hit':>11}")
    print(f"{args.names:>6} {t_miss:>9.2f} {1000 * t_hit:>9.2f} {1e6 * t_hit / args.names:>16.2f} {t_miss / t_hit:>10.0f}x")


if __name__ == "__main__":
    main()
