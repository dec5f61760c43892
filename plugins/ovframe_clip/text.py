"""The `clip-text` encoder: prompt-ensembled CLIP text embeddings with a persistent cache.

Prompt ensembling as in the reference: every template is filled with the class name, each prompt's
embedding is L2-normalised, the prompts of a class are averaged and the mean is normalised again.
With `synonyms: average`, a name such as "road, route" is embedded per synonym that way and the
synonyms' embeddings are averaged and normalised once more.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from ovframe import TextEmbeddings, TextEncoder, Vocabulary

from .cache import EmbeddingCache
from .config import ClipTextConfig
from .loading import cache_root, load_clip, required_files
from .templates import fill, template_set


class ClipTextEncoder(TextEncoder):
    name = "clip-text"
    Config = ClipTextConfig

    def __init__(self, config: ClipTextConfig):
        super().__init__(config)
        self.templates = template_set(config.templates)
        loaded = load_clip(config)
        self.clip = loaded.model
        self.tokenizer = loaded.tokenizer
        self.model_id = loaded.model_id
        self.dim = int(self._text_dim())
        self.cache: EmbeddingCache | None = None
        if config.cache:
            root = Path(os.path.expanduser(config.cache_dir)) if config.cache_dir else cache_root() / "text"
            spec = json.dumps({"templates": list(self.templates), "synonyms": config.synonyms}, sort_keys=True)
            self.cache = EmbeddingCache(root, self.model_id, spec, self.dim)

    @classmethod
    def required_files(cls, config: ClipTextConfig):
        return required_files(config)

    def export_graph(self):
        """The text tower, for `ovframe export` (see export.py)."""
        from .export import text_graph

        return text_graph(self)

    def _text_dim(self) -> int:
        proj = getattr(self.clip, "text_projection", None)
        if isinstance(proj, torch.Tensor):
            return proj.shape[-1]
        return int(self.clip.visual.output_dim)

    def encode(self, vocabulary: Vocabulary) -> TextEmbeddings:
        names = list(vocabulary.names)
        found = self.cache.get_many(names) if self.cache is not None else {}
        missing = [n for n in names if n not in found]
        if missing:
            computed = dict(zip(missing, self.embed(missing)))
            found.update(computed)
            if self.cache is not None:
                self.cache.put_many(computed)
        embeddings = torch.stack([found[n] for n in names]).to(self.device)
        return TextEmbeddings(vocabulary, embeddings, self.model_id)

    def _groups(self, name: str) -> list[str]:
        if self.config.synonyms == "average":
            parts = [p.strip() for p in name.split(",") if p.strip()]
            return parts or [name]
        return [name]

    @torch.inference_mode()
    def embed(self, names: list[str]) -> list[torch.Tensor]:
        """Ensembled, normalised float32 [C] embeddings of `names` (no cache)."""
        prompts: list[str] = []
        spans: list[list[tuple[int, int]]] = []  # per name: per synonym: (start, end) in prompts
        for name in names:
            groups = []
            for synonym in self._groups(name):
                start = len(prompts)
                prompts += [fill(t, synonym) for t in self.templates]
                groups.append((start, len(prompts)))
            spans.append(groups)
        feats = []
        starts = range(0, len(prompts), self.config.batch_size)
        if len(starts) > 1:  # long vocabularies take a while on a CPU: show it (quiet when not a terminal)
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc=f"embed {len(names)} class names", disable=None, leave=False)
        for i in starts:
            tokens = self.tokenizer(prompts[i : i + self.config.batch_size]).to(self.device)
            feats.append(F.normalize(self.clip.encode_text(tokens).float(), dim=-1))
        per_prompt = torch.cat(feats)
        out = []
        for groups in spans:
            synonyms = torch.stack([F.normalize(per_prompt[a:b].mean(0), dim=-1) for a, b in groups])
            out.append(F.normalize(synonyms.mean(0), dim=-1).cpu())
        return out
