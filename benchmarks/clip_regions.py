"""Speed of the CLIP family on this machine, every figure measured in the same run.

    OMP_NUM_THREADS=2 python benchmarks/clip_regions.py [--threads 2] [--proposals 50] [--repeats 3]

A small open_clip ViT (image 96, patch 16, width 192, 6 layers; text width 128, 4 layers) with random
weights written to a temporary folder, loaded through the real loader:
  1. region classification: crops/s of `clip-masked-crop` (all valid proposals of a batch of images,
     chunks of 64) against a plain per-mask loop (crop one region, one image-tower forward per region);
  2. mask prompt tuning: ms per forward of 64 regions with MPT (depth 3) against the plain forward;
  3. text encoding: seconds to embed 150 class names with the 14 ViLD templates, cache miss vs hit.
Each pair of timings is measured alternately, best of --repeats (3x for the tower). Figures are printed; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

BENCH_CFG = {
    "embed_dim": 128,
    "vision_cfg": {"image_size": 96, "patch_size": 16, "width": 192, "layers": 6, "head_width": 64},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 128, "heads": 2, "layers": 4},
}


def best_of_pair(a, b, repeats: int) -> tuple[float, float]:
    """Best times of `a` and `b`, run alternately so that load from other jobs hits both alike."""
    a(), b()  # warm-up
    ta, tb = [], []
    for _ in range(repeats):
        for fn, times in ((a, ta), (b, tb)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return min(ta), min(tb)


def write_model(folder: Path) -> dict[str, str]:
    from open_clip.model import CLIP
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = CLIP(**BENCH_CFG)
    (folder / "bench.json").write_text(json.dumps(BENCH_CFG))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "bench.safetensors"))
    return {"model": str(folder / "bench.json"), "pretrained": str(folder / "bench.safetensors")}


def scenes(n_images: int, proposals: int, size: int = 320):
    from ovframe import Proposals, Sample

    g = torch.Generator().manual_seed(0)
    samples, props = [], []
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    for i in range(n_images):
        image = torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=g)
        centres = torch.rand(proposals, 2, generator=g) * size
        radii = 10 + torch.rand(proposals, generator=g) * size / 4
        d = ((yy[None] - centres[:, 0, None, None]) ** 2 + (xx[None] - centres[:, 1, None, None]) ** 2).sqrt()
        logits = (radii[:, None, None] - d) / 4  # soft discs
        samples.append(Sample(image, None, f"b{i}"))
        props.append(Proposals(logits))
    return samples, props


def per_mask_loop(clf, samples, proposals, text) -> int:
    """The plain reference: for each mask, crop it and run the image tower on it alone."""
    n = 0
    with torch.inference_mode():
        for sample, props in zip(samples, proposals):
            plan, store = clf.plan([sample], [props])
            for j in range(len(plan)):
                regions, masks = clf.region_inputs(store, plan, range(j, j + 1))
                emb = F.normalize(clf.encoder(regions, masks), dim=-1)
                (100 * emb @ text.T).softmax(-1)
                n += 1
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--proposals", type=int, default=50, help="per image")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from ovframe import Vocabulary, get_registry

    registry = get_registry()
    with tempfile.TemporaryDirectory() as tmp:
        keys = write_model(Path(tmp))
        clf = registry.get("classifier", "clip-masked-crop").build({**keys, "chunk_size": 64})
        names = tuple(f"class number {i}" for i in range(150))
        vocab = Vocabulary(names)
        samples, proposals = scenes(args.images, args.proposals)
        text_enc = registry.get("text_encoder", "clip-text").build({**keys, "cache_dir": f"{tmp}/cache-warm"})
        text = text_enc.encode(Vocabulary(names[:20]))
        n = sum(int(s.valid.sum()) for s in clf.classify(samples, proposals, text, Vocabulary(names[:20])))

        t_batched, t_loop = best_of_pair(
            lambda: clf.classify(samples, proposals, text, Vocabulary(names[:20])),
            lambda: per_mask_loop(clf, samples, proposals, text.embeddings),
            args.repeats,
        )

        mpt = registry.get("classifier", "clip-masked-crop").build(keys)
        mpt.attach(registry.get("adapter", "mask-prompt-tuning").build({"depth": 3}))
        plan, store = clf.plan(samples[:1], proposals[:1])
        regions, masks = clf.region_inputs(store, plan, range(min(64, len(plan))))
        with torch.inference_mode():
            t_mpt, t_plain = best_of_pair(lambda: mpt.encoder(regions, masks), lambda: clf.encoder(regions, masks), 3 * args.repeats)

        counter = {"i": 0}

        def miss():  # a fresh cache folder each time: every class is a miss
            counter["i"] += 1
            enc = registry.get("text_encoder", "clip-text").build({**keys, "cache_dir": f"{tmp}/cache-{counter['i']}"})
            enc.encode(vocab)

        hit_enc = registry.get("text_encoder", "clip-text").build({**keys, "cache_dir": f"{tmp}/cache-hit"})
        t_hit, t_miss = best_of_pair(lambda: hit_enc.encode(vocab), miss, max(1, args.repeats - 1))

    print(f"CPU threads: {args.threads}; model: ViT image 96/16, width 192, 6 layers; {n} valid regions "
          f"({args.images} images x {args.proposals} proposals, 320x320)")
    print(f"{'measure':<58} {'value':>12} {'reference':>12} {'ratio':>7}")
    print(f"{'region classification, crops/s (batched | per-mask loop)':<58} {n / t_batched:>12.1f} {n / t_loop:>12.1f} {t_loop / t_batched:>6.2f}x")
    m = regions.shape[0]
    print(f"{f'image tower on {m} regions, ms (MPT depth 3 | plain)':<58} {1000 * t_mpt:>12.1f} {1000 * t_plain:>12.1f} {t_mpt / t_plain:>6.2f}x")
    print(f"{'text, 150 classes x 14 templates, ms (hit | miss)':<58} {1000 * t_hit:>12.1f} {1000 * t_miss:>12.1f} {t_miss / t_hit:>6.0f}x")


if __name__ == "__main__":
    main()
