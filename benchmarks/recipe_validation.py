"""Time and peak memory of `ovframe validate` on large recipes, each in a fresh process.

    OMP_NUM_THREADS=1 python benchmarks/recipe_validation.py [--mb 5] [--axes 15] [--repeats 3]

Cases (written to a temporary folder):
  small    the demo recipe as shipped: the cost of starting the command (imports, plugins)
  names    a recipe of about --mb MB whose vocabulary lists 400k-odd class names (one a line)
  junk     a recipe of about --mb MB of nested `x-` scratch data (mappings of lists of numbers)
  matrix   a recipe set over the demo recipe with --axes axes of two values each (2**axes variants)
Each case runs `ovframe validate FILE` in a new process; wall time (best of --repeats) and the peak
resident memory of that process (ru_maxrss) are printed, with its CPU time (the
machine may be shared: CPU seconds are the steadier figure). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "recipes" / "demo.yaml"

# (dotted key, two values) per matrix axis: every one is a real option of the demo pipeline
AXES = [
    ("fuser.lam", [0.6, 0.7]),
    ("classifier.mask_thr", [0.4, 0.5]),
    ("classifier.expand_ratio", [1.0, 1.2]),
    ("classifier.temperature", [50.0, 100.0]),
    ("classifier.chunk_size", [32, 64]),
    ("text_encoder.batch_size", [128, 256]),
    ("task.batch_size", [4, 8]),
    ("task.visualize", [0, 8]),
    ("proposals.test_short_side", [128, 160]),
    ("proposals.dropout", [0.0, 0.1]),
    ("seed", [0, 1]),
    ("adapter.depth", [2, 3]),
    ("adapter.init_std", [0.02, 0.01]),
    ("dataset.seed", [0, 1]),
    ("classifier.fill", ["mean", "zero"]),
    ("text_encoder.templates", ["vild", "single"]),
    ("task.save_every", [10.0, 20.0]),
]


def _write_until(path: Path, head: str, line: str, size: int) -> Path:
    """`head`, then `line` formatted with i = 0, 1, 2 ... until the file holds `size` bytes."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(head)
        i = 0
        while f.tell() < size:
            f.write(line.format(i=i))
            i += 1
    return path


def write_cases(folder: Path, mb: float, axes: int) -> dict[str, Path]:
    size = int(mb * 1e6)
    cases = {"small": DEMO}
    cases["names"] = _write_until(
        folder / "names.yaml",
        f"extends: {DEMO}\nname: names\ntask: {{plugin: predict, inputs: [x.png]}}\ndataset: null\nvocabulary:\n  names:\n",
        "    - class number {i}\n", size,
    )
    cases["junk"] = _write_until(
        folder / "junk.yaml", f"extends: {DEMO}\nname: junk\nx-data:\n", "  key{i}: {{a: [1, 2.5, three], b: {{c: {i}}}}}\n", size
    )
    matrix = folder / "matrix.yaml"
    lines = [f"name: big-matrix\nbase: {DEMO}\nmatrix:"]
    lines += [f"  {key}: {values}" for key, values in AXES[:axes]]
    matrix.write_text("\n".join(lines) + "\n", encoding="utf-8")
    cases["matrix"] = matrix
    return cases


def measure(path: Path) -> tuple[float, float, float, int, str]:
    """(wall seconds, CPU seconds, peak RSS in MB, exit code, last line of output) of one `ovframe validate` process."""
    code = (
        "import resource, sys\nfrom ovframe.cli import main\nrc = main(['validate', sys.argv[1]])\n"
        "print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\nsys.exit(rc)"
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    rss = next((int(line.split()[1]) for line in out.stderr.splitlines() if line.startswith("MAXRSS")), 0)
    lines = [line for line in (out.stdout + out.stderr).strip().splitlines() if not line.startswith("MAXRSS")]
    return seconds, cpu, rss / 1024, out.returncode, (lines or [""])[-1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mb", type=float, default=5.0, help="size of the large recipes (default: %(default)s)")
    p.add_argument("--axes", type=int, default=15, help=f"matrix axes, at most {len(AXES)} (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cases = write_cases(Path(tmp), args.mb, min(args.axes, len(AXES)))
        print(f"{'case':<8} {'file MB':>8} {'wall s':>8} {'CPU s':>8} {'peak MB':>8}  exit  output")
        for name, path in cases.items():
            runs = [measure(path) for _ in range(args.repeats)]
            seconds, cpu = min(r[0] for r in runs), min(r[1] for r in runs)
            rss = max(r[2] for r in runs)
            rc, last = runs[-1][3], runs[-1][4]
            print(f"{name:<8} {os.path.getsize(path) / 1e6:>8.2f} {seconds:>8.2f} {cpu:>8.2f} {rss:>8.0f}  {rc:>4}  {last[:80]}")


if __name__ == "__main__":
    main()
