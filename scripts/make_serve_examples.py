"""Write the example pictures `ovframe serve` offers (ovframe/serve_examples/): scenes of the synthetic world.

    python scripts/make_serve_examples.py

The scenes come from the synthetic benchmark's val split under seed 3, a seed the benchmark itself
(seed 0) never shows, so the examples are new to the shipped models. Each example's vocabulary is the
classes in its scene, objects first, plus one that is absent (an open vocabulary names more than the
picture holds). Deterministic: running it again writes the same files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ovframe import get_registry

OUT = Path(__file__).resolve().parents[1] / "ovframe" / "serve_examples"
SEED, PICKS = 3, (1, 3, 5)
ABSENT = {1: "blue circle", 3: "red triangle", 5: "snow"}


def main() -> None:
    dataset = get_registry().build("dataset", {"plugin": "synth", "split": "val", "seed": SEED, "num_images": max(PICKS) + 1})
    OUT.mkdir(parents=True, exist_ok=True)
    manifest = []
    for i in PICKS:
        sample = dataset[i]
        present = [dataset.vocabulary.names[int(c)] for c in torch.unique(sample.label) if int(c) >= 0]  # things, then stuff
        name = f"scene{len(manifest) + 1}.png"
        Image.fromarray(np.ascontiguousarray(sample.image.permute(1, 2, 0).numpy())).save(OUT / name, optimize=True)
        manifest.append({"image": name, "vocabulary": ", ".join([*present, ABSENT[i]]), "caption": sample.meta["captions"][0]})
    (OUT / "examples.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {len(manifest)} examples to {OUT}")


if __name__ == "__main__":
    main()
