"""`ovframe bench`: the per-stage table, its shares, the report files, ratios side by side, bad input.

Speed itself is never asserted (benchmarks print it); the tests check what the figures are made of."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from support import write

from ovframe.bench import BenchJob, BenchResult, _batches, _Bench
from ovframe.bench_report import markdown, rows_of, stage_table_rows, summary_rows, write_report

ROOT = Path(__file__).resolve().parents[2]
PIPELINE_STAGES = ["load", "propose", "classify", "fuse"]


@pytest.fixture
def toy_recipe(tmp_path):
    return write(
        tmp_path / "toy.yaml",
        """
        name: toy-bench
        dataset: {plugin: toy, n: 5, corrupt: [3]}
        proposals: {plugin: grid, cells: 3}
        classifier: {plugin: mean-colour, colours: {sky: [90, 160, 230], grass: [40, 160, 40]}}
        fuser: clip-only
        task: {plugin: evaluate, batch_size: 2}
        """,
    )


def measure(recipe: Path, images: int, warmup: int | None = None, batch_size: int | None = None) -> BenchResult:
    bench = _Bench(BenchJob(str(recipe), [], images, warmup, batch_size))
    for b in range(len(bench.batches)):
        bench.run_batch(b)
    return bench.report("toy")


def test_batches_split_warmup_from_timed_images():
    assert _batches(3, 5, 2) == [(0, 2), (2, 3), (3, 5), (5, 7), (7, 8)]
    assert _batches(0, 2, 4) == [(0, 2)]


def test_stage_table_of_one_recipe(toy_recipe, toy_registry, tmp_path):
    result = measure(toy_recipe, images=7, warmup=2)  # 9 images of a 5-image dataset: cycles; toy003 is corrupt
    assert result.batch_size == 2  # the task's
    assert result.warmup == 2
    assert result.images == 5 and len(result.failed) == 2  # timed images 2..8 -> dataset 2,3,4,0,1,2,3
    assert all("toy003" in f for f in result.failed)
    # batches of 2 over 7 images: [2, 3] [4, 0] [1, 2] [3]; the last one has nothing readable to segment
    assert result.calls["load"] == 4 and result.calls["propose"] == 3
    rows = rows_of(result)
    stages = [r[0] for r in rows]
    assert stages[-2:] == ["other", "total"] and set(stages[:-2]) == set(result.stages)
    assert [s for s in stages if s in PIPELINE_STAGES] == PIPELINE_STAGES  # in the order they run
    stage_shares = sum(share for stage, _, share, _ in rows[:-2])
    other = next(share for stage, _, share, _ in rows if stage == "other")
    # the stages are timed one after another inside the measured wall time, warm-up excluded from both:
    # together never more than all of it (a stage counted twice, or warm-up time left in, would be);
    # `other` is the rest (how much of it there is depends on the machine's load: not asserted)
    assert 0.0 < stage_shares <= 100.0 + 1e-9 and other >= -1e-9
    assert stage_shares + other == pytest.approx(100.0)
    assert rows[-1][2] == pytest.approx(100.0)
    ms = {stage: v for stage, v, _, _ in rows}
    assert sum(ms[s] for s in stages[:-1]) == pytest.approx(ms["total"])
    assert ms["total"] == pytest.approx(1000 * result.wall_s / result.images)
    assert result.images_per_s == pytest.approx(result.images / result.wall_s)
    assert result.peak_rss_mib is None or result.peak_rss_mib > 10
    assert result.peak_cuda_mib is None  # on the CPU

    text = markdown([result])
    lines = text.splitlines()
    assert lines[0].startswith("toy: 5 images from dataset toy (5 images) after 2 warm-up, batch 2, 4 classes, cpu")
    assert "2 unreadable image(s) skipped" in lines[0]
    assert "| stage | ms/image | share | calls |" in text
    assert "| metric | toy |" in text and "| images/s |" in text and "| peak RSS (MiB) |" in text

    paths = write_report([result], tmp_path / "report")
    table = list(csv.DictReader(paths["csv"].open()))
    assert [r["stage"] for r in table] == stages
    assert sum(float(r["share_pct"]) for r in table[:-1]) == pytest.approx(100.0, abs=0.01)
    saved = json.loads(paths["json"].read_text())
    assert saved[0]["images"] == 5 and set(saved[0]["stages"]) == set(stages[:-2])
    from PIL import Image

    with Image.open(paths["png"]) as im:
        assert im.format == "PNG" and im.width > 600 and im.height > 100
    assert paths["md"].read_text() == text


def _result(label: str, wall: float, stages: dict[str, float], rss: float) -> BenchResult:
    return BenchResult(
        label=label, recipe=label, description="", device="cpu", threads=1, batch_size=1, images_from="x",
        vocabulary=3, images=10, warmup=1, wall_s=wall, stages=stages, calls={k: 10 for k in stages},
        first_text_ms=5.0, peak_rss_mib=rss, peak_cuda_mib=None,
    )


def test_two_recipes_side_by_side_as_ratios():
    a = _result("a", 2.0, {"load": 0.2, "propose": 1.0, "classify": 0.5, "fuse": 0.2}, 500.0)
    b = _result("b", 1.0, {"load": 0.2, "propose": 0.25, "classify": 0.4, "fuse": 0.1, "classify/crop": 0.1}, 400.0)
    rows = {r["stage"]: r for r in stage_table_rows([a, b])}
    assert list(rows) == ["load", "propose", "classify", "fuse", "classify/crop", "other", "total"]
    assert rows["propose"]["a ms/image"] == "100.00" and rows["propose"]["b ms/image"] == "25.00"
    assert rows["propose"]["b / a"] == "0.25x"
    assert rows["total"]["b / a"] == "0.50x"
    assert rows["classify/crop"]["a ms/image"] == "0.00" and rows["classify/crop"]["b / a"] == ""
    # a sub-stage (name with "/") lies inside its parent: not counted again in `other`
    assert rows["other"]["b ms/image"] == "5.00"
    assert rows["total"]["b share"] == "100.0 %"
    summary = {r["metric"]: r for r in summary_rows([a, b])}
    assert summary["images/s"]["a"] == "5.00" and summary["images/s"]["b / a"] == "2.00x"
    assert summary["peak RSS (MiB)"]["b / a"] == "0.80x"
    assert "peak CUDA memory (MiB)" not in summary  # neither ran on a GPU
    assert not math.isnan(a.images_per_s)


def ovframe(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "ovframe", *args], capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.yaml"], "no such recipe"),
        (["{tmp}/r.yaml", "--images", "0"], "--images must be at least 1"),
        (["{tmp}/nopipe.yaml"], "has no `proposals:` or `fuser:` section"),
        (["{tmp}/nodata.yaml"], "has no `dataset:` to take images from"),
        (["{tmp}/r.yaml", "--inputs", "{tmp}/nothing-here"], "--inputs"),
        (["{tmp}/nodata.yaml", "--inputs", "{tmp}"], "needs a `vocabulary:`"),
        (["{tmp}/r.yaml", "-o", "fuser.lam=2"], "fuser.lam"),
    ],
)
def test_bad_input_exits_2_before_any_work(args, message, tmp_path, capsys, registry):
    write(tmp_path / "r.yaml", "name: r\ndataset: {plugin: synth, split: val}\nproposals: ground-truth-masks\nclassifier: oracle\nfuser: clip-only\n")
    write(tmp_path / "nopipe.yaml", "name: r\ndataset: {plugin: synth, split: val}\ntask: {plugin: evaluate}\n")
    write(tmp_path / "nodata.yaml", "name: r\nproposals: ground-truth-masks\nclassifier: oracle\nfuser: clip-only\n")
    from ovframe.cli import main

    assert main(["bench", *[a.format(tmp=tmp_path) for a in args]]) == 2  # in this process: no child was started
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_bench_command_compares_two_recipes_in_child_processes(tmp_path):
    recipe = write(
        tmp_path / "oracle.yaml",
        "name: oracle\ndataset: {plugin: synth, split: val}\nproposals: ground-truth-masks\nclassifier: oracle\n"
        "fuser: clip-only\ntask: {plugin: evaluate, batch_size: 2}\n",
    )
    out = ovframe("bench", str(recipe), "--images", "3", "--warmup", "1", "--compare-override", "task.batch_size=1", "--out", str(tmp_path / "b"))
    assert out.returncode == 0, out.stderr
    results = json.loads((tmp_path / "b" / "bench.json").read_text())
    a, b = (r["label"] for r in results)
    assert a == "oracle" and b != a  # the compared recipe is named after its override
    assert f"| stage | {a} ms/image | {a} share | {b} ms/image | {b} share | {b} / {a} |" in out.stdout
    assert [r["batch_size"] for r in results] == [2, 1]
    assert [r["images"] for r in results] == [3, 3]
    assert [r["calls"]["propose"] for r in results] == [2, 3]
    assert all(r["peak_rss_mib"] > 50 for r in results)  # each child's own


def test_a_failure_inside_a_child_is_reported_with_its_reason(tmp_path, registry):
    """The child's side of the pipe, run here: a run-time failure comes back as `failed` with its reason."""
    import multiprocessing

    from PIL import Image

    from ovframe.bench import _child

    recipe = write(
        tmp_path / "r.yaml",
        "name: r\nvocabulary: {names: [a, b]}\nproposals: ground-truth-masks\nclassifier: oracle\nfuser: clip-only\n",
    )
    Image.new("RGB", (16, 16)).save(tmp_path / "photo.png")
    ours, theirs = multiprocessing.Pipe()
    ours.send(("batch", 0))  # the warm-up batch: ground-truth masks on an image without labels
    _child(BenchJob(str(recipe), [], 1, None, None, [str(tmp_path / "photo.png")]), "r", theirs)
    assert ours.recv() == ("ready", 2)
    kind, message = ours.recv()
    assert kind == "failed" and "needs labelled samples" in message
