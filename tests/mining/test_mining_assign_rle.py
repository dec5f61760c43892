"""The assignment rule against a brute-force re-computation, and COCO RLE against an independent encoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ovframe_mining import rle
from ovframe_mining.assign import assign, objectness


def brute_force(scores, candidate, threshold, top_k):
    """For each phrase: every candidate proposal, best score first (lower index first on ties)."""
    out = []
    n, p = scores.shape
    for j in range(p):
        ranked = sorted((i for i in range(n) if candidate[i]), key=lambda i: (-float(scores[i, j]), i))
        out += [(j, i, float(scores[i, j])) for i in ranked[:top_k] if float(scores[i, j]) >= threshold]
    return out


@pytest.mark.parametrize("seed", range(12))
def test_assign_equals_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    n, p = int(torch.randint(0, 9, (1,), generator=g)), int(torch.randint(1, 6, (1,), generator=g))
    scores = torch.randint(0, 5, (n, p), generator=g).float() / 4  # many ties
    candidate = torch.rand(n, generator=g) > 0.3
    threshold, top_k = [0.0, 0.25, 0.5, 1.0][seed % 4], 1 + seed % 3
    got = [(a.phrase, a.proposal, a.score) for a in assign(scores, candidate, threshold, top_k)]
    assert got == brute_force(scores, candidate, threshold, top_k)


def test_assign_edge_cases():
    assert assign(torch.zeros(0, 3), torch.zeros(0, dtype=torch.bool), 0.0) == []
    assert assign(torch.ones(4, 2), torch.zeros(4, dtype=torch.bool), 0.0) == []
    with pytest.raises(ValueError):
        assign(torch.ones(4, 2), torch.ones(3, dtype=torch.bool), 0.0)


def test_objectness_is_one_minus_no_object_probability():
    logits = torch.tensor([[2.0, 0.0, 1.0], [0.0, 0.0, 5.0]])
    expected = 1 - torch.exp(logits[:, -1]) / torch.exp(logits).sum(dim=1)
    torch.testing.assert_close(objectness(logits), expected)
    assert objectness(None) is None


def column_runs(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO RLE written out: alternating run lengths of 0s and 1s in column-major order."""
    flat = mask.flatten(order="F").astype(np.uint8)
    runs, current, length = [], 0, 0
    for v in flat:
        if v == current:
            length += 1
        else:
            runs.append(length)
            current, length = v, 1
    runs.append(length)
    return runs


@pytest.mark.parametrize("seed", range(6))
def test_rle_round_trip_and_independent_encoding(seed):
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(1, 40)), int(rng.integers(1, 40))
    mask = rng.random((h, w)) < [0.0, 0.02, 0.5, 0.98, 1.0, 0.3][seed]
    encoded = rle.encode(mask)
    assert encoded["size"] == [h, w] and isinstance(encoded["counts"], str)
    np.testing.assert_array_equal(rle.decode(encoded), mask)
    assert rle.area(encoded) == int(mask.sum())
    independent = mask_utils.frPyObjects({"size": [h, w], "counts": column_runs(mask)}, h, w)
    assert independent["counts"].decode("ascii") == encoded["counts"]
