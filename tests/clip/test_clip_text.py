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


def test_a_corrupt_file_is_rebuilt(encoder):
    enc = encoder()
    good = enc.encode(VOCAB).embeddings
    data = enc.cache.path.read_bytes()
    enc.cache.path.write_bytes(data[: len(data) // 2])  # truncated
    counter = Counter(enc.clip)
    try:
        fresh = encoder()
        again = fresh.encode(VOCAB)
        assert counter.prompts == 3 * 14 and fresh.cache.corrupt == 1
    finally:
        counter.close()
    torch.testing.assert_close(again.embeddings, good, rtol=0, atol=0)
    counter = Counter(enc.clip)
    try:
        encoder().encode(VOCAB)  # repaired on disk
        assert counter.calls == 0
    finally:
        counter.close()


def test_a_non_finite_row_is_recomputed_alone(encoder):
    from safetensors import safe_open
    from safetensors.torch import save_file

    enc = encoder()
    good = enc.encode(VOCAB).embeddings
    with safe_open(str(enc.cache.path), "pt") as f:
        meta, rows = f.metadata(), f.get_tensor("embeddings")
    rows[1, 0] = float("nan")  # "road, route"
    save_file({"embeddings": rows}, str(enc.cache.path), metadata=meta)
    counter = Counter(enc.clip)
    try:
        again = encoder().encode(VOCAB)
        assert counter.prompts == 14
    finally:
        counter.close()
    torch.testing.assert_close(again.embeddings, good, rtol=0, atol=0)


def test_a_file_made_for_another_model_is_not_used(encoder, tmp_path):
    enc = encoder()
    enc.encode(VOCAB)
    single = encoder(templates="single")
    single.encode(VOCAB)
    single.cache.path.write_bytes(enc.cache.path.read_bytes())  # misplaced: made with the 14 ViLD templates
    fresh = encoder(templates="single")
    got = fresh.encode(Vocabulary(("cat",))).embeddings[0]
    assert fresh.cache.corrupt == 1
    torch.testing.assert_close(got, single.embed(["cat"])[0], rtol=0, atol=0)


def test_encoders_adding_names_keep_each_others_entries(encoder):
    a, b = encoder(), encoder()
    a.encode(Vocabulary(("cat",)))
    b.encode(Vocabulary(("dog",)))  # b read the file before a wrote? it reads again before writing
    a.encode(Vocabulary(("teddy bear",)))
    counter = Counter(a.clip)
    try:
        encoder().encode(Vocabulary(("cat", "dog", "teddy bear")))
        assert counter.calls == 0
    finally:
        counter.close()


def test_a_crash_mid_write_keeps_the_previous_file(encoder, monkeypatch):
    import ovframe_clip.cache as cache_module

    enc = encoder()
    enc.encode(Vocabulary(("cat",)))
    before = enc.cache.path.read_bytes()
    real = cache_module.save_file

    def dying_save(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(cache_module, "save_file", dying_save)
    with pytest.raises(KeyboardInterrupt):
        encoder().encode(VOCAB)
    assert enc.cache.path.read_bytes() == before
    # a process killed outright leaves its temp file; it is ignored
    (enc.cache.dir / ".stray.safetensors.tmp").write_bytes(b"partial")
    monkeypatch.setattr(cache_module, "save_file", real)
    got = encoder().encode(VOCAB)
    torch.testing.assert_close(got.embeddings, encoder(cache=False).encode(VOCAB).embeddings, rtol=0, atol=0)


def test_two_checkpoints_of_one_model_config_never_share_cached_embeddings(tmp_path):
    """The same `model:` (one config file) with other weights, or the same weights file rewritten: the
    cache misses and gives the new weights' embeddings, never the first ones'."""
    import os

    folder = tmp_path / "models"
    first = write_tiny(folder, seed=0, name="a")
    second = {"model": first["model"], "pretrained": write_tiny(folder, seed=7, name="b")["pretrained"]}
    cache = {"cache_dir": str(tmp_path / "text")}

    def encoder(keys):
        return build("text_encoder", {"plugin": "clip-text", "templates": "single", **keys, **cache})

    a = encoder(first).encode(VOCAB).embeddings
    enc = encoder(second)
    b = enc.encode(VOCAB).embeddings
    with torch.no_grad():  # the second weights' own embeddings, computed here
        own = F.normalize(enc.clip.encode_text(enc.tokenizer([f"a photo of a {n}." for n in VOCAB.names])), dim=-1)
    torch.testing.assert_close(b, own, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(a, b, atol=1e-3)
    # the first weights file rewritten in place with the second's weights (same size, a later mtime)
    weights = first["pretrained"]
    st = os.stat(weights)
    with open(second["pretrained"], "rb") as src:
        data = src.read()
    with open(weights, "wb") as dst:
        dst.write(data)
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    torch.testing.assert_close(encoder(first).encode(VOCAB).embeddings, b, rtol=0, atol=0)
