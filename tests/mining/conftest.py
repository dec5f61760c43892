"""Mining fixtures: a caption folder of coloured shapes with known phrases, the fake components, a tiny CLIP."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from mining_support import make_caption_folder  # noqa: E402

pytest.importorskip("spacy")


@pytest.fixture(scope="module")
def caption_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("captions") / "data"
    return root, make_caption_folder(root, 10)


@pytest.fixture
def fakes_registry(registry):
    import mining_fakes

    registry.add_plugin(mining_fakes, name="miningtest")
    return registry


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> dict[str, str]:
    """A tiny random open_clip CLIP on disk (JSON config + safetensors): recipe keys model, pretrained."""
    import torch
    from open_clip.model import CLIP
    from safetensors.torch import save_file

    cfg = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 64, "layers": 2, "head_width": 32},
           "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    folder = tmp_path_factory.mktemp("tiny-clip")
    torch.manual_seed(0)
    (folder / "tiny.json").write_text(json.dumps(cfg))
    save_file({k: v.contiguous() for k, v in CLIP(**cfg).state_dict().items()}, str(folder / "tiny.safetensors"))
    return {"model": str(folder / "tiny.json"), "pretrained": str(folder / "tiny.safetensors")}
