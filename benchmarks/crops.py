"""Region cropping against the CLIP forward it feeds, with the demo's models, every figure in one run.

    OMP_NUM_THREADS=1 python benchmarks/crops.py [--images 8] [--sizes 128 512] [--repeats 5]

The first --images scenes of the synth val split, their proposals from the shipped MaskFormer (at
128 px; for other sizes the image and the mask logits are resized bilinearly, as a larger picture of
the same scene), the shipped CLIP with its MPT prompts (recipes/demo.yaml). For each size:
  crop (batched)   `clip-masked-crop`'s cropper on all regions, chunks of 64 (what classify runs)
  crop (loop)      the reference's per-region procedure (slice, mask, normalise, bicubic, nearest)
  forward          the image tower (MPT) on the same crops, chunks of 64
  share            crop / (crop + forward): the part of region classification spent cropping
  read px          the pixels a bicubic resize without antialiasing reads, Σ min(h, 4·S) · min(w, 4·S)
                   over the boxes (4 taps per output per axis: every box pixel up to 4·S per axis)
  1 read ms        one pass that only reads those pixels' float32 RGB values (a sum): what any exact
                   crop from float32 images costs at least, and its share as above
and the largest difference between the two crops (normalised units). Best of --repeats, measured
alternately so that other load hits all alike; in CPU time with one thread (less sensitive to a loaded
machine), in wall time with more. Figures are printed; nothing is asserted.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]


def best_times(fns: dict, repeats: int, clock=time.process_time) -> dict[str, float]:
    for fn in fns.values():
        fn()  # warm-up
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = clock()
            fn()
            times[name].append(clock() - start)
    return {k: min(v) for k, v in times.items()}


def loop_crops(cropper, samples, plan, binaries):
    """The reference, one region at a time (the code this project ran before batching)."""
    mean = torch.tensor(cropper.mean).view(3, 1, 1) * 255.0
    std = torch.tensor(cropper.std).view(3, 1, 1) * 255.0
    regions, masks = [], []
    images = [s.image.float() for s in samples]
    for (i, q), (l, t, r, b) in zip(plan.items, plan.boxes.tolist()):
        crop = images[i][:, t:b, l:r]
        m = binaries[i][q, t:b, l:r].float()
        crop = crop * m + (1 - m) * mean
        masks.append(F.interpolate(m[None, None], size=(cropper.size, cropper.size), mode="nearest")[0, 0] > 0.5)
        crop = (crop - mean) / std
        regions.append(F.interpolate(crop[None], size=(cropper.size, cropper.size), mode="bicubic")[0])
    return torch.stack(regions), torch.stack(masks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from ovframe import Proposals, Sample
    from ovframe.recipes import load_recipe
    from ovframe.registry import get_registry
    from ovframe.runner import RunContext

    registry = get_registry()
    recipe = load_recipe(ROOT / "recipes" / "demo.yaml", registry=registry)
    ctx = RunContext(recipe, Path("."), registry, torch.device("cpu"))
    dataset, clf = ctx.component("dataset"), ctx.component("classifier")
    pipeline = ctx.pipeline()
    vocab = ctx.vocabulary()
    base = [dataset[i] for i in range(args.images)]
    with torch.inference_mode():
        base_props = pipeline.proposals.propose(base, pipeline.encode(vocab))
    print(f"CPU threads: {args.threads} ({'CPU' if args.threads == 1 else 'wall'} time); demo CLIP (ViT 96/16, width 128, 4 layers) with MPT; {args.images} synth images")
    print(f"{'size':>5} {'regions':>8} {'crop batched ms':>16} {'crop loop ms':>13} {'forward ms':>11} "
          f"{'share batched':>14} {'share loop':>11} {'speed-up':>9} {'read px':>9} {'1 read ms':>10} {'share 1 read':>13} {'max |diff|':>11}")
    for size in args.sizes:
        samples, props = [], []
        for s, p in zip(base, base_props):
            image, logits = s.image, p.mask_logits
            if size != image.shape[1]:
                image = F.interpolate(image[None].float(), size=(size, size), mode="bilinear").round().clamp(0, 255).to(torch.uint8)[0]
                logits = F.interpolate(logits[None], size=(size, size), mode="bilinear")[0]
            samples.append(Sample(image, None, s.id))
            props.append(Proposals(logits, p.class_logits))
        with torch.inference_mode():
            plan, store = clf.plan(samples, props)
            binaries = list(torch.split(store.masks, [len(p) for p in props]))
            batched = [clf.region_inputs(store, plan, c) for c in plan.chunks(64)]
            looped = loop_crops(clf.cropper, samples, plan, binaries)
            diff = float((torch.cat([r for r, _ in batched]) - looped[0]).abs().max())
            same_masks = torch.equal(torch.cat([m for _, m in batched]), looped[1])
            s = clf.cropper.size
            heights = (plan.boxes[:, 3] - plan.boxes[:, 1]).clamp(max=4 * s)
            widths = (plan.boxes[:, 2] - plan.boxes[:, 0]).clamp(max=4 * s)
            read = int((heights * widths).sum())
            values = torch.rand(read * 3)
            t = best_times(
                {
                    "read": lambda: values.sum(),
                    "batched": lambda: [clf.region_inputs(store, plan, c) for c in plan.chunks(64)],
                    "loop": lambda: loop_crops(clf.cropper, samples, plan, binaries),
                    "forward": lambda: [clf.encoder(r, m) for r, m in batched],
                },
                args.repeats,
                time.process_time if args.threads == 1 else time.perf_counter,
            )
        n = len(plan)
        tb, tl, tf, tr = (1000 * t[k] for k in ("batched", "loop", "forward", "read"))
        print(f"{size:>5} {n:>8} {tb:>16.1f} {tl:>13.1f} {tf:>11.1f} {tb / (tb + tf):>14.1%} {tl / (tl + tf):>11.1%} "
              f"{tl / tb:>8.1f}x {read / 1e6:>8.2f}M {tr:>10.1f} {tr / (tr + tf):>13.1%} {diff:>11.2e}{'' if same_masks else '  (masks differ!)'}")


if __name__ == "__main__":
    main()
