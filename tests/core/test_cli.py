"""The command line as a user meets it: help, exit codes, no traceback for bad input, light start-up."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from support import write

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


def ovframe(*args, cwd=None, env=None):
    return subprocess.run(
        [sys.executable, "-m", "ovframe", *args], capture_output=True, text=True, cwd=cwd or ROOT, env=env, timeout=300
    )


def test_help_reads_well():
    out = ovframe("--help")
    assert out.returncode == 0
    for command in ("run", "validate", "show", "plugins", "predict", "prepare"):
        assert command in out.stdout
    assert "exit codes: 0 success, 2 bad input" in out.stdout
    assert ovframe().returncode == 0  # no command: the help


def test_plugins_json_lists_every_kind():
    out = ovframe("plugins", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert set(data["components"]) == {"text_encoder", "proposals", "classifier", "adapter", "fuser", "dataset", "task"}
    names = {p["name"]: p for p in data["plugins"]}
    assert {"ovframe", "fusers", "oracle"} <= set(names)
    assert names["fusers"]["components"]["fuser"] == [
        "geometric-ensemble", "geometric-ensemble-seen-unseen", "clip-only", "proposal-only",
    ]
    ensemble = next(c for c in data["components"]["fuser"] if c["name"] == "geometric-ensemble")
    assert ensemble["options"]["properties"]["lam"]["default"] == 0.7


@pytest.mark.parametrize(
    "argv",
    [["plugins", "--json"], ["recipes"], ["validate", "{tmp}"], ["show", "{tmp}/r.yaml"], ["--help"], ["bench", "--help"], ["export", "--help"]],
)
def test_everyday_commands_do_not_import_torch(argv, tmp_path):
    write(tmp_path / "r.yaml", "name: r\ndataset: {plugin: folder, root: data}\nproposals: ground-truth-masks\nclassifier: oracle\nfuser: clip-only\n")
    argv = [a.format(tmp=tmp_path) for a in argv]
    code = (
        "import sys\nfrom ovframe.cli import main\ntry:\n    rc = main(%r)\nexcept SystemExit as e:\n    rc = e.code\n"
        "heavy = sorted(m for m in ('torch', 'open_clip', 'timm') if m in sys.modules)\n"
        "print('HEAVY', heavy, rc, file=sys.stderr)" % (argv,)
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert "HEAVY [] 0" in out.stderr, out.stderr[-2000:]


def test_bad_input_exits_2_with_location_and_no_traceback(tmp_path):
    f = write(tmp_path / "r.yaml", "name: r\nfuser:\n  plugin: clip-only\n  lam: 0.5\n")
    out = ovframe("validate", str(f))
    assert out.returncode == 2
    assert f"{f}:4:3: fuser.lam: unknown key" in out.stderr
    assert "Traceback" not in out.stderr
    for argv in (["run", str(f), "-o", "oops"], ["run", str(tmp_path / "missing.yaml")], ["frobnicate"], ["run"]):
        out = ovframe(*argv)
        assert out.returncode == 2, argv
        assert "Traceback" not in out.stderr


def test_failure_at_run_time_exits_1(tmp_path):
    from PIL import Image

    (tmp_path / "data" / "images").mkdir(parents=True)
    (tmp_path / "data" / "labels").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "data" / "images" / "a.png")
    Image.new("L", (8, 8)).save(tmp_path / "data" / "labels" / "a.png")
    write(tmp_path / "data" / "classes.txt", "a\nb\n")
    recipe = write(tmp_path / "r.yaml", f"name: r\noutput_dir: {tmp_path / 'runs'}\ndataset: {{plugin: folder, root: {tmp_path / 'data'}}}\n"
                   "proposals: ground-truth-masks\nclassifier: oracle\nfuser: geometric-ensemble-seen-unseen\n")
    # the seen/unseen ensemble learns only from the first image that no class is marked seen: a failure at run time
    out = ovframe("run", str(recipe))
    assert out.returncode == 1
    assert "needs to know which classes are seen" in out.stderr


def test_dry_run_of_a_matrix_lists_the_variants(tmp_path):
    write(tmp_path / "base.yaml", "name: base\ndataset: {plugin: folder, root: data}\nproposals: ground-truth-masks\nclassifier: oracle\nfuser: clip-only\n")
    s = write(
        tmp_path / "set.yaml",
        "name: m\nbase: base.yaml\nmatrix:\n  proposals.logit: [10, 20]\n  classifier.mask_thr: [0.3, 0.5, 0.7]\n",
    )
    out = ovframe("run", str(s), "--dry-run")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "m: 6 variants"
    assert lines[1].strip() == "logit=10__mask_thr=0.3: proposals.logit=10, classifier.mask_thr=0.3"
    assert len(lines) == 7


def test_show_prints_the_resolved_recipe(tmp_path):
    f = write(tmp_path / "r.yaml", "name: r\nproposals: ground-truth-masks\nclassifier: oracle\nfuser: clip-only\n")
    out = ovframe("show", str(f), "-o", "fuser.invalid_regions=clip-ones")
    assert out.returncode == 0
    assert "fuser:\n  plugin: clip-only\n  invalid_regions: clip-ones\n" in out.stdout
