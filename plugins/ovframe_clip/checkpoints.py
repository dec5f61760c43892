"""Reading CLIP checkpoint files without unpickling code, detecting their layout, and hashing them.

Layouts (see loading.py for how each is used):
    open_clip   a plain state dict, or open_clip's training checkpoint {"state_dict": ..., "module." prefix}
    openai      OpenAI's layout (the same keys) with its "input_resolution"/"context_length"/"vocab_size"
                entries, or a TorchScript archive as OpenAI released it (its state dict is read; only with
                `allow_torchscript: true`, since loading TorchScript runs code from the file)
    ovseg       OVSeg's CLIP (ovseg_clip_l_9a1909.pth): OpenAI layout plus visual.mask_embedding
                [depth, grid*grid, width]; or a full OVSeg detectron2 checkpoint {"model": {clip_adapter.clip_model.*}}
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from pathlib import Path
from typing import Any

import torch

from ovframe import BadInput
from ovframe.files import sha256_of

log = logging.getLogger("ovframe.clip")

OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")
OVSEG_PREFIX = "clip_adapter.clip_model."
MASK_EMBEDDING_KEY = "visual.mask_embedding"


def cache_root() -> Path:
    """$OVFRAME_CACHE_DIR, else ~/.cache/ovframe."""
    return Path(os.environ.get("OVFRAME_CACHE_DIR") or Path.home() / ".cache" / "ovframe")


# -- hashing ----------------------------------------------------------------------------------
_HASHES: dict[tuple, str] = {}


def weights_sha256(path: Path) -> str:
    """sha256 of a weights file, memoised in memory and on disk by (real path, size, mtime)."""
    real = os.path.realpath(path)
    st = os.stat(real)
    key = (real, st.st_size, st.st_mtime_ns)
    if key in _HASHES:
        return _HASHES[key]
    memo_path = cache_root() / "sha256.json"
    memo: dict[str, Any] = {}
    try:
        memo = json.loads(memo_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        memo = {}
    entry = memo.get(real)
    if isinstance(entry, dict) and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns:
        digest = str(entry["sha256"])
    else:
        digest = sha256_of(real)
        memo[real] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
        try:
            from ovframe.io import write_json

            write_json(memo_path, memo)
        except OSError:
            pass  # a read-only home is fine: the hash is just recomputed next time
    _HASHES[key] = digest
    return digest


# -- reading checkpoints ---------------------------------------------------------------------
def read_checkpoint(path: Path, allow_torchscript: bool = False) -> tuple[dict[str, torch.Tensor], str, dict[str, torch.Tensor]]:
    """(state dict in open_clip's layout, detected format, extras such as visual.mask_embedding).

    A TorchScript archive (OpenAI's original release) is read only with `allow_torchscript`: loading one
    runs code stored in the file, so it is refused unless the recipe opts in."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception as e:
            raise BadInput(f"{path}: not a readable safetensors file ({e})") from None
        return _unwrap(state, path, "open_clip")
    if _is_torchscript(path):
        if not allow_torchscript:
            raise BadInput(
                f"{path} is a TorchScript archive: loading it runs code stored in the file, so ovframe does not by "
                "default. If you trust the file, set `allow_torchscript: true` beside `pretrained:` in the recipe; "
                "better, convert it once to .safetensors where you trust it "
                "(torch.jit.load(PATH).state_dict() saved with safetensors.torch.save_file)."
            )
        log.warning("%s: loading a TorchScript archive (allow_torchscript: true): this runs code from the file", path)
        try:
            state = torch.jit.load(str(path), map_location="cpu").state_dict()
        except Exception as e:
            raise BadInput(f"{path}: looks like a TorchScript archive but cannot be read ({e})") from None
        return _unwrap(dict(state), path, "openai")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise BadInput(
            f"{path}: cannot be read as weights with torch.load(weights_only=True) ({type(e).__name__}: {e}). "
            "It may hold pickled Python objects, which ovframe never loads; save its state_dict (or convert it "
            "to .safetensors) where you trust it."
        ) from None
    return _unwrap(obj, path, "open_clip")


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    return any(n.endswith("constants.pkl") for n in names) and any("/code/" in n for n in names)


def _unwrap(obj: Any, path: Path, fmt: str) -> tuple[dict[str, torch.Tensor], str, dict[str, torch.Tensor]]:
    if not isinstance(obj, dict):
        raise BadInput(f"{path}: expected a state dict (a mapping of names to tensors), got {type(obj).__name__}")
    if isinstance(obj.get("state_dict"), dict):  # open_clip training checkpoint
        obj = obj["state_dict"]
    if isinstance(obj.get("model"), dict) and any(str(k).startswith(OVSEG_PREFIX) for k in obj["model"]):
        obj = {k[len(OVSEG_PREFIX):]: v for k, v in obj["model"].items() if k.startswith(OVSEG_PREFIX)}
        fmt = "ovseg"
    if obj and all(str(k).startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    state = dict(obj)
    if any(k in state for k in OPENAI_EXTRA_KEYS):
        fmt = "openai" if fmt != "ovseg" else fmt
        for k in OPENAI_EXTRA_KEYS:
            state.pop(k, None)
    extras = {}
    if MASK_EMBEDDING_KEY in state:
        extras[MASK_EMBEDDING_KEY] = state.pop(MASK_EMBEDDING_KEY)
        fmt = "ovseg"
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise BadInput(f"{path}: entries that are not tensors: {bad[:8]}; is this a CLIP state dict?")
    return state, fmt, extras
