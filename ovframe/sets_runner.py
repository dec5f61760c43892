"""Running a recipe set: every variant in turn, one results table (a failing variant is a row, not the end).

Before anything runs, every variant is validated and the files they need are looked at once (a
checkpoint all variants share is checked, and hashed, once). When no variant can run, nothing is
written and the command exits 2 naming every problem once; otherwise the variants that cannot run are
failed rows and the others run. results.json and results.csv keep each error in full; the Markdown
table shows its first line and says where the rest is.
"""

from __future__ import annotations

import logging
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .errors import BadInput, MissingFiles, OvframeError, RecipeError, RequiredFile
from .files import inspect_required_files
from .io import markdown_table, write_csv, write_json, write_text
from .recipes import Recipe, RecipeSet
from .recipes.resolve import apply_overrides, place_by_overrides
from .recipes.schema import check_runnable, validate
from .registry import Registry
from .runner import required_files, run_recipe

log = logging.getLogger("ovframe")

# Metrics shown first in the table when a task reports them; any other scalar follows.
PREFERRED = ("mIoU", "mIoU_seen", "mIoU_unseen", "hIoU", "fwIoU", "mACC", "pACC", "images", "images_failed")
TABLE_ERROR_CHARS = 100
"""An error longer than this (or of several lines) is cut in the Markdown table; results.json has it whole."""


@dataclass
class _Planned:
    """One variant before the run: why it cannot run, if it cannot (its recipe is validated again when
    it runs, from the validation memo: a matrix of thousands of variants is not kept in memory)."""

    index: int
    name: str
    settings: dict[str, Any]
    files: tuple[RequiredFile, ...] = ()
    error: OvframeError | None = None


def _variant_recipe(rset: RecipeSet, index: int, registry: Registry, overrides: Sequence[str], memo: dict) -> Recipe:
    variant = rset.variants[index]
    tree = place_by_overrides(apply_overrides(variant.tree, overrides, registry, str(rset.path)), overrides, "output_dir")
    recipe = validate(tree, registry, f"{rset.path} [{variant.name}]", memo)
    check_runnable(recipe, registry)
    return recipe


def _plan(rset: RecipeSet, registry: Registry, overrides: Sequence[str], memo: dict) -> tuple[list[_Planned], Path]:
    """Validate every variant; then look at the files all of them need, once. Also: where the table goes."""
    plan, out_dir = [], None
    for i, variant in enumerate(rset.variants):
        item = _Planned(i, variant.name, {k: _short(v) for k, v in variant.settings.items()})
        try:
            recipe = _variant_recipe(rset, i, registry, overrides, memo)
            item.files = tuple(required_files(recipe))
            out_dir = out_dir or Path(recipe.top.output_dir)
        except RecipeError as e:
            item.error = e
        plan.append(item)
    if out_dir is None:  # no variant is valid
        problems = [(where, f"[{p.name}] {key}" if key else f"[{p.name}]", msg)
                    for p in plan for where, key, msg in p.error.problems]  # type: ignore[union-attr]
        raise RecipeError(problems)
    missing, wrong = inspect_required_files([f for p in plan for f in p.files])
    absent = {f.path for f in missing}
    for p in plan:
        if p.error is not None:
            continue
        own_missing = _unique([f for f in p.files if f.path in absent])
        own_wrong = list(dict.fromkeys(wrong[(f.path, f.sha256)] for f in p.files if (f.path, f.sha256) in wrong))
        if own_missing:
            p.error = MissingFiles(own_missing)
        elif own_wrong:
            p.error = BadInput("\n".join(own_wrong))
    if all(p.error is not None for p in plan):  # nothing can run: say it once, write nothing
        invalid = [p for p in plan if isinstance(p.error, RecipeError)]
        if missing:
            more = "".join(f"\n[{p.name}] {p.error}" for p in invalid)
            raise MissingFiles(missing, context=f"{rset.name}: none of its {len(plan)} variants can run.{more}")
        raise BadInput("\n".join([*wrong.values(), *(f"[{p.name}] {p.error}" for p in invalid)]))
    return plan, out_dir


def _unique(files: list[RequiredFile]) -> list[RequiredFile]:
    return list({f.path: f for f in files}.values())


def run_set(rset: RecipeSet, registry: Registry, overrides: Sequence[str] = (), *, fresh: bool = False) -> int:
    """Run every variant; write runs/<set>/results.{md,csv,json} after each. Exit code 1 if any failed."""
    memo: dict = {}
    plan, out_dir = _plan(rset, registry, overrides, memo)
    blocked = [p for p in plan if p.error is not None]
    if blocked:
        print(f"{len(blocked)} of {len(plan)} variants cannot run (the others will):", file=sys.stderr)
        shown: set[str] = set()
        for p in blocked:
            text = str(p.error)
            if isinstance(p.error, MissingFiles):
                paths = [f.path for f in p.error.missing]
                print(f"  {p.name}: missing {', '.join(paths)}", file=sys.stderr)
                for f in p.error.missing:  # each missing file with where to get it, once
                    if f.path not in shown:
                        shown.add(f.path)
                        print(f"      {f.path}: {f.what}; get it: {f.how_to_get}", file=sys.stderr)
            else:
                print(f"  {p.name}: {text}", file=sys.stderr)
    rows: list[dict[str, Any]] = []
    for i, p in enumerate(plan, 1):
        row: dict[str, Any] = {"variant": p.name, **p.settings}
        if isinstance(p.error, MissingFiles):  # first line (the table's): which files
            row.update(status="failed", error=f"missing {', '.join(f.path for f in p.error.missing)}\n{p.error}")
        elif p.error is not None:
            row.update(status="failed", error=str(p.error))
        else:
            print(f"[{i}/{len(plan)}] {rset.name}/{p.name}", file=sys.stderr)
            try:
                recipe = _variant_recipe(rset, p.index, registry, overrides, memo)
                metrics = run_recipe(recipe, registry, fresh=fresh, check_files=False)
                row["status"] = "ok"
                row.update({k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
            except Exception as e:  # one variant's failure must not stop the others
                row["status"] = "failed"
                row["error"] = str(e) or type(e).__name__
                if not isinstance(e, OvframeError):
                    row["error"] = f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
                    log.error("variant %s failed:\n%s", p.name, traceback.format_exc())
                print(f"  failed: {_first_line(row['error'])}", file=sys.stderr)
        rows.append(row)
        write_results(out_dir, rows)
    print(markdown_table(table_rows(rows, out_dir), _columns(rows)))
    print(f"results: {out_dir / 'results.md'}", file=sys.stderr)
    return 1 if any(r["status"] == "failed" for r in rows) else 0


def _short(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, bool)) or value is None else str(value)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def table_rows(rows: list[dict[str, Any]], out_dir: Path) -> list[dict[str, Any]]:
    """The rows as the Markdown table shows them: long or multi-line errors cut, pointing at results.json."""
    out = []
    for row in rows:
        error = row.get("error")
        if isinstance(error, str) and (len(error) > TABLE_ERROR_CHARS or "\n" in error.strip()):
            first = _first_line(error)
            first = first if len(first) <= TABLE_ERROR_CHARS else first[: TABLE_ERROR_CHARS - 3] + "..."
            row = {**row, "error": f"{first} (in full: {out_dir / 'results.json'})"}
        out.append(row)
    return out


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    keys: dict[str, None] = {}
    for r in rows:
        keys.update(dict.fromkeys(r))
    first = ["variant", "status"]
    metrics = [k for k in PREFERRED if k in keys]
    settings = [k for k in keys if k not in first and k not in metrics and k != "error" and "." in k]
    rest = [k for k in keys if k not in first + metrics + settings + ["error"]]
    return first + settings + metrics + rest + (["error"] if "error" in keys else [])


def write_results(out_dir: Path, rows: list[dict[str, Any]]) -> None:
    columns = _columns(rows)
    write_text(out_dir / "results.md", markdown_table(table_rows(rows, out_dir), columns))
    write_csv(out_dir / "results.csv", rows, columns)
    write_json(out_dir / "results.json", [{k: r.get(k) for k in columns if k in r} for r in rows])


__all__ = ["run_set", "table_rows", "write_results"]
