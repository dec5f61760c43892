"""Every command the documentation shows is run as written: the examples of `ovframe --help`, and each
```bash block of the README and docs/ (in order, one working folder per page, outside the repository).

A command that needs what only its user can bring (the OVSeg weights, a benchmark's download) must stop
at once with exit 2, naming those files; every other command must succeed. Long runs get size overrides
(fewer images, fewer steps: SIZE), appended as a user would; runs of the shipped synthetic models are
slow tests. The README's Python example runs too, its recipe blocks must match the shipped recipe,
and every ```python block of the docs compiles.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from ovframe.cli import EPILOG, main
from ovframe.recipes.locate import find_shipped, shipped_root

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

STEPS = ["-o", "task.steps=2", "-o", "task.checkpoint_every=2", "-o", "task.log_every=1"]  # a training run: 2 steps
SIZE = {  # shipped recipe -> overrides appended to `ovframe run` (later -o wins), so that examples stay short
    "demo": ["-o", "task.max_images=2", "-o", "task.visualize=1"],
    "synth/tune": ["-o", "task.max_images=1", "-o", "task.visualize=0"],
    "synth/export_val": ["-o", "dataset.num_images=2"],
    "synth/sam": ["-o", "task.max_images=2", "-o", "task.visualize=0"],
    "synth/tune_sam": ["-o", "task.max_images=1", "-o", "task.visualize=0"],
    "synth/retrained": ["-o", "task.max_images=2", "-o", "task.visualize=0"],
    # Training and mining runs write what later commands of their page read (runs/<name>/...): `name=` keeps
    # them where the page says (a command that names its run keeps its own name).
    "synth/pretrain_clip": [
        *STEPS, "-o", "task.warmup_steps=1", "-o", "task.batch_size=4", "-o", "task.eval_images=4",
        "-o", "task.workers=0", "-o", "name=synth-pretrain-clip",
    ],
    "synth/train_maskformer": [*STEPS, "-o", "task.batch_size=2", "-o", "task.warmup_steps=1", "-o", "name=synth-maskformer"],
    "synth/train_mpt": [*STEPS, "-o", "dataset.num_images=8", "-o", "task.batch_size=8", "-o", "task.workers=0", "-o", "name=synth-mpt"],
    "synth/train_sam": [*STEPS, "-o", "task.batch_size=2", "-o", "task.warmup_steps=1", "-o", "task.eval_images=2", "-o", "name=synth-sam"],
    "synth/mine_pairs": ["-o", "task.max_images=8", "-o", "task.shard_images=4", "-o", "name=synth-mine-pairs"],
    "synth/train_mpt_mined": [*STEPS, "-o", "task.batch_size=8", "-o", "task.workers=0", "-o", "name=synth-mpt-mined"],
}
MAKERS = {"synth/export_val"} | {name for name, size in SIZE.items() if any(o.startswith("name=") for o in size)}
"""Recipes whose runs make files that later commands of their page read: never skipped as run before (DONE)."""
BENCH_SIZE = {"--images": "1", "--warmup": "0"}  # `ovframe bench`: one timed image, no warm-up
SETUP = (("pip", "install"), ("python", "-m", "pytest"))
"""Commands that set up the machine or test it, not ovframe's: test_install.py and CI run them."""
USER_FILES = {  # what a page's reader has at hand (made when a command names it): their photos and recipes
    "photo.jpg": "image",
    "photos/kitchen.jpg": "image",
    "a.png": "image",
    "big.png": "image",  # docs/performance.md's large image (a small one here: the command is what is checked)
    "my_recipe.yaml": "extends: demo\nname: my_recipe\ntask: {max_images: 2, visualize: 0}\n",
    "recipes/my_variant.yaml": "extends: demo\nname: my_variant\nfuser: {lam: 0.5}\n",
}
DONE: dict[tuple[str, ...], str] = {}
"""Commands already run in this session that read nothing from their folder: not run twice (the help
and the README share examples)."""
MISSING = re.compile(r"^  - (\S.*)$", re.M)


@dataclass
class Example:
    page: str
    line: int
    commands: list[list[str]] = field(default_factory=list)

    @property
    def heavy(self) -> bool:
        return any(_runs_models(argv) for argv in self.commands)


THREADS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
"""Variables a command may be prefixed with (`OMP_NUM_THREADS=1 nice -n 5 ovframe ...`): they change its speed,
not its outcome. Any other variable is set on a line of its own (`export NAME=value`), which the run keeps."""
PREFIX = r"(?:\$\s+)?(?:[A-Z_]+=\S+\s+)*(?:nice\s+(?:-n\s*)?-?\d+\s+)?"
"""What may stand before a command in a transcript: a prompt, variables, then `nice`."""


def _unprefixed(argv: list[str]) -> list[str]:
    """argv without its `NAME=value` and `nice -n N` prefix (only the THREADS variables may be set so)."""
    while argv and re.fullmatch(r"[A-Za-z_]\w*=.*", argv[0]):
        assert argv[0].split("=")[0] in THREADS, f"`{' '.join(argv)}`: set {argv[0].split('=')[0]} with `export` on a line of its own"
        argv = argv[1:]
    if argv[:1] == ["nice"]:
        argv = argv[3:] if argv[1:2] == ["-n"] else argv[2:]
    return argv


def _bash_commands(text: str) -> list[list[str]]:
    """The commands of a bash block: comments dropped, `&&` chains split, `\\` continuations joined, the
    speed prefixes (THREADS variables, `nice`) left out."""
    out: list[list[str]] = []
    for line in text.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        while words:
            cut = words.index("&&") if "&&" in words else len(words)
            out.append(_unprefixed(words[:cut]))
            words = words[cut + 1 :]
    return [argv for argv in out if argv]


def _blocks(path: Path, lang: str) -> list[tuple[int, str]]:
    """(first line, text) of each fenced block tagged `lang` ("" for untagged ones). Every fence opens or
    closes a block, whatever its tag (a closing fence is never taken for an untagged opening one)."""
    blocks, current, start, inside = [], None, 0, False
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```"):
            if not inside:
                current, start = ([] if line[3:].strip() == lang else None), i + 1
            elif current is not None:
                blocks.append((start, "\n".join(current) + "\n"))
            inside = not inside
            if not inside:
                current = None
            continue
        if current is not None:
            current.append(line)
    return blocks


def _help_examples() -> list[Example]:
    lines = [line.strip() for line in EPILOG.splitlines() if line.startswith("  ovframe ")]
    argvs = [shlex.split(re.split(r"\s{2,}", line)[0]) for line in lines]
    return [Example("ovframe --help", 0, argvs)]


def _page_examples() -> list[Example]:
    out = []
    for page in PAGES:
        examples = [Example(str(page.relative_to(ROOT)), line, _bash_commands(text)) for line, text in _blocks(page, "bash")]
        if examples:  # one working folder per page: later blocks may use what earlier ones made
            out.append(Example(examples[0].page, examples[0].line, [argv for e in examples for argv in e.commands]))
    return out


def _recipe_of(argv: list[str]) -> str | None:
    """The shipped recipe an `ovframe run/predict/bench/export/serve` command uses, by name (None: not a shipped one)."""
    if argv[:2] == ["ovframe", "serve"]:  # its recipe is optional: the demo by default
        ref = argv[2] if len(argv) > 2 and not argv[2].startswith("-") else "demo"
    elif len(argv) < 3 or argv[0] != "ovframe" or argv[1] not in ("run", "predict", "bench", "export"):
        return None
    else:
        ref = argv[2] if argv[1] != "predict" else (argv[argv.index("--recipe") + 1] if "--recipe" in argv else "demo")
    if ref in USER_FILES:
        ref = "demo"  # the user's recipes extend demo
    path = find_shipped(ref)
    return path.relative_to(shipped_root()).with_suffix("").as_posix() if path is not None else None


def _runs_models(argv: list[str]) -> bool:
    """Runs the shipped synthetic models for real (the other shipped recipes stop at missing weights)."""
    name = _recipe_of(argv)
    return name is not None and "--dry-run" not in argv and (name == "demo" or name.startswith("synth/"))


def _as_run(argv: list[str]) -> list[str]:
    """`torchrun ... -m ovframe ARGS` runs as `ovframe ARGS` (one process); size overrides appended."""
    if argv[0] == "torchrun":
        argv = ["ovframe", *argv[argv.index("ovframe") + 1 :]]
    if argv[1] == "bench":
        argv = [BENCH_SIZE.get(prev, a) for prev, a in zip(["", *argv], argv)]
        argv += [x for key, value in BENCH_SIZE.items() if key not in argv for x in (key, value)]
    if argv[1] == "run" and _runs_models(argv):
        name = _recipe_of(argv)
        assert name in SIZE, f"`{' '.join(argv)}` runs {name} for real: give it a size override in SIZE"
        named = any(a.startswith("name=") for a in argv)  # the command places its run itself
        pairs = zip(SIZE[name][::2], SIZE[name][1::2])
        argv = [*argv, *(x for flag, value in pairs if not (named and value.startswith("name=")) for x in (flag, value))]
    return argv


def _user_files(folder: Path, named: set[str]) -> None:
    """Make the USER_FILES that the words `named` name (a file or its folder)."""
    from support import ToyConfig, ToyDataset

    picture = ToyDataset(ToyConfig(n=1, size=48))[0].image.permute(1, 2, 0).numpy()
    for name, content in USER_FILES.items():
        if name not in named and str(Path(name).parent) not in named:
            continue
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content == "image":
            Image.fromarray(np.ascontiguousarray(picture)).save(path, quality=95)
        else:
            path.write_text(content)


def _exists(word: str) -> bool:
    """Whether a command's argument names an existing file (a long inline YAML value is no file name)."""
    try:
        return Path(word).exists()
    except OSError:  # a name longer than the system allows
        return False


def _check_stopped_for_users_files(argv: list[str], err: str) -> None:
    """Exit 2 is right only when the command needs what the user must bring, and says so: a download
    or a folder named on the command line that is not there, or the files a recipe lists as missing."""
    named = [a for a in argv[2:] if not a.startswith("-") and not _exists(a)]
    if any(re.search(rf"{re.escape(a)}: no such (file|folder)", err) for a in named):
        return
    assert "this recipe needs are missing" in err, err
    for path in MISSING.findall(err):
        path = Path(path.strip())
        assert not path.exists(), f"{path} exists but is reported missing"
        assert not any(path.resolve().is_relative_to(p) for p in (ROOT, shipped_root())), f"{path}: a shipped file is missing"


def _run_example(example: Example, folder: Path, monkeypatch, capsys) -> list[str]:
    """Run every command in `folder`; return a line per command saying how it ended."""
    monkeypatch.chdir(folder)
    monkeypatch.setenv("HOME", str(folder / "home"))
    monkeypatch.delenv("DETECTRON2_DATASETS", raising=False)
    _user_files(folder, {word.rstrip("/") for argv in example.commands for word in argv})
    report = []
    for argv in example.commands:
        shown = " ".join(argv)
        if any(tuple(argv[: len(s)]) == s for s in SETUP):
            report.append(f"setup  {shown}")
            continue
        if argv[0] == "export":
            key, _, value = argv[1].partition("=")
            monkeypatch.setenv(key, os.path.expanduser(value))
            continue
        argv = [os.path.expandvars(os.path.expanduser(a) if a.startswith("~/") else a) for a in argv]
        if argv[0] == "python" and argv[1].startswith("scripts/"):  # a script of the repository, run from it
            out = subprocess.run([sys.executable, str(ROOT / argv[1]), *argv[2:]], capture_output=True, text=True, timeout=600)
            if out.returncode == 2:
                _check_stopped_for_users_files(argv, out.stderr)
            assert out.returncode in (0, 2), f"{example.page}:{example.line}: `{shown}` exited {out.returncode}\n{out.stderr[-3000:]}"
            report.append(f"{'ok    ' if out.returncode == 0 else 'stops '} {shown}")
            continue
        assert argv[0] in ("ovframe", "torchrun"), f"{example.page}:{example.line}: unknown command `{shown}`"
        argv = _as_run(argv)
        key = tuple(argv)
        if key in DONE:
            report.append(f"{DONE[key]} {shown} (run above)")
            continue
        capsys.readouterr()
        if argv[1] == "serve":
            code, out, err = _serve(argv, folder)
        else:
            try:
                code = main(argv[1:])
            except SystemExit as e:  # --help, --version
                code = e.code or 0
            out, err = capsys.readouterr()
        if code == 2 and not _runs_models(argv):
            _check_stopped_for_users_files(argv, err)
            outcome = "stops "
        else:
            assert code == 0, f"{example.page}:{example.line}: `{' '.join(argv)}` exited {code}\n{out[-2000:]}\n{err[-3000:]}"
            outcome = "ok    "
        report.append(f"{outcome} {shown}")
        if not any(_exists(a) for a in argv[2:]) and _recipe_of(argv) not in MAKERS:  # it read nothing from this folder
            DONE[key] = outcome
    return report


def _serve(argv: list[str], folder: Path) -> tuple[int, str, str]:
    """`ovframe serve ...` as written, on a free port: it must serve its page (then it is stopped), or stop
    at once. (exit code, stdout, stderr); 0 once the page answered."""
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    if "--port" in argv:
        argv = [*argv[: argv.index("--port")], *argv[argv.index("--port") + 2 :]]
    env = {**os.environ, "HOME": str(folder / "home"), "GRADIO_TEMP_DIR": str(folder / "gradio")}
    proc = subprocess.Popen([sys.executable, "-m", "ovframe", *argv[1:], "--port", str(port)], cwd=folder, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out = ""
        for line in proc.stdout:  # type: ignore[union-attr]  # until it is ready, or has stopped
            out += line
            if "ready at" in line:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=60) as page:
                    assert page.status == 200 and "ovframe" in page.read().decode("utf-8", "replace")
                return 0, out, ""
        return proc.wait(timeout=60), out, proc.stderr.read()  # type: ignore[union-attr]
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=60)


EXAMPLES = _help_examples() + _page_examples()


@pytest.mark.parametrize(
    "example",
    [pytest.param(e, id=e.page, marks=[pytest.mark.slow] if e.heavy else []) for e in EXAMPLES],
)
def test_documented_commands_run_as_written(example, tmp_path, monkeypatch, capsys, registry):
    report = _run_example(example, tmp_path, monkeypatch, capsys)
    assert len(report) >= 1
    if example.page == "README.md":  # the Python example runs in the folder the commands above made
        ((_, code),) = _blocks(ROOT / "README.md", "python")
        capsys.readouterr()
        exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
        _check_shown_output(code, capsys.readouterr().out)
        assert Image.open(tmp_path / "overlay.png").width > 2 * 128


def _check_shown_output(code: str, printed: str) -> None:
    """`print(x)  # {'a': 0.7..., ...}`: the comment shows what the line prints ("..." stands for the rest
    of a number or of the collection), so a reader who runs the example sees what the page promised."""
    shown = [m.group(1) for m in re.finditer(r"^print\(.*\)\s+#\s*([\[{(].*)$", code, re.M)]
    lines = printed.splitlines()
    assert len(lines) >= len(shown), printed
    for comment, line in zip(shown, lines):
        depth, end = 0, len(comment)
        for i, ch in enumerate(comment):  # the shown value is the bracketed part; prose may follow it
            depth += ch in "[{(" and 1 or ch in "]})" and -1 or 0
            if depth == 0:
                end = i + 1
                break
        pattern = ".*?".join(re.escape(part) for part in comment[:end].split("..."))
        assert re.fullmatch(pattern, line.strip()), f"README.md shows `{comment[:end]}`, the example printed `{line}`"


def test_every_page_with_commands_is_covered():
    covered = {e.page for e in EXAMPLES}
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for line, block in _blocks(page, ""):  # untagged blocks must not hide commands (a synopsis has PLACEHOLDERS)
            for command in re.findall(rf"^\s*{PREFIX}(?:ovframe|torchrun|python -m ovframe)\s.*$", block, re.M):
                command = re.sub(rf"^\s*{PREFIX}", "", command)
                assert re.search(r"\b[A-Z][A-Z_]{2,}\b", command), (
                    f"{page.relative_to(ROOT)}:{line}: `{command.strip()}` in an untagged block; mark it ```bash so it is tested"
                )
        if "```bash" in text:
            assert str(page.relative_to(ROOT)) in covered


def test_inline_commands_name_real_recipes():
    """`ovframe run X` written in the prose of a page names a recipe that exists."""
    for page in PAGES:
        for ref in re.findall(r"`(?:torchrun [^`]*-m )?ovframe (?:run|show|validate) ([^` ]+)[^`]*`", page.read_text(encoding="utf-8")):
            if ref.isupper() or ref in ("...", "RECIPE", "SET") or ref.startswith("my"):
                continue
            assert (ROOT / ref).exists() or find_shipped(ref) or find_shipped(ref, folder=True), f"{page.name}: {ref}"


def test_recipe_blocks_are_the_shipped_recipe(registry):
    """The YAML recipes the README and docs/recipes.md show are the shipped `ade150_mpt`, written out."""
    from ovframe.recipes import load_recipe
    from ovframe.recipes.schema import validate
    from ovframe.recipes.source import parse_yaml  # expands ${VAR} as it reads

    shipped = load_recipe("ade150_mpt", registry=registry).resolved()
    for page in (ROOT / "README.md", ROOT / "docs" / "recipes.md"):
        blocks = [(line, text) for line, text in _blocks(page, "yaml") if text.startswith("name: ade150_mpt")]
        assert blocks, page
        for line, text in blocks:
            tree = parse_yaml(text, f"{page.name}:{line}")
            shown = validate(tree, registry, page.name).resolved()
            for kind in ("dataset", "text_encoder", "proposals", "classifier", "adapter", "fuser"):
                assert shown[kind] == shipped[kind], f"{page.name}:{line}: {kind} differs from the shipped ade150_mpt"


@pytest.mark.slow  # the demo's models: about 7 s
def test_the_segmenter_example_runs(tmp_path, monkeypatch, registry):
    """docs/segmenting-your-images.md's Python example, as written, on the reader's photos (the README's
    runs after its commands, in test_documented_commands_run_as_written)."""
    ((line, code),) = [b for b in _blocks(ROOT / "docs" / "segmenting-your-images.md", "python") if "Segmenter(" in b[1]]
    monkeypatch.chdir(tmp_path)
    _user_files(tmp_path, set(re.findall(r'"([^"]+)"', code)))
    scope: dict = {"__name__": "docs"}
    exec(compile(code, f"segmenting-your-images.md:{line}", "exec"), scope)
    assert len(scope["results"]) == 2 and scope["result"].class_names == ("cat", "sofa", "wall")
    assert Image.open(tmp_path / "overlay.png").width > 2 * 48


def test_the_training_pages_recipe_is_the_shipped_one():
    """docs/training.md shows recipes/synth/retrained.yaml (less its description): every key as shipped."""
    ((_, text),) = [b for b in _blocks(ROOT / "docs" / "training.md", "yaml") if "name: synth-retrained" in b[1]]
    shown, shipped = yaml.safe_load(text), yaml.safe_load((ROOT / "recipes" / "synth" / "retrained.yaml").read_text())
    assert shown == {k: v for k, v in shipped.items() if k != "description"}


def test_python_blocks_compile():
    for page in PAGES:
        for line, text in _blocks(page, "python"):
            compile(text, f"{page}:{line}", "exec")


def test_the_examples_are_found():
    pages = {e.page for e in EXAMPLES}
    assert {"ovframe --help", "README.md", "docs/recipes.md", "docs/reproducing-ovseg.md"} <= pages
    help_example = EXAMPLES[0]
    assert ["ovframe", "run", "demo"] in help_example.commands and len(help_example.commands) >= 8
    assert yaml.safe_load(USER_FILES["my_recipe.yaml"])["extends"] == "demo"


def test_shown_output_is_compared_with_what_the_example_prints():
    code = "print(result.shares)   # {'grass': 0.6..., 'red star': 0.2..., ...}, largest first\n"
    _check_shown_output(code, "{'grass': 0.61, 'red star': 0.25, 'sky': 0.14}\n")
    with pytest.raises(AssertionError, match="README.md shows"):
        _check_shown_output(code, "{'blue circle': 0.77, 'red star': 0.16, 'grass': 0.02}\n")
