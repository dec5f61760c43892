"""Running a recipe set: every variant in turn, one results table (a failing variant is a row, not the end)."""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path
from typing import Any, Sequence

from .errors import OvframeError, RecipeError
from .io import markdown_table, write_csv, write_json, write_text
from .recipes import RecipeSet
from .recipes.resolve import apply_overrides, place_by_overrides
from .recipes.schema import validate
from .registry import Registry
from .runner import run_recipe

log = logging.getLogger("ovframe")

# Metrics shown first in the table when a task reports them; any other scalar follows.
PREFERRED = ("mIoU", "mIoU_seen", "mIoU_unseen", "hIoU", "fwIoU", "mACC", "pACC", "images", "images_failed")


def run_set(rset: RecipeSet, registry: Registry, overrides: Sequence[str] = (), *, fresh: bool = False) -> int:
    """Run every variant; write runs/<set>/results.{md,csv,json} after each. Exit code 1 if any failed."""
    rows: list[dict[str, Any]] = []
    out_dir: Path | None = None
    for i, variant in enumerate(rset.variants, 1):
        row: dict[str, Any] = {"variant": variant.name, **{k: _short(v) for k, v in variant.settings.items()}}
        print(f"[{i}/{len(rset.variants)}] {rset.name}/{variant.name}", file=sys.stderr)
        try:
            tree = place_by_overrides(apply_overrides(variant.tree, overrides, registry, str(rset.path)), overrides, "output_dir")
            recipe = validate(tree, registry, f"{rset.path} [{variant.name}]")
            out_dir = Path(recipe.top.output_dir)
            metrics = run_recipe(recipe, registry, fresh=fresh)
            row["status"] = "ok"
            row.update({k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        except (OvframeError, Exception) as e:  # one variant's failure must not stop the others
            row["status"] = "failed"
            row["error"] = str(e).splitlines()[0] if str(e) else type(e).__name__
            if not isinstance(e, (OvframeError, RecipeError)):
                log.error("variant %s failed:\n%s", variant.name, traceback.format_exc())
            print(f"  failed: {e}", file=sys.stderr)
        rows.append(row)
        if out_dir is not None:
            write_results(out_dir, rows)
    if out_dir is None:
        raise RecipeError([(None, "", f"{rset.path}: no variant could be validated")])
    print(markdown_table(rows, _columns(rows)))
    print(f"results: {out_dir / 'results.md'}", file=sys.stderr)
    return 1 if any(r["status"] == "failed" for r in rows) else 0


def _short(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, bool)) or value is None else str(value)


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
    write_text(out_dir / "results.md", markdown_table(rows, columns))
    write_csv(out_dir / "results.csv", rows, columns)
    write_json(out_dir / "results.json", [{k: r.get(k) for k in columns if k in r} for r in rows])


__all__ = ["run_set", "write_results"]
