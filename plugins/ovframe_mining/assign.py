"""The assignment rule: each phrase keeps its best-matching proposal(s).

    scores     float [N, P]  the region classifier's probability of phrase p for proposal n
    candidate  bool  [N]     proposals that may be assigned (valid for the classifier, large enough, object-like)

For each phrase p, the candidates are ranked by scores[:, p] (ties: the lower proposal index first) and the
first `top_k` whose score is at least `threshold` are kept. Phrases are independent: two phrases may
take the same proposal ("red star" and "striped red star" name the same region).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Assignment:
    phrase: int
    proposal: int
    score: float


def assign(scores: torch.Tensor, candidate: torch.Tensor, threshold: float, top_k: int = 1) -> list[Assignment]:
    """Assignments ordered by phrase, then by rank."""
    n, p = scores.shape
    if candidate.shape != (n,):
        raise ValueError(f"candidate must be [N={n}], got {tuple(candidate.shape)}")
    out: list[Assignment] = []
    idx = torch.nonzero(candidate).flatten()
    if idx.numel() == 0 or p == 0:
        return out
    sub = scores[idx].float().cpu()  # [M, P]
    k = min(top_k, idx.numel())
    # a stable descending sort keeps the lower proposal index first among equal scores
    order = torch.sort(sub, dim=0, descending=True, stable=True).indices[:k]  # [k, P]
    for j in range(p):
        for r in range(k):
            row = int(order[r, j])
            value = float(sub[row, j])
            if value >= threshold:
                out.append(Assignment(j, int(idx[row]), value))
    return out


def objectness(class_logits: torch.Tensor | None) -> torch.Tensor | None:
    """float [N]: 1 - p(no object) from [N, K+1] class logits (softmax over K+1, last column no-object)."""
    if class_logits is None:
        return None
    return 1.0 - class_logits.float().softmax(dim=-1)[:, -1]
