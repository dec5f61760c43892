"""A persistent cache of text embeddings: one packed file per (model, prompt spec).

Layout: <root>/<hash of model id>/<hash of prompt spec>/embeddings.safetensors, holding one float32
[M, C] tensor whose rows are the embeddings of the M class names listed, in order, in its metadata,
beside the model id and prompt spec they were made with (checked on read, so a hash collision or a
misplaced file is never used). A hit for thousands of names is one file read and a row gather.

New names are merged into the file: it is read again just before writing, so names that another
process added meanwhile are kept, and written atomically (temp file + rename): a crash mid-write
leaves the previous file as it was, and at most a stray `.*.tmp` file, which is ignored. A file that
cannot be read, or does not match, is reported and rebuilt; a row that is not finite is recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ovframe.io import atomic_path

log = logging.getLogger("ovframe.clip")

FILE = "embeddings.safetensors"


def _h(text: str, n: int = 24) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


class EmbeddingCache:
    def __init__(self, root: Path, model_id: str, prompt_spec: str, dim: int):
        self.model_id, self.prompt_spec, self.dim = model_id, prompt_spec, dim
        self.dir = Path(root) / _h(model_id) / _h(prompt_spec)
        self.path = self.dir / FILE
        self.hits = 0
        self.misses = 0
        self.corrupt = 0
        self._loaded: tuple[tuple[int, int], dict[str, int], torch.Tensor] | None = None
        self._unusable: tuple[int, int] | None = None  # the file version already reported

    def _read(self) -> tuple[dict[str, int], torch.Tensor]:
        """name -> row, and the rows, of the file on disk (kept in memory while the file is unchanged)."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return {}, torch.zeros(0, self.dim)
        key = (stat.st_mtime_ns, stat.st_size)
        if self._loaded is not None and self._loaded[0] == key:
            return self._loaded[1], self._loaded[2]
        if self._unusable == key:
            return {}, torch.zeros(0, self.dim)
        try:
            with safe_open(str(self.path), "pt") as f:
                meta = f.metadata() or {}
                rows = f.get_tensor("embeddings")
            names = json.loads(meta.get("names", "null"))
            problem = None
            if (meta.get("model_id"), meta.get("prompts")) != (self.model_id, self.prompt_spec):
                problem = "it was made for another model or prompt set"
            elif not isinstance(names, list) or rows.dtype != torch.float32 or rows.shape != (len(names), self.dim):
                problem = f"its tensor is {rows.dtype} {tuple(rows.shape)} for {len(names) if isinstance(names, list) else '?'} names, expected float32 [M, {self.dim}]"
        except Exception as e:  # truncated or garbled file
            problem = f"unreadable ({type(e).__name__}: {e})"
        if problem is not None:
            log.warning("text-embedding cache %s is unusable (%s); its classes are recomputed", self.path, problem)
            self.corrupt += 1
            self._unusable = key
            return {}, torch.zeros(0, self.dim)
        index = {name: i for i, name in enumerate(names)}
        self._loaded = (key, index, rows)
        return index, rows

    def get_many(self, names: list[str]) -> dict[str, torch.Tensor]:
        """The cached float32 [C] embeddings of those of `names` that are cached and finite."""
        index, rows = self._read()
        found = [n for n in names if n in index]
        out: dict[str, torch.Tensor] = {}
        if found:
            picked = rows.index_select(0, torch.tensor([index[n] for n in found], dtype=torch.int64))
            finite = torch.isfinite(picked).all(dim=1).tolist()
            for name, emb, ok in zip(found, picked, finite):
                if ok:
                    out[name] = emb
                else:
                    log.warning("text-embedding cache %s holds a non-finite embedding for %r; recomputing it", self.path, name)
                    self.corrupt += 1
        self.hits += len(out)
        self.misses += len(names) - len(out)
        return out

    def put_many(self, embeddings: dict[str, torch.Tensor]) -> None:
        """Add (or replace) entries, keeping what the file holds now."""
        if not embeddings:
            return
        index, rows = self._read()
        names = list(index) + [n for n in embeddings if n not in index]
        merged = torch.cat([rows, torch.zeros(len(names) - len(rows), self.dim)])  # a copy: the read rows stay as read
        position = {n: i for i, n in enumerate(names)}
        merged[torch.tensor([position[n] for n in embeddings])] = torch.stack([e.detach().float().cpu() for e in embeddings.values()])
        meta = {"model_id": self.model_id, "prompts": self.prompt_spec, "names": json.dumps(names)}
        self.dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as tmp:
            save_file({"embeddings": merged.contiguous()}, str(tmp), metadata=meta)
        self._loaded = None
