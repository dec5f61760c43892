"""Shipped recipes resolve by name from any folder; a file on disk always wins; names cannot climb out."""

from __future__ import annotations

import pytest
from support import write

from ovframe.cli import main
from ovframe.errors import BadInput, RecipeError
from ovframe.recipes import load_tree
from ovframe.recipes.locate import find_shipped, locate_recipe, shipped_recipes, shipped_root


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A working folder outside the repository."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_names_and_recipes_paths_find_the_shipped_files(elsewhere):
    root = shipped_root()
    assert (root / "demo.yaml").is_file()
    for ref in ("demo", "demo.yaml", "recipes/demo.yaml", "./recipes/demo.yaml"):
        assert locate_recipe(ref) == root / "demo.yaml", ref
    assert locate_recipe("synth/tune") == root / "synth" / "tune.yaml"
    assert find_shipped("recipes", folder=True) == root
    assert find_shipped("recipes/synth", folder=True) == root / "synth"


def test_a_file_on_disk_wins_and_unknown_names_list_the_shipped_ones(elsewhere, capsys):
    mine = write(elsewhere / "demo.yaml", "name: mine\n")
    assert locate_recipe("demo.yaml").resolve() == mine  # the path as given
    assert locate_recipe("demo") == shipped_root() / "demo.yaml"  # a bare name is the shipped recipe
    assert main(["run", "nothing-like-this"]) == 2
    err = capsys.readouterr().err
    assert "nothing-like-this: no such recipe file, and no shipped recipe of that name" in err
    assert "demo" in err and "ovframe recipes" in err


@pytest.mark.parametrize("ref", ["../pyproject.toml", "recipes/../../pyproject", "/no/such/demo.yaml", "pkg://ovframe/cli"])
def test_names_cannot_leave_the_shipped_folder(elsewhere, ref):
    assert find_shipped(ref) is None
    with pytest.raises(BadInput):
        locate_recipe(ref)


def test_own_recipe_extends_a_shipped_one_by_name(elsewhere, toy_registry):
    write(elsewhere / "mine.yaml", "extends: ade150_mpt\nname: mine\nfuser: {lam: 0.5}\n")
    tree = load_tree(elsewhere / "mine.yaml")
    assert tree.data["name"] == "mine" and tree.data["fuser"]["lam"] == 0.5
    assert tree.data["proposals"]["backbone"] == "d2-swin-b"  # from the shipped _base
    write(elsewhere / "bad.yaml", "extends: no_such_base\nname: bad\n")
    with pytest.raises(RecipeError, match="cannot find 'no_such_base'.*shipped recipe of that name"):
        load_tree(elsewhere / "bad.yaml")


def test_run_show_and_validate_take_names(elsewhere, capsys):
    assert main(["show", "demo"]) == 0
    assert capsys.readouterr().out.startswith("name: demo\n")
    assert main(["run", "synth/tune", "--dry-run"]) == 0
    assert "synth-tune: 25 variants" in capsys.readouterr().out
    assert main(["validate", "recipes"]) == 0
    out = capsys.readouterr().out
    assert out.count("ok   ") == len(shipped_recipes()) > 20


def test_recipes_command_lists_names_kinds_and_descriptions(elsewhere, capsys):
    assert main(["recipes"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert set(rows) == {name for name, _ in shipped_recipes()}
    assert "recipe" in rows["demo"] and "synth val" in rows["demo"]
    assert rows["synth/tune"].split()[1] == "set"
    assert rows["_base/ovseg_swinb_vitl14"].split()[1] == "fragment"
