"""Adapters: MPT against open_clip's own forward and a hand-written loop; which weights a step trains;
adapter weights round-trip through safetensors."""

from __future__ import annotations

import pytest
import torch
from clip_helpers import build, reference_mpt

from ovframe import BadInput
from ovframe.training import save_weights


def classifier(tiny, **extra):
    return build("classifier", {"plugin": "clip-masked-crop", **tiny, **extra})


def attach(clf, adapter: dict):
    clf.attach(build("adapter", dict(adapter)))
    return clf.encoder


def inputs(b=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(b, 3, 32, 32, generator=g)
    masks = torch.zeros(b, 32, 32, dtype=torch.bool)
    masks[0] = True  # all foreground
    masks[1, 3:20, 5:30] = True  # patches partly covered keep their tokens
    masks[2, 17, 9] = True  # one pixel keeps one patch
    masks[4, 8:24, 8:24] = True  # exactly four patches
    return images, masks  # masks[3]: nothing (every patch prompted)


def test_all_foreground_mpt_equals_open_clip_encode_image(tiny):
    clf = classifier(tiny)
    clip_model = clf.encoder.visual
    enc = attach(clf, {"plugin": "mask-prompt-tuning", "depth": 3})
    with torch.no_grad():
        enc.prompts.normal_(0, 1.0)  # prompts that would change everything if they leaked in
    images, _ = inputs()
    full = torch.ones(5, 32, 32, dtype=torch.bool)
    import open_clip  # noqa: F401  (the reference: the model's own image forward)

    with torch.no_grad():
        ours = enc(images, full)
        theirs = clip_model(images)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


@pytest.mark.parametrize("depth", [1, 3])
@pytest.mark.parametrize("shared", [False, True])
def test_mpt_matches_a_hand_written_loop(tiny, depth, shared):
    clf = classifier(tiny)
    enc = attach(clf, {"plugin": "mask-prompt-tuning", "depth": depth, "shared": shared})
    assert tuple(enc.prompts.shape) == (depth, 1 if shared else 16, 64)
    with torch.no_grad():
        enc.prompts.normal_(0, 0.5)
    images, masks = inputs()
    with torch.no_grad():
        ours = enc(images, masks)
        ref = reference_mpt(enc.visual, enc.prompts, images, masks)
        plain = enc.visual(images)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours[0], plain[0], rtol=1e-5, atol=1e-5)  # all foreground: untouched
    assert (ours[1:] - plain[1:]).abs().amax(dim=1).min() > 1e-3  # masked patches did change the others


def test_patch_rule_any_region_pixel_keeps_the_patch():
    from ovframe_clip.encoders import patch_keep

    masks = torch.zeros(2, 16, 16, dtype=torch.bool)
    masks[0, 0, 0] = True  # one pixel of patch (0, 0)
    masks[1, 4:12, 4:12] = True  # a quarter of each of the four central patches
    keep = patch_keep(masks, (8, 8))
    assert keep.tolist() == [[True, False, False, False], [True, True, True, True]]


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before, module):
    return {k for k, v in module.state_dict().items() if not torch.equal(before[k], v)}


def _one_step(enc, lr):
    from ovframe_clip.train import contrastive_loss

    text = torch.nn.functional.normalize(torch.randn(3, 32), dim=-1)
    images, masks = inputs()
    params = [p for p in enc.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.1)
    loss, _ = contrastive_loss(enc(images, masks), text, torch.tensor([0, 1, 2, 1, 0]), 100.0)
    opt.zero_grad()
    loss.backward()
    opt.step()


def test_an_mpt_step_changes_only_the_prompts(tiny):
    clf = classifier(tiny)
    clip_model = build("text_encoder", {"plugin": "clip-text", **tiny}).clip  # the whole shared CLIP
    enc = attach(clf, {"plugin": "mask-prompt-tuning"})
    before_clip, before_enc = _snapshot(clip_model), _snapshot(enc)
    _one_step(enc, lr=2e-2)
    assert _changed(before_enc, enc) == {"prompts"}
    assert _changed(before_clip, clip_model) == set()


def test_an_ft_step_changes_the_image_tower_not_the_text_tower(tiny):
    clf = classifier(tiny)
    clip_model = build("text_encoder", {"plugin": "clip-text", **tiny}).clip
    enc = attach(clf, {"plugin": "full-finetune"})
    assert enc.visual is not clip_model.visual  # the shared model is never trained in place
    before_clip, before_enc = _snapshot(clip_model), _snapshot(enc)
    _one_step(enc, lr=1e-3)
    changed = _changed(before_enc, enc)
    assert changed and all(k.startswith("visual.") for k in changed)
    assert {"visual.conv1.weight", "visual.proj", "visual.transformer.resblocks.0.attn.in_proj_weight"} <= changed
    assert _changed(before_clip, clip_model) == set()  # neither tower of the shared CLIP moved


def test_an_mpt_ft_step_changes_only_the_prompts_on_the_finetuned_tower(tiny, tmp_path):
    clf = classifier(tiny)
    tower = {f"visual.{k}": v + 0.01 for k, v in clf.encoder.visual.state_dict().items()}
    save_weights(tmp_path / "ft.safetensors", tower)
    enc = attach(clf, {"plugin": "mpt+ft", "finetuned": str(tmp_path / "ft.safetensors")})
    torch.testing.assert_close(enc.visual.conv1.weight, tower["visual.conv1.weight"])
    before = _snapshot(enc)
    _one_step(enc, lr=2e-2)
    assert _changed(before, enc) == {"prompts"}


def test_adapter_weights_round_trip(tiny, tmp_path):
    images, masks = inputs()
    for spec in ({"plugin": "mask-prompt-tuning", "depth": 2}, {"plugin": "full-finetune"}, {"plugin": "mpt+ft", "depth": 2}):
        enc = attach(classifier(tiny), spec)
        _one_step(enc, lr=1e-2)
        path = tmp_path / f"{spec['plugin']}.safetensors"
        save_weights(path, enc.adapter_state(), metadata={"model_id": enc.model_id})
        again = attach(classifier(tiny), {**spec, "weights": str(path)})
        with torch.no_grad():
            torch.testing.assert_close(again(images, masks), enc(images, masks), rtol=0, atol=0)


def test_prompt_shape_mismatch_is_a_clear_error(tiny, tmp_path):
    save_weights(tmp_path / "p.safetensors", {"prompts": torch.zeros(2, 16, 64)})
    with pytest.raises(BadInput, match=r"\(2, 16, 64\).*expect \(3, 16, 64\)"):
        attach(classifier(tiny), {"plugin": "mask-prompt-tuning", "weights": str(tmp_path / "p.safetensors")})
    with pytest.raises(BadInput, match="exceeds the 3 blocks"):
        attach(classifier(tiny), {"plugin": "mask-prompt-tuning", "depth": 4})


def test_mpt_needs_a_vision_transformer():
    from ovframe_clip.encoders import PlainEncoder

    adapter = build("adapter", {"plugin": "mask-prompt-tuning"})
    with pytest.raises(BadInput, match="VisionTransformer"):
        adapter.attach(PlainEncoder(torch.nn.Conv2d(3, 4, 3), 32, "x"))
