"""Speed and peak memory of SAM's automatic mask generator: ovframe's batched `sam` generator against
segment_anything's own SamAutomaticMaskGenerator used as is, every figure measured in the same run.

    OMP_NUM_THREADS=1 python benchmarks/sam_speed.py [--points 16 32 64] [--images synth128 photo1024] [--filters default off]

SAM ViT-B at random init (the official architecture, nothing downloaded) on two images: a 128 px image of
the synthetic benchmark (val 0) and one 1024 x 768 image (a synthetic scene drawn at that size). Both
paths run the same model with the same options (points_per_batch 64, the package's default): `ours` is the
`sam` proposal generator (its defaults: batched, max_proposals 100), `package` is SamAutomaticMaskGenerator
used as its README shows (binary masks, all of them). `--filters default` keeps SAM's thresholds (predicted IoU 0.88, stability 0.95, NMS 0.7:
a random network's masks mostly fail them); `off` sets them to 0 / 1.0 so that every mask goes through the
whole pipeline (the worst case for memory). Each measurement runs in a fresh process: images/s over
`--runs` calls after `--warmup` untimed ones (wall clock), the CPU seconds of the process per image (user +
system, ru_utime + ru_stime: on a shared machine the wall clock depends on the others' load, the CPU time
far less, so the ratio is taken on CPU time), the load average around it, and the process's peak resident
memory (ru_maxrss). Printed, not asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

FILTERS = {
    "default": {},
    "off": {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "box_nms_thresh": 1.0},
}


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def image_of(name: str):
    import torch

    from ovframe import Sample, get_registry

    if name == "synth128":
        return get_registry().build("dataset", {"plugin": "synth", "split": "val", "num_images": 1})[0]
    dataset = get_registry().build("dataset", {"plugin": "synth", "split": "val", "num_images": 1, "image_size": 1024})
    image = dataset[0].image[:, :768]  # 1024 wide, 768 high
    return Sample(image.contiguous(), None, "photo1024", {"shape": tuple(torch.tensor(image.shape).tolist())})


def child(image: str, impl: str, points: int, filters: str, runs: int, threads: int, warmup: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    from ovframe_sam.config import SamConfig, official_architecture
    from ovframe_sam.generator import SamProposals
    from ovframe_sam.model import build_sam

    sample = image_of(image)
    before = rss_mb()
    torch.manual_seed(0)
    model = build_sam(official_architecture("vit_b"))
    if impl == "package":  # the package's generator as its README shows it: defaults, binary masks
        from segment_anything import SamAutomaticMaskGenerator

        generator = SamAutomaticMaskGenerator(model, points_per_side=points, **FILTERS[filters])
        array = sample.image.permute(1, 2, 0).numpy()
        call = lambda: generator.generate(array)  # noqa: E731
    else:  # ovframe's `sam` proposals (its default max_proposals: 100)
        ours = SamProposals(SamConfig(points_per_side=points, **FILTERS[filters]))
        ours.model, ours.architecture = model, official_architecture("vit_b")
        call = lambda: ours.propose([sample])[0]  # noqa: E731
    for _ in range(warmup):
        call()
    load = os.getloadavg()[0]
    start, cpu = time.perf_counter(), cpu_s()
    for _ in range(runs):
        out = call()
    seconds, cpu = time.perf_counter() - start, cpu_s() - cpu
    return {
        "image": image, "impl": impl, "points_per_side": points, "filters": filters, "masks": len(out),
        "images_per_s": round(runs / seconds, 4), "cpu_s_per_image": round(cpu / runs, 1),
        "load": f"{load:.1f}-{os.getloadavg()[0]:.1f}",
        "peak_rss_mb": round(rss_mb(), 1), "rss_before_model_mb": round(before, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", nargs="+", default=["synth128", "photo1024"], choices=["synth128", "photo1024"])
    p.add_argument("--points", nargs="+", type=int, default=[16, 32, 64])
    p.add_argument("--filters", nargs="+", default=["default"], choices=list(FILTERS))
    p.add_argument("--runs", type=int, default=1, help="timed calls")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls before them")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--child", nargs=4, metavar=("IMAGE", "IMPL", "POINTS", "FILTERS"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        image, impl, points, filters = args.child
        print(json.dumps(child(image, impl, int(points), filters, args.runs, args.threads, args.warmup)))
        return
    rows = []
    for filters in args.filters:
        for image in args.images:
            for points in args.points:
                for impl in ("package", "ours"):
                    cmd = [sys.executable, __file__, "--child", image, impl, str(points), filters, "--runs", str(args.runs), "--warmup", str(args.warmup), "--threads", str(args.threads)]
                    done = subprocess.run(cmd, capture_output=True, text=True)
                    if done.returncode != 0:
                        print(done.stderr[-2000:], file=sys.stderr)
                        raise SystemExit(f"{image} {impl} {points} failed")
                    rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
                    print(json.dumps(rows[-1]), flush=True)
    print(f"\nSAM ViT-B (random init) automatic masks on this CPU, {args.threads} thread(s), points_per_batch 64")
    print("| image | filters | points/side | masks | package images/s | ours images/s | package CPU s/image | ours CPU s/image "
          "| ours / package (CPU) | load (1 min) | package peak RSS (MB) | ours peak RSS (MB) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    by = {(r["image"], r["filters"], r["points_per_side"], r["impl"]): r for r in rows}
    for filters in args.filters:
        for image in args.images:
            for points in args.points:
                a, b = by[(image, filters, points, "package")], by[(image, filters, points, "ours")]
                print(f"| {image} | {filters} | {points} | {b['masks']} | {a['images_per_s']} | {b['images_per_s']} | "
                      f"{a['cpu_s_per_image']} | {b['cpu_s_per_image']} | {a['cpu_s_per_image'] / b['cpu_s_per_image']:.2f}x | "
                      f"{a['load']}, {b['load']} | {a['peak_rss_mb']} | {b['peak_rss_mb']} |")


if __name__ == "__main__":
    main()
