"""A separate plugin package, built and installed like any other, is discovered and used."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import write

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """examples/ovframe-hello and a deliberately broken plugin, pip-installed into a private folder."""
    site = tmp_path_factory.mktemp("site")
    src = tmp_path_factory.mktemp("src")
    shutil.copytree(ROOT / "examples" / "ovframe-hello", src / "hello")
    write(src / "broken" / "pyproject.toml", """
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "ovframe-broken"
        version = "0.0.1"
        [project.entry-points.ovframe]
        broken = "ovframe_broken"
    """)
    write(src / "broken" / "ovframe_broken" / "__init__.py", "raise ImportError('this plugin is broken on purpose')\n")
    for pkg in ("hello", "broken"):
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
             "--target", str(site), str(src / pkg)],
            check=True, capture_output=True, text=True, timeout=300,
        )
    return site


def run(site, *args, cwd):
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-m", "ovframe", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def test_plugins_lists_the_third_party_package(site, tmp_path):
    out = run(site, "plugins", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    plugins = {p["name"]: p for p in json.loads(out.stdout)["plugins"]}
    hello = plugins["hello"]
    assert hello["distribution"] == "ovframe-hello" and hello["version"] == "0.3.0"
    assert hello["components"] == {"dataset": ["hello-squares"], "fuser": ["hard-vote"]}
    assert sorted(hello["hooks"]) == ["register_datasets", "register_fusers"]
    # the broken plugin is reported, and does not take the others down
    assert "this plugin is broken on purpose" in plugins["broken"]["error"]
    assert "plugin 'broken' (ovframe-broken) failed to load" in out.stderr


def test_a_recipe_runs_with_the_third_party_components(site, tmp_path):
    write(tmp_path / "hello.yaml", """
        name: hello
        device: cpu
        dataset: {plugin: hello-squares, n: 3}
        proposals: ground-truth-masks
        classifier: oracle
        fuser: {plugin: hard-vote, mask_thr: 0.5}
    """)
    out = run(site, "run", "hello.yaml", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    metrics = json.loads((tmp_path / "runs" / "hello" / "metrics.json").read_text())
    assert metrics["mIoU"] == 100.0 and metrics["images"] == 3
    # blocked by the environment variable, it is gone
    env_blocked = subprocess.run(
        [sys.executable, "-m", "ovframe", "validate", "hello.yaml"], capture_output=True, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(site), "OVFRAME_BLOCK_PLUGINS": "hello,broken"}, timeout=300,
    )
    assert env_blocked.returncode == 2 and "unknown dataset 'hello-squares'" in env_blocked.stderr
