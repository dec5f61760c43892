"""`ovframe export` in the core: what it refuses (exit 2, before any export), and a check that fails (exit 1).

The exported networks of the first-party plugins are compared with independent references in
tests/clip/test_clip_export.py and tests/maskformer/test_maskformer_export.py."""

from __future__ import annotations

import json

import pytest
import torch
from support import write

from ovframe import ComponentConfig, RegionClassifier, hookimpl
from ovframe.cli import main
from ovframe.export import ExportGraph


class _Drifting(torch.nn.Module):
    """Doubles its input while being exported, not when torch runs it: the graph cannot match torch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 if torch.onnx.is_in_onnx_export() else x


class DriftingConfig(ComponentConfig):
    """Test only: a classifier whose exported graph cannot match torch."""

    needs_text = False


class DriftingClassifier(RegionClassifier):
    name = "drifting"
    Config = DriftingConfig

    def classify(self, samples, proposals, text, vocabulary):
        raise NotImplementedError

    def export_graph(self) -> ExportGraph:
        batch = torch.export.Dim("batch", min=1, max=64)
        return ExportGraph(
            _Drifting(), (torch.ones(2, 4),), ["x"], ["y"], ({0: batch},), check_inputs=(torch.ones(3, 4),),
            extras={"scale": torch.tensor([1.0, 2.0])}, notes={"what": "a test"},
        )


class DriftingPlugin:
    @hookimpl
    def register_region_classifiers(self, register):
        register(DriftingClassifier)


@pytest.fixture
def recipes(tmp_path):
    write(tmp_path / "oracle.yaml", "name: oracle\nproposals: ground-truth-masks\nclassifier: oracle\nfuser: clip-only\n")
    write(tmp_path / "set.yaml", "name: s\nbase: oracle.yaml\nmatrix: {fuser.plugin: [clip-only]}\n")
    write(tmp_path / "drift.yaml", "name: drift\nclassifier: drifting\n")
    return tmp_path


@pytest.mark.parametrize(
    "args, message",
    [
        (["oracle.yaml", "--stage", "text"], "no `text_encoder:` section to export"),
        (["oracle.yaml", "--stage", "classifier"], "classifier 'oracle' cannot be exported to ONNX"),
        (["oracle.yaml", "--stage", "classifier", "--opset", "7"], "--opset 7"),
        (["oracle.yaml", "--stage", "classifier", "--tolerance", "0"], "--tolerance must be positive"),
        (["set.yaml", "--stage", "classifier"], "is a recipe set"),
        (["missing.yaml", "--stage", "classifier"], "no such recipe"),
    ],
)
def test_bad_input_exits_2(args, message, recipes, registry, capsys, monkeypatch):
    monkeypatch.chdir(recipes)
    assert main(["export", *args, "--out", str(recipes / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (recipes / "out").exists()


def test_without_onnx_installed_it_says_what_to_install(recipes, registry, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    assert main(["export", str(recipes / "oracle.yaml"), "--stage", "classifier"]) == 2
    assert "pip install 'ovframe[export]'" in capsys.readouterr().err


@pytest.mark.slow
def test_outputs_beyond_the_tolerance_fail_with_exit_1_and_keep_the_files(recipes, registry, capsys):
    registry.add_plugin(DriftingPlugin(), name="drifting-test")
    out = recipes / "out"
    assert main(["export", str(recipes / "drift.yaml"), "--stage", "classifier", "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert "onnxruntime differs from torch beyond the tolerance for classifier.y" in captured.err
    manifest = json.loads((out / "classifier.json").read_text())
    # onnxruntime gives 2 x, torch x, on both input sets (batch 2 and 3: the batch axis is free)
    assert [(r["shape"], r["max_abs_diff"], r["ok"]) for r in manifest["check"]["results"]] == [([2, 4], 1.0, False), ([3, 4], 1.0, False)]
    assert manifest["inputs"] == [{"name": "x", "dtype": "float32", "shape": ["batch", 4]}]
    assert manifest["notes"] == {"what": "a test"} and manifest["extras"]["scale"]["file"] == "classifier.scale.npy"
    import numpy as np

    assert np.load(out / "classifier.scale.npy").tolist() == [1.0, 2.0]
    assert (out / "classifier.onnx").is_file()
    assert "| classifier | y | 2x4 | 1 | 0.0001 | NO |" in captured.out
