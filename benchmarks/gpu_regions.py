"""Region classification on a GPU: crops/s of CLIP ViT-L/14 (with mask prompt tuning) and the fraction of the
device's bf16 peak it reaches.

    python benchmarks/gpu_regions.py                      # on a GPU: ViT-L/14 at 224 px, batch 256
    python benchmarks/gpu_regions.py --batch 512 --modes bf16 bf16-autocast fp32
    python benchmarks/gpu_regions.py --model tiny         # anywhere (CPU): a small ViT, to check the script

The image tower is open_clip's, with random weights (speed does not depend on them), behind the region
encoder the classifier uses (mask prompt tuning, depth 3, half of each crop's patches replaced by prompts).
Modes: `bf16` (weights and inputs in bfloat16), `bf16-autocast` (fp32 weights under torch.autocast, as
`precision: bf16` runs), `fp16`, `fp32`. Per mode: crops/s (best of --repeats timed runs of --iters
batches, after warm-up; CUDA synchronised), peak CUDA memory, and the fraction of peak

    achieved FLOP/s = FLOPs of one crop's forward x crops/s; the FLOPs are counted as 2 x multiply-adds: patch
                      embedding, 24 T D^2 + 4 T^2 D per block (T tokens, width D), projection (162 G for ViT-L/14),
                      and cross-checked with torch.utils.flop_counter (which may not see the attention kernel)
    peak            = the device's dense bf16 (fp16) tensor peak from the table below when the GPU is in it,
                      and a measured peak: the best of large square matmuls in that dtype (both printed)
On a CPU there is no table entry: the measured matmul peak of the dtype is the reference.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

DENSE_TFLOPS_BF16 = [  # dense (no sparsity) bf16/fp16 tensor-core peak, vendors' data sheets; most specific first
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM
    ("H200 NVL", 835.0),
    ("H200", 989.0),  # SXM
    ("GH200", 989.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
    ("MI300X", 1307.0),
]

MODELS = {
    # open_clip ViT-L/14 image tower (OVSeg's), and a small one that runs anywhere
    "ViT-L-14": {"image_size": 224, "layers": 24, "width": 1024, "patch_size": 14, "head_width": 64, "output_dim": 768},
    "tiny": {"image_size": 64, "layers": 3, "width": 128, "patch_size": 16, "head_width": 32, "output_dim": 64},
}


def table_peak(name: str) -> float | None:
    for key, tflops in DENSE_TFLOPS_BF16:
        if key.lower() in name.lower():
            return tflops * 1e12
    return None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measured_matmul_peak(device: torch.device, dtype: torch.dtype, n: int, repeats: int = 5) -> float:
    """FLOP/s of the best of `repeats` n x n x n matmuls (what the device reaches on the easiest work)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(4):
            a @ b
        sync(device)
        best = min(best, (time.perf_counter() - start) / 4)
    return 2 * n**3 / best


def build_encoder(spec: dict[str, int], depth: int) -> Any:
    from open_clip.transformer import VisionTransformer

    from ovframe_clip.encoders import MaskPromptEncoder

    visual = VisionTransformer(
        image_size=spec["image_size"], patch_size=spec["patch_size"], width=spec["width"], layers=spec["layers"],
        heads=spec["width"] // spec["head_width"], mlp_ratio=4.0, output_dim=spec["output_dim"],
    )
    grid = (spec["image_size"] // spec["patch_size"]) ** 2
    prompts = torch.randn(depth, grid, spec["width"]) * 0.02
    return MaskPromptEncoder(visual, prompts, spec["image_size"], "bench").eval().requires_grad_(False)


def analytic_flops(spec: dict[str, int]) -> float:
    """Multiply-adds x 2 of one crop: patch embedding, blocks (24 T D^2 + 4 T^2 D each), projection."""
    s, p, d = spec["image_size"], spec["patch_size"], spec["width"]
    patches = (s // p) ** 2
    t = patches + 1
    return 2 * patches * 3 * p * p * d + spec["layers"] * (24 * t * d * d + 4 * t * t * d) + 2 * d * spec["output_dim"]


def counted_flops(encoder: Any, spec: dict[str, int]) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    s = spec["image_size"]
    images = torch.randn(1, 3, s, s)
    masks = torch.zeros(1, s, s, dtype=torch.bool)
    masks[:, : s // 2] = True
    counter = FlopCounterMode(display=False)
    fast_path = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # the fused attention kernel is invisible to the counter
    try:
        with counter, torch.no_grad():
            encoder.cpu()(images, masks)
    finally:
        torch.backends.mha.set_fastpath_enabled(fast_path)
    return float(counter.get_total_flops())


def run_mode(encoder: Any, spec: dict[str, int], mode: str, device: torch.device, batch: int, iters: int, repeats: int) -> dict[str, Any]:
    dtype = {"bf16": torch.bfloat16, "bf16-autocast": torch.float32, "fp16": torch.float16, "fp32": torch.float32}[mode]
    model = encoder.to(device=device, dtype=dtype)
    s = spec["image_size"]
    images = torch.randn(batch, 3, s, s, device=device, dtype=dtype)
    masks = torch.zeros(batch, s, s, dtype=torch.bool, device=device)
    masks[:, : s // 2] = True  # half of each crop is background: those patches become prompts
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=mode == "bf16-autocast")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def forward() -> None:
        with torch.inference_mode(), autocast:
            for _ in range(iters):
                model(images, masks)

    forward()  # warm-up: kernels chosen, memory pools grown
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        forward()
        sync(device)
        best = min(best, time.perf_counter() - start)
    peak_mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {"mode": mode, "crops_per_s": batch * iters / best, "peak_mem_gib": peak_mem}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="ViT-L-14", choices=sorted(MODELS))
    p.add_argument("--modes", nargs="+", default=None, help="default: bf16 bf16-autocast fp32 on a GPU, fp32 on a CPU")
    p.add_argument("--batch", type=int, default=None, help="crops per forward (default: 256 on a GPU, 8 on a CPU)")
    p.add_argument("--iters", type=int, default=None, help="forwards per timed run (default: 10 on a GPU, 2 on a CPU)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--depth", type=int, default=3, help="mask prompt depth")
    p.add_argument("--matmul", type=int, default=None, help="size of the peak-measuring matmul (default: 8192 on a GPU, 1024 on a CPU)")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else (args.device if args.device != "auto" else "cpu"))
    gpu = device.type == "cuda"
    modes = args.modes or (["bf16", "bf16-autocast", "fp32"] if gpu else ["fp32"])
    batch = args.batch or (256 if gpu else 8)
    iters = args.iters or (10 if gpu else 2)
    n = args.matmul or (8192 if gpu else 1024)
    if gpu:
        torch.backends.cuda.matmul.allow_tf32 = True  # what a user runs fp32 with on Ampere and later
        torch.backends.cudnn.allow_tf32 = True
    spec = MODELS[args.model]
    torch.manual_seed(0)
    encoder = build_encoder(spec, args.depth)
    flops = analytic_flops(spec)
    counted = counted_flops(encoder, spec)
    name = torch.cuda.get_device_name(device) if gpu else "CPU"
    print(f"{args.model} image tower + MPT (depth {args.depth}) on {name}; batch {batch} x {iters} forwards, best of {args.repeats}")
    print(f"FLOPs per crop: {flops / 1e9:.4g} G ({counted / 1e9:.4g} G seen by torch.utils.flop_counter)")
    rows = []
    for mode in modes:
        row = run_mode(encoder, spec, mode, device, batch, iters, args.repeats)
        dtype = {"fp16": torch.float16, "fp32": torch.float32}.get(mode, torch.bfloat16)
        if not gpu and dtype != torch.float32:
            dtype = torch.float32  # CPUs: the fp32 matmul is the honest reference
        achieved = flops * row["crops_per_s"]
        measured = measured_matmul_peak(device, dtype, n)
        listed = table_peak(name) if gpu and dtype != torch.float32 else None
        row.update(achieved_tflops=achieved / 1e12, matmul_tflops=measured / 1e12, of_matmul=achieved / measured,
                   table_tflops=None if listed is None else listed / 1e12, of_table=None if listed is None else achieved / listed)
        rows.append(row)
    print("| mode | crops/s | achieved TFLOP/s | of the data-sheet peak | of the measured matmul peak | peak memory |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        sheet = f"{100 * r['of_table']:.1f} % of {r['table_tflops']:.0f}" if r["of_table"] is not None else "n/a"
        mem = f"{r['peak_mem_gib']:.1f} GiB" if r["peak_mem_gib"] is not None else "n/a"
        print(
            f"| {r['mode']} | {r['crops_per_s']:.1f} | {r['achieved_tflops']:.2f} | {sheet} | "
            f"{100 * r['of_matmul']:.1f} % of {r['matmul_tflops']:.2f} | {mem} |"
        )
    return rows


if __name__ == "__main__":
    main()
