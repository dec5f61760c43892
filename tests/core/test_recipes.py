"""Recipes: every error names file:line:column and the dotted key; extends, ${VAR}, -o overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import write

from ovframe.errors import BadInput, RecipeError
from ovframe.recipes import load_recipe

BASE = """
    name: base
    dataset: {plugin: toy, n: 3}
    proposals: ground-truth-masks
    classifier: oracle
    fuser:
      plugin: geometric-ensemble
      lam: 0.7
"""


@pytest.fixture
def base(tmp_path):
    return write(tmp_path / "base.yaml", BASE)


def problem(excinfo) -> tuple[str, str, str]:
    where, key, message = excinfo.value.problems[0]
    return str(where), key, message


@pytest.mark.parametrize(
    "text, where, key, words",
    [
        ("name: x\nfuser: {plugin: clip-only\n", "{f}:3:1", "", "invalid YAML"),
        ("name: x\nextends: base.yaml\nfuser:\n  lam: abc\n", "{f}:4:3", "fuser.lam", "valid number"),
        ("name: x\nextends: base.yaml\nfuser:\n  lamda: 0.5\n", "{f}:4:3", "fuser.lamda", "unknown key; allowed keys: plugin, lam"),
        ("name: x\nextends: base.yaml\nfuser:\n  plugin: geometric-ensembel\n", "{f}:4:3", "fuser.plugin", "Did you mean 'geometric-ensemble'"),
        ("name: x\nextends: nothere.yaml\n", "{f}:2:1", "extends", "cannot find 'nothere.yaml'"),
        ("name: x\nextends: base.yaml\nbogus: 1\n", "{f}:3:1", "bogus", "unknown key"),
        ("name: x\nextends: base.yaml\nseed: [1]\n", "{f}:3:1", "seed", "valid integer"),
        ("name: 'bad name!'\nextends: base.yaml\n", "{f}:1:1", "name", "pattern"),
        ("name: x\nname: y\n", "{f}:2:1", "name", "duplicate key"),
        ("name: x\ndescription: ${NO_SUCH_VAR_OVF}\n", "{f}:2:1", "description", "NO_SUCH_VAR_OVF is not set"),
        ("name: x\nextends: base.yaml\ndataset:\n  plugin: toy\n  n: -1\n", "{f}:5:3", "dataset.n", "greater than or equal to 1"),
        ("- just\n- a list\n", "{f}:1:1", "", "must be a mapping"),
    ],
)
def test_broken_recipes_name_file_line_and_key(tmp_path, toy_registry, base, text, where, key, words):
    f = write(tmp_path / "broken.yaml", text)
    with pytest.raises(RecipeError) as e:
        load_recipe(f, registry=toy_registry)
    got_where, got_key, message = problem(e)
    assert got_where == where.format(f=f)
    assert got_key == key
    assert words in message


def test_cyclic_extends_is_reported_where_it_closes(tmp_path, toy_registry):
    a = write(tmp_path / "a.yaml", "name: a\nextends: b.yaml\n")
    b = write(tmp_path / "b.yaml", "name: b\nextends: a.yaml\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(a, registry=toy_registry)
    where, key, message = problem(e)
    assert where == f"{b}:2:1" and key == "extends" and "cyclic extends" in message


def test_all_problems_of_a_recipe_are_reported_together(tmp_path, toy_registry, base):
    f = write(tmp_path / "two.yaml", "name: x\nextends: base.yaml\nfuser: {lam: 2}\nproposals: {plugin: nope}\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(f, registry=toy_registry)
    keys = {key for _, key, _ in e.value.problems}
    assert keys == {"fuser.lam", "proposals.plugin"}


def test_extends_deep_merges_and_a_changed_plugin_keeps_only_what_it_takes(tmp_path, toy_registry, base):
    f = write(
        tmp_path / "child.yaml",
        """
        name: child
        extends: base.yaml
        dataset: {n: 5}
        fuser: {plugin: clip-only}
        """,
    )
    r = load_recipe(f, registry=toy_registry).resolved()
    assert r["dataset"] == {"plugin": "toy", "n": 5, "size": 24, "corrupt": []}  # merged: n from child, plugin from base
    assert r["fuser"] == {"plugin": "clip-only", "invalid_regions": "drop", "skip": None}  # lam did not leak into clip-only
    assert r["name"] == "child"


ENSEMBLE = "name: b\nclassifier: oracle\nfuser: {plugin: geometric-ensemble, lam: 0.3, proposal_probs: softmax-over-classes}\n"
PROPOSAL_ONLY = {"plugin": "proposal-only", "proposal_probs": "softmax-drop-no-object"}  # its own defaults


def test_another_plugin_replaces_its_section_and_the_same_one_merges(tmp_path, toy_registry):
    b = write(tmp_path / "b.yaml", ENSEMBLE)
    child = write(tmp_path / "c.yaml", "name: c\nextends: b.yaml\nfuser: {plugin: proposal-only}\n")
    assert load_recipe(child, registry=toy_registry).resolved()["fuser"] == PROPOSAL_ONLY
    for overrides in (["fuser.plugin=proposal-only"], ["fuser={plugin: proposal-only}"], ["fuser=proposal-only"]):
        assert load_recipe(b, overrides, registry=toy_registry).resolved()["fuser"] == PROPOSAL_ONLY, overrides
    # the keys given beside the new plugin are kept, in whatever order the -o come
    for overrides in (["fuser.proposal_probs=softmax-over-classes", "fuser.plugin=proposal-only"],
                      ["fuser.plugin=proposal-only", "fuser.proposal_probs=softmax-over-classes"]):
        fuser = load_recipe(b, overrides, registry=toy_registry).resolved()["fuser"]
        assert fuser == {**PROPOSAL_ONLY, "proposal_probs": "softmax-over-classes"}, overrides
    # null selects no component: what comes before it is switched off with its section
    assert "fuser" not in load_recipe(b, ["fuser.lam=0.5", "fuser=null", "classifier=null"], registry=toy_registry).sections
    # an option of the old plugin written beside the new one is checked as usual
    typo = write(tmp_path / "t.yaml", "name: t\nextends: b.yaml\nfuser: {plugin: proposal-only, lam: 0.5}\n")
    with pytest.raises(RecipeError, match="unknown key"):
        load_recipe(typo, registry=toy_registry)
    # the same plugin written again merges
    same = write(tmp_path / "s.yaml", "name: s\nextends: b.yaml\nfuser: {plugin: geometric-ensemble, lam: 0.5}\n")
    assert load_recipe(same, registry=toy_registry).resolved()["fuser"]["proposal_probs"] == "softmax-over-classes"


def test_a_plugin_change_replaces_at_any_depth(toy_registry):
    """A mapping with a `plugin:` anywhere (a task's dataset, a union member in a list) follows the same rule."""
    from ovframe.recipes.resolve import apply_overrides
    from ovframe.recipes.source import merge, parse_yaml

    base = parse_yaml("task: {plugin: t, val: {plugin: synth, split: val, num_images: 5}}\n", "b.yaml")
    other = merge(base, parse_yaml("task: {val: {plugin: folder, root: d}}\n", "c.yaml"))
    assert other.data == {"task": {"plugin": "t", "val": {"plugin": "folder", "root": "d"}}}
    same = merge(base, parse_yaml("task: {val: {plugin: synth, num_images: 2}}\n", "c.yaml"))
    assert same.data["task"]["val"] == {"plugin": "synth", "split": "val", "num_images": 2}

    union = parse_yaml("proposals: {plugin: union, members: [{plugin: maskformer, weights: m.pth, sha256: '00'}, {plugin: ground-truth-masks}]}\n", "u.yaml")
    swapped = apply_overrides(union, ["proposals.members.0.plugin=sam"], toy_registry, "u.yaml")
    assert swapped.data["proposals"]["members"] == [{"plugin": "sam"}, {"plugin": "ground-truth-masks"}]
    merged = apply_overrides(union, ["proposals.members.0={plugin: maskformer, weights: n.pth}"], toy_registry, "u.yaml")
    assert merged.data["proposals"]["members"][0] == {"plugin": "maskformer", "weights": "n.pth", "sha256": "00"}
    assert union.data["proposals"]["members"][0]["weights"] == "m.pth"  # the tree overridden is not changed


def test_a_recipe_set_variant_replaces_a_section_whose_plugin_it_changes(tmp_path, toy_registry):
    from ovframe.recipes.sets import expand, validate_set

    write(tmp_path / "b.yaml", ENSEMBLE)
    rset = write(
        tmp_path / "set.yaml",
        """
        name: s
        base: b.yaml
        variants:
          keys-first: {fuser.proposal_probs: softmax-over-classes, fuser.plugin: proposal-only}
          whole: {fuser: {plugin: proposal-only}}
          same: {fuser.lam: 0.5}
        """,
    )
    fusers = {r.name: r.resolved()["fuser"] for r in validate_set(expand(rset), toy_registry)}
    assert fusers["keys-first"] == {**PROPOSAL_ONLY, "proposal_probs": "softmax-over-classes"}
    assert fusers["whole"] == PROPOSAL_ONLY
    assert fusers["same"]["proposal_probs"] == "softmax-over-classes" and fusers["same"]["lam"] == 0.5


def test_null_switches_off_an_optional_section_or_option(tmp_path, toy_registry, base):
    f = write(tmp_path / "c.yaml", "name: c\nextends: base.yaml\ndataset: null\n")
    recipe = load_recipe(f, registry=toy_registry)
    assert "dataset" not in recipe.sections
    # deleting the classifier leaves the ensemble without its input: said at once, by the fuser's line
    f = write(tmp_path / "d.yaml", "name: d\nextends: base.yaml\nclassifier: null\n")
    with pytest.raises(RecipeError, match="fuser 'geometric-ensemble' fuses the region classifier's scores, but the recipe has no `classifier:`"):
        load_recipe(f, registry=toy_registry)
    # an option whose null means something (no resize; every mask) gets null, not its default (640; 100)
    demo = load_recipe("demo", ["proposals.test_short_side=null"], registry=toy_registry)
    assert demo.section("proposals").config.test_short_side is None
    child = write(tmp_path / "e.yaml", "extends: demo\nname: e\nproposals: {test_short_side: null}\n")
    assert load_recipe(child, registry=toy_registry).section("proposals").config.test_short_side is None
    sam = load_recipe("synth/sam", ["proposals.max_proposals=null"], registry=toy_registry)
    assert sam.section("proposals").config.max_proposals is None
    # what cannot be switched off says so (once, not once per member of a union), and a misspelt key set to null is still unknown
    with pytest.raises(RecipeError) as e:
        load_recipe(base, ["fuser.lam=null", "task=null", "seed=null", "fuser.lamda=null"], registry=toy_registry)
    problems = {key: message for _, key, message in e.value.problems}
    assert len(e.value.problems) == 4 and problems["fuser.lamda"].startswith("unknown key")
    for key in ("fuser.lam", "task", "seed"):
        assert problems[key].startswith("cannot be null: null switches off an optional section or option"), key


def test_env_interpolation_with_default(tmp_path, toy_registry, monkeypatch):
    f = write(tmp_path / "e.yaml", "name: e\ndataset: {plugin: toy, n: 3}\noutput_dir: ${OVF_TEST_OUT:-fallback}/x\ndescription: 'cost $${HOME}'\n")
    monkeypatch.delenv("OVF_TEST_OUT", raising=False)
    assert load_recipe(f, registry=toy_registry).top.output_dir == "fallback/x"
    monkeypatch.setenv("OVF_TEST_OUT", "/data")
    recipe = load_recipe(f, registry=toy_registry)
    assert recipe.top.output_dir == "/data/x"
    assert recipe.top.description == "cost ${HOME}"  # $${ escapes


def test_overrides_are_typed_by_the_schema(tmp_path, toy_registry, base):
    r = load_recipe(base, ["fuser.lam=0.25", "name=007", "dataset.corrupt=[1, 2]", "seed=3"], registry=toy_registry)
    assert r.sections["fuser"].config.lam == 0.25
    assert r.name == "007"  # a string field keeps the text as written
    assert r.sections["dataset"].config.corrupt == [1, 2]
    assert r.seed == 3


def test_override_changing_plugin_drops_the_old_options(tmp_path, toy_registry, base):
    r = load_recipe(base, ["fuser.plugin=clip-only"], registry=toy_registry)
    assert r.sections["fuser"].spec.name == "clip-only"


@pytest.mark.parametrize(
    "override, key, words",
    [
        ("fuser.lam=abc", "fuser.lam", "valid number"),
        ("fuser.lamx=1", "fuser.lamx", "unknown key"),
        ("proposals.plugin=nope", "proposals.plugin", "unknown proposal generator 'nope'"),
    ],
)
def test_bad_overrides_point_into_the_file(tmp_path, toy_registry, base, override, key, words):
    with pytest.raises(RecipeError) as e:
        load_recipe(base, [override], registry=toy_registry)
    where, got_key, message = problem(e)
    assert where.startswith(f"{base}:") and f"(set by -o {override})" in where
    assert got_key == key and words in message


def test_malformed_override_is_bad_input(base, toy_registry):
    with pytest.raises(BadInput, match="expected KEY.PATH=VALUE"):
        load_recipe(base, ["fuserlam"], registry=toy_registry)


def test_resolved_recipe_pins_every_default(base, toy_registry):
    r = load_recipe(base, registry=toy_registry).resolved()
    assert r["fuser"] == {
        "plugin": "geometric-ensemble",
        "lam": 0.7,
        "proposal_probs": "softmax-drop-no-object",
        "invalid_regions": "clip-ones",
        "skip": None,
    }
    assert r["task"]["plugin"] == "evaluate" and "batch_size" in r["task"]


def test_yaml_anchors_and_merge_keys(tmp_path, toy_registry):
    f = write(
        tmp_path / "anchors.yaml",
        """
        name: anchors
        x-thresholds: &thr {mask_thr: 0.4}
        x-fusion: &fusion {plugin: geometric-ensemble, lam: 0.6}
        dataset: {plugin: toy}
        proposals: ground-truth-masks
        classifier: {<<: *thr, plugin: oracle}
        fuser:
          <<: *fusion
          lam: 0.8
        """,
    )
    r = load_recipe(f, registry=toy_registry).resolved()
    assert r["classifier"] == {"plugin": "oracle", "mask_thr": 0.4}
    assert r["fuser"]["lam"] == 0.8  # a key written beside the merge overrides it
    assert not any(k.startswith("x-") for k in r)
    dup = write(tmp_path / "dup.yaml", "name: d\nfuser:\n  <<: {lam: 0.1}\n  lam: 0.2\n  lam: 0.3\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(dup, registry=toy_registry)
    assert problem(e)[:2] == (f"{dup}:5:3", "fuser.lam")


def test_null_override_clears_an_optional_text_option(registry):
    """`-o adapter.weights=null` means no file (None), not a file named "null"; a required text keeps it."""
    demo = Path(__file__).resolve().parents[2] / "recipes" / "demo.yaml"
    recipe = load_recipe(demo, ["adapter.weights=null", "name=null"], registry=registry)
    assert recipe.section("adapter").config.weights is None
    assert recipe.name == "null"
