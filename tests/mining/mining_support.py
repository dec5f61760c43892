"""Mining test helpers: a caption folder of coloured shapes with known phrases, an environment that finds the
fake components, recipe text. (A module of its own: `conftest` is a name every test folder shares.)"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from mining_fakes import COLOURS  # noqa: E402



def make_caption_folder(root: Path, n: int, size: int = 32) -> dict[str, dict]:
    """n images, each with 2 squares of different colours on black; captions name them (plural/count
    forms, a relative clause); image 3 has broken captions. Returns {id: {"masks": {colour: mask}}}."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True, exist_ok=True)
    truth: dict[str, dict] = {}
    lines: list[bytes] = []
    names = list(COLOURS)
    for i in range(n):
        sid = f"img{i:03d}"
        img = np.zeros((size, size, 3), np.uint8)
        a, b = rng.choice(len(names), 2, replace=False)
        masks = {}
        for colour, (y, x) in ((names[a], (2, 2)), (names[b], (16, 14))):
            h, w = int(rng.integers(6, 12)), int(rng.integers(6, 14))
            m = np.zeros((size, size), bool)
            m[y : y + h, x : x + w] = True
            img[m] = COLOURS[colour]
            masks[colour] = m
        Image.fromarray(img).save(root / "images" / f"{sid}.png")
        truth[sid] = {"masks": masks}
        captions = [f"a {names[a]} square next to two small {names[b]} squares.", f"the {names[a]} square which is left of a {names[b]} square."]
        if i == 3:
            lines.append(json.dumps({"id": sid, "captions": ["", "x" * 5000]}).encode()[:-2] + b', "bad \xff byte"]}')
        else:
            lines.append(json.dumps({"id": sid, "captions": captions}).encode())
    lines.insert(2, b"{not json")
    (root / "captions.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    return truth


def plugin_env(tmp: Path) -> dict[str, str]:
    """An environment whose `ovframe` finds the fake components by their entry point."""
    info = tmp / "site" / "ovframe_miningtest-0.0.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ovframe-miningtest\nVersion: 0.0.0\n")
    (info / "entry_points.txt").write_text("[ovframe]\nminingtest = mining_fakes\n")
    path = os.pathsep.join([str(tmp / "site"), str(HERE), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def recipe_text(data: Path, runs: Path, name: str, **task) -> str:
    options = {"shard_images": 4, "batch_size": 3, **task}
    lines = "\n".join(f"  {k}: {json.dumps(v)}" for k, v in options.items())
    return (
        f"name: {name}\noutput_dir: {runs}\n"
        f"dataset: {{plugin: caption-folder, root: {data}}}\n"
        "proposals: {plugin: colour-regions}\nclassifier: {plugin: colour-words}\n"
        f"task:\n  plugin: mine-pairs\n  phrases: {{mode: noun-chunks}}\n{lines}\n"
    )
