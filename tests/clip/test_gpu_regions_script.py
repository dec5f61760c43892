"""benchmarks/gpu_regions.py runs where there is no GPU (a tiny ViT), and its FLOP count and peak table hold."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_regions.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("gpu_regions", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_it_runs_on_a_cpu_with_a_tiny_vit(script, capsys):
    rows = script.main(["--model", "tiny", "--device", "cpu", "--batch", "2", "--iters", "1", "--repeats", "1", "--matmul", "64"])
    assert [r["mode"] for r in rows] == ["fp32"]
    assert rows[0]["crops_per_s"] > 0 and 0 < rows[0]["of_matmul"] and rows[0]["of_table"] is None
    out = capsys.readouterr().out
    assert "| fp32 |" in out and "of the measured matmul peak" in out


def test_flops_formula_against_the_counted_matmuls(script):
    """The counter sees every matmul and convolution but not the attention kernel: the formula's other
    terms must equal what it counts, and the attention term is 4 T^2 D per block."""
    spec = script.MODELS["tiny"]
    encoder = script.build_encoder(spec, depth=1)
    tokens = (spec["image_size"] // spec["patch_size"]) ** 2 + 1
    attention = spec["layers"] * 4 * tokens**2 * spec["width"]
    assert script.counted_flops(encoder, spec) == pytest.approx(script.analytic_flops(spec) - attention, rel=1e-6)
    assert script.analytic_flops(script.MODELS["ViT-L-14"]) == pytest.approx(162.0e9, rel=1e-3)


def test_peak_table_picks_the_most_specific_name(script):
    assert script.table_peak("NVIDIA H100 PCIe") == 756e12
    assert script.table_peak("NVIDIA H100 80GB HBM3") == 989e12
    assert script.table_peak("NVIDIA H200") == 989e12
    assert script.table_peak("NVIDIA A100-SXM4-80GB") == 312e12
    assert script.table_peak("NVIDIA L40S") == 362e12 and script.table_peak("NVIDIA L4") == 121e12
    assert script.table_peak("Some Future GPU") is None
