"""Recipe sets whose variants cannot run: files looked at once, exit 2 when none can run, errors kept whole."""

from __future__ import annotations

import json

import pytest
from support import write

from ovframe import files
from ovframe.cli import main
from ovframe.errors import RequiredFile
from ovframe.recipes import expand
from ovframe.sets_runner import run_set, table_rows

ORACLE = """
    name: oracle
    output_dir: {runs}
    device: cpu
    dataset: {{plugin: toy, n: 2}}
    proposals: ground-truth-masks
    classifier: oracle
    fuser: clip-only
    task: {{plugin: evaluate, visualize: 0}}
"""
LOST = "{plugin: folder, root: /nowhere/mine}"


@pytest.fixture
def looked_at(monkeypatch):
    """Counts how often the files of a recipe are looked at, and fails if a variant's run looks again."""
    calls = []
    inspect = files.inspect_required_files

    def counting(required):
        calls.append([r.path for r in required])
        return inspect(required)

    def again(required):
        raise AssertionError("a variant's run checked its files again")

    monkeypatch.setattr("ovframe.sets_runner.inspect_required_files", counting)
    monkeypatch.setattr("ovframe.runner.check_required_files", again)
    return calls


def test_a_set_none_of_whose_variants_can_run_exits_2_naming_each_file_once(tmp_path, toy_registry, looked_at, capsys, monkeypatch):
    write(tmp_path / "oracle.yaml", ORACLE.format(runs=tmp_path / "runs"))
    s = write(tmp_path / "set.yaml", f"name: lost\nbase: oracle.yaml\noverrides: {{dataset: {LOST}}}\nmatrix:\n  fuser.plugin: [clip-only, geometric-ensemble]\n")
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(s)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ovframe: error: lost: none of its 2 variants can run.\n2 file(s) this recipe needs are missing:")
    assert err.count("  - /nowhere/mine/images") == 1 and err.count("  - /nowhere/mine/classes.txt") == 1
    assert len(looked_at) == 1  # once, for every variant together
    assert not (tmp_path / "runs").exists()  # nothing ran, nothing is written


def test_variants_that_cannot_run_are_rows_with_the_whole_error_and_the_others_run(tmp_path, toy_registry, looked_at, capsys):
    write(tmp_path / "oracle.yaml", ORACLE.format(runs=tmp_path / "runs"))
    s = write(tmp_path / "set.yaml", f"""
        name: mixed
        base: oracle.yaml
        variants:
          fine: {{}}
          lost: {{dataset: {LOST}}}
          typo: {{fuser.lamda: 0.5}}
    """)
    assert run_set(expand(s), toy_registry) == 1
    assert len(looked_at) == 1
    rows = {r["variant"]: r for r in json.loads((tmp_path / "runs" / "mixed" / "results.json").read_text())}
    assert rows["fine"]["status"] == "ok" and rows["fine"]["mIoU"] == 100.0
    lost = rows["lost"]["error"]
    assert lost.startswith("missing /nowhere/mine/images, /nowhere/mine/classes.txt\n2 file(s) this recipe needs are missing:")
    assert "get it:" in lost  # the whole message, with where to get each file
    assert "fuser.lamda: unknown key" in rows["typo"]["error"]
    table = (tmp_path / "runs" / "mixed" / "results.md").read_text()
    assert f"| missing /nowhere/mine/images, /nowhere/mine/classes.txt (in full: {tmp_path / 'runs' / 'mixed' / 'results.json'}) |" in table
    err = capsys.readouterr().err
    assert "2 of 3 variants cannot run (the others will):" in err
    assert err.count("/nowhere/mine/images: ") == 1  # where to get it, said once


def test_the_table_cuts_long_errors_and_points_at_the_whole_text(tmp_path):
    rows = [{"variant": "a", "status": "failed", "error": "x" * 300}, {"variant": "b", "status": "failed", "error": "one\ntwo"},
            {"variant": "c", "status": "failed", "error": "short"}]
    shown = [r["error"] for r in table_rows(rows, tmp_path)]
    assert shown[0] == "x" * 97 + f"... (in full: {tmp_path / 'results.json'})"
    assert shown[1] == f"one (in full: {tmp_path / 'results.json'})" and shown[2] == "short"
    assert rows[0]["error"] == "x" * 300  # the rows themselves (results.json, .csv) are left whole


def test_a_file_shared_by_many_is_hashed_once(tmp_path, monkeypatch):
    f = tmp_path / "w.bin"
    f.write_bytes(b"weights")
    calls = []
    real = files.sha256_of
    monkeypatch.setattr(files, "sha256_of", lambda p: calls.append(p) or real(p))
    pinned = RequiredFile(str(f), "weights", "make them", "0" * 64)
    missing, wrong = files.inspect_required_files([pinned, pinned, RequiredFile(str(f), "the same, unpinned", "x")])
    assert missing == [] and len(calls) == 1
    assert list(wrong.values()) == [f"{f}: sha256 is {real(f)}, the recipe pins {'0' * 64} (weights). "
                                    "The file is corrupt or a different version; get it again: make them"]
