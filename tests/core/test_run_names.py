"""Runs that differ only by -o get their own directory; a new dataset plugin inherits nothing."""

from __future__ import annotations

import json

import pytest
from support import write

from ovframe.cli import main
from ovframe.recipes import load_recipe
from ovframe.recipes.resolve import override_suffix


def test_override_suffix_is_readable_stable_and_unique():
    assert override_suffix([]) == ""
    assert override_suffix(["fuser.lam=0.5"]) == "fuser.lam=0.5"
    both = override_suffix(["task.max_images=4", "fuser.lam=0.5"])
    assert both == "fuser.lam=0.5+task.max_images=4" == override_suffix(["fuser.lam=0.5", "task.max_images=4"])
    assert override_suffix(["fuser.lam=0.4", "fuser.lam=0.5"]) == "fuser.lam=0.5"  # the last one counts
    spaced = override_suffix(["dataset={plugin: folder, root: /data/a b}"])
    assert spaced.startswith("dataset=plugin-folder-root-data-a-b-") and len(spaced.rsplit("-", 1)[1]) == 8
    # values that would read the same once cleaned up still get different names
    assert override_suffix(["task.root=a b"]) != override_suffix(["task.root=a_b"]) != override_suffix(["task.root=a-b"])
    long = override_suffix([f"vocabulary.names=[{', '.join(f'class {i}' for i in range(50))}]"])
    assert len(long) <= 64
    assert override_suffix(["name=mine", "fuser.lam=0.5"]) == ""  # the user placed the run
    assert override_suffix(["output_dir=elsewhere"]) == ""


@pytest.fixture
def oracle(tmp_path):
    return write(tmp_path / "oracle.yaml", f"""
        name: oracle
        output_dir: {tmp_path / 'runs'}
        device: cpu
        dataset: {{plugin: toy, n: 4}}
        proposals: ground-truth-masks
        classifier: oracle
        fuser: clip-only
        task: {{plugin: evaluate, batch_size: 4}}
    """)


def test_runs_differing_by_overrides_get_their_own_directories(oracle, toy_registry, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["run", str(oracle)]) == 0
    assert main(["run", str(oracle), "-o", "dataset.n=2"]) == 0  # was: "holds a run of a different recipe"
    assert main(["run", str(oracle), "-o", "dataset.n=3", "-o", "task.batch_size=2"]) == 0
    assert sorted(p.name for p in runs.iterdir()) == ["oracle", "oracle+dataset.n=2", "oracle+dataset.n=3+task.batch_size=2"]
    assert json.loads((runs / "oracle+dataset.n=2" / "metrics.json").read_text())["images"] == 2
    assert json.loads((runs / "oracle" / "metrics.json").read_text())["images"] == 4
    capsys.readouterr()
    assert main(["run", str(oracle), "-o", "task.batch_size=2", "-o", "dataset.n=3"]) == 0  # same overrides, other order
    assert "already complete" in capsys.readouterr().err
    assert main(["run", str(oracle), "-o", "dataset.n=2", "-o", "name=mine"]) == 0  # a name of one's own
    assert (runs / "mine" / "metrics.json").is_file()


def test_a_recipe_set_run_with_overrides_gets_its_own_folder(oracle, toy_registry, tmp_path):
    rset = write(tmp_path / "set.yaml", "name: sweep\nbase: oracle.yaml\nmatrix: {task.batch_size: [1, 2]}\n")
    assert main(["run", str(rset)]) == 0
    assert main(["run", str(rset), "-o", "dataset.n=2"]) == 0
    base, changed = tmp_path / "runs" / "sweep", tmp_path / "runs" / "sweep+dataset.n=2"
    assert {p.name for p in changed.iterdir()} == {p.name for p in base.iterdir()} >= {"batch_size=1", "batch_size=2", "results.md"}
    assert [r["images"] for r in json.loads((changed / "results.json").read_text())] == [2, 2]


def test_a_new_dataset_or_model_plugin_inherits_nothing(tmp_path, registry):
    base = write(tmp_path / "base.yaml", """
        name: base
        dataset: {plugin: synth, split: val, num_images: 5}
        text_encoder: {plugin: clip-text, model: RN50, pretrained: openai}
        proposals: ground-truth-masks
        classifier: {plugin: clip-masked-crop, model: RN50, pretrained: openai, mask_thr: 0.3}
        fuser: clip-only
    """)
    recipe = load_recipe(base, ["dataset={plugin: folder, root: /data/mine}"], registry=registry)
    assert recipe.sections["dataset"].config.model_dump() == {"root": "/data/mine", "split": None, "classes": None, "seen": None}
    child = write(tmp_path / "child.yaml", "extends: base.yaml\nname: child\ndataset: {plugin: folder, root: R}\n"
                  "classifier: {plugin: clip-background-crop, model: RN50, pretrained: openai}\n")
    recipe = load_recipe(child, registry=registry)
    assert recipe.sections["dataset"].config.split is None
    assert recipe.sections["classifier"].config.mask_thr == 0.5  # the new classifier's default, not the old one's 0.3
