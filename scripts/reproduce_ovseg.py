"""Reproduce OVSeg's published table with the authors' released weights, in one command (GPU advised).

    python scripts/reproduce_ovseg.py --weights WEIGHTS_DIR --datasets DETECTRON2_DATASETS [--dry-run]

WEIGHTS_DIR holds the release files (ovseg_swinbase_vitL14_ft_mpt.pth; optionally
ovseg_R101c_vitB16_ft_mpt.pth); the shipped recipes' `weights/...` paths are looked up there. The
datasets are prepared with `ovframe prepare` (docs/datasets/). For each row of the table below whose
files are present: convert the release's MaskFormer if the converted file is missing (the documented
`python -m ovframe_maskformer.convert RELEASE OUT`), run the shipped recipe (`ovframe run`, resumable),
and compare its mIoU with the published one. Prints a Markdown table and writes it, with JSON, under
--output-dir.

Rows whose release file or dataset is missing are skipped, except ade150_mpt and rows named with
--only, which must run. Exit status: 0 every compared row within --tolerance (absolute mIoU points) of
the paper, 1 a row off by more or a run that failed, 2 missing files or bad arguments.
--dry-run checks the files and prints what would be converted and run, and runs nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Row:
    recipe: str
    dataset: str
    model: str
    published: float


PAPER = "OVSeg (Liang et al., CVPR 2023), Table 1 / the authors' README"
ROWS = (
    Row("ade150_mpt", "ADE20K-150", "Swin-B + ViT-L/14", 29.6),
    Row("ade847_mpt", "ADE20K-847", "Swin-B + ViT-L/14", 9.0),
    Row("pc59_mpt", "Pascal Context 59", "Swin-B + ViT-L/14", 55.7),
    Row("pc459_mpt", "Pascal Context 459", "Swin-B + ViT-L/14", 12.4),
    Row("voc20_mpt", "Pascal VOC 20", "Swin-B + ViT-L/14", 94.5),
    Row("ade150_r101c_vitb16_mpt", "ADE20K-150", "R101c + ViT-B/16", 24.8),
)
"""The published figures this script checks. The paper also gives R101c + ViT-B/16 on A-847 7.1,
PC-459 11.0, PC-59 53.3, VOC-20 92.6; no shipped recipe runs those yet."""
ALWAYS = ("ade150_mpt",)
DEFAULT_TOLERANCE = 0.5
PATH_KEYS = {"text_encoder": "pretrained", "classifier": "pretrained", "proposals": "weights", "adapter": "weights"}


@dataclass
class Plan:
    row: Row
    required: bool
    overrides: list[str]
    convert: tuple[str, str] | None = None  # (release, converted file)
    missing: list[Any] = field(default_factory=list)  # RequiredFile
    error: str = ""

    @property
    def runnable(self) -> bool:
        return not self.missing and not self.error


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="scripts/reproduce_ovseg.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", help="folder holding the release files (replaces the recipes' weights/ folder)")
    ap.add_argument("--datasets", help="the prepared datasets' root (sets DETECTRON2_DATASETS)")
    ap.add_argument("--only", help="comma-separated recipe names to run (each must run); default: every row whose files exist")
    ap.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, help="allowed |ours - published| in mIoU points (default %(default)s)")
    ap.add_argument("--published", action="append", default=[], metavar="RECIPE=MIOU",
                    help="set the published figure of a recipe (or add a recipe to the table)")
    ap.add_argument("--output-dir", default="runs/reproduce-ovseg", help="where the runs and the table go (default %(default)s)")
    ap.add_argument("-o", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="recipe override for every run (device=cuda:1, task.batch_size=2 ...); task.max_images makes a run partial, not compared")
    ap.add_argument("--fresh", action="store_true", help="start the runs over (old ones are kept) instead of resuming them")
    ap.add_argument("--dry-run", action="store_true", help="check the files and print the plan; convert and run nothing")
    return ap.parse_args(argv)


def table(args: argparse.Namespace) -> tuple[list[Row], set[str]]:
    rows = {r.recipe: r for r in ROWS}
    for item in args.published:
        name, sep, value = item.partition("=")
        try:
            figure = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise SystemExit(f"--published takes RECIPE=MIOU, got {item!r}")
        old = rows.get(name)
        rows[name] = Row(name, old.dataset if old else "", old.model if old else "", figure)
    only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    if only:
        unknown = [n for n in only if n not in rows]
        if unknown:
            raise SystemExit(f"--only names recipes without a published figure: {', '.join(unknown)} (add them with --published NAME=MIOU)")
        return [rows[n] for n in only], set(only)
    return list(rows.values()), set(ALWAYS) & set(rows)


def section_files(recipe) -> dict[str, list[Any]]:
    return {kind: s.spec.load().required_files(s.config) for kind, s in recipe.sections.items()}


def plan_row(row: Row, required: bool, args: argparse.Namespace, registry) -> Plan:
    from ovframe import OvframeError
    from ovframe.files import resolve_path
    from ovframe.recipes import load_recipe

    overrides = [f"output_dir={args.output_dir}", *args.overrides]
    plan = Plan(row, required, overrides)
    try:
        recipe = load_recipe(row.recipe, overrides, registry=registry)
        if args.weights:  # the recipes' weights/... paths, looked up in --weights
            for kind, key in PATH_KEYS.items():
                section = recipe.section(kind)
                value = getattr(section.config, key, None) if section else None
                if isinstance(value, str) and Path(value).parts[:1] == ("weights",):
                    overrides.append(f"{kind}.{key}={Path(args.weights) / Path(*Path(value).parts[1:])}")
            recipe = load_recipe(row.recipe, overrides, registry=registry)
    except OvframeError as e:
        plan.error = str(e)
        return plan
    files = section_files(recipe)
    missing = {kind: [f for f in found if not Path(f.path).exists()] for kind, found in files.items()}
    proposals, classifier = recipe.section("proposals"), recipe.section("classifier")
    release = getattr(classifier.config, "pretrained", None) if classifier else None
    if missing.get("proposals") and proposals is not None and proposals.spec.name == "maskformer" and release:
        release_path = str(resolve_path(release))
        weights = str(resolve_path(proposals.config.weights))
        if release_path.endswith(".pth") and Path(release_path).is_file() and any(f.path == weights for f in missing["proposals"]):
            plan.convert = (release_path, weights)
            missing["proposals"] = [f for f in missing["proposals"] if f.path != weights]
    seen: set[str] = set()
    plan.missing = [f for found in missing.values() for f in found if not (f.path in seen or seen.add(f.path))]
    return plan


def convert_command(plan: Plan) -> list[str]:
    assert plan.convert is not None
    return [sys.executable, "-m", "ovframe_maskformer.convert", *plan.convert]


def describe(plan: Plan) -> str:
    if plan.error:
        return f"cannot load: {plan.error}"
    if plan.missing:
        if plan.required:
            return "MISSING " + "; ".join(f"{f.path} ({f.what})" for f in plan.missing)
        return "skipped, missing " + ", ".join(f.path for f in plan.missing)
    steps = []
    if plan.convert:
        steps.append("python -m ovframe_maskformer.convert " + " ".join(plan.convert))
    data = os.environ.get("DETECTRON2_DATASETS")
    env = f"DETECTRON2_DATASETS={data} " if data else ""
    steps.append(f"{env}ovframe run {plan.row.recipe} " + " ".join(f"-o {o}" for o in plan.overrides))
    return " && ".join(steps)


def run_plan(plan: Plan, args: argparse.Namespace, registry) -> dict[str, Any]:
    from ovframe import OvframeError
    from ovframe.recipes import load_recipe
    from ovframe.runner import run_recipe

    if plan.convert and not Path(plan.convert[1]).exists():
        Path(plan.convert[1]).parent.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(convert_command(plan))
        if done.returncode != 0:
            return {"error": f"conversion failed (exit {done.returncode}): {' '.join(convert_command(plan))}"}
    try:
        metrics = run_recipe(load_recipe(plan.row.recipe, plan.overrides, registry=registry), registry, fresh=args.fresh)
    except OvframeError as e:
        return {"error": str(e)}
    return dict(metrics)


def verdict(row: Row, metrics: dict[str, Any], tolerance: float, partial: bool) -> tuple[str, bool]:
    """(what to print, whether it counts as a failure)."""
    if "error" in metrics:
        return "run failed", True
    failed = f"; {metrics['images_failed']} images unreadable" if metrics.get("images_failed") else ""
    if partial:
        return f"partial ({metrics.get('images')} images): not compared{failed}", False
    delta = float(metrics["mIoU"]) - row.published
    ok = abs(delta) <= tolerance
    return ("ok" if ok else "OFF") + f" (|Δ| {'<=' if ok else '>'} {tolerance}){failed}", not ok


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.datasets:
        os.environ["DETECTRON2_DATASETS"] = str(Path(args.datasets).expanduser())
    if args.weights and not Path(args.weights).is_dir():
        print(f"--weights {args.weights}: no such folder", file=sys.stderr)
        return 2
    rows, required = table(args)
    from ovframe.registry import get_registry

    registry = get_registry()
    plans = [plan_row(r, r.recipe in required, args, registry) for r in rows]
    print(f"Reproducing {PAPER}; tolerance ±{args.tolerance} mIoU; runs under {args.output_dir}")
    for p in plans:
        print(f"- {p.row.recipe}: {describe(p)}")
    blocking = [p for p in plans if p.required and not p.runnable]
    if blocking:
        print("\nmissing files for required rows (get them as docs/reproducing-ovseg.md says):", file=sys.stderr)
        for p in blocking:
            if p.error:
                print(f"  {p.row.recipe}: {p.error}", file=sys.stderr)
            for f in p.missing:
                print(f"  {p.row.recipe}: {f.path}\n      {f.what}\n      get it: {f.how_to_get}", file=sys.stderr)
        return 2
    todo = [p for p in plans if p.runnable]
    if not todo:
        print("nothing to run: no row has its files", file=sys.stderr)
        return 2
    if args.dry_run:
        print(f"\ndry run: {len(todo)} of {len(plans)} rows would run; nothing was converted or run")
        return 0

    results = []
    failed = False
    partial = any(o.split("=", 1)[0].strip() == "task.max_images" for o in args.overrides)
    for p in todo:
        metrics = run_plan(p, args, registry)
        text, bad = verdict(p.row, metrics, args.tolerance, partial)
        failed |= bad
        results.append({"recipe": p.row.recipe, "dataset": p.row.dataset, "model": p.row.model,
                         "published": p.row.published, "mIoU": metrics.get("mIoU"), "verdict": text,
                         "error": metrics.get("error", ""), "images": metrics.get("images")})
    lines = ["| recipe | dataset | model | published mIoU | ovframe mIoU | Δ | verdict |", "|---|---|---|---|---|---|---|"]
    for r in results:
        ours = "–" if r["mIoU"] is None else f"{r['mIoU']:.2f}"
        delta = "–" if r["mIoU"] is None else f"{r['mIoU'] - r['published']:+.2f}"
        lines.append(f"| {r['recipe']} | {r['dataset']} | {r['model']} | {r['published']:.1f} | {ours} | {delta} | {r['verdict']} |")
    for r in results:
        if r["error"]:
            lines.append(f"\n{r['recipe']}: {r['error']}")
    report = "\n".join(lines)
    print("\n" + report)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "reproduce.md").write_text(report + "\n", encoding="utf-8")
    (out / "reproduce.json").write_text(json.dumps({"tolerance": args.tolerance, "rows": results}, indent=2), encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
