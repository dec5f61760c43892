"""Speed and peak memory of the maskformer family on this machine, every figure measured in the same run.

    python benchmarks/maskformer_speed.py [--threads 1] [--configs tiny swin-b] [--what train infer] [--train-steps 3] [--infer-runs 3]

Configurations, random weights (nothing is downloaded):
  tiny        ResNet-18, hidden 32, 8 queries, 2 decoder layers, 64 px crops and test size, 32-d text, 4 classes
  swin-b      the reference's Swin-B (d2-swin-b: detectron2's Swin, computed exactly): hidden 256, 100 queries,
              6 decoder layers, FPN 256, CLIP dim 768; one 640x640 image (the reference's test size and crop);
              171 training classes (COCO-Stuff) and a 150-class vocabulary (ADE-150) at inference
  swin-b-timm the same with timm's swin_base_patch4_window12_384 (not the reference's computation; for the ratio)
  r101c       the reference's R101c (d2-r101c), 512x512, CLIP dim 512
For each: training iterations/s (batch 1: mapper, forward, Hungarian matching and set loss over all decoder
layers, backward, gradient clipping, AdamW step) and inference images/s (`maskformer` propose(): resize,
pad, network, upsampling back to the image). Each measurement runs in a fresh process, so its peak
resident memory (ru_maxrss) is its own; the resident memory of the same process before it built the
model is printed too. Figures are printed; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = {
    "tiny": {
        "arch": {
            "backbone": "resnet18", "out_indices": [1, 2, 3, 4], "backbone_norm": "train", "conv_dim": 32, "mask_dim": 32,
            "hidden_dim": 32, "num_queries": 8, "dec_layers": 2, "nheads": 4, "dim_feedforward": 64,
            "embed_hidden_dim": 64, "test_short_side": 64,
        },
        "size": 64, "embed_dim": 32, "train_classes": 4, "test_classes": 4,
    },
    "swin-b": {
        "arch": {"backbone": "d2-swin-b", "out_indices": [0, 1, 2, 3], "test_short_side": 640},
        "size": 640, "embed_dim": 768, "train_classes": 171, "test_classes": 150,
    },
    "swin-b-timm": {
        "arch": {"backbone": "swin_base_patch4_window12_384", "out_indices": [0, 1, 2, 3], "test_short_side": 640},
        "size": 640, "embed_dim": 768, "train_classes": 171, "test_classes": 150,
    },
    "r101c": {
        "arch": {"backbone": "d2-r101c", "test_short_side": 512},
        "size": 512, "embed_dim": 512, "train_classes": 171, "test_classes": 150,
    },
}


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def scene(size: int, classes: int, seed: int = 0):
    """A fabricated image and label: random rectangles of random classes on a background class."""
    import torch

    g = torch.Generator().manual_seed(seed)
    label = torch.zeros(size, size, dtype=torch.int64)
    for k in range(1, min(classes, 8)):
        h, w = (int(v) for v in torch.randint(size // 8, size // 2, (2,), generator=g))
        y, x = (int(v) for v in torch.randint(0, size - max(h, w), (2,), generator=g))
        label[y : y + h, x : x + w] = k
    palette = torch.randint(0, 256, (classes, 3), generator=g).float()
    image = (palette[label].permute(2, 0, 1) + 10 * torch.randn(3, size, size, generator=g)).clamp(0, 255).to(torch.uint8)
    return image, label


def child(name: str, what: str, steps: int, threads: int) -> dict:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    from ovframe_maskformer.config import MaskFormerConfig, TrainProposalsConfig
    from ovframe_maskformer.loss import SetCriterion
    from ovframe_maskformer.mapper import SemanticMapper
    from ovframe_maskformer.model import MaskFormerModel
    from ovframe_maskformer.train import compute_loss, param_groups

    spec = CONFIGS[name]
    cfg = MaskFormerConfig(**spec["arch"])
    size = spec["size"]
    before = rss_mb()
    out: dict = {"config": name, "what": what, "rss_before_model_mb": round(before, 1)}
    if what == "train":
        k = spec["train_classes"]
        text = F.normalize(torch.randn(k, spec["embed_dim"]), dim=-1)
        model = MaskFormerModel(cfg, spec["embed_dim"]).train()
        tcfg = TrainProposalsConfig(crop_size=size, min_size_train=[size], color_aug=True)
        mapper = SemanticMapper(tcfg, torch.arange(k))
        mean, std = torch.tensor(cfg.pixel_mean).view(3, 1, 1), torch.tensor(cfg.pixel_std).view(3, 1, 1)
        opt = torch.optim.AdamW(param_groups(model, tcfg), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
        criterion = SetCriterion()
        image, label = scene(size, k)

        def step(i: int) -> float:
            ex = mapper(image, label, random.Random(i))
            batch = {
                "images": ((ex.image - mean) / std)[None],
                "text": text,
                "targets": [{"labels": ex.labels, "masks": ex.masks.float()}],
            }
            loss, _ = compute_loss(model, batch, criterion)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], tcfg.grad_clip)
            opt.step()
            return float(loss)

        step(0)  # warm-up
        start = time.perf_counter()
        for i in range(steps):
            step(i + 1)
        seconds = time.perf_counter() - start
        out["iterations_per_s"] = round(steps / seconds, 4)
    else:
        from ovframe import Sample, TextEmbeddings, Vocabulary
        from ovframe_maskformer.proposals import MaskFormerProposals
        from ovframe_maskformer.weights import save_maskformer

        model = MaskFormerModel(cfg, spec["embed_dim"])
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "w.safetensors"
            save_maskformer(path, model, cfg, classes=[], text_model="random")
            del model
            gen = MaskFormerProposals(MaskFormerConfig(**spec["arch"], weights=str(path)))
        k = spec["test_classes"]
        vocab = Vocabulary(tuple(f"class {i}" for i in range(k)))
        text = TextEmbeddings(vocab, F.normalize(torch.randn(k, spec["embed_dim"]), dim=-1), "random")
        image, _ = scene(size, k)
        sample = Sample(image, None, "bench")
        gen.propose([sample], text)  # warm-up
        start = time.perf_counter()
        for _ in range(steps):
            (props,) = gen.propose([sample], text)
        seconds = time.perf_counter() - start
        assert props.mask_logits.shape[-2:] == (size, size)
        out["images_per_s"] = round(steps / seconds, 4)
    out["peak_rss_mb"] = round(rss_mb(), 1)
    out["params_m"] = round(sum(p.numel() for p in (gen.model if what == "infer" else model).parameters()) / 1e6, 2)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=["tiny", "swin-b"], choices=list(CONFIGS))
    p.add_argument("--what", nargs="+", default=["train", "infer"], choices=["train", "infer"])
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: the 2 cores here are shared; more threads thrash under load)")
    p.add_argument("--train-steps", type=int, default=3, help="timed training steps (after one warm-up step)")
    p.add_argument("--infer-runs", type=int, default=3, help="timed propose() calls (after one warm-up call)")
    p.add_argument("--child", nargs=2, metavar=("CONFIG", "WHAT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        name, what = args.child
        print(json.dumps(child(name, what, args.train_steps if what == "train" else args.infer_runs, args.threads)))
        return
    rows = []
    for name in args.configs:
        for what in args.what:
            cmd = [sys.executable, __file__, "--child", name, what, "--threads", str(args.threads),
                   "--train-steps", str(args.train_steps), "--infer-runs", str(args.infer_runs)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                print(done.stderr[-2000:], file=sys.stderr)
                raise SystemExit(f"{name} {what} failed")
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    print(f"\nmaskformer on this CPU, {args.threads} thread(s), batch 1")
    print("| config | params (M) | train it/s | train peak RSS (MB) | infer images/s | infer peak RSS (MB) | RSS before model (MB) |")
    print("|---|---|---|---|---|---|---|")
    by = {(r["config"], r["what"]): r for r in rows}
    for name in args.configs:
        t, i = by.get((name, "train"), {}), by.get((name, "infer"), {})
        first = t or i
        print(f"| {name} | {first['params_m']} | {t.get('iterations_per_s', '-')} | {t.get('peak_rss_mb', '-')} | "
              f"{i.get('images_per_s', '-')} | {i.get('peak_rss_mb', '-')} | {first['rss_before_model_mb']} |")
    if {"swin-b", "swin-b-timm"} <= set(args.configs) and "infer" in args.what:
        print(f"\nd2-swin-b infers at {by[('swin-b', 'infer')]['images_per_s'] / by[('swin-b-timm', 'infer')]['images_per_s']:.2f}x the speed of timm's Swin-B")
    if {"tiny", "swin-b"} <= set(args.configs) and set(args.what) == {"train", "infer"}:
        print(
            f"\nratios tiny / swin-b: training {by[('tiny', 'train')]['iterations_per_s'] / by[('swin-b', 'train')]['iterations_per_s']:.0f}x, "
            f"inference {by[('tiny', 'infer')]['images_per_s'] / by[('swin-b', 'infer')]['images_per_s']:.0f}x faster"
        )


if __name__ == "__main__":
    main()
