"""Every package's shipped weights together stay within the documented budget (docs/contributing.md:
all shipped weights at most 25 MB), and each weights folder's manifest pins its files by sha256."""

from __future__ import annotations

import json
from pathlib import Path

from ovframe.files import sha256_of

ROOT = Path(__file__).resolve().parents[2]
BUDGET_BYTES = 25_000_000


def weight_folders() -> list[Path]:
    return sorted(p for p in (ROOT / "plugins").glob("*/weights") if p.is_dir())


def test_all_shipped_weights_together_fit_the_budget():
    files = [f for folder in weight_folders() for f in folder.rglob("*") if f.is_file()]
    total = sum(f.stat().st_size for f in files)
    sizes = ", ".join(f"{f.relative_to(ROOT)} {f.stat().st_size / 1e6:.2f} MB" for f in files)
    assert total <= BUDGET_BYTES, f"shipped weights are {total / 1e6:.2f} MB, the budget is {BUDGET_BYTES / 1e6:.0f} MB: {sizes}"


def test_every_shipped_file_is_in_its_folders_manifest_with_its_checksum():
    assert weight_folders(), "no shipped weights found"
    for folder in weight_folders():
        manifest = json.loads((folder / "manifest.json").read_text())
        shipped = {f.name for f in folder.iterdir() if f.is_file() and f.name != "manifest.json"}
        assert set(manifest["files"]) == shipped, folder
        for name, digest in manifest["files"].items():
            assert sha256_of(folder / name) == digest, folder / name
            assert (folder / name).stat().st_size == manifest["bytes"][name], folder / name
