"""The evaluate task on a folder dataset: its confusion matrix against a brute-force recount, the
failures of corrupt and unlabelled images, seen/unseen side by side, and bounded memory over 2,000 images."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.torch import load_file

import noisy_oracle
from eval_fixtures import NAMES, SEEN, expected_confusion, make_folder, read_csv, recipe


@pytest.fixture
def reg(registry):
    registry.add_plugin(noisy_oracle, name="evaltest")
    return registry


def run(path, reg, *overrides):
    from ovframe.recipes import load_recipe
    from ovframe.runner import run_recipe

    return run_recipe(load_recipe(path, list(overrides), reg), reg)


def iou_from(cm: np.ndarray) -> np.ndarray:
    tp, gt, pred = np.diag(cm), cm.sum(1), cm.sum(0)
    union = gt + pred - tp
    return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


def test_metrics_failures_and_seen_unseen(tmp_path, reg):
    corrupt = {3: b"\x89PNG\r\n\x1a\n truncated", 7: b"this is not an image at all"}
    data = make_folder(tmp_path / "data", 24, corrupt=corrupt, unlabelled=(11,))
    metrics = run(recipe(tmp_path / "r.yaml", data, tmp_path / "runs", flip_percent=30), reg)
    out = tmp_path / "runs" / "eval"

    # the matrix is the brute-force recount of the images that could be read
    cm = load_file(out / "confusion.safetensors")["confusion"].numpy()
    expected = expected_confusion(data, 24, 30, skip=(3, 7, 11))
    np.testing.assert_array_equal(cm, expected)
    assert 0 < np.trace(cm) < cm.sum()  # non-trivial: some pixels right, some wrong

    # failures: reported with a reason, counted, skipped
    failures = {r["id"]: r["reason"] for r in read_csv(out / "failures.csv")}
    assert set(failures) == {"img00003", "img00007", "img00011"}
    assert "cannot read image" in failures["img00003"] and "cannot read image" in failures["img00007"]
    assert failures["img00011"] == "no label"
    assert (metrics["images"], metrics["images_failed"], metrics["images_total"]) == (21, 3, 24)
    assert json.loads((out / "metrics.json").read_text())["images_failed"] == 3

    # seen and unseen side by side, from the per-class rows, against a NumPy recomputation
    iou = iou_from(expected)
    seen = np.array([n in SEEN for n in NAMES])
    rows = read_csv(out / "per_class.csv")
    assert [r["class"] for r in rows] == list(NAMES)
    assert [r["split"] for r in rows] == ["seen" if s else "unseen" for s in seen]
    assert [int(r["gt_pixels"]) for r in rows] == expected.sum(1).tolist()
    for r, v in zip(rows, iou):
        assert (r["IoU"] == "" and math.isnan(v)) or abs(float(r["IoU"]) - 100 * v) < 1e-3
    assert metrics["mIoU"] == pytest.approx(100 * np.nanmean(iou))
    assert metrics["mIoU_seen"] == pytest.approx(100 * np.nanmean(iou[seen]))
    assert metrics["mIoU_unseen"] == pytest.approx(100 * np.nanmean(iou[~seen]))
    s, u = metrics["mIoU_seen"], metrics["mIoU_unseen"]
    assert metrics["hIoU"] == pytest.approx(2 * s * u / (s + u))
    acc = np.diag(expected) / expected.sum(1)
    assert metrics["mACC_seen"] == pytest.approx(100 * np.nanmean(acc[seen]))
    assert metrics["mACC_unseen"] == pytest.approx(100 * np.nanmean(acc[~seen]))
    log = (out / "log.txt").read_text()
    assert "| classes | count | present | mIoU | mACC |" in log and "| unseen |" in log


def test_overlays_batches_and_loader_workers(tmp_path, reg):
    data = make_folder(tmp_path / "data", 7)
    metrics = run(recipe(tmp_path / "r.yaml", data, tmp_path / "runs", batch_size=3, visualize=2, workers=2), reg)
    out = tmp_path / "runs" / "eval"
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["img00000.png", "img00001.png"]
    cm = load_file(out / "confusion.safetensors")["confusion"].numpy()
    np.testing.assert_array_equal(cm, expected_confusion(data, 7, 30))
    assert metrics["images_failed"] == 0 and read_csv(out / "failures.csv") == []


def _rss_bytes() -> int:
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.slow
@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_memory_stays_flat_over_2000_images(tmp_path, reg, monkeypatch):
    """RSS sampled while 2,000 images stream through: after warm-up it must not grow with the count.
    Each image carries ~100 KB of tensors (image, label, [K,H,W] scores), so keeping them would add ~200 MB."""
    from ovframe.runner import RunContext

    n, size = 2000, 64
    data = make_folder(tmp_path / "data", n, size=size)
    samples: list[tuple[int, int]] = []
    original = RunContext.progress

    def probe(self, iterable, total=None, desc=""):
        for i, item in enumerate(original(self, iterable, total, desc)):
            if i % 100 == 0:
                samples.append((i, _rss_bytes()))
            yield item

    monkeypatch.setattr(RunContext, "progress", probe)
    metrics = run(recipe(tmp_path / "r.yaml", data, tmp_path / "runs", flip_percent=10), reg)
    assert metrics["images"] == n
    warm = dict(samples)[300]
    peak_after = max(rss for i, rss in samples if i >= 300)
    growth_mb = (peak_after - warm) / 2**20
    assert growth_mb < 20, f"RSS grew by {growth_mb:.1f} MB between image 300 and {n}: {samples}"


@pytest.mark.parametrize("n, world", [(7, 2), (10, 3), (2, 3)])
def test_shards_cover_every_image_once_when_the_count_does_not_divide(tmp_path, reg, monkeypatch, n, world):
    """Each rank's share, run in this process with the collectives stood in for: together they count
    every image exactly once (a split that drops the remainder loses the last n % world images) and
    their matrices sum to the single process's."""
    import torch.distributed as dist

    from ovframe.recipes import load_recipe
    from ovframe.runner import RunContext

    data = make_folder(tmp_path / "data", n)
    single = run(recipe(tmp_path / "one.yaml", data, tmp_path / "runs", name="one"), reg)
    assert single["images"] == n
    monkeypatch.setattr(dist, "all_gather_object", lambda out, obj: out.__setitem__(slice(None), [obj] * len(out)))
    sharded = load_recipe(recipe(tmp_path / "shards.yaml", data, tmp_path / "runs", name="shards"), registry=reg)
    done: list[str] = []
    total = None
    for rank in range(world):
        ctx = RunContext(sharded, tmp_path / "runs" / "shards", reg, "cpu", rank, world)
        ctx.component("task").run(ctx)
        state = load_file(tmp_path / "runs" / "shards" / "state" / f"rank{rank}-of-{world}.safetensors")
        total = state["confusion"] if total is None else total + state["confusion"]
        with safe_open(str(tmp_path / "runs" / "shards" / "state" / f"rank{rank}-of-{world}.safetensors"), "pt") as f:
            done += json.loads(f.metadata()["done"])
    assert sorted(done) == sorted(f"img{i:05d}" for i in range(n))  # every image, none twice
    np.testing.assert_array_equal(total.numpy(), load_file(tmp_path / "runs" / "one" / "confusion.safetensors")["confusion"].numpy())
