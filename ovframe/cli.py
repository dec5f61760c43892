"""The `ovframe` command. Light at start-up: torch and the models load only for commands that run them.

Exit codes: 0 success, 2 bad input (recipe, arguments, missing files), 1 failure at run time.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path
from typing import Sequence

from .errors import BadInput, OvframeError

EPILOG = """\
examples:
  ovframe run demo                                   run a shipped recipe (evaluate, predict, train ...)
  ovframe run synth/tune                             run every variant of a recipe set, one table
  ovframe run demo -o fuser.lam=0.5                  change one value: its own run, runs/demo+fuser.lam=0.5/
  ovframe run my_recipe.yaml                         run a recipe file of your own
  ovframe predict photo.jpg --vocab "cat,sofa,wall"  segment your images with your words
  ovframe serve                                      a web page to segment pictures with your words (the demo models)
  ovframe recipes                                    the shipped recipes, by name
  ovframe validate recipes                           check every recipe under a folder
  ovframe show demo                                  the resolved recipe, every default filled in
  ovframe plugins --json                             installed plugins and their components
  ovframe plugins geometric-ensemble                 one component's options: type, default, description
  ovframe bench demo --images 40                     images/s, ms and share per stage, peak memory
  ovframe export demo --stage classifier             the classifier (with its adapter) as ONNX, checked by onnxruntime

exit codes: 0 success, 2 bad input (recipe, arguments, missing files), 1 failure at run time.
docs: docs/recipes.md, docs/writing-a-plugin.md
"""


def _add_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-o", "--override", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
        help="set a recipe value, e.g. -o fuser.lam=0.6 -o task.max_images=10 (repeatable)",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 too; keep its usage line
        self.print_usage(sys.stderr)
        raise BadInput(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ovframe",
        description="Open-vocabulary semantic segmentation: label every pixel with classes named in free text.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"ovframe {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("run", help="run a recipe or a recipe set", description="Run a recipe (one pipeline) or a recipe set (every variant, one results table). Re-running resumes.")
    p.add_argument("recipe", metavar="RECIPE", help="a recipe or recipe-set YAML file, or a shipped recipe's name (`ovframe recipes`)")
    _add_overrides(p)
    p.add_argument("--fresh", action="store_true", help="start over; the previous run directory is kept as <dir>.prev-<time>")
    p.add_argument("--dry-run", action="store_true", help="validate and list what would run, run nothing")

    p = sub.add_parser("validate", help="check recipes and recipe sets", description="Validate recipe files, or every *.yaml under folders.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="recipe files or folders")
    _add_overrides(p)

    p = sub.add_parser("show", help="print a resolved recipe", description="Print the resolved recipe (extends merged, overrides applied, defaults filled in).")
    p.add_argument("recipe", metavar="RECIPE")
    _add_overrides(p)

    p = sub.add_parser("recipes", help="list the recipes shipped with ovframe", description="List the shipped recipes, by the name `ovframe run NAME` takes, with what each one is.")
    p.add_argument("--paths", action="store_true", help="also print where each file is")

    p = sub.add_parser(
        "plugins", help="list installed plugins and their components, or one component's options",
        description="List plugins, their versions, hooks and the components they add, plugins left out by "
        "OVFRAME_PLUGINS/OVFRAME_BLOCK_PLUGINS, and clashes between plugins. With NAME (a component or a plugin): "
        "its options (type, default, description) and what it needs from a recipe.",
    )
    p.add_argument("name", nargs="?", metavar="NAME", help="a component (geometric-ensemble, clip-masked-crop ...) or a plugin (fusers ...)")
    p.add_argument("--json", action="store_true", help="machine-readable output (with each component's options schema)")

    p = sub.add_parser("predict", help="segment your images with your vocabulary", description="Segment image files and folders with the classes you name; writes overlay PNGs with a legend, label PNGs and JSON.")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER")
    vocab = p.add_mutually_exclusive_group(required=True)
    vocab.add_argument("--vocab", help='comma-separated class names, e.g. "cat,sofa,wall"')
    vocab.add_argument("--vocab-file", help="a text file with one class name per line")
    p.add_argument("--recipe", help="the pipeline to use: a recipe file or a shipped recipe's name (default: demo)")
    p.add_argument("--out", default=None, help="run folder; pictures go to OUT/predictions/ (default: a new folder per call, runs/predict/<date-time>_<classes>)")
    p.add_argument("--batch-size", type=_positive_int, default=None, help="images per pipeline call")
    _add_overrides(p)

    p = sub.add_parser(
        "serve", help="a web demo: segment pictures with your words in the browser",
        description="Serve a web page (Gradio) that segments an uploaded or example picture with the classes you type "
        "and shows the prediction, a legend and each class's share; also an HTTP API (/segment). The recipe's models "
        "load once and stay warm. Needs the demo extra: pip install 'ovframe[demo]'.",
    )
    p.add_argument("recipe", nargs="?", default="demo", metavar="RECIPE", help="a recipe file or a shipped recipe's name (default: demo, the shipped synthetic models)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s, this machine only; 0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=7860, help="port to listen on (default: %(default)s)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: the recipe's)")
    _add_overrides(p)

    p = sub.add_parser("prepare", help="convert a dataset's official download into the layout ovframe reads", description="Convert an official dataset download into the detectron2-style layout its dataset plugin reads.")
    p.add_argument("dataset", metavar="DATASET", help="a dataset plugin name (see `ovframe plugins`)")
    p.add_argument("--source", required=True, help="the official download (folder or archive)")
    p.add_argument("--root", default=None, help="datasets root (default: $DETECTRON2_DATASETS or ./datasets)")
    p.add_argument("--split", dest="splits", action="append", default=None, metavar="SPLIT", help="prepare only this split (val, train; repeatable; default: the dataset's usual ones)")

    p = sub.add_parser(
        "bench", help="measure a recipe's speed and memory per stage",
        description="Steady-state throughput of a recipe's pipeline (warm-up excluded): images/s, ms and share per "
        "stage, peak RSS (and peak CUDA memory on a GPU), as a table (Markdown, CSV) and a bar chart. With --compare, "
        "two recipes measured in turns, side by side as ratios. Writes bench.{md,csv,json,png}.",
    )
    p.add_argument("recipe", metavar="RECIPE", help="a recipe file or a shipped recipe's name")
    p.add_argument("--compare", metavar="OTHER", help="a second recipe to measure in the same run")
    p.add_argument(
        "--compare-override", dest="compare_overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
        help="a value set in the compared recipe only (default OTHER: RECIPE itself); repeatable",
    )
    p.add_argument("--images", type=int, default=20, help="images timed per recipe (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=None, help="images run first and not timed (default: one batch)")
    p.add_argument("--batch-size", type=int, default=None, help="images per pipeline call (default: the recipe task's batch_size, else 1)")
    p.add_argument("--inputs", nargs="+", metavar="IMAGE_OR_FOLDER", help="time these images instead of the recipe's dataset")
    p.add_argument("--out", help="where the report goes (default: <output_dir>/bench/<recipe>[-vs-<other>])")
    _add_overrides(p)

    p = sub.add_parser(
        "export", help="export a stage's network to ONNX, checked against torch",
        description="Export the network of a recipe's stage to ONNX (free batch axis), run it with onnxruntime "
        "and compare its outputs with torch's (fails above the tolerance). Writes STAGE.onnx, STAGE.json (inputs, "
        "outputs, the check, how to use them) and the tensors a deployer needs (STAGE.NAME.npy).",
    )
    p.add_argument("recipe", metavar="RECIPE", help="a recipe file or a shipped recipe's name")
    p.add_argument(
        "--stage", required=True, choices=["classifier", "proposals", "text", "all"],
        help="classifier: the region classifier's image tower with its adapter; proposals: the proposal network; "
        "text: the text tower; all: every one the recipe has",
    )
    p.add_argument("--out", help="output folder (default: <output_dir>/export/<recipe>)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset, 17 or later (default: %(default)s)")
    p.add_argument(
        "--tolerance", type=float, default=1e-4,
        help="fail when max|onnxruntime - torch| exceeds this times max(1, max|torch|) (default: %(default)g)",
    )
    _add_overrides(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        return COMMANDS[args.command](args)
    except BadInput as e:
        print(f"ovframe: error: {e}", file=sys.stderr)
        return 2
    except OvframeError as e:
        print(f"ovframe: failed: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `ovframe plugins | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("ovframe: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        print("ovframe: failed (the traceback above says where)", file=sys.stderr)
        return 1


# -- commands -------------------------------------------------------------------------------


def _load_any(path: str, overrides: Sequence[str], keep: bool = True, raw=None, *, fit: str = "task", runnable: bool = False):
    """A recipe, or the list of a recipe set's variant recipes (with keep=False: a set's variants are
    validated, not kept). `raw`: the file's own tree, when the caller has read it. `fit`: what the command
    does with the recipe's components (ovframe.recipes.schema.Fit): run its task, segment without it, or
    build one. `runnable`: also name the sections its task needs and it lacks (fragments excepted)."""
    from .recipes import expand, is_recipe_set, load_tree, validate_set
    from .recipes.locate import locate_recipe
    from .recipes.resolve import apply_overrides, place_by_overrides
    from .recipes.schema import check_runnable, validate
    from .recipes.source import load_yaml_file
    from .registry import get_registry

    registry = get_registry()
    path = str(locate_recipe(path))
    raw = raw if raw is not None else load_yaml_file(Path(path))
    if is_recipe_set(raw):
        rset = expand(path, raw)
        return rset, validate_set(rset, registry, overrides, keep=keep, runnable=runnable)
    tree = place_by_overrides(apply_overrides(load_tree(path, loaded=raw), overrides, registry, path), overrides)
    recipe = validate(tree, registry, path, fit=fit)  # type: ignore[arg-type]
    if runnable and not recipe.top.abstract:
        check_runnable(recipe, registry)
    return None, recipe


def cmd_validate(args: argparse.Namespace) -> int:
    from .recipes.locate import find_shipped

    files: list[Path] = []
    for item in args.paths:
        path = Path(item)
        if not path.exists():  # `recipes`, `recipes/synth`, `demo`: the shipped ones
            path = find_shipped(item, folder=True) or find_shipped(item) or path
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
        elif path.is_file():
            files.append(path)
        else:
            raise BadInput(f"{item}: no such file or folder, and no shipped recipe of that name")
    failed = 0
    for f in files:
        try:
            rset, recipes = _load_any(str(f), args.overrides, keep=False, runnable=True)
        except BadInput as e:  # every file is checked and reported, whatever is wrong with one
            failed += 1
            print(f"FAIL {f}\n{e}", file=sys.stderr)
            continue
        what = f"recipe set, {len(rset.variants)} variants" if rset else ("fragment" if recipes.top.abstract else "recipe")
        print(f"ok   {f} ({what})")
    if failed:
        raise BadInput(f"{failed} of {len(files)} file(s) have problems")
    if not files:
        raise BadInput(f"no *.yaml files under {' '.join(args.paths)}")
    return 0


def _complete(recipe) -> None:
    if recipe.top.abstract:
        raise BadInput(f"{recipe.origin} is a fragment (abstract: true) to extend, not a recipe to run")


def cmd_show(args: argparse.Namespace) -> int:
    import yaml

    rset, recipes = _load_any(args.recipe, args.overrides)
    docs = recipes if rset else [recipes]
    print("\n---\n".join(yaml.safe_dump(r.resolved(), sort_keys=False, allow_unicode=True) for r in docs), end="")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .registry import get_registry

    registry = get_registry()
    from .recipes import expand, is_recipe_set
    from .recipes.locate import locate_recipe
    from .recipes.source import load_yaml_file

    recipe_path = locate_recipe(args.recipe)
    raw = load_yaml_file(recipe_path)
    if is_recipe_set(raw):
        from .sets_runner import run_set

        rset = expand(recipe_path, raw)
        if args.dry_run:
            from .recipes import validate_set

            validate_set(rset, registry, args.overrides, keep=False, runnable=True)
            print(f"{rset.name}: {len(rset.variants)} variants")
            for v in rset.variants:
                settings = ", ".join(f"{k}={v2}" for k, v2 in v.settings.items())
                print(f"  {v.name}: {settings or '(the base recipe)'}")
            return 0
        return run_set(rset, registry, args.overrides, fresh=args.fresh)
    _, recipe = _load_any(str(recipe_path), args.overrides, raw=raw)
    _complete(recipe)
    if args.dry_run:
        import yaml

        from .recipes.schema import check_runnable

        check_runnable(recipe, registry)
        print(yaml.safe_dump(recipe.resolved(), sort_keys=False), end="")
        return 0
    from .runner import run_recipe

    metrics = run_recipe(recipe, registry, fresh=args.fresh)
    print(json.dumps(metrics, indent=2, default=str))
    return 0


def cmd_recipes(args: argparse.Namespace) -> int:
    from .recipes.locate import shipped_recipes
    from .recipes.source import load_yaml_file

    rows = []
    for name, path in shipped_recipes():
        data = load_yaml_file(path).data
        data = data if isinstance(data, dict) else {}
        kind = "set" if "base" in data else "fragment" if data.get("abstract") else "recipe"
        about = str(data.get("description", "")).strip().splitlines() or _leading_comment(path)
        rows.append((name, kind, about[0] if about else "", path))
    if not rows:
        raise BadInput("no shipped recipes are installed (the package ovframe_recipes is missing); reinstall ovframe")
    width = max(len(r[0]) for r in rows)
    for name, kind, about, path in rows:
        print(f"{name:<{width}}  {kind:<8}  {about}" + (f"  [{path}]" if args.paths else ""))
    return 0


def _leading_comment(path: Path) -> list[str]:
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# ").rstrip())
    return [line for line in lines if line]


def cmd_plugins(args: argparse.Namespace) -> int:
    from .registry import KINDS, get_registry

    registry = get_registry(allow_conflicts=True)  # this command shows the clashes the others refuse to run with
    if args.name:
        return _plugin_details(registry, args.name, args.json)
    if args.json:
        out = {
            "plugins": [
                {
                    "name": p.name,
                    "distribution": p.distribution,
                    "version": p.version,
                    "module": p.module,
                    "hooks": p.hooks,
                    "components": p.components,
                    **({"error": p.error} if p.error else {}),
                }
                for p in registry.plugins.values()
            ],
            "components": {
                kind: [
                    {
                        "name": spec.name,
                        "plugin": spec.plugin,
                        "summary": spec.summary,
                        "options": spec.config.model_json_schema(),
                    }
                    for spec in sorted(registry.components[kind].values(), key=lambda s: s.name)
                ]
                for kind in KINDS
            },
            "not_loaded": [{"name": s.name, "distribution": s.distribution, "reason": s.reason} for s in registry.skipped.values()],
            "warnings": registry.warnings,
            "conflicts": registry.conflicts,
        }
        print(json.dumps(out, indent=2))
        return 0
    for p in registry.plugins.values():
        status = f"  FAILED TO LOAD: {p.error}" if p.error else ""
        print(f"{p.name} ({p.distribution} {p.version}){status}")
        for kind, names in p.components.items():
            print(f"  {KINDS[kind].label}: {', '.join(names)}")
    for skipped in registry.skipped.values():
        print(f"{skipped.name} ({skipped.distribution})  NOT LOADED: {skipped.reason}")
    print()
    for kind, info in KINDS.items():
        specs = sorted(registry.components[kind].values(), key=lambda s: s.name)
        print(f"{info.label} (`{kind}:`)")
        for spec in specs:
            print(f"  {spec.name:<28} {spec.summary}")
        if not specs:
            print("  (none)")
    for warning in registry.warnings:
        print(f"\nwarning: {warning}")
    if registry.conflicts:
        from .registry import conflicts_message

        print(f"\nCONFLICTS: every other command refuses to run until they are resolved.\n{conflicts_message(registry.conflicts)}")
    print("\nOne component's options: ovframe plugins NAME")
    return 0


def _plugin_details(registry, name: str, as_json: bool) -> int:
    """`ovframe plugins NAME`: the components called NAME (any kind), else those of plugin NAME."""
    import difflib

    from .describe import declarations, docstring, options, options_table
    from .registry import KINDS

    specs = [registry.components[kind][name] for kind in KINDS if name in registry.components[kind]]
    if not specs and name in registry.plugins:
        specs = [registry.components[kind][n] for kind, names in registry.plugins[name].components.items()
                 for n in names if registry.components[kind][n].plugin == name]
    if not specs:
        skipped = registry.skipped.get(name) or next(
            (s for s in (registry.skipped_provider(kind, name) for kind in KINDS) if s is not None), None)
        if skipped is not None:
            raise BadInput(f"{name!r}: plugin {skipped.name!r} ({skipped.distribution}) is installed but not loaded: {skipped.reason}")
        known = sorted({n for table in registry.components.values() for n in table} | set(registry.plugins))
        close = difflib.get_close_matches(name, known, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else " `ovframe plugins` lists them."
        raise BadInput(f"no component or plugin is called {name!r}.{hint}")
    if as_json:
        out = [
            {
                "kind": spec.kind, "name": spec.name, "plugin": spec.plugin, "distribution": spec.distribution,
                "version": registry.plugins[spec.plugin].version, "description": docstring(spec.config),
                "declares": declarations(spec.config, spec.kind),
                "options": [o.to_json() for o in options(spec.config)], "schema": spec.config.model_json_schema(),
            }
            for spec in specs
        ]
        print(json.dumps({"components": out}, indent=2, default=str))
        return 0
    for i, spec in enumerate(specs):
        plugin = registry.plugins[spec.plugin]
        print(("\n" if i else "") + f"{KINDS[spec.kind].label[:-1]} {spec.name}  (recipe section `{spec.kind}:`; plugin {plugin.name}, {plugin.distribution} {plugin.version})")
        for line in docstring(spec.config).splitlines():
            print(f"  {line}".rstrip())
        declared = declarations(spec.config, spec.kind)
        if declared:
            print("  declares: " + ", ".join(f"{k}={v if v == 'depends on options' else json.dumps(v)}" for k, v in declared.items()))
        print()
        print(options_table(spec.config))
        print(f"\n  in a recipe: {spec.kind}: {{plugin: {spec.name}, OPTION: VALUE ...}}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .api import vocabulary_names
    from .errors import Location
    from .recipes.locate import locate_recipe
    from .recipes.resolve import apply_override, apply_overrides, load_tree
    from .recipes.schema import validate
    from .registry import get_registry
    from .runner import read_class_file, run_recipe

    names = list(vocabulary_names(args.vocab if args.vocab is not None else read_class_file(args.vocab_file)))
    recipe_path = str(locate_recipe(args.recipe or "demo"))
    registry = get_registry()
    tree = load_tree(recipe_path)
    here = Location("predict command line")
    task = {"plugin": "predict", "inputs": list(args.inputs)}
    if args.batch_size is not None:
        task["batch_size"] = args.batch_size
    for key, value in (("task", None), ("task", task), ("vocabulary", None), ("vocabulary", {"names": names}), ("dataset", None)):
        tree = apply_override(tree, (key,), value, here)
    tree = apply_overrides(tree, args.overrides, registry, recipe_path)
    recipe = validate(tree, registry, recipe_path)
    out = _predict_dir(args.out, recipe, names)
    run_recipe(recipe, registry, out_dir=out)
    print((out / "summary.md").read_text(encoding="utf-8"), end="")
    print(f"predictions: {out / 'predictions'} (overlay and label PNGs, JSON with COCO RLE segments, coco.json)")
    return 0


def _predict_dir(out: str | None, recipe, names: list[str]) -> Path:
    """--out as given (refused if it holds another call's predictions), else a new folder per call:
    <output_dir>/predict/<date-time>_<first class names>."""
    import time

    from .recipes.resolve import slug
    from .runner import _dump_recipe

    if out is not None:
        saved = Path(out) / "recipe.yaml"
        if saved.exists() and saved.read_text(encoding="utf-8", errors="replace") != _dump_recipe(recipe):
            raise BadInput(
                f"{out} holds predictions of another recipe, vocabulary or set of images (see {saved}); "
                f"choose another --out, or leave --out out: every call then gets a folder of its own"
            )
        return Path(out)
    classes = slug("-".join(names))[:40].rstrip("-.") or "predict"
    base = Path(recipe.top.output_dir) / "predict" / f"{time.strftime('%Y%m%d-%H%M%S')}_{classes}"
    path, n = base, 1
    while path.exists():  # two calls within a second
        n += 1
        path = base.with_name(f"{base.name}_{n}")
    return path


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import serve

    serve(args.recipe, overrides=args.overrides, host=args.host, port=args.port, device=args.device)
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    import os

    from .registry import get_registry

    spec = get_registry().get("dataset", args.dataset)
    root = args.root or os.environ.get("DETECTRON2_DATASETS", "datasets")
    options = {"splits": args.splits} if args.splits else {}
    spec.load().prepare(args.source, root, **options)
    print(f"{args.dataset} prepared under {root}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import re

    from .bench import BenchJob, check_counts, check_recipe, labels_for, run_bench
    from .bench_report import markdown, write_report

    check_counts(args.images, args.warmup, args.batch_size)
    compare = args.compare or (args.recipe if args.compare_overrides else None)
    specs = [(args.recipe, list(args.overrides))]
    if compare is not None:
        specs.append((compare, list(args.overrides) + list(args.compare_overrides)))
    recipes = []
    for path, overrides in specs:  # validated here first: a bad recipe fails before any child starts
        rset, recipe = _load_any(path, overrides, fit="pipeline")
        if rset is not None:
            raise BadInput(f"{path} is a recipe set; bench takes single recipes (compare two with --compare)")
        _complete(recipe)
        check_recipe(recipe, args.inputs)
        recipes.append(recipe)
    for item in args.inputs or []:
        if not Path(item).exists():
            raise BadInput(f"--inputs {item}: no such file or folder")
    labels = labels_for([r.name for r in recipes], [p for p, _ in specs])
    jobs = [BenchJob(path, overrides, args.images, args.warmup, args.batch_size, args.inputs) for path, overrides in specs]
    from tqdm.auto import tqdm

    results = run_bench(jobs, labels, progress=lambda it, total: tqdm(it, total=total, desc="bench", disable=None, leave=False))
    folder = "-vs-".join(re.sub(r"[^A-Za-z0-9_.+=-]+", "_", label).strip("_") for label in labels)
    out_dir = Path(args.out) if args.out else Path(recipes[0].top.output_dir) / "bench" / folder
    paths = write_report(results, out_dir)
    print(markdown(results))
    print(f"written: {', '.join(str(p) for p in paths.values())}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import STAGES, export_recipe

    if not args.tolerance > 0:
        raise BadInput(f"--tolerance must be positive (got {args.tolerance})")
    rset, recipe = _load_any(args.recipe, args.overrides, fit="none")
    if rset is not None:
        raise BadInput(f"{args.recipe} is a recipe set; export one of its variants' recipes")
    _complete(recipe)
    if args.stage == "all":
        stages = [s for s, kind in STAGES.items() if recipe.section(kind) is not None]
        if not stages:
            raise BadInput(f"{recipe.origin} has none of the sections export knows: {', '.join(f'{k}:' for k in STAGES.values())}")
    else:
        stages = [args.stage]
    out_dir = Path(args.out) if args.out else Path(recipe.top.output_dir) / "export" / recipe.name
    from .io import markdown_table

    rows, failed = [], []
    for manifest in export_recipe(recipe, stages, out_dir, args.opset, args.tolerance):
        stage = manifest["stage"]
        size = (out_dir / manifest["file"]).stat().st_size / 2**20
        print(f"{stage}: {out_dir / manifest['file']} ({size:.1f} MiB), {out_dir / f'{stage}.json'}")
        for check in manifest["check"]["results"]:
            rows.append({"stage": stage, "output": check["output"], "shape": "x".join(map(str, check["shape"])),
                         "max abs diff": f"{check['max_abs_diff']:.3g}", "allowed": f"{check['allowed']:.3g}",
                         "ok": "yes" if check["ok"] else "NO"})
            if not check["ok"]:
                failed.append(f"{stage}.{check['output']}")
    print("\nonnxruntime vs torch:\n" + markdown_table(rows))
    if failed:
        raise OvframeError(f"onnxruntime differs from torch beyond the tolerance for {', '.join(failed)} (the files are kept)")
    return 0


COMMANDS = {
    "run": cmd_run,
    "validate": cmd_validate,
    "show": cmd_show,
    "recipes": cmd_recipes,
    "plugins": cmd_plugins,
    "predict": cmd_predict,
    "serve": cmd_serve,
    "prepare": cmd_prepare,
    "bench": cmd_bench,
    "export": cmd_export,
}
