"""Classifying only the proposals that matter: CLIP forwards per image against mIoU, on the demo.

    OMP_NUM_THREADS=1 python benchmarks/skip_proposals.py [--images 200] [--seeds 1 0] [--quick] [--only TEXT ...]

recipes/demo.yaml (the shipped tiny MaskFormer, 24 proposals per image, tiny CLIP with MPT, geometric
ensemble) evaluated with the fuser's `skip` option set as each row says, on the synth val split under
each --seeds (seed 0 is the demo's images; seed 1 other images of the same classes, where a setting is
chosen before it is reported on seed 0). Per setting: regions classified per image (CLIP forwards),
the reduction against classifying every proposal, and mIoU (all / seen / unseen) and its change.
Figures are printed as a Markdown table; nothing is asserted.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SETTINGS: list[tuple[str, dict | None]] = [
    ("every proposal (reference)", None),
    ("certify (exact)", {"certify": True}),
    ("share 0.95", {"certify": False, "share_iou": 0.95, "leader": "largest", "min_top_area": False}),
    ("share 0.85", {"certify": False, "share_iou": 0.85, "leader": "largest", "min_top_area": False}),
    ("share 0.7", {"certify": False, "share_iou": 0.7, "leader": "largest", "min_top_area": False}),
    ("top area > 0", {"certify": False, "share_iou": False, "min_top_area": 0.0}),
    ("share 0.9 + top area > 0", {"certify": False, "share_iou": 0.9, "leader": "largest", "min_top_area": 0.0}),
    ("share 0.85 + top area > 0", {"certify": False, "share_iou": 0.85, "leader": "largest", "min_top_area": 0.0}),
    ("share 0.85 + top area > 0.05 %", {"certify": False, "share_iou": 0.85, "leader": "largest", "min_top_area": 0.0005}),
    ("share 0.8 + top area > 0.05 %", {"certify": False, "share_iou": 0.8, "leader": "largest", "min_top_area": 0.0005}),
    ("weightiest: share 0.85", {"certify": False, "share_iou": 0.85, "leader": "weightiest", "min_top_area": False}),
    ("weightiest: share 0.85 + top area > 0.05 %", {"certify": False, "share_iou": 0.85, "leader": "weightiest", "min_top_area": 0.0005}),
    ("weightiest: share 0.85 + top area > 0.1 %", {"certify": False, "share_iou": 0.85, "leader": "weightiest", "min_top_area": 0.001}),
    ("weightiest: share 0.8 + top area > 0.05 %", {"certify": False, "share_iou": 0.8, "leader": "weightiest", "min_top_area": 0.0005}),
    ("no-object <= 0.5", {"certify": False, "share_iou": False, "min_top_area": False, "max_no_object": 0.5}),
    ("area >= 0.5 %", {"certify": False, "share_iou": False, "min_top_area": False, "min_area": 0.005}),
    ("top 8 by objectness", {"certify": False, "share_iou": False, "min_top_area": False, "top_k": 8}),
]
QUICK = {"every proposal (reference)", "certify (exact)", "weightiest: share 0.85 + top area > 0.05 %"}


def overrides(skip: dict | None) -> list[str]:
    if skip is None:
        return ["fuser.skip=null"]
    return [f"fuser.skip.{k}={v if isinstance(v, str) else str(v).lower()}" for k, v in skip.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 0])
    parser.add_argument("--quick", action="store_true", help="only the reference, certify and the recommended setting")
    parser.add_argument("--only", nargs="+", metavar="TEXT", help="only the reference and the rows whose label contains one of these")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from ovframe.recipes import load_recipe
    from ovframe.registry import get_registry
    from ovframe.runner import run_recipe

    registry = get_registry()
    settings = [s for s in SETTINGS if not args.quick or s[0] in QUICK]
    if args.only:
        settings = [s for i, s in enumerate(settings) if i == 0 or any(t in s[0] for t in args.only)]
    for seed in args.seeds:
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            for label, skip in settings:
                recipe = load_recipe(
                    ROOT / "recipes" / "demo.yaml",
                    [f"dataset.seed={seed}", f"task.max_images={args.images}", "task.visualize=0", f"output_dir={tmp}",
                     f"name=skip-{len(rows)}", *overrides(skip)],
                    registry=registry,
                )
                rows.append((label, run_recipe(recipe, registry)))
        ref = rows[0][1]
        print(f"\nsynth val, seed {seed}, {args.images} images ({'the demo' if seed == 0 else 'not the demo'}'s); "
              f"{ref['proposals_per_image']:.0f} proposals per image\n")
        print("| skip | regions / image | fewer | mIoU | change | seen | unseen |")
        print("|---|---|---|---|---|---|---|")
        for label, m in rows:
            fewer = ref["regions_per_image"] / m["regions_per_image"] if m["regions_per_image"] else float("inf")
            print(f"| {label} | {m['regions_per_image']:.2f} | {fewer:.2f}x | {m['mIoU']:.2f} | {m['mIoU'] - ref['mIoU']:+.2f} | "
                  f"{m['mIoU_seen']:.2f} | {m['mIoU_unseen']:.2f} |")


if __name__ == "__main__":
    main()
