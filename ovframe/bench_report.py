"""The report of `ovframe bench`: a Markdown table (printed and bench.md), bench.csv, bench.json and a bar chart.

Per stage: ms per image and its share of the timed wall time; `other` is the wall time outside every
stage (Python between them), so that the shares of a recipe add up to 100 %. With two recipes, the
second's figures are divided by the first's (a ratio above 1 is slower for times, faster for images/s).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from .bench import BenchResult
from .io import atomic_path, markdown_table, write_csv, write_json

OTHER = "other"
STAGE_COLOURS = {
    "load": (122, 160, 200),
    "propose": (230, 146, 60),
    "classify": (80, 160, 95),
    "fuse": (200, 80, 90),
    OTHER: (170, 170, 170),
}
EXTRA_COLOURS = [(150, 110, 190), (140, 100, 80), (225, 130, 190), (120, 190, 190), (190, 190, 80)]


def rows_of(result: BenchResult) -> list[tuple[str, float, float, int | str]]:
    """(stage, ms per image, share %, calls) for each top-level stage, `other`, and `total`."""
    rows: list[tuple[str, float, float, int | str]] = [
        (s, result.stage_ms(s), result.share(s), result.calls.get(s, 0)) for s in result.stage_order()
    ]
    other_ms = 1000.0 * result.other_s / result.images if result.images else math.nan
    other_share = 100.0 * result.other_s / result.wall_s if result.wall_s > 0 else math.nan
    rows.append((OTHER, other_ms, other_share, ""))
    rows.append(("total", result.ms_per_image, sum(r[2] for r in rows if not is_substage(r[0])), ""))
    return rows


def is_substage(stage: str) -> bool:
    """`classify/crop` is timed inside `classify`: listed, never added to the others."""
    return "/" in stage


def _ratio(b: float | None, a: float | None) -> str:
    if a is None or b is None or not a or math.isnan(a) or math.isnan(b):
        return ""
    return f"{b / a:.2f}x"


def _num(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def summary_rows(results: Sequence[BenchResult]) -> list[dict[str, Any]]:
    metrics = [
        ("images/s", lambda r: r.images_per_s, 2),
        ("ms/image", lambda r: r.ms_per_image, 1),
        ("peak RSS (MiB)", lambda r: r.peak_rss_mib, 0),
        ("peak CUDA memory (MiB)", lambda r: r.peak_cuda_mib, 0),
        ("text encoding, once (ms)", lambda r: r.first_text_ms, 1),
    ]
    out = []
    for name, get, digits in metrics:
        values = [get(r) for r in results]
        if all(v is None for v in values):
            continue
        row: dict[str, Any] = {"metric": name, **{r.label: _num(v, digits) for r, v in zip(results, values)}}
        if len(results) == 2:
            row[f"{results[1].label} / {results[0].label}"] = _ratio(values[1], values[0])
        out.append(row)
    return out


def stage_table_rows(results: Sequence[BenchResult]) -> list[dict[str, Any]]:
    per = [{stage: (ms, share, calls) for stage, ms, share, calls in rows_of(r)} for r in results]
    stages: list[str] = []
    for table in per:
        stages += [s for s in table if s not in stages and s not in (OTHER, "total")]
    stages += [OTHER, "total"]
    out = []
    for stage in stages:
        row: dict[str, Any] = {"stage": stage}
        for r, table in zip(results, per):
            ms, share, calls = table.get(stage, (0.0, 0.0, 0))
            prefix = f"{r.label} " if len(results) > 1 else ""
            row[f"{prefix}ms/image"] = _num(ms, 2)
            row[f"{prefix}share"] = f"{share:.1f} %"
            if len(results) == 1:
                row["calls"] = calls
        if len(results) == 2:
            a = per[0].get(stage, (math.nan,))[0]
            b = per[1].get(stage, (math.nan,))[0]
            row[f"{results[1].label} / {results[0].label}"] = _ratio(b, a)
        out.append(row)
    return out


def header(results: Sequence[BenchResult]) -> str:
    lines = []
    for r in results:
        lines.append(
            f"{r.label}: {r.images} images from {r.images_from} after {r.warmup} warm-up, batch {r.batch_size}, "
            f"{r.vocabulary} classes, {r.device}, {r.threads} thread(s)"
            + (f"; {len(r.failed)} unreadable image(s) skipped" if r.failed else "")
        )
    return "\n".join(lines)


def markdown(results: Sequence[BenchResult]) -> str:
    return f"{header(results)}\n\n{markdown_table(stage_table_rows(results))}\n{markdown_table(summary_rows(results))}"


def csv_rows(results: Sequence[BenchResult]) -> list[dict[str, Any]]:
    out = []
    for r in results:
        for stage, ms, share, calls in rows_of(r):
            out.append({"recipe": r.label, "stage": stage, "ms_per_image": ms, "share_pct": share, "calls": calls})
    return out


def chart(results: Sequence[BenchResult], title: str) -> "Any":
    """A PIL image: one horizontal bar per recipe, its ms per image stacked by stage, on one scale."""
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.load_default(size=15)
        small = ImageFont.load_default(size=13)
    except TypeError:  # Pillow < 10.1
        font = small = ImageFont.load_default()
    per = [[row for row in rows_of(r)[:-1] if not is_substage(row[0])] for r in results]  # stacked: top-level only
    stages: list[str] = []
    for rows in per:
        stages += [s for s, *_ in rows if s not in stages]
    colours = {}
    extra = iter(EXTRA_COLOURS * 4)
    for s in stages:
        colours[s] = STAGE_COLOURS.get(s) or next(extra)
    label_w = max(120, max(int(font.getlength(r.label)) for r in results) + 20)
    bar_w, bar_h, gap, top = 620, 34, 26, 48
    width = label_w + bar_w + 240
    legend_h = 30
    height = top + len(results) * (bar_h + gap) + 60 + legend_h
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    draw.text((12, 12), title, fill=(0, 0, 0), font=font)
    longest = max((r.ms_per_image for r in results if not math.isnan(r.ms_per_image)), default=1.0) or 1.0
    step = _nice_step(longest / 4)
    axis_max = step * math.ceil(longest / step)
    scale = bar_w / axis_max
    for i, (r, rows) in enumerate(zip(results, per)):
        y = top + i * (bar_h + gap)
        draw.text((12, y + bar_h // 2 - 8), r.label, fill=(0, 0, 0), font=font)
        x = float(label_w)
        for stage, ms, share, _ in rows:
            if math.isnan(ms) or ms <= 0:
                continue
            w = ms * scale
            draw.rectangle([x, y, x + w, y + bar_h], fill=colours[stage], outline=(255, 255, 255))
            text = f"{share:.0f}%"
            if w > small.getlength(text) + 6:
                draw.text((x + 3, y + bar_h // 2 - 7), text, fill=(255, 255, 255), font=small)
            x += w
        figures = [f"{_num(r.ms_per_image, 1)} ms/image", f"{_num(r.images_per_s, 2)} images/s"]
        if r.peak_rss_mib is not None:
            figures.append(f"peak RSS {r.peak_rss_mib:.0f} MiB")
        if r.peak_cuda_mib is not None:
            figures.append(f"CUDA {r.peak_cuda_mib:.0f} MiB")
        draw.text((label_w + bar_w + 10, y + 2), figures[0] + ", " + figures[1], fill=(0, 0, 0), font=small)
        draw.text((label_w + bar_w + 10, y + bar_h // 2 + 2), ", ".join(figures[2:]), fill=(0, 0, 0), font=small)
    axis_y = top + len(results) * (bar_h + gap) - gap + 8
    draw.line([label_w, axis_y, label_w + bar_w, axis_y], fill=(0, 0, 0))
    value = 0.0
    while value <= axis_max + 1e-9:
        tx = label_w + value * scale
        draw.line([tx, axis_y, tx, axis_y + 4], fill=(0, 0, 0))
        text = f"{value:g}"
        draw.text((tx - small.getlength(text) / 2, axis_y + 6), text, fill=(0, 0, 0), font=small)
        value += step
    draw.text((label_w + bar_w / 2 - 40, axis_y + 24), "ms per image", fill=(0, 0, 0), font=small)
    lx, ly = 12, height - legend_h
    for stage in stages:
        draw.rectangle([lx, ly, lx + 14, ly + 14], fill=colours[stage], outline=(0, 0, 0))
        draw.text((lx + 20, ly), stage, fill=(0, 0, 0), font=small)
        lx += 34 + int(small.getlength(stage))
    return img


def _nice_step(raw: float) -> float:
    """The 1, 2, 2.5 or 5 times a power of ten at or above `raw` (axis ticks)."""
    if raw <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)


def write_report(results: Sequence[BenchResult], out_dir: Path) -> dict[str, Path]:
    """bench.md, bench.csv, bench.json and bench.png under `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {k: out_dir / f"bench.{k}" for k in ("md", "csv", "json", "png")}
    with atomic_path(paths["md"]) as tmp:
        tmp.write_text(markdown(results), encoding="utf-8")
    write_csv(paths["csv"], csv_rows(results), columns=["recipe", "stage", "ms_per_image", "share_pct", "calls"])
    write_json(paths["json"], [r.to_dict() for r in results])
    title = " vs ".join(r.label for r in results) + f": ms per image by stage ({results[0].device})"
    with atomic_path(paths["png"]) as tmp:
        chart(results, title).save(tmp, format="PNG")
    return paths
