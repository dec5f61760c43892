"""scripts/reproduce_ovseg.py: the one command a GPU owner runs to compare with the published table.
Checked here on fabricated files (--dry-run plans), and end to end on the synthetic pipeline; on a
release-shaped checkpoint in tests/maskformer/test_reproduce_release.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support import load_script


@pytest.fixture(autouse=True)
def datasets_env(monkeypatch):
    monkeypatch.delenv("DETECTRON2_DATASETS", raising=False)  # --datasets sets it; forgotten after each test


@pytest.fixture(scope="module")
def script():
    return load_script("scripts/reproduce_ovseg.py")


def ade_layout(root: Path) -> Path:
    for folder in ("ADEChallengeData2016/images/validation", "ADEChallengeData2016/annotations_detectron2/validation"):
        (root / folder).mkdir(parents=True)
    return root


def test_dry_run_plans_the_conversion_and_the_run_and_skips_rows_without_files(script, tmp_path, capsys, registry):
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "ovseg_swinbase_vitL14_ft_mpt.pth").write_bytes(b"release")
    data = ade_layout(tmp_path / "data")
    rc = script.main(["--weights", str(weights), "--datasets", str(data), "--dry-run", "--output-dir", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert rc == 0
    ade = next(line for line in out.splitlines() if line.startswith("- ade150_mpt:"))
    assert f"python -m ovframe_maskformer.convert {weights}/ovseg_swinbase_vitL14_ft_mpt.pth {weights}/maskformer_swinb_ovseg.safetensors" in ade
    assert "ovframe run ade150_mpt" in ade and f"proposals.weights={weights}/maskformer_swinb_ovseg.safetensors" in ade
    assert "- pc59_mpt: skipped, missing" in out and "- ade847_mpt: skipped, missing" in out
    assert "1 of 6 rows would run; nothing was converted or run" in out
    assert not (weights / "maskformer_swinb_ovseg.safetensors").exists() and not (tmp_path / "runs").exists()


def test_missing_ade_or_release_is_bad_input_naming_what_to_get(script, tmp_path, capsys, registry):
    weights = tmp_path / "weights"
    weights.mkdir()
    rc = script.main(["--weights", str(weights), "--datasets", str(tmp_path / "nothing"), "--dry-run"])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"{weights}/ovseg_swinbase_vitL14_ft_mpt.pth" in err and "github.com/facebookresearch/ov-seg" in err
    assert "ovframe prepare ade20k-150" in err
    # a row named with --only must run too
    ade_layout(tmp_path / "data")
    (weights / "ovseg_swinbase_vitL14_ft_mpt.pth").write_bytes(b"release")
    rc = script.main(["--weights", str(weights), "--datasets", str(tmp_path / "data"), "--only", "ade150_mpt,pc59_mpt", "--dry-run"])
    assert rc == 2 and "pc59_mpt: " in capsys.readouterr().err
    with pytest.raises(SystemExit, match="without a published figure: nope"):
        script.main(["--only", "nope", "--dry-run"])


def test_verdicts(script):
    row = script.Row("ade150_mpt", "ADE20K-150", "Swin-B + ViT-L/14", 29.6)
    assert script.verdict(row, {"mIoU": 29.21}, 0.5, False) == ("ok (|Δ| <= 0.5)", False)
    assert script.verdict(row, {"mIoU": 28.9}, 0.5, False)[1] is True
    assert script.verdict(row, {"mIoU": 10.0, "images": 50}, 0.5, True) == ("partial (50 images): not compared", False)
    assert script.verdict(row, {"error": "boom"}, 0.5, False) == ("run failed", True)


@pytest.mark.slow
def test_end_to_end_on_the_synthetic_pipeline(script, tmp_path, capsys, monkeypatch, registry):
    """The shipped demo recipe on 4 synth images stands in for a release row: it runs, the table is printed
    and written, and a published figure out of reach gives exit 1 (the finished run is reused)."""
    monkeypatch.setenv("OVFRAME_CACHE_DIR", str(tmp_path / "cache"))
    common = ["--only", "demo", "--output-dir", str(tmp_path / "runs"), "-o", "dataset.num_images=4", "-o", "task.visualize=0"]
    assert script.main([*common, "--published", "demo=0", "--tolerance", "100"]) == 0
    out = capsys.readouterr().out
    metrics = json.loads((tmp_path / "runs" / "demo" / "metrics.json").read_text())
    row = next(line for line in out.splitlines() if line.startswith("| demo |"))
    assert f"| {metrics['mIoU']:.2f} |" in row and "ok (|Δ| <= 100.0)" in row
    saved = json.loads((tmp_path / "runs" / "reproduce.json").read_text())
    assert saved["rows"][0]["mIoU"] == pytest.approx(metrics["mIoU"])
    assert script.main([*common, "--published", "demo=100", "--tolerance", "0.5"]) == 1
    assert "OFF (|Δ| > 0.5)" in capsys.readouterr().out
