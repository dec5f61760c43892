"""Values a recipe may not hold: each is refused by validation (exit 2, file:line:column, dotted key)
instead of being converted quietly or crashing the run."""

from __future__ import annotations

import sys

import pytest
from support import write

from ovframe.errors import BadInput, RecipeError
from ovframe.recipes import load_recipe

ORACLE = "dataset: {plugin: toy, n: 2}\nproposals: ground-truth-masks\nclassifier: oracle\nfuser: clip-only\n"
CLIP = (
    "text_encoder: {plugin: clip-text, model: m.json, pretrained: w.safetensors}\n"
    "classifier: {plugin: clip-masked-crop, model: m.json, pretrained: w.safetensors}\n"
    "proposals: {plugin: maskformer, weights: w.safetensors}\nfuser: geometric-ensemble\n"
)


def problem(tmp_path, registry, text, overrides=()):
    f = write(tmp_path / "r.yaml", text)
    with pytest.raises(RecipeError) as e:
        load_recipe(f, overrides, registry=registry)
    (where, key, message), *_ = e.value.problems
    return str(where).replace(str(f), "F"), key, message


@pytest.mark.parametrize(
    "line, key, words",
    [
        ("device: gpu", "device", "did you mean 'cuda'?"),
        ("device: gpu:1", "device", "did you mean 'cuda:1'?"),
        ("device: cuda:abc", "device", "expected auto, cpu, cuda, cuda:N or mps"),
        ("device: CPU", "device", "lower case"),
        ("seed: 18446744073709551616", "seed", "less than or equal to 18446744073709551615"),
        ("seed: -1", "seed", "greater than or equal to 0"),
        ("seed: true", "seed", "expected a number, got true"),
        ("seed: 1.5", "seed", "fractional part"),
        ("abstract: 1", "abstract", "expected true or false"),
        ("description: [a]", "description", "valid string"),
    ],
)
def test_top_level_values(tmp_path, toy_registry, line, key, words):
    where, got_key, message = problem(tmp_path, toy_registry, f"name: r\n{ORACLE}{line}\n")
    assert (where, got_key) == ("F:6:1", key) and words in message, message


def test_a_name_too_long_for_a_folder(tmp_path, toy_registry):
    where, key, message = problem(tmp_path, toy_registry, f"name: {'n' * 201}\n{ORACLE}")
    assert (where, key) == ("F:1:1", "name") and "at most 200 characters" in message


def test_output_dir_may_not_be_a_file(tmp_path, toy_registry):
    (tmp_path / "afile").write_text("x")
    for value in ("afile", "afile/below"):
        where, key, message = problem(tmp_path, toy_registry, f"name: r\n{ORACLE}output_dir: {tmp_path / value}\n")
        assert (where, key) == ("F:6:1", "output_dir") and f"{tmp_path / 'afile'} is a file" in message


@pytest.mark.parametrize(
    "section, key, words",
    [
        ("task: {plugin: evaluate, batch_size: true}", "task.batch_size", "expected a number, got true (a boolean)"),
        ("task: {plugin: evaluate, batch_size: 10000000000000000000000}", "task.batch_size", "out of range (integers are 64-bit)"),
        ("task: {plugin: evaluate, save_every: .nan}", "task.save_every", "finite number"),
        ("classifier: {plugin: clip-masked-crop, model: m, pretrained: w, expand_ratio: .inf}", "classifier.expand_ratio", "finite number"),
        ("classifier: {plugin: clip-masked-crop, model: m, pretrained: w, temperature: .inf}", "classifier.temperature", "finite number"),
        ("classifier: {plugin: clip-masked-crop, model: m, pretrained: w, sha256: not-a-hash}", "classifier.sha256", "64 hexadecimal digits"),
        ("classifier: {plugin: clip-masked-crop, model: m, pretrained: w, quick_gelu: 1}", "classifier.quick_gelu", "expected one of 'auto'"),
        ("proposals: {plugin: maskformer, out_indices: [1, true]}", "proposals.out_indices", "item 1: expected a number, got true"),
        ("proposals: {plugin: maskformer, pre_norm: 0}", "proposals.pre_norm", "expected true or false"),
        ("fuser: {plugin: geometric-ensemble, lam: -.inf}", "fuser.lam", "finite number"),
    ],
)
def test_component_values(tmp_path, toy_registry, section, key, words):
    kind = section.split(":")[0]
    others = "".join(line + "\n" for line in ORACLE.splitlines() if not line.startswith(kind))
    where, got_key, message = problem(tmp_path, toy_registry, f"name: r\n{others}{section}\n")
    assert got_key == key and where.startswith("F:") and words in message, (got_key, message)


@pytest.mark.parametrize(
    "path, words",
    [
        ("pkg://ovframe_synth/../../../../etc/passwd", "must be relative and stay inside the package"),
        ("pkg://ovframe_synth//etc/passwd", "must be relative and stay inside the package"),
        ("pkg://this.x/weights.safetensors", "no dots"),
        ("pkg://this/weights.safetensors", "not in 'this'"),
        ("pkg://os/weights.safetensors", "not in 'os'"),
        ("pkg://ovframe_synth", "must be relative"),
    ],
)
def test_package_paths_stay_in_ovframe_and_plugin_packages(tmp_path, toy_registry, path, words):
    where, key, message = problem(
        tmp_path, toy_registry, f"name: r\n{ORACLE}adapter: {{plugin: mask-prompt-tuning, weights: '{path}'}}\n"
    )
    assert (where, key) == ("F:6:39", "adapter.weights") and words in message, message
    assert "this" not in sys.modules or path != "pkg://this/weights.safetensors"  # nothing was imported
    from ovframe.files import resolve_path

    with pytest.raises(BadInput, match="pkg://"):
        resolve_path(path)


def test_a_link_out_of_a_package_is_refused(tmp_path, monkeypatch):
    from ovframe import files

    package = tmp_path / "site" / "ovframe_linktest"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (tmp_path / "secret.txt").write_text("outside")
    (package / "inside.txt").write_text("inside")
    (package / "escape.txt").symlink_to(tmp_path / "secret.txt")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(files, "shipping_packages", lambda: frozenset({"ovframe", "ovframe_linktest"}))
    assert files.resolve_path("pkg://ovframe_linktest/inside.txt").read_text() == "inside"
    with pytest.raises(BadInput, match="leads outside the package folder"):
        files.resolve_path("pkg://ovframe_linktest/escape.txt")


def test_shipped_package_paths_still_resolve():
    from ovframe.files import resolve_path

    assert resolve_path("pkg://ovframe_synth/weights/manifest.json").is_file()


def test_a_missing_cuda_device_is_bad_input_at_run_time():
    import torch

    from ovframe.runner import resolve_device

    if torch.cuda.is_available():
        with pytest.raises(BadInput, match="CUDA device"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
    else:
        with pytest.raises(BadInput, match="CUDA is not available"):
            resolve_device("cuda:1")
    assert str(resolve_device("cpu")) == "cpu"


def test_the_largest_seed_runs(tmp_path, toy_registry):
    from ovframe.runner import run_recipe

    f = write(tmp_path / "r.yaml", f"name: r\n{ORACLE}seed: 18446744073709551615\noutput_dir: {tmp_path / 'runs'}\ndevice: cpu\n")
    assert run_recipe(load_recipe(f, registry=toy_registry), toy_registry)["images"] == 2


def test_strings_from_the_environment_still_become_numbers(tmp_path, toy_registry, monkeypatch):
    monkeypatch.setenv("OVF_BATCH", "3")
    f = write(tmp_path / "r.yaml", f"name: r\n{ORACLE}task: {{plugin: evaluate, batch_size: '${{OVF_BATCH}}'}}\n")
    assert load_recipe(f, registry=toy_registry).sections["task"].config.batch_size == 3
