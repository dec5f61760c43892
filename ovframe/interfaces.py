"""The interfaces of the pipeline's stages. Records are defined in ovframe.records.

Every component declares `name` (its recipe key) and `Config` (a ComponentConfig subclass) and is
built from a validated Config: `Component(config)`. What a component needs from the rest of its recipe
(text embeddings, a classifier, class logits ...) is declared on its Config (ovframe.config), read by
`ovframe validate` without importing the component, and shown here as properties. The data flow, top to bottom:

    Dataset[i] -> Sample
    TextEncoder.encode(Vocabulary) -> TextEmbeddings
    ProposalGenerator.test_size(h, w) -> (h', w') | None    (resolution: reference resizes the image to it)
    ProposalGenerator.propose(samples, text) -> [Proposals]
    RegionClassifier.classify(samples, proposals, text, vocabulary) -> [RegionScores]  (an Adapter may be attached)
    Fuser.fuse(proposals, scores, vocabulary, output_sizes) -> [Segmentation]
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Mapping, Sequence

from .config import ComponentConfig
from .errors import RequiredFile

if TYPE_CHECKING:
    import torch

    from .export import ExportGraph
    from .records import Proposals, RegionScores, RegionSelection, Sample, Segmentation, TextEmbeddings, Vocabulary
    from .runner import RunContext


class Component(ABC):
    """Base of all components."""

    name: ClassVar[str]
    Config: ClassVar[type[ComponentConfig]]

    def __init__(self, config: ComponentConfig):
        self.config = config
        self.device: "torch.device | str" = "cpu"

    @classmethod
    def required_files(cls, config: ComponentConfig) -> list[RequiredFile]:
        """Files this configuration needs (weights, data). The runner checks all of them, for all
        components, before any work starts, and names every missing one with where to get it."""
        return []

    def to(self, device: "torch.device | str") -> "Component":
        """Move the component's modules and tensors to `device` (default: every nn.Module attribute)."""
        import torch

        self.device = torch.device(device)
        for value in vars(self).values():
            if isinstance(value, torch.nn.Module):
                value.to(self.device)
        return self

    def export_graph(self) -> "ExportGraph":
        """The component's network for `ovframe export` (ONNX): an nn.Module, example inputs, the axes left
        free, what a deployer needs besides the graph (ovframe.export.ExportGraph). Optional: components
        that cannot be exported keep this default, and `ovframe export` says so."""
        raise NotImplementedError


class TextEncoder(Component):
    @abstractmethod
    def encode(self, vocabulary: "Vocabulary") -> "TextEmbeddings":
        """Embed every class name of `vocabulary` ([K, C], rows L2-normalised)."""


class ProposalGenerator(Component):
    @property
    def needs_text(self) -> bool:
        """False for class-agnostic generators, which are then given text=None (declared on the Config:
        `needs_text = False`)."""
        return self.config.needs_text

    def test_size(self, h: int, w: int) -> "tuple[int, int] | None":
        """The (h', w') this generator wants to see an (h, w) image at (its test-time resize), or None
        to see it as it is. Under `resolution: reference` the pipeline resizes the uint8 image to this
        size (bilinear, as the reference's test mapper), runs proposals, region classification and
        fusion at it, and resizes the fused scores to (h, w); it marks each resized sample with
        meta[TEST_RESIZED_FROM] = (h, w). Under `resolution: original` the generator is given the image
        as it is and resizes it itself (mask logits back at the image's size)."""
        return None

    @abstractmethod
    def propose(self, samples: Sequence["Sample"], text: "TextEmbeddings | None") -> list["Proposals"]:
        """One Proposals per sample, mask logits at the sample's resolution. A sample whose
        meta holds TEST_RESIZED_FROM is already at `test_size`: do not resize it again."""


class Adapter(Component):
    """Changes how a region classifier's image tower sees masked regions (prompts, fine-tuned weights).

    The classifier calls `attach` once with its image model and uses what it returns; the contract
    of that model is the classifier family's (documented by the plugin that provides both).
    """

    @abstractmethod
    def attach(self, model: Any) -> Any:
        """Return the adapted model."""


class RegionClassifier(Component):
    @property
    def needs_text(self) -> bool:
        """False for classifiers that do not read the class names (the oracle); they are given text=None
        (declared on the Config)."""
        return self.config.needs_text

    @abstractmethod
    def classify(
        self,
        samples: Sequence["Sample"],
        proposals: Sequence["Proposals"],
        text: "TextEmbeddings | None",
        vocabulary: "Vocabulary",
    ) -> list["RegionScores"]:
        """One RegionScores per sample: a distribution over the K classes of `vocabulary` for each
        proposal. `text` holds the vocabulary's embeddings (None when needs_text is False)."""

    def attach(self, adapter: Adapter) -> None:
        raise NotImplementedError(f"region classifier {self.name!r} does not take adapters")


class Fuser(Component):
    @property
    def needs_classifier(self) -> bool:
        """Whether it fuses region scores (declared on the Config)."""
        return self.config.needs_classifier

    @property
    def needs_proposal_classes(self) -> bool:
        """Whether it uses the proposals' class logits (declared on the Config)."""
        return self.config.needs_proposal_classes

    @abstractmethod
    def fuse(
        self,
        proposals: Sequence["Proposals"],
        scores: Sequence["RegionScores"] | None,
        vocabulary: "Vocabulary",
        output_sizes: "Sequence[tuple[int, int]] | None" = None,
        *,
        return_scores: bool = False,
    ) -> list["Segmentation"]:
        """One Segmentation per image, at output_sizes[i] (H, W) when given, else at the proposals'
        resolution. The scores are fused at the proposals' resolution and resized to the output size
        before the argmax (`Segmentation.from_scores(scores, output_size)` does both). The pipeline
        passes `return_scores=True` only when its caller wants the [K, H, W] scores; otherwise a fuser
        may leave Segmentation.scores None (and should, when K is large: the labels can be made class
        chunk by class chunk, each chunk resized before a running argmax)."""

    def select_regions(self, proposals: Sequence["Proposals"], vocabulary: "Vocabulary") -> list["RegionSelection"] | None:
        """Which proposals need the region classifier's opinion, decided before it runs (None: all of
        them). Proposals left out get their scores rows as RegionSelection says (see RegionScores)."""
        return None

    def unproven(
        self,
        proposals: Sequence["Proposals"],
        scores: Sequence["RegionScores"],
        selections: Sequence["RegionSelection"],
        vocabulary: "Vocabulary",
        output_sizes: "Sequence[tuple[int, int]] | None" = None,
    ) -> list["torch.Tensor"]:
        """For selections with `certify`: per image, bool [N], the proposals left unclassified whose
        opinion could still change a label (at the output size), given the scores of those classified.
        The pipeline classifies them too. The default proves nothing: all of them."""
        return [~s.classify for s in selections]


class Dataset(Component):
    """An indexed collection of samples with the vocabulary its labels index into."""

    @property
    @abstractmethod
    def vocabulary(self) -> "Vocabulary": ...

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def __getitem__(self, index: int) -> "Sample":
        """Raise ovframe.SampleError for an unreadable sample: the caller reports and skips it."""

    def sample_id(self, index: int) -> str:
        """The id of sample `index` without loading it (resuming skips done ids cheaply)."""
        return self[index].id

    def __iter__(self) -> Iterator["Sample"]:
        for i in range(len(self)):
            yield self[i]

    @classmethod
    def prepare(cls, source: str, root: str, **options: Any) -> None:
        """Convert the official download at `source` into the layout this dataset reads under `root`
        (`ovframe prepare NAME --source PATH`)."""
        raise NotImplementedError(f"dataset {cls.name!r} has no preparation step")


class Task(Component):
    """What `ovframe run` does with a recipe: evaluate, predict, train-..."""

    @abstractmethod
    def run(self, ctx: "RunContext") -> Mapping[str, Any]:
        """Do the work; return the metrics to write to metrics.json (and to a recipe set's table)."""
