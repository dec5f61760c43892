"""Running recipes and recipe sets end to end with the oracle pipeline on the fabricated `toy` dataset."""

from __future__ import annotations

import json

import pytest
from support import write

from ovframe.errors import BadInput, RecipeError
from ovframe.recipes import expand, load_recipe, validate_set
from ovframe.runner import run_recipe
from ovframe.sets_runner import run_set


@pytest.fixture
def oracle_recipe(tmp_path):
    return write(
        tmp_path / "oracle.yaml",
        f"""
        name: oracle
        output_dir: {tmp_path / 'runs'}
        device: cpu
        dataset: {{plugin: toy, n: 6}}
        proposals: ground-truth-masks
        classifier: oracle
        fuser: clip-only
        task: {{plugin: evaluate, batch_size: 4, visualize: 2}}
        """,
    )


def test_oracle_pipeline_is_perfect(oracle_recipe, toy_registry, tmp_path):
    metrics = run_recipe(load_recipe(oracle_recipe, registry=toy_registry), toy_registry)
    assert metrics["mIoU"] == 100.0 and metrics["pACC"] == 100.0
    assert metrics["mIoU_seen"] == 100.0 and metrics["mIoU_unseen"] == 100.0
    assert metrics["images"] == 6 and metrics["images_failed"] == 0
    out = tmp_path / "runs" / "oracle"
    for name in ("recipe.yaml", "metrics.json", "timings.json", "per_class.csv", "log.txt"):
        assert (out / name).is_file(), name
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["toy000.png", "toy001.png"]
    timings = json.loads((out / "timings.json").read_text())
    assert {"propose", "classify", "fuse", "score", "total"} <= set(timings)


def test_corrupt_samples_are_counted_and_skipped(oracle_recipe, toy_registry, tmp_path):
    metrics = run_recipe(load_recipe(oracle_recipe, ["dataset.corrupt=[1, 4]"], registry=toy_registry), toy_registry)
    assert metrics["images"] == 4 and metrics["images_failed"] == 2
    failures = (tmp_path / "runs" / "oracle" / "failures.csv").read_text().splitlines()
    assert failures == ["id,reason", "toy001,fabricated corruption", "toy004,fabricated corruption"]


def test_a_run_directory_of_another_recipe_is_never_overwritten(oracle_recipe, toy_registry, tmp_path):
    run_recipe(load_recipe(oracle_recipe, registry=toy_registry), toy_registry)
    changed = load_recipe(oracle_recipe, ["dataset.n=3"], registry=toy_registry)
    with pytest.raises(BadInput, match="holds a run of a different recipe"):
        run_recipe(changed, toy_registry)
    metrics = run_recipe(changed, toy_registry, fresh=True)
    assert metrics["images"] == 3
    assert len(list((tmp_path / "runs").glob("oracle.prev-*"))) == 1  # the old run is kept


def test_fuser_without_its_inputs_fails_before_any_image(oracle_recipe, toy_registry):
    with pytest.raises(BadInput, match="class-agnostic"):  # when the recipe is read: before any model loads
        load_recipe(oracle_recipe, ["fuser.plugin=proposal-only"], registry=toy_registry)


def test_matrix_expands_to_the_cartesian_product(tmp_path, toy_registry, oracle_recipe):
    s = write(
        tmp_path / "set.yaml",
        """
        name: sweep
        base: oracle.yaml
        matrix:
          dataset.n: [2, 3]
          classifier.mask_thr: [0.3, 0.5, 0.7]
        """,
    )
    rset = expand(s)
    assert [v.name for v in rset.variants] == [
        f"n={n}__mask_thr={t}" for n in (2, 3) for t in (0.3, 0.5, 0.7)
    ]
    recipes = validate_set(rset, toy_registry)
    assert [(r.sections["dataset"].config.n, r.sections["classifier"].config.mask_thr) for r in recipes] == [
        (n, t) for n in (2, 3) for t in (0.3, 0.5, 0.7)
    ]
    assert all(r.top.output_dir == f"{tmp_path / 'runs'}/sweep" for r in recipes)


def test_variants_cross_the_matrix_and_a_failing_variant_is_a_row(tmp_path, toy_registry, oracle_recipe):
    s = write(
        tmp_path / "set.yaml",
        """
        name: ablation
        base: oracle.yaml
        overrides: {task.visualize: 0}
        variants:
          oracle: {}
          broken: {fuser.plugin: proposal-only}
        matrix:
          dataset.n: [2, 3]
        """,
    )
    rset = expand(s)
    assert [v.name for v in rset.variants] == ["oracle__n=2", "oracle__n=3", "broken__n=2", "broken__n=3"]
    code = run_set(rset, toy_registry)
    assert code == 1  # something failed ...
    rows = json.loads((tmp_path / "runs" / "ablation" / "results.json").read_text())
    assert [(r["variant"], r["status"]) for r in rows] == [
        ("oracle__n=2", "ok"), ("oracle__n=3", "ok"), ("broken__n=2", "failed"), ("broken__n=3", "failed"),
    ]
    assert rows[0]["mIoU"] == 100.0 and rows[1]["images"] == 3  # ... and the others still ran
    assert "class-agnostic" in rows[2]["error"]
    table = (tmp_path / "runs" / "ablation" / "results.md").read_text()
    assert table.startswith("| variant | status | dataset.n | fuser.plugin | mIoU |")


def test_invalid_variant_names_the_set_file(tmp_path, toy_registry, oracle_recipe):
    s = write(tmp_path / "set.yaml", "name: bad\nbase: oracle.yaml\nvariants:\n  v1: {fuser.lam: 0.5}\n")
    with pytest.raises(RecipeError) as e:
        validate_set(expand(s), toy_registry)
    where, key, message = e.value.problems[0]
    assert str(where).startswith(f"{s}:4:") and key == "[v1] fuser.lam" and "unknown key" in message


def test_fresh_twice_within_a_second_keeps_both_old_runs(oracle_recipe, toy_registry, tmp_path):
    recipe = load_recipe(oracle_recipe, ["task.visualize=0"], registry=toy_registry)
    for _ in range(3):
        run_recipe(recipe, toy_registry, fresh=True)
    assert len(list((tmp_path / "runs").glob("oracle.prev-*"))) == 2


def test_outputs_get_the_usual_file_mode(oracle_recipe, toy_registry, tmp_path):
    import os

    run_recipe(load_recipe(oracle_recipe, registry=toy_registry), toy_registry)
    mask = os.umask(0)
    os.umask(mask)
    mode = (tmp_path / "runs" / "oracle" / "metrics.json").stat().st_mode & 0o777
    assert mode == 0o666 & ~mask
