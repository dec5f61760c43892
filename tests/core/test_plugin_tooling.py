"""Plugin tooling: compatibility checked from the Configs alone, plugins left out or misnamed in the
environment, clashes reported all at once, and one component's options (`ovframe plugins NAME`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support import write

from ovframe import ComponentConfig, hookimpl
from ovframe.cli import main
from ovframe.errors import BadInput, PluginError, RecipeError
from ovframe.recipes import load_recipe
from ovframe.registry import Registry, get_registry, reset_registry

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = "name: r\ndataset: {plugin: folder, root: data}\n"
TEXT = "text_encoder: {plugin: clip-text, model: RN50, pretrained: openai}\n"
CLIP = "classifier: {plugin: clip-masked-crop, model: RN50, pretrained: openai}\n"
SAM = "{plugin: sam, model: vit_b, weights: sam_vit_b_01ec64.pth}"
MASKFORMER = "{plugin: maskformer, weights: m.safetensors}"


def _recipe(body: str) -> str:
    return PIPELINE + ("" if "# no text encoder" in body else TEXT) + body + "\n"


@pytest.fixture
def env(monkeypatch):
    """A clean plugin environment; yields a function that sets variables and reloads the registry."""
    for key in ("OVFRAME_PLUGINS", "OVFRAME_BLOCK_PLUGINS"):
        monkeypatch.delenv(key, raising=False)

    def load(**variables):
        for key, value in variables.items():
            monkeypatch.setenv(key, value)
        reset_registry()
        return get_registry(allow_conflicts=True)

    yield load
    reset_registry()


# -- compatibility, from the Configs -----------------------------------------------------------


@pytest.mark.parametrize(
    "body, problem",
    [
        (f"proposals: {SAM}\n{CLIP}fuser: proposal-only\n",
         "fuser: fuser 'proposal-only' uses the proposals' own class opinion, but proposal generator 'sam' is class-agnostic"),
        (f"proposals: {{plugin: union, members: [{SAM}]}}\n{CLIP}fuser: proposal-only\n", "proposal generator 'union' is class-agnostic"),
        (f"proposals: {MASKFORMER}\nfuser: geometric-ensemble\n",
         "fuser: fuser 'geometric-ensemble' fuses the region classifier's scores, but the recipe has no `classifier:` section; "
         "add one or use a fuser that needs none (proposal-only)"),
        (f"proposals: {MASKFORMER}\n{CLIP}fuser: clip-only\n" + "# no text encoder",
         "proposals: proposal generator 'maskformer' reads the class names' text embeddings, but the recipe has no `text_encoder:` section (clip-text)"),
        (f"proposals: {MASKFORMER}\nclassifier: oracle\nadapter: mask-prompt-tuning\nfuser: clip-only\n",
         "adapter: classifier 'oracle' takes no adapters; remove `adapter:` or use a classifier that takes it (clip-background-crop, clip-masked-crop)"),
        (f"proposals: {MASKFORMER}\nadapter: mask-prompt-tuning\nfuser: proposal-only\n",
         "adapter: adapter 'mask-prompt-tuning' changes how a region classifier sees regions, but the recipe has no `classifier:` section"),
        (f"proposals: ground-truth-masks\n{CLIP}fuser: clip-only\ntask: {{plugin: predict, inputs: [x.jpg]}}\n",
         "proposals: proposal generator 'ground-truth-masks' reads the samples' ground-truth labels, and task 'predict' segments images without labels"),
    ],
)
def test_validate_names_what_does_not_fit_without_loading_a_model(body, problem, tmp_path, registry):
    f = write(tmp_path / "r.yaml", _recipe(body))
    with pytest.raises(RecipeError) as e:
        load_recipe(f, registry=registry)
    assert problem in str(e.value)
    assert str(e.value).startswith(f"{f}:")  # at the line of the section at fault


@pytest.mark.parametrize(
    "body",
    [
        f"proposals: {SAM}\n{CLIP}fuser: geometric-ensemble\n",  # the ensembles take class-agnostic proposals (p = p_clip there)
        f"proposals: {{plugin: union, members: [{SAM}, {MASKFORMER}]}}\n{CLIP}fuser: proposal-only\n",  # a member classifies
        f"proposals: {MASKFORMER}\nfuser: proposal-only\n",
        "proposals: ground-truth-masks\nclassifier: oracle\nfuser: clip-only\n# no text encoder",  # nothing reads text
        f"proposals: {MASKFORMER}\n{CLIP}adapter: mpt+ft\nfuser: geometric-ensemble-seen-unseen\n",
    ],
)
def test_what_fits_validates(body, tmp_path, registry):
    load_recipe(write(tmp_path / "r.yaml", _recipe(body)), registry=registry)


def test_union_needs_text_when_a_member_does(registry):
    from ovframe_sam.config import UnionConfig

    assert not UnionConfig(members=[{"plugin": "sam"}]).needs_text
    assert UnionConfig(members=[{"plugin": "sam"}, {"plugin": "maskformer"}]).needs_text


def test_the_task_names_every_section_it_needs_before_the_run(tmp_path, registry, capsys):
    f = write(tmp_path / "r.yaml", "name: r\ntask: {plugin: train-adapter, steps: 1}\n")
    assert main(["validate", str(f)]) == 2
    err = capsys.readouterr().err
    for kind in ("classifier", "adapter", "text_encoder", "dataset"):  # dataset: the default pairs are its segments
        assert f"task 'train-adapter' needs a{'n' if kind[0] in 'aeiou' else ''} `{kind}:` section" in err
    assert main(["run", str(f)]) == 2  # before any model or file is looked at
    assert "needs a `classifier:` section" in capsys.readouterr().err


def test_the_pipeline_refuses_the_same_misfits_as_validate(toy_registry):
    from ovframe.pipeline import Pipeline

    grid = toy_registry.build("proposals", {"plugin": "grid"})
    fuser = toy_registry.build("fuser", {"plugin": "proposal-only"})
    with pytest.raises(BadInput, match="proposal generator 'grid' is class-agnostic"):
        Pipeline(text_encoder=None, proposals=grid, classifier=None, fuser=fuser)


def test_validate_of_a_misfit_does_not_import_torch(tmp_path):
    f = write(tmp_path / "r.yaml", _recipe(f"proposals: {SAM}\n{CLIP}fuser: proposal-only\n"))
    code = ("import sys\nfrom ovframe.cli import main\nrc = main(['validate', %r])\n"
            "print('HEAVY', sorted(m for m in ('torch', 'open_clip', 'timm') if m in sys.modules), rc, file=sys.stderr)" % str(f))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert "HEAVY [] 2" in out.stderr and "class-agnostic" in out.stderr, out.stderr


def test_a_declaration_on_the_component_class_is_refused():
    from ovframe.interfaces import ProposalGenerator

    class OldConfig(ComponentConfig):
        """Declares nothing."""

    class OldStyle(ProposalGenerator):
        name = "old-style"
        Config = OldConfig
        needs_text = False  # validate would never see this

        def propose(self, samples, text=None):
            return []

    class Plugin:
        @hookimpl
        def register_proposal_generators(self, register):
            register(OldStyle)

    with pytest.raises(PluginError, match=r"sets needs_text = False on the component class; declare it on its Config instead \(needs_text = \.\.\. in OldConfig\)"):
        Registry().add_plugin(Plugin(), name="old")


# -- plugins the environment leaves out, and names it gets wrong --------------------------------


def test_a_component_of_a_blocked_plugin_says_it_is_blocked(env, tmp_path):
    registry = env(OVFRAME_BLOCK_PLUGINS="sam")
    assert "sam" in registry.skipped and "sam" not in registry.plugins
    f = write(tmp_path / "r.yaml", _recipe(f"proposals: {SAM}\n{CLIP}fuser: clip-only\n"))
    with pytest.raises(RecipeError) as e:
        load_recipe(f, registry=registry)
    assert ("unknown proposal generator 'sam': plugin 'sam' (ovframe) registers it, but it is not loaded: blocked by "
            "OVFRAME_BLOCK_PLUGINS=sam. To use it, take 'sam' out of OVFRAME_BLOCK_PLUGINS") in str(e.value)
    registry = env(OVFRAME_BLOCK_PLUGINS="", OVFRAME_PLUGINS="fusers,clip,datasets,maskformer")
    with pytest.raises(RecipeError, match="not in OVFRAME_PLUGINS=fusers,clip,datasets,maskformer. To use it, add 'sam' to OVFRAME_PLUGINS"):
        load_recipe(f, registry=registry)


def test_a_misspelt_plugin_name_in_the_environment_is_reported(env, capsys):
    registry = env(OVFRAME_PLUGINS="fusrs,clip")
    assert set(registry.plugins) == {"ovframe", "clip"}
    (warning,) = registry.warnings
    assert "OVFRAME_PLUGINS names 'fusrs', which no installed plugin is called (did you mean 'fusers'?)" in warning
    assert warning in capsys.readouterr().err
    assert warning in registry.unknown_message("fuser", "clip-only")  # the error that follows says why
    registry = env(OVFRAME_PLUGINS="", OVFRAME_BLOCK_PLUGINS="samm")
    assert any("OVFRAME_BLOCK_PLUGINS names 'samm'" in w and "'sam'?" in w for w in registry.warnings)


# -- clashes: all named at once; `ovframe plugins` still shows them ------------------------------


def _install_clashing_distribution(site: Path) -> None:
    """A distribution on sys.path whose entry points clash three ways with the first-party plugins."""
    write(site / "clashpkg" / "__init__.py", "")
    write(site / "clashpkg" / "plugin.py", """
        from ovframe import ComponentConfig, hookimpl, lazy

        class MineConfig(ComponentConfig):
            \"\"\"A fuser named like a first-party one.\"\"\"

        class SamLikeConfig(ComponentConfig):
            \"\"\"A generator named like a first-party one.\"\"\"

        @hookimpl
        def register_fusers(register):
            register(lazy("clashpkg.impl:Mine", name="clip-only", config=MineConfig))

        @hookimpl
        def register_proposal_generators(register):
            register(lazy("clashpkg.impl:SamLike", name="sam", config=SamLikeConfig))
    """)
    write(site / "clashpkg" / "other.py", "")
    write(site / "clash_dist-1.0.dist-info" / "METADATA", "Metadata-Version: 2.1\nName: clash-dist\nVersion: 1.0\n")
    write(site / "clash_dist-1.0.dist-info" / "entry_points.txt", "[ovframe]\nclash = clashpkg.plugin\nfusers = clashpkg.other\n")


def test_clashes_are_named_all_at_once_and_plugins_still_lists(env, tmp_path, monkeypatch, capsys):
    _install_clashing_distribution(tmp_path / "site")
    monkeypatch.setattr(sys, "path", [*sys.path, str(tmp_path / "site")])  # found after the first-party plugins
    registry = env()
    assert len(registry.conflicts) == 3
    with pytest.raises(PluginError) as e:
        get_registry()
    message = str(e.value)
    assert message.startswith("3 plugin conflict(s):")
    assert "fuser 'clip-only' is registered twice: by plugin 'fusers' (ovframe) and by plugin 'clash' (clash-dist)" in message
    assert "proposal generator 'sam' is registered twice: by plugin 'sam' (ovframe) and by plugin 'clash' (clash-dist)" in message
    assert "two plugins are named 'fusers': one from ovframe" in message and "one from clash-dist 1.0 (clashpkg.other)" in message

    assert main(["validate", "demo"]) == 2  # every command but `plugins` refuses
    assert message in capsys.readouterr().err
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "clash (clash-dist 1.0)" in out and "CONFLICTS" in out and message in out
    assert main(["plugins", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["conflicts"]) == 3


# -- one component's options -------------------------------------------------------------------


def test_plugins_name_prints_the_options_of_the_config(env, capsys):
    from ovframe_fusers.config import GeometricEnsembleConfig, SkipConfig

    env()
    assert main(["plugins", "geometric-ensemble"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("fuser geometric-ensemble  (recipe section `fuser:`; plugin fusers, ovframe ")
    assert "declares: needs_classifier=true, needs_proposal_classes=false" in out
    lam = next(line for line in out.splitlines() if line.strip().startswith("lam "))
    assert lam.split()[1:] == ["float", "(>=", "0.0,", "<=", "1.0)", "0.7"]
    assert "λ, the weight of the region classifier" in out and "skip.certify" in out

    assert main(["plugins", "geometric-ensemble", "--json"]) == 0
    (component,) = json.loads(capsys.readouterr().out)["components"]
    options = {o["name"]: o for o in component["options"]}
    for name, field in GeometricEnsembleConfig.model_fields.items():  # each option as pydantic has it
        assert options[name]["description"] == field.description and options[name]["required"] is False
    for name, field in SkipConfig.model_fields.items():
        assert options[f"skip.{name}"]["default"] == field.default
    assert options["proposal_probs"]["type"] == "softmax-drop-no-object | softmax-over-classes"
    assert options["skip"]["type"] == "mapping | null" and options["lam"]["default"] == 0.7
    assert component["schema"] == GeometricEnsembleConfig.model_json_schema()


def test_plugins_name_takes_a_plugin_and_says_what_is_wrong(env, capsys):
    env()
    assert main(["plugins", "fusers"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[1] for line in out.splitlines() if line.startswith("fuser ")] == [
        "geometric-ensemble", "geometric-ensemble-seen-unseen", "clip-only", "proposal-only"]
    assert main(["plugins", "geometric-ensembel"]) == 2
    assert "no component or plugin is called 'geometric-ensembel'. Did you mean 'geometric-ensemble'" in capsys.readouterr().err
    env(OVFRAME_BLOCK_PLUGINS="sam")
    assert main(["plugins", "union"]) == 2
    assert "plugin 'sam' (ovframe) is installed but not loaded: blocked by OVFRAME_BLOCK_PLUGINS=sam" in capsys.readouterr().err


def test_required_options_say_so(env, capsys):
    env()
    assert main(["plugins", "folder", "--json"]) == 0
    options = {o["name"]: o for o in json.loads(capsys.readouterr().out)["components"][0]["options"]}
    assert options["root"] == {"name": "root", "type": "str", "required": True,
                               "description": "the folder holding images/, labels/ and classes.txt"}
    assert main(["plugins", "folder"]) == 0
    assert any(line.split() == ["root", "str", "(required)"] for line in capsys.readouterr().out.splitlines())


def test_type_names_read_as_a_recipe_writer_writes_them():
    from typing import Literal

    from ovframe.describe import type_name

    assert type_name(Literal["a", "b"] | None) == "a | b | null"
    assert type_name(list[str]) == "list[str]"
    assert type_name(dict[str, list[int]]) == "dict[str, list[int]]"
    assert type_name(tuple[int, ...]) == "tuple[int, ...]"
