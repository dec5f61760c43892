"""A persistent cache of text embeddings: one small safetensors file per (model, prompts, class name).

Layout: <root>/<hash of model id>/<hash of prompt spec>/<hash of class name>.safetensors, each file
holding one float32 [C] tensor and, as metadata, the model id, prompt spec and class name it was made
from (checked on read, so a hash collision or a misplaced file is never used). Files are written
atomically (temp file + rename): a crash mid-write leaves no entry, only a stray `.*.tmp` file that is
ignored. An entry that cannot be read, or does not match, is reported and recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ovframe.io import atomic_path, write_json

log = logging.getLogger("ovframe.clip")


def _h(text: str, n: int = 24) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


class EmbeddingCache:
    def __init__(self, root: Path, model_id: str, prompt_spec: str, dim: int):
        self.model_id, self.prompt_spec, self.dim = model_id, prompt_spec, dim
        self.dir = Path(root) / _h(model_id) / _h(prompt_spec)
        self.hits = 0
        self.misses = 0
        self.corrupt = 0

    def path(self, name: str) -> Path:
        return self.dir / f"{_h(name, 40)}.safetensors"

    def get(self, name: str) -> torch.Tensor | None:
        """The cached float32 [C] embedding of `name`, or None (absent or unusable: then recompute)."""
        path = self.path(name)
        if not path.exists():
            self.misses += 1
            return None
        try:
            with safe_open(str(path), "pt") as f:
                meta = f.metadata() or {}
                emb = f.get_tensor("embedding")
            problem = None
            if (meta.get("name"), meta.get("model_id"), meta.get("prompts")) != (name, self.model_id, self.prompt_spec):
                problem = "it was made for another class name, model or prompt set"
            elif emb.shape != (self.dim,) or emb.dtype != torch.float32 or not torch.isfinite(emb).all():
                problem = f"its tensor is {emb.dtype} {tuple(emb.shape)}, expected float32 ({self.dim},) and finite"
        except Exception as e:  # truncated or garbled file
            problem = f"unreadable ({type(e).__name__}: {e})"
        if problem is not None:
            log.warning("text-embedding cache entry %s for %r is unusable (%s); recomputing it", path, name, problem)
            self.corrupt += 1
            self.misses += 1
            return None
        self.hits += 1
        return emb

    def put(self, name: str, embedding: torch.Tensor) -> None:
        info = self.dir / "info.json"
        if not info.exists():
            write_json(info, {"model_id": self.model_id, "prompts": json.loads(self.prompt_spec)})
        meta = {"name": name, "model_id": self.model_id, "prompts": self.prompt_spec}
        with atomic_path(self.path(name)) as tmp:
            save_file({"embedding": embedding.detach().float().cpu().contiguous()}, str(tmp), metadata=meta)
