"""What it costs to start segmenting from Python: imports, building a Segmenter, the first and later calls.

    OMP_NUM_THREADS=1 python benchmarks/segmenter_load.py [--recipe demo] [--repeats 5]

Run in a fresh process (the imports are the point). Prints one line per phase, in seconds, and the
share of the time to the first result that each phase takes:
    import ovframe.api            the API module alone (light: no torch)
    import torch                  torch
    import component libraries    open_clip (with torchvision) and timm, which the shipped components use
    Segmenter(recipe)             registry, recipe, weights' checks, building and loading the models
    first call                    one 128 px image, text embeddings of a new vocabulary included
    next call                     the same again (mean of --repeats)
    new vocabulary                one image, another vocabulary (its text embeddings)
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="demo")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    phases: list[tuple[str, float]] = []
    start = time.perf_counter()

    def mark(name: str) -> None:
        phases.append((name, time.perf_counter() - start - sum(s for _, s in phases)))

    import ovframe.api as api

    mark("import ovframe.api")
    import torch  # noqa: F401

    mark("import torch")
    import open_clip  # noqa: F401
    import timm  # noqa: F401

    mark("import component libraries")
    segmenter = api.Segmenter(args.recipe, device="cpu")
    mark(f"Segmenter({args.recipe!r})")
    import numpy as np

    image = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    segmenter(image, "red star, blue circle, grass, sky, lava")
    mark("first call")
    first_result = sum(s for _, s in phases)
    t = time.perf_counter()
    for _ in range(args.repeats):
        segmenter(image, "red star, blue circle, grass, sky, lava")
    next_call = (time.perf_counter() - t) / args.repeats
    t = time.perf_counter()
    segmenter(image, "purple heart, sand, water, snow")
    new_vocab = time.perf_counter() - t

    print(f"{'phase':<32} {'seconds':>8} {'share':>6}")
    for name, seconds in phases:
        print(f"{name:<32} {seconds:8.3f} {100 * seconds / first_result:5.1f}%")
    print(f"{'= first result':<32} {first_result:8.3f}")
    print(f"{'next call (same vocabulary)':<32} {next_call:8.3f}")
    print(f"{'new vocabulary':<32} {new_vocab:8.3f}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")


if __name__ == "__main__":
    main()
