"""Test-only components for the maskformer tests: a deterministic word-vector text encoder and a dataset of
fabricated scenes (sky over grass, with a red square and a yellow disc). Also used by the torchrun launcher."""

from __future__ import annotations

import hashlib

import torch
from pydantic import Field

from ovframe import ComponentConfig, Dataset, Sample, TextEmbeddings, TextEncoder, Vocabulary, hookimpl

CLASSES = ("sky", "grass", "red square", "yellow disc")


def word_vector(word: str, dim: int) -> torch.Tensor:
    seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "little") % (2**63)
    return torch.randn(dim, generator=torch.Generator().manual_seed(seed))


class WordTextConfig(ComponentConfig):
    """Test encoder: a class name's embedding is the normalised mean of fixed random vectors of its words."""

    dim: int = Field(32, ge=2)


class WordTextEncoder(TextEncoder):
    name = "test-words"
    Config = WordTextConfig
    calls: list[tuple[str, ...]] = []  # every vocabulary it was asked to embed (class-level, for tests)

    def encode(self, vocabulary: Vocabulary) -> TextEmbeddings:
        WordTextEncoder.calls.append(tuple(vocabulary.names))
        rows = [torch.stack([word_vector(w, self.config.dim) for w in n.split()]).mean(0) for n in vocabulary.names]
        emb = torch.nn.functional.normalize(torch.stack(rows), dim=-1)
        return TextEmbeddings(vocabulary, emb, f"test-words-{self.config.dim}")


class ScenesConfig(ComponentConfig):
    """Fabricated scenes: sky over grass with a red square and a yellow disc at random places."""

    count: int = Field(6, ge=1)
    height: int = 64
    width: int = 64
    seed: int = 0
    unseen: list[str] = Field(default_factory=list, description="class names to mark unseen")


def scene(index: int, h: int, w: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed * 1000 + index)
    r = lambda lo, hi: int(torch.randint(lo, hi + 1, (1,), generator=g))  # noqa: E731
    label = torch.zeros(h, w, dtype=torch.int64)
    horizon = r(h // 3, 2 * h // 3)
    label[horizon:] = 1
    s = r(h // 6, h // 3)
    top, left = r(0, h - s), r(0, w // 2 - s)
    label[top : top + s, left : left + s] = 2
    rad = r(h // 10, h // 6)
    cy, cx = r(rad, h - rad - 1), r(w // 2 + rad, w - rad - 1)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    label[(yy - cy) ** 2 + (xx - cx) ** 2 <= rad**2] = 3
    colours = torch.tensor([[110, 160, 230], [60, 150, 50], [210, 30, 30], [240, 220, 40]], dtype=torch.float32)
    image = colours[label].permute(2, 0, 1) + 12 * torch.randn(3, h, w, generator=g)
    return image.clamp(0, 255).to(torch.uint8), label


class Scenes(Dataset):
    name = "test-scenes"
    Config = ScenesConfig

    @property
    def vocabulary(self) -> Vocabulary:
        unseen = set(self.config.unseen)
        return Vocabulary(CLASSES, tuple(n not in unseen for n in CLASSES) if unseen else None)

    def __len__(self) -> int:
        return self.config.count

    def __getitem__(self, index: int) -> Sample:
        c = self.config
        image, label = scene(index, c.height, c.width, c.seed)
        return Sample(image, label, f"scene-{index:03d}")


class Plugin:
    @hookimpl
    def register_text_encoders(self, register):
        register(WordTextEncoder)

    @hookimpl
    def register_datasets(self, register):
        register(Scenes)


def add_to(registry) -> None:
    registry.add_plugin(Plugin(), name="maskformer-test-fakes")


TINY = {
    "backbone": "resnet18", "out_indices": [1, 2, 3, 4], "backbone_norm": "train", "conv_dim": 32, "mask_dim": 32,
    "hidden_dim": 32, "num_queries": 8, "dec_layers": 2, "nheads": 4, "dim_feedforward": 64, "embed_hidden_dim": 64,
    "test_short_side": 64,
}
"""A tiny maskformer architecture for tests (ResNet-18 at 64 px, 8 queries, 2 decoder layers)."""
