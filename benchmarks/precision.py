"""`precision: fp32 | bf16 | fp16` on the demo: speed, peak memory and labels against fp32, in one run.

    python benchmarks/precision.py [--device cuda] [--images 64] [--batch-size 8] [--repeats 3]

recipes/demo.yaml's pipeline (the shipped models) on the first --images synth val images, once per
precision, timed after one warm-up batch (CUDA synchronised), best of --repeats. Per precision:
images/s, ms per image of the proposal and classification stages, peak CUDA memory (on a GPU), and
the share of pixels whose label equals fp32's. On a CPU, bf16/fp16 autocast exists but is rarely
faster; the figures that matter come from a GPU. Figures are printed; nothing is asserted.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from ovframe.recipes import load_recipe
    from ovframe.registry import get_registry
    from ovframe.runner import RunContext, Timings

    device = torch.device(args.device)
    registry = get_registry()
    labels: dict[str, torch.Tensor] = {}
    rows = []
    for precision in ("fp32", "bf16", "fp16"):
        recipe = load_recipe(ROOT / "recipes" / "demo.yaml", [f"precision={precision}"], registry=registry)
        ctx = RunContext(recipe, Path("."), registry, device, timings=Timings(device))
        dataset, vocabulary, pipeline = ctx.component("dataset"), ctx.vocabulary(), ctx.pipeline()
        samples = [dataset[i].pin_memory() if device.type == "cuda" else dataset[i] for i in range(args.images)]
        batches = [samples[i : i + args.batch_size] for i in range(0, len(samples), args.batch_size)]
        pipeline.segment(batches[0], vocabulary)  # warm-up: first calls, autotuning, the text embeddings
        best, stages, out = float("inf"), {}, []
        for _ in range(args.repeats):
            pipeline.timings.seconds.clear()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
            start = time.perf_counter()
            out = [seg.labels for batch in batches for seg in pipeline.segment(batch, vocabulary)]
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - start
            if seconds < best:
                best, stages = seconds, dict(pipeline.timings.seconds)
        labels[precision] = torch.stack([x.cpu() for x in out])
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
        rows.append((precision, args.images / best, 1000 * stages.get("propose", 0) / args.images,
                     1000 * stages.get("classify", 0) / args.images, peak))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"demo pipeline on {name}, {args.images} images, batches of {args.batch_size}, best of {args.repeats}")
    print("| precision | images/s | propose ms/img | classify ms/img | peak CUDA MiB | labels = fp32 |")
    print("|---|---|---|---|---|---|")
    for precision, ips, prop, cls, peak in rows:
        same = (labels[precision] == labels["fp32"]).float().mean().item()
        print(f"| {precision} | {ips:.1f} | {prop:.2f} | {cls:.2f} | {peak:.0f} | {100 * same:.2f} % |")


if __name__ == "__main__":
    main()
