"""How fast the synthetic benchmark makes samples, in one process.

    OMP_NUM_THREADS=1 python benchmarks/synth_generator.py [--images 300] [--sizes 96 128 160 256]

For each image size: scenes/s of the generator (image + label + captions), samples/s through the
`synth` dataset (adds the tensor conversion and the label view), and, as a yardstick measured in the
same run, samples/s of reading the same images and labels back from PNG files (what a dataset on disk
costs). Ratios > 1 mean generating is faster than reading.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ovframe_synth.config import SynthDatasetConfig
from ovframe_synth.dataset import SynthDataset
from ovframe_synth.scene import WorldSpec, make_scene


def rate(fn, n: int) -> float:
    fn(0)  # warm caches (coordinate grids, imports)
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--sizes", type=int, nargs="+", default=[96, 128, 160, 256])
    args = parser.parse_args()
    n = args.images
    print(f"{'size':>5} {'scenes/s':>9} {'samples/s':>10} {'png read/s':>11} {'gen/read':>9} {'ms/scene':>9}")
    for size in args.sizes:
        spec = WorldSpec(image_size=size)
        scenes_per_s = rate(lambda i: make_scene(0, "val", i, spec), n)
        dataset = SynthDataset(SynthDatasetConfig(split="val", num_images=n + 1, image_size=size))
        samples_per_s = rate(lambda i: dataset[i], n)
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            for i in range(n + 1):
                scene = make_scene(0, "val", i, spec)
                Image.fromarray(scene.image).save(root / f"{i}.png")
                Image.fromarray(scene.label.astype(np.uint8)).save(root / f"{i}.label.png")

            def read(i: int) -> None:
                with Image.open(root / f"{i}.png") as im:
                    np.asarray(im.convert("RGB"))
                with Image.open(root / f"{i}.label.png") as im:
                    np.asarray(im)

            read_per_s = rate(read, n)
        print(f"{size:>5} {scenes_per_s:>9.0f} {samples_per_s:>10.0f} {read_per_s:>11.0f} "
              f"{samples_per_s / read_per_s:>9.2f} {1000 / scenes_per_s:>9.2f}")


if __name__ == "__main__":
    main()
