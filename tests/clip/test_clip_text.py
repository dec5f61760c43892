"""The clip-text encoder: prompt ensembling, and a disk cache that is hit, missed, repaired and crash-safe."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from clip_helpers import build, write_tiny

from ovframe import BadInput, Vocabulary

VOCAB = Vocabulary(("cat", "road, route", "teddy bear"))


class Counter:
    """Counts text-tower forwards (and the prompts in them) through a hook on the text transformer."""

    def __init__(self, clip_model):
        self.calls, self.prompts = 0, 0
        self.handle = clip_model.transformer.register_forward_hook(self._hook)

    def _hook(self, module, args, output):
        self.calls += 1
        self.prompts += args[0].shape[0]

    def close(self):
        self.handle.remove()


@pytest.fixture
def encoder(tiny, tmp_path):
    def make(**options):
        return build("text_encoder", {"plugin": "clip-text", **tiny, "cache_dir": str(tmp_path / "text"), **options})

    return make


def test_template_sets():
    from ovframe_clip.templates import VILD, template_set

    assert len(template_set("vild")) == 14 and template_set("vild") == VILD
    assert len(template_set("imagenet")) == 80 and all(t.count("{}") == 1 for t in template_set("imagenet"))
    assert template_set("single") == ("a photo of a {}.",)
    with pytest.raises(BadInput, match="exactly one"):
        template_set(["a {} and a {}"])


@pytest.mark.parametrize("templates", ["vild", "single", ["a {} in a box", "my {}"]])
def test_prompt_ensembling_as_in_the_reference(encoder, templates):
    enc = encoder(templates=templates, cache=False)
    got = enc.encode(VOCAB)
    from ovframe_clip.templates import template_set

    expected = []
    with torch.no_grad():
        for name in VOCAB.names:
            tokens = enc.tokenizer([t.replace("{}", name) for t in template_set(templates)])
            per_prompt = F.normalize(enc.clip.encode_text(tokens), dim=-1)
            expected.append(F.normalize(per_prompt.mean(0), dim=-1))
    torch.testing.assert_close(got.embeddings, torch.stack(expected), rtol=1e-5, atol=1e-6)
    assert got.embeddings.shape == (3, 32)
    assert got.model_id == enc.model_id and "@" in got.model_id


def test_synonyms_average(encoder):
    enc = encoder(templates="single", synonyms="average", cache=False)
    got = enc.encode(Vocabulary(("road, route",))).embeddings[0]
    with torch.no_grad():
        parts = F.normalize(enc.clip.encode_text(enc.tokenizer(["a photo of a road.", "a photo of a route."])), dim=-1)
    torch.testing.assert_close(got, F.normalize(parts.mean(0), dim=-1), rtol=1e-5, atol=1e-6)


def test_second_encoding_runs_no_text_forward(encoder):
    first = encoder()
    counter = Counter(first.clip)
    try:
        a = first.encode(VOCAB)
        assert counter.prompts == 3 * 14
        second = encoder()  # a new component (a new run), same model and templates
        counter.calls = counter.prompts = 0
        b = second.encode(VOCAB)
        assert counter.calls == 0
        torch.testing.assert_close(a.embeddings, b.embeddings, rtol=0, atol=0)
        # one new class: only its 14 prompts go through the tower
        c = second.encode(Vocabulary(("cat", "dog", "teddy bear")))
        assert counter.prompts == 14
        torch.testing.assert_close(c.embeddings[0], a.embeddings[0], rtol=0, atol=0)
    finally:
        counter.close()


def test_cache_keys_on_templates_and_model(encoder, tmp_path):
    vild = encoder()
    counter = Counter(vild.clip)
    try:
        vild.encode(VOCAB)
        single = encoder(templates="single")
        counter.prompts = 0
        single.encode(VOCAB)
        assert counter.prompts == 3  # a different template set is a miss
    finally:
        counter.close()
    other = write_tiny(tmp_path / "other", seed=7)  # other weights, same architecture
    enc = build("text_encoder", {"plugin": "clip-text", **other, "cache_dir": str(tmp_path / "text")})
    assert enc.model_id != vild.model_id
    counter = Counter(enc.clip)
    try:
        enc.encode(VOCAB)
        assert counter.prompts == 3 * 14  # a different model is a miss
    finally:
        counter.close()


def test_a_corrupt_entry_is_recomputed(encoder):
    enc = encoder()
    good = enc.encode(VOCAB).embeddings
    path = enc.cache.path("road, route")
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])  # truncated
    enc.cache.path("cat").write_bytes(b"\x00garbage")
    counter = Counter(enc.clip)
    try:
        again = encoder().encode(VOCAB)
        assert counter.prompts == 2 * 14  # exactly the two broken entries
    finally:
        counter.close()
    torch.testing.assert_close(again.embeddings, good, rtol=0, atol=0)
    counter = Counter(enc.clip)
    try:
        encoder().encode(VOCAB)  # repaired on disk
        assert counter.calls == 0
    finally:
        counter.close()


def test_an_entry_made_for_another_name_is_not_used(encoder):
    enc = encoder()
    enc.encode(VOCAB)
    enc.cache.path("cat").write_bytes(enc.cache.path("teddy bear").read_bytes())  # misplaced file
    fresh = encoder()
    got = fresh.encode(Vocabulary(("cat",))).embeddings[0]
    assert fresh.cache.corrupt == 1
    torch.testing.assert_close(got, enc.embed(["cat"])[0], rtol=0, atol=0)


def test_a_crash_mid_write_leaves_no_entry(encoder, monkeypatch):
    import ovframe_clip.cache as cache_module

    real = cache_module.save_file

    def dying_save(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(cache_module, "save_file", dying_save)
    enc = encoder()
    with pytest.raises(KeyboardInterrupt):
        enc.encode(VOCAB)
    assert not any(p.suffix == ".safetensors" for p in enc.cache.dir.glob("*"))
    # a process killed outright leaves its temp file; it is ignored
    (enc.cache.dir / ".stray.safetensors.tmp").write_bytes(b"partial")
    monkeypatch.setattr(cache_module, "save_file", real)
    got = encoder().encode(VOCAB)
    torch.testing.assert_close(got.embeddings, encoder(cache=False).encode(VOCAB).embeddings, rtol=0, atol=0)
