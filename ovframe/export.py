"""`ovframe export`: a stage's network as ONNX, checked against torch with onnxruntime.

The core knows no model: a component that can be exported returns an ExportGraph from
`export_graph()` (ovframe.interfaces.Component): its network as an nn.Module, example inputs, the
axes that stay free (dynamic_shapes, in torch.export's form), a second set of inputs with other sizes
on those axes, and what a deployer needs besides the graph (tensors, notes). This module exports it
with torch's ONNX exporter (torch.export based), runs the file with onnxruntime on both sets of inputs,
compares every output with torch's and fails when the largest difference exceeds the tolerance:

    max |onnxruntime - torch| <= tolerance * max(1, max |torch|)       per output, both input sets

Written to OUT (default <output_dir>/export/<recipe>/), per stage:
    <stage>.onnx            the graph (weights inside; beside it in <stage>.onnx.data past 1.5 GiB)
    <stage>.json            inputs and outputs (names, dtypes, shapes with their free axes), the check's
                            differences, versions, the recipe section, the sha256 of the graph, the notes
    <stage>.<name>.npy      the tensors listed in `extras` (np.load reads them without pickle)
Nothing is unpickled on the way: the weights come from the components' own safe loaders.
"""

from __future__ import annotations

import json
import platform
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import BadInput, OvframeError
from .files import sha256_of
from .io import atomic_path, write_text

if TYPE_CHECKING:
    import torch

STAGES = {"classifier": "classifier", "proposals": "proposals", "text": "text_encoder"}
"""`--stage` names and the recipe sections they export."""

DEFAULT_OPSET = 18
MIN_OPSET = 17  # below it the exporter cannot convert and silently writes 18
DEFAULT_TOLERANCE = 1e-4
EXTERNAL_DATA_BYTES = 3 << 29  # 1.5 GiB: an ONNX protobuf cannot exceed 2 GiB
INSTALL_HINT = "ovframe export needs onnx, onnxscript and onnxruntime: pip install 'ovframe[export]'"


@dataclass
class ExportGraph:
    """A component's network, ready for `ovframe export`.

    module          nn.Module in eval mode; forward(*inputs) returns a tensor or a tuple of tensors
    inputs          example inputs, one tensor per input name (the exporter traces with them)
    input_names, output_names
    dynamic_shapes  per input, {axis: torch.export.Dim} for the axes left free (batch ...), or None
    check_inputs    inputs with other sizes on the free axes: the check runs on both sets
    extras          tensors a deployer needs besides the graph (prompts, a no-object embedding ...)
    notes           JSON-able facts: preprocessing, how to use the outputs
    """

    module: "torch.nn.Module"
    inputs: tuple["torch.Tensor", ...]
    input_names: list[str]
    output_names: list[str]
    dynamic_shapes: tuple[dict[int, Any] | None, ...] | None = None
    check_inputs: tuple["torch.Tensor", ...] | None = None
    extras: dict[str, "torch.Tensor"] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)


def require_onnx(opset: int) -> None:
    """BadInput unless the export extra is installed and can write `opset`."""
    import importlib.util

    missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        raise BadInput(f"{INSTALL_HINT} (missing: {', '.join(missing)})")
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise BadInput(f"--opset {opset}: the exporter writes opsets {MIN_OPSET} to {newest} (onnx {onnx.__version__}); default {DEFAULT_OPSET}")


def _outputs(value: Any) -> list["torch.Tensor"]:
    return list(value) if isinstance(value, (tuple, list)) else [value]


def _shapes(model_proto: Any) -> dict[str, list[dict[str, Any]]]:
    """Inputs and outputs of an ONNX model: name, element type, shape (free axes by name)."""
    import onnx

    def describe(values: Any) -> list[dict[str, Any]]:
        out = []
        for v in values:
            t = v.type.tensor_type
            dims = [d.dim_param if d.dim_param else d.dim_value for d in t.shape.dim]
            out.append({"name": v.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name, "shape": dims})
        return out

    return {"inputs": describe(model_proto.graph.input), "outputs": describe(model_proto.graph.output)}


def check_with_onnxruntime(path: Path, graph: ExportGraph, tolerance: float, threads: int | None = None) -> list[dict[str, Any]]:
    """Run the ONNX file and the torch module on each input set; the largest differences per output."""
    import numpy as np
    import onnxruntime as ort
    import torch

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    rows = []
    for inputs in [graph.inputs] + ([graph.check_inputs] if graph.check_inputs is not None else []):
        with torch.inference_mode():
            expected = [t.float().numpy() for t in _outputs(graph.module(*inputs))]
        got = session.run(graph.output_names, {n: t.numpy() for n, t in zip(graph.input_names, inputs)})
        for name, e, g in zip(graph.output_names, expected, got):
            if e.shape != g.shape:
                raise OvframeError(f"{path.name}: output {name} is {g.shape} in onnxruntime, {e.shape} in torch")
            diff = float(np.abs(g.astype(np.float64) - e).max()) if e.size else 0.0
            scale = max(1.0, float(np.abs(e).max())) if e.size else 1.0
            rows.append(
                {
                    "output": name,
                    "shape": list(e.shape),
                    "max_abs_diff": diff,
                    "allowed": tolerance * scale,
                    "ok": bool(diff <= tolerance * scale),
                }
            )
    return rows


def export_graph_to_onnx(graph: ExportGraph, path: Path, opset: int) -> None:
    """torch.export-based ONNX export of `graph` to `path` (written atomically with its data file)."""
    import contextlib
    import io
    import logging
    import warnings

    import torch

    graph.module.eval()
    params = sum(p.numel() * p.element_size() for p in graph.module.parameters())
    quiet = [logging.getLogger(n) for n in ("torch.onnx", "onnxscript", "torch.export", "torch._export", "onnx_ir")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:
        lg.setLevel(logging.ERROR)
    try:
        # the exporter prints its progress (✅ lines): ovframe's own output stays readable
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                graph.module,
                graph.inputs,
                None,
                input_names=graph.input_names,
                output_names=graph.output_names,
                dynamic_shapes=graph.dynamic_shapes,
                opset_version=opset,
                dynamo=True,
                optimize=True,
            )
    except Exception as e:
        raise OvframeError(f"torch could not export {type(graph.module).__name__} to ONNX: {type(e).__name__}: {e}") from None
    finally:
        for lg, level in zip(quiet, levels):
            lg.setLevel(level)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as tmp:
        staged = Path(tmp) / path.name
        external = params > EXTERNAL_DATA_BYTES
        program.save(staged, external_data=external)
        data = staged.with_name(staged.name + ".data")
        if data.exists():
            shutil.move(str(data), str(path.with_name(path.name + ".data")))
        else:
            path.with_name(path.name + ".data").unlink(missing_ok=True)
        shutil.move(str(staged), str(path))


def export_stage(ctx: Any, stage: str, out_dir: Path, opset: int = DEFAULT_OPSET, tolerance: float = DEFAULT_TOLERANCE) -> dict[str, Any]:
    """Export one stage of the recipe in `ctx` (a RunContext on the CPU); return its manifest."""
    import numpy as np
    import onnx
    import onnxruntime
    import torch

    kind = STAGES[stage]
    component = ctx.component(kind)
    try:
        graph = component.export_graph()
    except NotImplementedError:
        raise BadInput(
            f"{ctx.recipe.origin}: {kind} {component.name!r} cannot be exported to ONNX "
            f"(it has no export_graph(); see docs/writing-a-plugin.md)"
        ) from None
    path = out_dir / f"{stage}.onnx"
    export_graph_to_onnx(graph, path, opset)
    model = onnx.load(str(path), load_external_data=False)
    written = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if written != opset:
        raise OvframeError(f"{path.name}: the exporter wrote opset {written}, not the {opset} asked for; try another --opset")
    checks = check_with_onnxruntime(path, graph, tolerance, threads=torch.get_num_threads())
    extras = {}
    for name, tensor in graph.extras.items():
        target = out_dir / f"{stage}.{name}.npy"
        with atomic_path(target) as tmp, open(tmp, "wb") as f:
            np.save(f, tensor.detach().float().cpu().numpy(), allow_pickle=False)
        extras[name] = {"file": target.name, "shape": list(tensor.shape)}
    section = ctx.recipe.sections[kind]
    manifest = {
        "stage": stage,
        "recipe": ctx.recipe.name,
        "component": section.dump(),
        **({"adapter": ctx.recipe.sections["adapter"].dump()} if kind == "classifier" and ctx.has("adapter") else {}),
        "file": path.name,
        "sha256": sha256_of(path),
        "opset": opset,
        **_shapes(model),
        "extras": extras,
        "notes": graph.notes,
        "check": {"tolerance": tolerance, "rule": "max|onnxruntime - torch| <= tolerance * max(1, max|torch|)", "results": checks},
        "versions": {
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
            "python": platform.python_version(),
        },
    }
    write_text(out_dir / f"{stage}.json", json.dumps(manifest, indent=2, default=str) + "\n")
    return manifest


def export_recipe(recipe: Any, stages: list[str], out_dir: Path, opset: int, tolerance: float) -> list[dict[str, Any]]:
    """Export `stages` of a validated recipe (its components built on the CPU); one manifest per stage."""
    import sys

    import torch

    from .files import check_required_files
    from .registry import get_registry
    from .runner import RunContext, required_files, seed_everything

    for stage in stages:
        if recipe.section(STAGES[stage]) is None:
            raise BadInput(f"{recipe.origin}: no `{STAGES[stage]}:` section to export")
    require_onnx(opset)
    kinds = [STAGES[s] for s in stages] + (["adapter"] if "classifier" in stages else [])
    check_required_files(required_files(recipe, kinds))
    seed_everything(recipe.seed)  # an adapter without weights starts from seeded prompts
    ctx = RunContext(recipe, out_dir, get_registry(), torch.device("cpu"))
    manifests = []
    for stage in stages:
        print(f"exporting {stage} ({recipe.sections[STAGES[stage]].spec.name}) ...", file=sys.stderr)
        manifests.append(export_stage(ctx, stage, out_dir, opset, tolerance))
    return manifests
