"""A corpus of broken recipes: each gets exit 2, a message naming file:line:column and the dotted key,
and never a traceback, whether it is read directly, through `extends`, by `show` or in a folder."""

from __future__ import annotations

import pytest
from support import write

from ovframe.cli import main
from ovframe.errors import RecipeError
from ovframe.recipes import load_recipe
from ovframe.recipes.source import MAX_DEPTH, MAX_RECIPE_BYTES, MAX_VALUES

GOOD = "name: good\ndataset: {plugin: toy, n: 2}\nproposals: ground-truth-masks\nclassifier: oracle\nfuser: clip-only\n"


def cli(capsys, *argv):
    """(exit code, stdout, stderr) of the `ovframe` command run in this process."""
    code = main(list(argv))
    out = capsys.readouterr()
    assert "Traceback" not in out.err, out.err
    return code, out.out, out.err


def problems(path, registry, overrides=()):
    with pytest.raises(RecipeError) as e:
        load_recipe(path, overrides, registry=registry)
    return [(str(where), key, message) for where, key, message in e.value.problems]


# -- bytes that are not UTF-8 text -------------------------------------------------------------
ENCODED = {
    "latin1": ("name: café\n".encode("latin-1"), "1:10", "byte 0xE9 here is not UTF-8 (Latin-1"),
    "utf16": ("name: x\n".encode("utf-16"), "1:1", "looks like UTF-16"),
    "utf16-no-bom": ("name: x\n".encode("utf-16-le"), "1:1", "looks like UTF-16"),
    "nul": (b"name: x\nseed: 1\x00\n", "2:8", "NUL byte"),
    "binary": (bytes(range(256)) * 4, "1:1", "NUL byte"),
    "control": (b"name: x\ndescription: a\x07b\n", "2:15", "control character U+0007"),
    "bad-utf8-late": (b"name: x\ndescription: ok\n  # \xff\xfe\n", "3:5", "byte 0xFF here is not UTF-8"),
}


@pytest.mark.parametrize("case", sorted(ENCODED))
def test_files_that_are_not_utf8_text_are_named_at_their_first_bad_byte(tmp_path, toy_registry, capsys, case):
    data, where, words = ENCODED[case]
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(data)
    child = write(tmp_path / "child.yaml", "extends: bad.yaml\nname: child\n")
    for path in (bad, child):  # directly, and through `extends`
        got = problems(path, toy_registry)
        assert got[0][0] == f"{bad}:{where}" and words in got[0][2], got
    for command in ("validate", "show"):
        code, _, err = cli(capsys, command, str(child))
        assert code == 2 and f"{bad}:{where}" in err


def test_a_folder_reports_every_file_after_a_broken_one(tmp_path, toy_registry, capsys):
    (tmp_path / "a.yaml").write_bytes("name: ä\n".encode("latin-1"))
    (tmp_path / "b.yaml").write_bytes(b"\xff\xfen\x00a\x00")
    write(tmp_path / "c.yaml", GOOD)
    write(tmp_path / "d.yaml", "name: d\nfuser: {plugin: nope}\n")
    code, out, err = cli(capsys, "validate", str(tmp_path))
    assert code == 2
    assert f"ok   {tmp_path / 'c.yaml'}" in out
    for name in ("a", "b", "d"):
        assert f"FAIL {tmp_path / name}.yaml" in err
    assert "3 of 4 file(s) have problems" in err


# -- bounded reading ---------------------------------------------------------------------------
def test_an_alias_bomb_stops_at_the_alias_that_crosses_the_limit(tmp_path, toy_registry):
    lines = ["name: bomb", "x-a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for i in range(1, 12):
        lines.append(f"x-a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    f = write(tmp_path / "bomb.yaml", "\n".join(lines) + "\n")
    (where, key, message), = problems(f, toy_registry)
    assert where.startswith(f"{f}:7:") and f"at most {MAX_VALUES:,} values" in message and "the alias *a4" in message


def test_aliases_and_merge_keys_share_what_they_repeat(tmp_path, toy_registry):
    """Below the limit an alias is not a copy: a set of anchors that expands to 100,000 values is read at once."""
    lines = ["name: shared", "x-a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for i in range(1, 5):
        lines.append(f"x-a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    lines += ["x-m: &m {mask_thr: 0.4}", "x-n: &n {<<: *m, plugin: oracle}", "dataset: {plugin: toy}",
              "proposals: ground-truth-masks", "classifier: {<<: [*n, *m]}", "fuser: clip-only"]
    f = write(tmp_path / "shared.yaml", "\n".join(lines) + "\n")
    recipe = load_recipe(f, registry=toy_registry)
    assert recipe.resolved()["classifier"] == {"plugin": "oracle", "mask_thr": 0.4}
    data = recipe.tree.data
    assert data["x-a4"][0] is data["x-a4"][1] is data["x-a3"]


@pytest.mark.parametrize("opening", ["[", "{a: ", "- "])
def test_deep_nesting_is_refused_at_the_level_that_crosses_the_limit(tmp_path, toy_registry, opening):
    depth = 20 * MAX_DEPTH
    if opening == "- ":
        text = "name: deep\nx-d:\n" + "".join("  " * (i + 1) + "-\n" for i in range(depth))
    else:
        text = "name: deep\nx-d: " + opening * depth + "1" + ("]" if opening == "[" else "}") * depth + "\n"
    f = write(tmp_path / "deep.yaml", text)
    (where, _, message), = problems(f, toy_registry)
    assert where.startswith(f"{f}:") and f"nested more than {MAX_DEPTH} levels" in message


def test_a_file_over_the_size_limit_is_refused_before_it_is_parsed(tmp_path, toy_registry):
    f = tmp_path / "huge.yaml"
    f.write_bytes(b"name: huge\ndescription: '" + b"x" * MAX_RECIPE_BYTES + b"'\n")
    (where, _, message), = problems(f, toy_registry)
    assert where == str(f) and "larger than 8 MiB: too large for a recipe" in message


@pytest.mark.parametrize(
    "text, where, key, words",
    [
        ("name: x\n--- \nname: y\n", "2:1", "", "more than one (---)"),
        ("name: x\nseed: !!python/object:os.system ls\n", "2:1", "seed", "tag:yaml.org,2002:python/object:os.system is not supported"),
        ("name: x\nx-s: !!set {a, b}\n", "2:6", "", "tag:yaml.org,2002:set is not supported"),
        ("name: x\n1: one\n", "2:1", "", "keys must be strings, got 1"),
        ("name: x\n[a, b]: one\n", "2:1", "", "keys must be strings, got 'list'"),
        ("name: x\nfuser: *nowhere\n", "2:8", "", "unknown alias *nowhere"),
        ("name: x\nx-a: &a [1, *a]\n", "2:13", "", "unknown alias *a"),
        ("name: x\nfuser: {<<: 3}\n", "2:9", "fuser", "a merge key (<<) takes a mapping"),
        ("name: x\nseed: 1" + "0" * 5000 + "\n", "2:1", "seed", "cannot read the value"),
    ],
)
def test_yaml_that_is_not_plain_data_is_refused(tmp_path, toy_registry, text, where, key, words):
    f = write(tmp_path / "r.yaml", text)
    got = problems(f, toy_registry)
    assert (got[0][0], got[0][1]) == (f"{f}:{where}", key) and words in got[0][2], got


# -- ${VAR} --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value, words",
    [
        ("${OVF_T", "unclosed ${"),
        ("${1BAD}", "'1BAD' is not a variable name"),
        ("${OVF_T:x}", "after the name comes } or :-default, not ':x'"),
        ("${}", "an empty ${}"),
        ("${OVF_T:-${OVF_U}}", "nested ${...} is not supported"),
        ("a ${OVF_UNSET_VAR} b", "OVF_UNSET_VAR is not set"),
    ],
)
def test_malformed_interpolation_is_an_error_not_text(tmp_path, toy_registry, monkeypatch, value, words):
    monkeypatch.setenv("OVF_T", "t")
    f = write(tmp_path / "r.yaml", f"name: x\ndescription: '{value}'\nx-list: [ok, '{value}']\n")
    got = problems(f, toy_registry)
    assert [(w, k) for w, k, _ in got] == [(f"{f}:2:1", "description"), (f"{f}:3:14", "x-list[1]")]
    assert all(words in m for _, _, m in got), got


def test_interpolation_that_is_well_formed(tmp_path, toy_registry, monkeypatch):
    monkeypatch.setenv("OVF_T", "tee")
    monkeypatch.delenv("OVF_UNSET_VAR", raising=False)
    f = write(tmp_path / "r.yaml", GOOD + "description: '$5 ${OVF_T}/${OVF_UNSET_VAR:-d:-e} $${OVF_T} $$x {}'\n")
    assert load_recipe(f, registry=toy_registry).top.description == "$5 tee/d:-e ${OVF_T} $$x {}"


# -- every problem at once, each where it was written --------------------------------------------
def test_top_level_errors_do_not_hide_the_section_errors(tmp_path, toy_registry):
    f = write(
        tmp_path / "r.yaml",
        "name: 'bad name'\nseed: -1\ndataset: {plugin: toy, n: 0}\nproposals: {plugin: nope}\n"
        "classifier: {plugin: oracle, mask_thr: x}\nfuser: {plugin: clip-only, lam: 1}\n",
    )
    got = {key: where for where, key, _ in problems(f, toy_registry)}
    assert got == {
        "name": f"{f}:1:1", "seed": f"{f}:2:1", "dataset.n": f"{f}:3:24", "proposals.plugin": f"{f}:4:13",
        "classifier.mask_thr": f"{f}:5:30", "fuser.lam": f"{f}:6:28",
    }


def test_a_mapping_set_by_o_is_placed_on_the_command_line(tmp_path, toy_registry, capsys):
    f = write(tmp_path / "r.yaml", GOOD)
    override = "fuser={plugin: nope, lam: 1}"
    (where, key, message), = problems(f, toy_registry, [override])
    assert where == f"{f}:5:1 (set by -o {override})" and key == "fuser.plugin" and "unknown fuser 'nope'" in message
    (where, key, message), = problems(f, toy_registry, ["classifier={plugin: oracle, mask_thr: 7}"])
    assert "(set by -o classifier={plugin: oracle, mask_thr: 7})" in where and key == "classifier.mask_thr"
    code, _, err = cli(capsys, "validate", str(f), "-o", override)
    assert code == 2 and f"(set by -o {override})" in err


@pytest.mark.parametrize(
    "override, words",
    [
        ("0=1", "a recipe's keys are names (0 is a list index)"),
        ("fuser..lam=1", "expected KEY.PATH=VALUE"),
        ("²=${", "unknown key"),  # a digit to str.isdigit, not to int(); found by the mutation tests
        ("=1", "expected KEY.PATH=VALUE"),
        ("dataset.corrupt.5=1", "dataset.corrupt does not exist"),
        ("dataset.n.x.y=1", ""),
        ("x-a=[&a [1, 1], *a, *a]", ""),
        ("seed=!!python/object:os.system ls", "is not supported in recipes"),
        ("seed=[1", "cannot parse the value"),
    ],
)
def test_bad_overrides_say_they_came_from_o(tmp_path, toy_registry, capsys, override, words):
    f = write(tmp_path / "r.yaml", GOOD)
    code, out, err = cli(capsys, "validate", str(f), "-o", override)
    if override.startswith("x-a="):  # scratch keys take any value: fine
        assert code == 0, err
        return
    assert code == 2 and "-o" in err and words in err, err


def test_a_variant_written_as_a_mapping_points_at_the_set(tmp_path, toy_registry, capsys):
    write(tmp_path / "base.yaml", GOOD)
    s = write(
        tmp_path / "set.yaml",
        "name: s\nbase: base.yaml\nvariants:\n  ok: {}\n  bad:\n    fuser:\n      plugin: clip-only\n      lam: 0.5\n"
        "matrix:\n  dataset.n: [1, true]\n",
    )
    code, _, err = cli(capsys, "validate", str(s))
    assert code == 2
    assert f"{s}:8:7 (variant bad__n=1): [bad__n=1] fuser.lam: unknown key" in err
    assert f"{s}:10:18 (variant ok__n=True): [ok__n=True] dataset.n: expected a number, got true" in err


def test_a_32768_variant_matrix_is_built_one_variant_at_a_time(tmp_path, toy_registry):
    from ovframe.recipes import expand, validate_set

    write(tmp_path / "base.yaml", GOOD)
    axes = "".join(f"  x-{i}: [0, 1]\n" for i in range(15))
    s = write(tmp_path / "set.yaml", f"name: big\nbase: base.yaml\nmatrix:\n{axes}")
    rset = expand(s)
    assert len(rset.variants) == 2**15
    last = rset.variants[2**15 - 1]
    assert last.name == "__".join(f"x-{i}=1" for i in range(15)) and last.tree.data["x-14"] == 1
    small = expand(write(tmp_path / "small.yaml", "name: small\nbase: base.yaml\nmatrix:\n  dataset.n: [1, 2, 3]\n"))
    assert [r.sections["dataset"].config.n for r in validate_set(small, toy_registry)] == [1, 2, 3]


def test_a_plugin_whose_validator_crashes_is_reported_not_raised(tmp_path, toy_registry, capsys):
    """A plugin's own validator meeting input it did not expect (here a TypeError): exit 2 naming the
    section, as found by the mutation tests in the synth dataset's `split: []`."""
    from pydantic import model_validator

    from ovframe import ComponentConfig, Fuser, hookimpl

    class FragileConfig(ComponentConfig):
        """Crashes on a list."""

        weight: float = 1.0

        @model_validator(mode="before")
        @classmethod
        def _fragile(cls, data):
            return {**data, "weight": {data["weight"]: 1}[data["weight"]]} if "weight" in data else data

    class Fragile(Fuser):
        name = "fragile"
        Config = FragileConfig

        def fuse(self, proposals, scores, vocabulary):
            raise NotImplementedError

    class Plugin:
        @hookimpl
        def register_fusers(self, register):
            register(Fragile)

    toy_registry.add_plugin(Plugin(), name="fragile")
    f = write(tmp_path / "r.yaml", GOOD.replace("fuser: clip-only", "fuser: {plugin: fragile, weight: [1]}"))
    code, _, err = cli(capsys, "validate", str(f))
    assert code == 2 and f"{f}:5:1: fuser: the options of fuser 'fragile' could not be checked" in err and "TypeError" in err
    synth = write(tmp_path / "s.yaml", GOOD.replace("dataset: {plugin: toy, n: 2}", "dataset: {plugin: synth, split: []}"))
    code, _, err = cli(capsys, "validate", str(synth))
    assert code == 2 and "dataset.split" in err
