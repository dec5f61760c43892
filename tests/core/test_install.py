"""A pip user's ovframe: a wheel built from this repository, installed (not editable) into a fresh
virtual environment, used from a folder outside the repository. The shipped recipes resolve by name,
their `extends:` work inside the package, and the demo, predict and the Python API run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SKIP = shutil.ignore_patterns(".git", ".venv", "runs", "build", "dist", "*.egg-info", "__pycache__", "datasets", ".pytest_cache", "*.prev-*")


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A virtual environment holding ovframe from a wheel; the machine's torch & co. through
    --system-site-packages (nothing is downloaded: the wheel is installed with --no-deps --no-index)."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=SKIP)  # build from a copy: the repository gets no build/ folder
    wheels = tmp / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(src)],
        check=True, capture_output=True, text=True, timeout=600,
    )
    (wheel,) = wheels.glob("ovframe-*.whl")
    env_dir = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(env_dir)], check=True, timeout=120)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
        check=True, capture_output=True, text=True, timeout=600,
    )
    return env_dir


def run(venv, *argv, cwd, timeout=600):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    env.pop("OVFRAME_CACHE_DIR", None)
    out = subprocess.run([str(venv / "bin" / argv[0]), *argv[1:]], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)
    assert out.returncode == 0, f"{argv}: exit {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.mark.slow
def test_a_wheel_installed_elsewhere_runs_the_demo_predict_and_the_api(venv, tmp_path):
    where = run(venv, "python", "-c", "import ovframe, ovframe_recipes; print(ovframe.__file__); print(ovframe_recipes.__file__)", cwd=tmp_path)
    assert all(line.startswith(str(venv)) for line in where.stdout.split()), where.stdout  # the wheel, not the checkout

    out = run(venv, "ovframe", "recipes", cwd=tmp_path)
    assert "demo " in out.stdout and "synth/tune" in out.stdout
    run(venv, "ovframe", "validate", "recipes", cwd=tmp_path)  # every shipped recipe, extends resolved in the package
    shown = run(venv, "ovframe", "show", "ade150_mpt", cwd=tmp_path).stdout
    assert "d2-swin-b" in shown  # from _base/, through extends

    out = run(venv, "ovframe", "run", "demo", "-o", "task.max_images=2", "-o", "task.visualize=1", cwd=tmp_path)
    metrics = json.loads(out.stdout)
    assert metrics["images"] == 2 and 0 <= metrics["mIoU"] <= 100
    assert (tmp_path / "runs" / "demo+task.max_images=2+task.visualize=1" / "overlays").is_dir()

    run(venv, "ovframe", "run", "recipes/synth/export_val.yaml", "-o", "task.root=new", "-o", "dataset.num_images=2", cwd=tmp_path)
    out = run(venv, "ovframe", "predict", "new/images", "--vocab", "red star, grass, sky, lava", cwd=tmp_path)
    assert "| class | pixels | images |" in out.stdout
    (folder,) = (tmp_path / "runs" / "predict").iterdir()
    assert len(list((folder / "predictions").glob("*.overlay.png"))) == 2
    assert (folder / "predictions" / "coco.json").is_file()

    script = textwrap.dedent("""
        import glob
        from PIL import Image
        from ovframe.api import Segmenter
        segmenter = Segmenter("demo")
        result = segmenter(Image.open(sorted(glob.glob("new/images/*.png"))[0]), "red star, grass, sky, lava")
        print(result.class_names, sum(result.shares.values()), len(result.segments), result.overlay().size)
    """)
    out = run(venv, "python", "-c", script, cwd=tmp_path)
    assert out.stdout.startswith("('red star', 'grass', 'sky', 'lava') 1.0")


@pytest.mark.slow
def test_the_wheel_carries_the_web_demos_examples(venv, tmp_path):
    out = run(venv, "python", "-c", "from ovframe.serve import examples\nfor e in examples(): print(e.image, e.image.is_file())", cwd=tmp_path)
    lines = out.stdout.split("\n")[:-1]
    assert len(lines) == 3 and all(line.startswith(str(venv)) and line.endswith(" True") for line in lines), out.stdout


def test_install_hints_work_for_a_pip_user():
    """An error that asks for an extra names it as `pip install 'ovframe[EXTRA]'`, which works for a wheel
    user and in a checkout alike (`pip install -e ".[mining]"` only works from the repository root), and
    the extra exists."""
    import re
    import tomllib

    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    sources = [*(ROOT / "ovframe").rglob("*.py"), *(ROOT / "plugins").rglob("*.py")]
    for path in sources:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"""pip install (-e )?\\?["']\.\[""", text), f"{path.relative_to(ROOT)}: a checkout-only install hint"
        for extra in re.findall(r"pip install \\?['\"]ovframe\[(\w+)\]", text):
            assert extra in extras, f"{path.relative_to(ROOT)}: no extra [{extra}] in pyproject.toml"
