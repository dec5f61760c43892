"""The `union` proposal generator: the proposals of other generators (built by name through the
registry), concatenated per image in the order of `members`.

    mask_logits  [N1 + N2 + ..., H, W]
    class_logits [N, K+1] when any member classifies; the rows of class-agnostic members are NaN ("no class
                 opinion": the ensembles use the region classifier alone for them); None when no member does
    quality      every name any member gives, NaN in the rows of members that do not give it
It needs the text embeddings when any member does (UnionConfig.needs_text says so from the members'
Configs). Under `resolution: reference` it sees the image at the first member's test size that is not
None (MaskFormer's in a MaskFormer + SAM union); every member then works at that size.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ovframe import BadInput, ProposalGenerator, Proposals, RequiredFile, Sample, TextEmbeddings, get_registry

from .config import UnionConfig


def _section(member: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    options = dict(member)
    return options.pop("plugin"), options


def concatenate(parts: Sequence[Proposals], names: Sequence[str]) -> Proposals:
    """One image's proposals from several generators (named for errors) as one Proposals."""
    sizes = {tuple(p.mask_logits.shape[1:]) for p in parts}
    if len(sizes) > 1:
        raise ValueError(f"union members gave masks of different sizes {sorted(sizes)} ({', '.join(names)}): each must be at the image's size")
    widths = {p.class_logits.shape[1] for p in parts if p.class_logits is not None}
    if len(widths) > 1:
        raise ValueError(f"union members classify against different vocabularies (K+1 = {sorted(widths)})")
    device = parts[0].mask_logits.device
    masks = torch.cat([p.mask_logits.float().to(device) for p in parts])
    classes = None
    if widths:
        width = widths.pop()
        classes = torch.cat([
            p.class_logits.float().to(device) if p.class_logits is not None else torch.full((len(p), width), float("nan"), device=device)
            for p in parts
        ])
    keys = list(dict.fromkeys(k for p in parts for k in p.quality))
    quality = {
        k: torch.cat([p.quality[k].float().to(device) if k in p.quality else torch.full((len(p),), float("nan"), device=device) for p in parts])
        for k in keys
    }
    return Proposals(masks, classes, quality)


class UnionProposals(ProposalGenerator):
    name = "union"
    Config = UnionConfig

    def __init__(self, config: UnionConfig):
        super().__init__(config)
        registry = get_registry()
        self.names = [_section(m)[0] for m in config.members]
        self.members: list[ProposalGenerator] = [registry.build("proposals", dict(m)) for m in config.members]

    @classmethod
    def required_files(cls, config: UnionConfig) -> list[RequiredFile]:
        registry = get_registry()
        out: list[RequiredFile] = []
        for member in config.members:
            plugin, options = _section(member)
            spec = registry.get("proposals", plugin)
            out += spec.load().required_files(spec.config.model_validate(options))
        return out

    def test_size(self, h: int, w: int) -> tuple[int, int] | None:
        for member in self.members:
            size = member.test_size(h, w)
            if size is not None:
                return size
        return None

    def to(self, device: Any) -> "UnionProposals":
        super().to(device)
        for member in self.members:
            member.to(device)
        return self

    def propose(self, samples: Sequence[Sample], text: TextEmbeddings | None) -> list[Proposals]:
        if self.needs_text and text is None:
            raise BadInput(f"union: member(s) {[n for n, m in zip(self.names, self.members) if m.needs_text]} need the class names' text embeddings: the recipe needs a `text_encoder:`")
        outputs = [m.propose(samples, text if m.needs_text else None) for m in self.members]
        return [concatenate([out[i] for out in outputs], self.names) for i in range(len(samples))]
