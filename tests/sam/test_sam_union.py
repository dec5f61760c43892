"""The `union` proposal generator, and SAM options checked where the recipe says them."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from support import write

from ovframe import ComponentConfig, ProposalGenerator, Proposals, RecipeError, hookimpl

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


class FixedConfig(ComponentConfig):
    """Two proposals with class logits (test only)."""

    k: int = 3


class FixedProposals(ProposalGenerator):
    """Left half / right half, with class logits against the text given."""

    name = "fixed-classes"
    Config = FixedConfig

    def propose(self, samples, text):
        out = []
        for s in samples:
            h, w = s.size
            left = torch.zeros(h, w, dtype=torch.bool)
            left[:, : w // 2] = True
            masks = torch.where(torch.stack([left, ~left]), 10.0, -10.0)
            k = text.embeddings.shape[0]
            out.append(Proposals(masks, torch.arange(2 * (k + 1), dtype=torch.float).view(2, k + 1), {"score": torch.tensor([0.5, 0.25])}))
        return out


class FixedPlugin:
    @hookimpl
    def register_proposal_generators(self, register):
        register(FixedProposals)


@pytest.fixture
def union_registry(registry):
    registry.add_plugin(FixedPlugin(), name="fixed")
    return registry


def test_union_concatenates_and_marks_rows_without_class_opinion(union_registry, tiny_weights, synth_samples):
    from ovframe import TextEmbeddings, Vocabulary

    union = union_registry.build("proposals", {
        "plugin": "union",
        "members": [
            {"plugin": "sam", "weights": tiny_weights, "points_per_side": 4, "max_proposals": 3, "pred_iou_thresh": 0.0,
             "stability_score_thresh": 0.0, "box_nms_thresh": 1.0},
            {"plugin": "fixed-classes"},
        ],
    })
    assert union.needs_text  # a member classifies
    vocab = Vocabulary(("a", "b", "c"))
    text = TextEmbeddings(vocab, torch.eye(3))
    sam_alone = union.members[0].propose(synth_samples[:2], None)
    out = union.propose(synth_samples[:2], text)
    for alone, p in zip(sam_alone, out):
        n = len(alone)
        assert n >= 1 and len(p) == n + 2
        torch.testing.assert_close(p.mask_logits[:n], alone.mask_logits)
        assert p.has_classes.tolist() == [False] * n + [True] * 2
        assert p.class_logits[:n].isnan().all() and p.class_logits.shape == (n + 2, 4)
        torch.testing.assert_close(p.quality["predicted_iou"][:n], alone.quality["predicted_iou"])
        assert p.quality["predicted_iou"][n:].isnan().all() and p.quality["score"][:n].isnan().all()
        assert p.quality["score"][n:].tolist() == [0.5, 0.25]
    only_agnostic = union_registry.build("proposals", {"plugin": "union", "members": [{"plugin": "ground-truth-masks"}]})
    assert not only_agnostic.needs_text
    assert only_agnostic.propose(synth_samples[:1], None)[0].class_logits is None


def test_union_lists_every_members_files(registry, tmp_path):
    from ovframe_sam.union import UnionProposals

    config = UnionProposals.Config.model_validate({"members": [
        {"plugin": "sam", "model": "vit_b", "weights": str(tmp_path / "a.pth")},
        {"plugin": "sam", "model": "vit_h", "weights": str(tmp_path / "b.pth")},
    ]})
    assert [f.path for f in UnionProposals.required_files(config)] == [str(tmp_path / "a.pth"), str(tmp_path / "b.pth")]


def test_member_errors_point_at_the_members_key(registry, tmp_path):
    from ovframe.recipes import load_recipe

    f = write(tmp_path / "r.yaml", """
        name: r
        proposals:
          plugin: union
          members:
            - plugin: ground-truth-masks
            - plugin: sam
              points_per_side: 0
            - plugin: no-such-generator
        classifier: oracle
        fuser: clip-only
        """)
    with pytest.raises(RecipeError) as e:
        load_recipe(f, registry=registry)
    problems = {key: str(where) for where, key, _ in e.value.problems}
    assert problems["proposals.members[1].points_per_side"].endswith("r.yaml:7:7")  # the member's own key
    assert problems["proposals.members[2].plugin"].endswith("r.yaml:8:7")
    assert "unknown proposal generator 'no-such-generator'; registered: ground-truth-masks" in str(e.value)


def test_bad_sam_options_exit_2_with_file_and_line(tmp_path):
    f = write(tmp_path / "r.yaml", """
        name: r
        proposals:
          plugin: sam
          model: {image_size: 100, patch_size: 16}
          mask_logits: soft
        classifier: oracle
        fuser: clip-only
        """)
    out = subprocess.run([sys.executable, "-m", "ovframe", "validate", str(f)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    lines = out.stderr.splitlines()
    assert any("r.yaml:4:" in line and "image_size 100 is not a multiple of patch_size 16" in line for line in lines)
    assert any("r.yaml:5:" in line and "proposals.mask_logits" in line for line in lines)


def test_union_sees_the_image_at_its_first_members_test_size(registry):
    from ovframe_sam.union import UnionProposals

    class Sized:
        def __init__(self, size):
            self.size = size

        def test_size(self, h, w):
            return self.size

    union = UnionProposals.__new__(UnionProposals)
    union.members = [Sized(None), Sized((64, 96)), Sized((32, 48))]
    assert union.test_size(100, 150) == (64, 96)
    union.members = [Sized(None)]
    assert union.test_size(100, 150) is None
