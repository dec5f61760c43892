"""Fabricated folder datasets and recipes for the evaluation tests, and a site folder that installs
the test-only `noisy-oracle` classifier through an entry point (for real `ovframe run` subprocesses)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from noisy_oracle import flipped

HERE = Path(__file__).resolve().parent
NAMES = ("sky", "grass", "road", "car", "person")
SEEN = ("sky", "grass", "car")
PALETTE = np.array([[90, 160, 230], [40, 160, 40], [120, 120, 120], [220, 30, 30], [230, 200, 150]], dtype=np.uint8)


def fabricate_label(index: int, size: int) -> np.ndarray:
    """uint8 [size, size]: a background class, 1-3 rectangles of others, a few ignore (255) pixels."""
    g = np.random.default_rng(index)
    label = np.full((size, size), g.integers(0, 2), dtype=np.uint8)
    for _ in range(int(g.integers(1, 4))):
        y, x = g.integers(0, size - 4, 2)
        h, w = g.integers(3, max(4, size // 2), 2)
        label[y : y + h, x : x + w] = g.integers(0, len(NAMES))
    label[0, : size // 8 + 1] = 255
    return label


def make_folder(root: Path, n: int, size: int = 24, corrupt: dict[int, bytes] | None = None, unlabelled: tuple[int, ...] = ()) -> Path:
    """ROOT/images/img<i>.png, ROOT/labels/img<i>.png, classes.txt, seen.txt. `corrupt` replaces image i's bytes."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("".join(f"{n}\n" for n in NAMES))
    (root / "seen.txt").write_text("".join(f"{n}\n" for n in SEEN))
    for i in range(n):
        label = fabricate_label(i, size)
        image_path = root / "images" / f"img{i:05d}.png"
        if corrupt and i in corrupt:
            image_path.write_bytes(corrupt[i])
        else:
            Image.fromarray(PALETTE[np.where(label == 255, 0, label)]).save(image_path)
        if i not in unlabelled:
            Image.fromarray(label).save(root / "labels" / f"img{i:05d}.png")
    return root


def expected_confusion(root: Path, n: int, flip_percent: int, skip: tuple[int, ...] = ()) -> np.ndarray:
    """Brute force: every pixel of class c predicted c, or c+1 when its proposal is flipped."""
    k = len(NAMES)
    cm = np.zeros((k, k), dtype=np.int64)
    for i in range(n):
        if i in skip:
            continue
        label = np.asarray(Image.open(root / "labels" / f"img{i:05d}.png"))
        for c in np.unique(label):
            if c == 255:
                continue
            pred = (int(c) + 1) % k if flipped(f"img{i:05d}", int(c), flip_percent) else int(c)
            cm[c, pred] += int((label == c).sum())
    return cm


def recipe(path: Path, data: Path, out: Path, name: str = "eval", flip_percent: int = 30, delay: float = 0.0, **task) -> Path:
    task = {"plugin": "evaluate", **task}
    text = {
        "name": name,
        "output_dir": str(out),
        "device": "cpu",
        "dataset": {"plugin": "folder", "root": str(data)},
        "proposals": "ground-truth-masks",
        "classifier": {"plugin": "noisy-oracle", "flip_percent": flip_percent, "delay": delay},
        "fuser": "clip-only",
        "task": task,
    }
    path.write_text(json.dumps(text, indent=1))  # JSON is YAML
    return path


def plugin_site(tmp: Path) -> dict[str, str]:
    """An environment whose `ovframe` finds the test plugin `noisy-oracle` by its entry point."""
    site = tmp / "site"
    info = site / "ovframe_evaltest-0.0.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ovframe-evaltest\nVersion: 0.0.0\n")
    (info / "entry_points.txt").write_text("[ovframe]\nevaltest = noisy_oracle\n")
    path = os.pathsep.join([str(site), str(HERE), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def read_csv(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))
