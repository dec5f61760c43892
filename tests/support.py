"""Test support: a test-only plugin with a small fabricated dataset, and file helpers."""

from __future__ import annotations

import torch
from pydantic import Field

from ovframe import (
    ComponentConfig,
    Dataset,
    ProposalGenerator,
    Proposals,
    RegionClassifier,
    RegionScores,
    Sample,
    SampleError,
    Vocabulary,
    hookimpl,
)

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


class GridConfig(ComponentConfig):
    """Class-agnostic proposals: the image cut into a grid of cells."""

    cells: int = 2
    needs_text = False


class GridProposals(ProposalGenerator):
    name = "grid"
    Config = GridConfig

    def propose(self, samples, text=None):
        out = []
        for sample in samples:
            h, w = sample.size
            n = self.config.cells
            ys = torch.arange(h)[:, None] * n // h
            xs = torch.arange(w)[None, :] * n // w
            cell = ys * n + xs
            masks = torch.stack([cell == c for c in range(n * n)])
            out.append(Proposals(torch.where(masks, 20.0, -20.0)))
        return out


class MeanColourConfig(ComponentConfig):
    """Classifies a region by the distance of its mean colour to each class's RGB (test only)."""

    colours: dict[str, list[int]]
    other_distance: float = 60.0
    needs_text = False


class MeanColourClassifier(RegionClassifier):
    name = "mean-colour"
    Config = MeanColourConfig

    def classify(self, samples, proposals, text, vocabulary):
        out = []
        for sample, props in zip(samples, proposals):
            regions = props.mask_logits > 0
            image = sample.image.float()
            means = torch.stack([image[:, r].mean(dim=1) for r in regions])  # [N, 3]
            dist = torch.stack(
                [
                    (means - torch.tensor(self.config.colours[n], dtype=torch.float32)).norm(dim=1)
                    if n in self.config.colours
                    else torch.full((len(means),), self.config.other_distance)
                    for n in vocabulary.names
                ],
                dim=1,
            )
            out.append(RegionScores((-dist / 5).softmax(dim=1), regions.flatten(1).any(dim=1)))
        return out


class ToyPlugin:
    @hookimpl
    def register_datasets(self, register):
        register(ToyDataset)

    @hookimpl
    def register_proposal_generators(self, register):
        register(GridProposals)

    @hookimpl
    def register_region_classifiers(self, register):
        register(MeanColourClassifier)


def write(path, text: str):
    """Write `text` (dedented) to `path`, creating folders; return the path."""
    import textwrap

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def load_script(relative: str):
    """A repository script (scripts/NAME.py) as a module, for calling its main(argv) in-process."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module
