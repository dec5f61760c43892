"""Test support: a test-only plugin with a small fabricated dataset, and file helpers."""

from __future__ import annotations

import torch
from pydantic import Field

from ovframe import ComponentConfig, Dataset, Sample, SampleError, Vocabulary, hookimpl

NAMES = ("sky", "grass", "red square", "blue circle")
SEEN = (True, True, True, False)


class ToyConfig(ComponentConfig):
    """Fabricated images: a background class and 1-3 rectangles of other classes, a few ignore pixels."""

    n: int = Field(6, ge=1)
    size: int = 24
    corrupt: list[int] = Field(default_factory=list, description="indices that raise SampleError")


class ToyDataset(Dataset):
    name = "toy"
    Config = ToyConfig

    @property
    def vocabulary(self) -> Vocabulary:
        return Vocabulary(NAMES, SEEN)

    def __len__(self) -> int:
        return self.config.n

    def sample_id(self, index: int) -> str:
        return f"toy{index:03d}"

    def __getitem__(self, index: int) -> Sample:
        if index in self.config.corrupt:
            raise SampleError(self.sample_id(index), "fabricated corruption")
        g = torch.Generator().manual_seed(index)
        s = self.config.size
        label = torch.full((s, s), int(torch.randint(0, 2, (1,), generator=g)), dtype=torch.int64)
        for _ in range(int(torch.randint(1, 4, (1,), generator=g))):
            y, x = torch.randint(0, s - 6, (2,), generator=g).tolist()
            h, w = torch.randint(3, 7, (2,), generator=g).tolist()
            label[y : y + h, x : x + w] = int(torch.randint(0, len(NAMES), (1,), generator=g))
        label[0, :3] = -1
        palette = torch.tensor([[90, 160, 230], [40, 160, 40], [220, 30, 30], [30, 30, 220]], dtype=torch.uint8)
        image = palette[label.clamp(min=0)].permute(2, 0, 1).contiguous()
        return Sample(image, label, self.sample_id(index))


class ToyPlugin:
    @hookimpl
    def register_datasets(self, register):
        register(ToyDataset)


def write(path, text: str):
    """Write `text` (dedented) to `path`, creating folders; return the path."""
    import textwrap

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path
