"""onnxruntime vs torch on the networks `ovframe export` writes, measured in the same run.

    OMP_NUM_THREADS=1 python benchmarks/onnx_speed.py [--recipe demo] [--threads 1] [--repeats 5]
        [--regions 64] [--images 2] [--prompts 128] [--stages classifier proposals text]

Each stage of the recipe is exported (to a temporary folder, as `ovframe export` does, checked against
torch); then the torch module and the onnxruntime session (CPU provider, the same number of threads)
run the same inputs alternately, best of --repeats after one warm-up call each:
  classifier: --regions region crops (the image tower with its adapter)
  proposals:  --images images at the recipe's test size (the proposal network)
  text:       --prompts prompts (the text tower)
Prints ms per call of each, the ratio and items per second. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from clip_regions import best_of_pair  # benchmarks/: alternate two timings, best of each


def batched(graph, size: int) -> tuple[torch.Tensor, ...]:
    """The example inputs tiled along their free batch axis to `size`."""
    out = []
    for i, x in enumerate(graph.inputs):
        axes = (graph.dynamic_shapes or [None] * len(graph.inputs))[i] or {}
        if 0 in axes:
            x = x.repeat(-(-size // x.shape[0]), *([1] * (x.ndim - 1)))[:size]
        out.append(x)
    return tuple(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default="demo", help="a recipe file or a shipped recipe's name (default: %(default)s)")
    p.add_argument("--stages", nargs="+", default=["classifier", "proposals", "text"], choices=["classifier", "proposals", "text"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--regions", type=int, default=64, help="regions per classifier call")
    p.add_argument("--images", type=int, default=2, help="images per proposals call")
    p.add_argument("--prompts", type=int, default=128, help="prompts per text call")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    import onnxruntime as ort

    from ovframe.export import STAGES, export_stage
    from ovframe.io import markdown_table
    from ovframe.recipes import load_recipe
    from ovframe.registry import get_registry
    from ovframe.runner import RunContext, seed_everything

    registry = get_registry()
    recipe = load_recipe(args.recipe, registry=registry)
    seed_everything(recipe.seed)
    sizes = {"classifier": args.regions, "proposals": args.images, "text": args.prompts}
    units = {"classifier": "regions", "proposals": "images", "text": "prompts"}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ctx = RunContext(recipe, Path(tmp), registry, torch.device("cpu"))
        for stage in args.stages:
            manifest = export_stage(ctx, stage, Path(tmp))
            graph = ctx.component(STAGES[stage]).export_graph()
            inputs = batched(graph, sizes[stage])
            options = ort.SessionOptions()
            options.intra_op_num_threads = args.threads
            options.inter_op_num_threads = 1
            session = ort.InferenceSession(str(Path(tmp) / manifest["file"]), options, providers=["CPUExecutionProvider"])
            feed = {n: x.numpy() for n, x in zip(graph.input_names, inputs)}

            def run_torch():
                with torch.inference_mode():
                    graph.module(*inputs)

            t_torch, t_ort = best_of_pair(run_torch, lambda: session.run(None, feed), args.repeats)
            n = sizes[stage]
            rows.append(
                {
                    "stage": stage,
                    "input": f"{n} {units[stage]} " + "x".join(map(str, inputs[0].shape[1:])),
                    "torch ms": round(1000 * t_torch, 2),
                    "onnxruntime ms": round(1000 * t_ort, 2),
                    "onnxruntime / torch (time)": round(t_ort / t_torch, 3),
                    "torch items/s": round(n / t_torch, 1),
                    "onnxruntime items/s": round(n / t_ort, 1),
                    "max abs diff (check)": f"{max(r['max_abs_diff'] for r in manifest['check']['results']):.2g}",
                }
            )
    print(
        f"recipe {recipe.name}, torch {torch.__version__}, onnxruntime {ort.__version__}, {args.threads} thread(s), "
        f"best of {args.repeats}"
    )
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
