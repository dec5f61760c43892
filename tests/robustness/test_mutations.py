"""Every shipped recipe, mutated: `ovframe validate` and `ovframe show` answer 0 or 2, never a traceback.

Mutations are structure-aware (delete, insert or retype a key anywhere; NaN, infinities, huge numbers,
booleans, unicode, broken ${VAR}, hostile pkg:// paths, nested lists and mappings), textual (bytes
inserted, deleted or cut; the file re-encoded as Latin-1 or UTF-16) and on the command line (-o).
A base that other recipes extend is also mutated in place, and the recipes extending it are checked.

The share of the not-slow layer is a few examples per recipe (derandomized: the same examples every
run); the `slow` test runs the long profile (40 per recipe). A longer, random search:
    OVFRAME_MUTATIONS=500 pytest -m slow tests/robustness/test_mutations.py
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ovframe.cli import main

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted(p.relative_to(ROOT / "recipes").as_posix() for p in (ROOT / "recipes").rglob("*.yaml"))
CAMPAIGN = int(os.environ.get("OVFRAME_MUTATIONS", "0"))  # e.g. 500: a longer, random search (not for CI)
COMMON = dict(database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
QUICK = settings(max_examples=2, derandomize=True, **COMMON)
LONG = settings(max_examples=CAMPAIGN or 40, derandomize=not CAMPAIGN, **COMMON)

HOSTILE_TEXT = [
    "${", "${1BAD}", "${X:y}", "${}", "${A:-${B}}", "$${ok}", "pkg://ovframe_synth/../../../../etc/passwd",
    "pkg://this.x/y", "pkg://os/path.py", "gpu", "cuda:abc", "mps", "-1", "1e400", "~", "null", "0x1F", "∞",
    "\u202e", "😀", "a" * 300, "../../../../etc/passwd", "/dev/zero", ".", "", " ", "plugin", "x-", "<<",
]
KNOWN_KEYS = [
    "name", "description", "abstract", "seed", "device", "output_dir", "resolution", "extends", "task", "dataset",
    "vocabulary", "text_encoder", "proposals", "classifier", "adapter", "fuser", "plugin", "base", "overrides",
    "variants", "matrix", "names", "file", "seen", "weights", "sha256", "model", "pretrained", "lam", "mask_thr",
    "batch_size", "max_images", "inputs", "allow_torchscript", "x-anchor", "<<", "",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63 - 2, max_value=2**65),
    st.sampled_from([10**30, -(10**30), 2**64, 2**64 - 1, 0, -1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(HOSTILE_TEXT),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KNOWN_KEYS) | st.text(max_size=6), inner, max_size=4),
    max_leaves=8,
)
keys = st.sampled_from(KNOWN_KEYS) | st.text(max_size=12)
snippets = st.sampled_from(
    [b"\x00", b"\xff\xfe", b"\xe9", b"\t", b": ", b"- ", b"[", b"]", b"{", b"}", b"*a", b"&a ", b"<<: *x\n", b"? ",
     b"!!python/object:os.system ls", b"!!binary AA==", b"\n  ", b"---\n", b"${", b"'", b'"', b"#", b"|\n", b"%YAML 1.2\n",
     b"\n" + b"[" * 200, b"\xef\xbb\xbf"]
) | st.binary(max_size=8)


@pytest.fixture(scope="module")
def copy(tmp_path_factory):
    """The shipped recipes, copied (mutants are written beside the files they extend)."""
    folder = tmp_path_factory.mktemp("shipped") / "recipes"
    shutil.copytree(ROOT / "recipes", folder)
    return folder


def ovframe(*argv: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, err.getvalue()


def check(*argv: str) -> int:
    code, err = ovframe(*argv)
    assert code in (0, 2), f"exit {code} for ovframe {' '.join(argv)}:\n{err[-3000:]}"
    assert "Traceback" not in err and "the traceback above" not in err, err[-3000:]
    return code


def paths_of(data, prefix=()):
    """Every key path of a YAML tree (mapping keys and list indices)."""
    yield prefix
    if isinstance(data, dict):
        for k, v in data.items():
            yield from paths_of(v, prefix + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from paths_of(v, prefix + (i,))


def mutate_tree(data, draw):
    paths = list(paths_of(data))
    path = draw(st.sampled_from(paths))
    op = draw(st.sampled_from(["delete", "insert", "retype", "retype", "wrap"]))
    parent = data
    for p in path[:-1]:
        parent = parent[p]
    target = parent[path[-1]] if path else data
    if op == "insert" and isinstance(target, dict):
        target[draw(keys)] = draw(values)
    elif op == "insert" and isinstance(target, list):
        target.insert(draw(st.integers(0, len(target))), draw(values))
    elif op == "delete" and path:
        del parent[path[-1]]
    elif op == "wrap" and path:
        parent[path[-1]] = draw(st.sampled_from([[target], {"plugin": target}, {draw(keys): target}]))
    elif path:
        parent[path[-1]] = draw(values)
    else:
        data = draw(values)
    return data


def dump(data) -> bytes:
    try:
        return yaml.safe_dump(data, allow_unicode=True, sort_keys=False).encode("utf-8", "surrogatepass")
    except (yaml.YAMLError, ValueError, RecursionError):
        return b"name: unrepresentable\n"


def mutate_bytes(text: bytes, draw) -> bytes:
    op = draw(st.sampled_from(["insert", "delete", "cut", "latin-1", "utf-16", "repeat-line"]))
    pos = draw(st.integers(0, len(text)))
    if op == "insert":
        return text[:pos] + draw(snippets) + text[pos:]
    if op == "delete":
        return text[:pos] + text[pos + draw(st.integers(1, 40)):]
    if op == "cut":
        return text[:pos]
    if op == "latin-1":
        return text.decode("utf-8").replace("#", "é#", 1).encode("latin-1", "replace")
    if op == "utf-16":
        return text.decode("utf-8").encode("utf-16")
    lines = text.splitlines(keepends=True)
    if not lines:
        return text
    i = draw(st.integers(0, len(lines) - 1))
    return b"".join(lines[: i + 1] + [lines[i]] + lines[i + 1:])


def dependents(copy: Path, rel: str) -> list[Path]:
    """Recipes in the copy whose extends/base names `rel` (the common forms: by path or by name)."""
    stem = re.escape(rel[: -len(".yaml")])
    pattern = re.compile(rf"^(extends|base):.*?(\.\./)?(\w+/)?{stem.split('/')[-1]}(\.yaml)?\b", re.M)
    return [p for p in copy.rglob("*.yaml") if p.as_posix() != (copy / rel).as_posix() and pattern.search(p.read_text())]


def one_mutation(copy: Path, rel: str, data: st.DataObject) -> None:
    original = copy / rel
    text = original.read_bytes()
    mode = data.draw(st.sampled_from(["tree", "tree", "bytes", "override", "in-place"]))
    if mode == "override":
        key = data.draw(st.sampled_from(["fuser.lam", "seed", "device", "task", "dataset", "classifier.mask_thr",
                                          "0", "a.b.c", "proposals.plugin", "task.batch_size", "name", "x-y", "vocabulary"]) | st.text(max_size=10))
        value = data.draw(st.sampled_from(HOSTILE_TEXT) | st.text(max_size=20) | st.sampled_from(["{plugin: nope}", "[1, 2", "&a [*a]", "1e999", ".nan", "true"]))
        check("validate", str(original), "-o", f"{key}={value}")
        return
    if mode == "bytes":
        mutant = mutate_bytes(text, data.draw)
    else:
        mutant = dump(mutate_tree(yaml.safe_load(text), data.draw))
        if data.draw(st.booleans()):
            mutant = mutate_bytes(mutant, data.draw)
    if mode == "in-place":  # a file other recipes extend: them too
        try:
            original.write_bytes(mutant)
            for path in [original, *dependents(copy, rel)[:3]]:
                if check("validate", str(path)) == 0:
                    check("show", str(path))
        finally:
            original.write_bytes(text)
        return
    path = original.with_name(f"mutant-{original.name}")
    try:
        path.write_bytes(mutant)
        if check("validate", str(path)) == 0:
            check("show", str(path))
    finally:
        path.unlink()


@pytest.mark.parametrize("rel", SHIPPED)
@QUICK
@given(data=st.data())
def test_a_mutated_shipped_recipe_is_answered_with_0_or_2(copy, rel, data):
    one_mutation(copy, rel, data)


@pytest.mark.slow
@pytest.mark.parametrize("rel", SHIPPED)
@LONG
@given(data=st.data())
def test_many_mutations_of_every_shipped_recipe(copy, rel, data):
    one_mutation(copy, rel, data)


def test_the_shipped_recipes_are_all_valid_to_start_with(copy):
    assert len(SHIPPED) >= 20 and math.isfinite(len(SHIPPED))
    code, err = ovframe("validate", str(copy))
    assert code == 0, err
