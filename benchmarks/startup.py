"""Start-up: time to the first image of the demo against `import torch`, measured in the same run.

    python benchmarks/startup.py [--repeats 5] [--imports] [--build ViT-L-14]

Runs, alternately, each a fresh process (OMP_NUM_THREADS=1):
    import torch                    python -c "import torch"
    + torch._dynamo                 import torch, torch._dynamo (torchvision >= 0.29 and timm import it)
    + timm, open_clip               import torch, timm, open_clip: the libraries the demo's models are built with,
                                    a floor under the first image
    first image                     ovframe predict IMAGE --vocab "red star, sand, blue circle" (recipe demo: build
                                    the shipped models, embed the names, segment one 128 px image, write its pictures)
    ovframe --help                  the light path (no torch)
One untimed round first fills the text cache (a temporary one) and the OS file cache. Prints wall and
CPU (user + sys) seconds, best and median, and each as a ratio to `import torch`: CPU time is what the
process itself spent, the steadier figure on a machine shared with other jobs. With --imports, also the
packages the first image imports, by cumulative import time (python -X importtime). With --build MODEL,
also the CPU seconds to build an open_clip model's network with and without random initialisation
(ovframe.loading.skip_init, used where the weights are loaded right after), best of --repeats.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, cpu) seconds of a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def import_tree(cmd: list[str], env: dict[str, str], threshold_s: float = 0.03) -> list[tuple[str, float]]:
    """Top-level packages imported by `cmd` with their cumulative import time (first import of each)."""
    out = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], env=env, capture_output=True, text=True)
    totals: dict[str, float] = {}
    for line in out.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if m and len(m.group(2)) <= 1:  # a package imported from the top, not by another package
            totals[m.group(3)] = totals.get(m.group(3), 0.0) + int(m.group(1)) / 1e6
    return sorted(((k, v) for k, v in totals.items() if v >= threshold_s), key=lambda kv: -kv[1])


def build_times(model: str, repeats: int) -> tuple[float, float]:
    """CPU seconds to build open_clip `model` (random weights) the usual way and under skip_init."""
    import open_clip
    import torch
    from open_clip.model import CLIP

    from ovframe.loading import skip_init

    torch.set_num_threads(1)
    cfg = open_clip.get_model_config(model)
    usual, skipped = [], []
    for _ in range(repeats):
        start = time.process_time()
        CLIP(**cfg)
        usual.append(time.process_time() - start)
        start = time.process_time()
        with skip_init():
            CLIP(**cfg)
        skipped.append(time.process_time() - start)
    return min(usual), min(skipped)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--imports", action="store_true", help="also list what the first image imports")
    p.add_argument("--build", metavar="MODEL", help="also time building this open_clip model with and without random init")
    args = p.parse_args()

    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        image = tmp_path / "scene.png"
        Image.effect_mandelbrot((128, 128), (-2.0, -1.5, 1.0, 1.5), 60).convert("RGB").save(image)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OVFRAME_CACHE_DIR": str(tmp_path / "cache")}
        py = sys.executable
        first_image = [py, "-m", "ovframe", "predict", str(image), "--vocab", "red star, sand, blue circle", "--out"]
        commands = {
            "import torch": lambda run: [py, "-c", "import torch"],
            "+ torch._dynamo": lambda run: [py, "-c", "import torch, torch._dynamo"],
            "+ timm, open_clip": lambda run: [py, "-c", "import torch, timm, open_clip"],
            "first image (ovframe predict, demo)": lambda run: [*first_image, str(tmp_path / f"out{run}")],
            "ovframe --help": lambda run: [py, "-m", "ovframe", "--help"],
        }
        for make in commands.values():  # untimed: text cache, OS file cache, .pyc files
            timed(make(-1), env)
        times: dict[str, list[tuple[float, float]]] = {k: [] for k in commands}
        for run in range(args.repeats):
            for name, make in commands.items():
                times[name].append(timed(make(run), env))
        base_wall = statistics.median(w for w, _ in times["import torch"])
        base_cpu = min(c for _, c in times["import torch"])
        print(f"python {sys.version.split()[0]}, {args.repeats} rounds, OMP_NUM_THREADS=1; ratios to `import torch`")
        print("| command | wall best s | wall median s | wall median / import torch | CPU best s | CPU best / import torch |")
        print("|---|---|---|---|---|---|")
        for name, runs in times.items():
            walls, cpus = [w for w, _ in runs], [c for _, c in runs]
            median = statistics.median(walls)
            print(
                f"| {name} | {min(walls):.2f} | {median:.2f} | {median / base_wall:.2f}x | {min(cpus):.2f} | "
                f"{min(cpus) / base_cpu:.2f}x |"
            )
        if args.imports:
            print("\nimported by the first image (cumulative import time, python -X importtime):")
            for name, seconds in import_tree([*first_image, str(tmp_path / "out-imports")], env):
                print(f"  {name:<28} {seconds:.2f} s")
    if args.build:
        usual, skipped = build_times(args.build, args.repeats)
        print(f"\nbuilding {args.build} (CPU, best of {args.repeats}): {usual:.2f} s with random init, {skipped:.2f} s under skip_init")


if __name__ == "__main__":
    main()
