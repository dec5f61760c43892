"""What a mining run found, as tables and a picture: pairs per phrase (the long tail the paper reports
as 1.3M pairs over 27K nouns)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from ovframe.io import atomic_path, write_csv


def log_bins(counts: Sequence[int], n_bins: int) -> list[tuple[int, int]]:
    """Inclusive [lo, hi] ranges: 1, 2, 3-4, 5-8 ... (powers of two), merged at the top to at most n_bins."""
    top = max(counts, default=1)
    edges = [1]
    while edges[-1] < top:
        edges.append(edges[-1] * 2)
    bins = [(1, 1)] + [(edges[i - 1] + 1, edges[i]) for i in range(1, len(edges))]
    if len(bins) > n_bins:
        bins = bins[: n_bins - 1] + [(bins[n_bins - 1][0], bins[-1][1])]
    return bins


def histogram_rows(pairs_per_phrase: dict[str, int], n_bins: int) -> list[dict[str, Any]]:
    counts = list(pairs_per_phrase.values())
    rows = []
    for lo, hi in log_bins(counts, n_bins):
        inside = [c for c in counts if lo <= c <= hi]
        rows.append({"pairs_per_phrase": f"{lo}" if lo == hi else f"{lo}-{hi}", "lo": lo, "hi": hi,
                     "phrases": len(inside), "pairs": sum(inside)})
    return rows


def write_histogram(path: Path, rows: list[dict[str, Any]], title: str) -> None:
    """A bar chart (PIL): phrases per bin on a log scale, each bar labelled with its count."""
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.load_default(size=14)
        small = ImageFont.load_default(size=12)
    except TypeError:  # Pillow < 10.1
        font = small = ImageFont.load_default()
    width, height = 120 + 64 * len(rows), 420
    left, right, top, bottom = 70, 20, 50, 70
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    draw.text((left, 12), title, fill="black", font=font)
    peak = max((r["phrases"] for r in rows), default=1) or 1
    decades = max(1, math.ceil(math.log10(peak + 1)))
    plot_h = height - top - bottom

    def y_of(value: float) -> float:
        return height - bottom - plot_h * math.log10(1 + value) / decades

    for d in range(decades + 1):  # grid lines at 1, 10, 100 ... phrases
        y = y_of(10**d - 1 if d else 0)
        draw.line([(left, y), (width - right, y)], fill=(225, 225, 225))
        draw.text((8, y - 7), f"{10**d - 1 if d == 0 else 10**d:,}" if d else "0", fill="black", font=small)
    bar_w = (width - left - right) / max(1, len(rows))
    for i, r in enumerate(rows):
        x0, x1 = left + i * bar_w + 6, left + (i + 1) * bar_w - 6
        y = y_of(r["phrases"])
        draw.rectangle([x0, y, x1, height - bottom], fill=(70, 120, 200), outline=(30, 60, 120))
        draw.text((x0, y - 16), str(r["phrases"]), fill="black", font=small)
        draw.text((x0, height - bottom + 6), r["pairs_per_phrase"], fill="black", font=small)
    draw.line([(left, height - bottom), (width - right, height - bottom)], fill="black")
    draw.line([(left, top - 10), (left, height - bottom)], fill="black")
    draw.text((left, height - bottom + 28), "pairs per phrase (bins)   |   bar height: phrases (log scale)", fill="black", font=small)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def write_tables(out_dir: Path, phrases: dict[str, list[float]], extracted: dict[str, int], n_bins: int, title: str) -> list[dict[str, Any]]:
    """phrases.csv (every phrase: pairs, mean score, times said), pairs_per_phrase.csv and .png."""
    rows = [
        {"phrase": p, "pairs": int(v[0]), "mean_score": v[1] / v[0] if v[0] else float("nan"), "mentions": extracted.get(p, 0)}
        for p, v in phrases.items()
    ]
    for p, n in extracted.items():
        if p not in phrases:
            rows.append({"phrase": p, "pairs": 0, "mean_score": float("nan"), "mentions": n})
    rows.sort(key=lambda r: (-r["pairs"], -r["mentions"], r["phrase"]))
    write_csv(out_dir / "phrases.csv", rows, ["phrase", "pairs", "mean_score", "mentions"])
    hist = histogram_rows({p: int(v[0]) for p, v in phrases.items() if v[0]}, n_bins)
    write_csv(out_dir / "pairs_per_phrase.csv", hist, ["pairs_per_phrase", "lo", "hi", "phrases", "pairs"])
    write_histogram(out_dir / "pairs_per_phrase.png", hist, title)
    return hist
