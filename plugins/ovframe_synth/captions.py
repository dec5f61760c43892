"""Captions: several natural-language descriptions of a scene, as a person might write them.

Each caption names only classes present in the scene (colour + shape compounds, stuff names, or their
synonyms), and the first one names every class present, so the captions of an image together name
exactly its classes. They vary in phrasing and in what they say: inventories ("a picture of a small
violet star and two red circles on grass and water"), spatial relations ("a striped blue square to the
left of an orange heart"), objects on stuff ("a yellow disc lying on the sand"), the layout of the
background ("water at the top and sand at the bottom") and pairs. Attributes (size, pattern) are said
sometimes; synonyms ("violet", "disc", "a lawn") are used sometimes.

A class of thing is always named as "<colour word> <shape word>" with nothing between the two, so a
reader (or a test) finds every mention with one pattern. Some captions also describe objects by shape
alone ("two stars and a circle on grass", "a striped star on the sand") or colour alone ("a violet
shape"), as people do; those name no class, and they are what makes a contrastive learner look at
shapes (colour and background alone would otherwise tell most captions of a batch apart). Text is
lower case, words from common English.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import world

SYNONYM_RATE = 0.15  # chance a colour or shape word is replaced by a synonym
STUFF_PHRASE_RATE = 0.4  # chance a stuff class is named by one of its other phrases
ATTRIBUTE_RATE = 0.55  # chance a size or pattern adjective is said when it applies
PARTIAL_RATE = 0.35  # chance an object of an on-stuff or pair caption is named by its shape or colour alone
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve")
MASS_NOUN = {"brick wall": "bricks", "sky": "sky"}  # after "a patch of"
PREPOSITIONS = {
    "sky": ("in", "against"),
    "brick wall": ("in front of", "against"),
    "water": ("on", "floating on"),
}
PHOTO_OF = ("", "a photo of ", "a picture of ", "a close-up of ")  # openings of single-object captions
GROUND = {"grass", "sand", "gravel", "snow", "lava"}  # reads after "ground covered in"


@dataclass(frozen=True)
class ObjectFacts:
    """What a caption writer knows about one object: where it is (visible centroid, 0..1) and what
    lies under it; hidden_by: the objects in front that hide part of it (indices)."""

    class_id: int
    pattern: str
    size: str  # "small", "large" or ""
    cy: float
    cx: float
    under: int  # stuff class id
    hidden_by: tuple[int, ...] = ()


@dataclass(frozen=True)
class StuffFacts:
    class_id: int
    where: str  # all, top, bottom, left, right, middle, patch


@dataclass(frozen=True)
class Caption:
    text: str
    mentions: frozenset[int]  # class ids the text names
    kind: str  # inventory, relation, on-stuff, layout, pair


class _Writer:
    """Writes captions; every class it names on the way is added to `named` (reset per caption)."""

    def __init__(self, rng: np.random.Generator, objects: list[ObjectFacts], stuff: list[StuffFacts]):
        self.rng, self.objects, self.stuff = rng, objects, stuff
        self.named: set[int] = set()

    def pick(self, options):
        return options[int(self.rng.integers(len(options)))]

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    # -- words -----------------------------------------------------------------------------
    def colour(self, class_id: int) -> str:
        name = world.CLASSES[class_id].colour
        synonyms = world.COLOURS[name][1]
        return self.pick(synonyms) if synonyms and self.chance(SYNONYM_RATE) else name

    def shape(self, class_id: int, plural: bool) -> str:
        self.named.add(class_id)
        return self.shape_word(class_id, plural)

    def shape_word(self, class_id: int, plural: bool) -> str:
        """The shape's word alone (names no class: "a star" may be of any colour)."""
        name = world.CLASSES[class_id].shape
        plural_name, synonyms = world.SHAPES[name]
        if synonyms and self.chance(SYNONYM_RATE):
            return self.pick(synonyms)[1 if plural else 0]
        return plural_name if plural else name

    def thing(self, obj: ObjectFacts, article: bool = True, partial: bool = False) -> str:
        """ "a small striped violet star"; with `partial`, sometimes only its shape ("a striped star")
        or only its colour ("a violet shape"), as people describe things, naming no class."""
        words = []
        if obj.size and self.chance(ATTRIBUTE_RATE):
            words.append(self.pick({"small": ("small", "tiny", "little"), "large": ("large", "big", "huge")}[obj.size]))
        pattern_word = self.pick(world.PATTERNS[obj.pattern])
        if pattern_word and self.chance(ATTRIBUTE_RATE):
            words.append(pattern_word)
        if partial and self.chance(PARTIAL_RATE):
            if self.chance(0.7):
                words.append(self.shape_word(obj.class_id, plural=False))
            else:
                words += [self.colour(obj.class_id), "shape"]
        else:
            words += [self.colour(obj.class_id), self.shape(obj.class_id, plural=False)]
        text = " ".join(words)
        return f"{'an' if text[0] in 'aeiou' else 'a'} {text}" if article else text

    def group(self, class_id: int, members: list[ObjectFacts]) -> str:
        if len(members) == 1:
            return self.thing(members[0])
        return f"{NUMBERS[len(members)]} {self.colour(class_id)} {self.shape(class_id, plural=True)}"

    def things(self, objects: list[ObjectFacts] | None = None) -> tuple[str, int]:
        """All objects as a list phrase ("a red circle, two blue stars and a violet heart"), and the
        count of the first group (for is/are)."""
        objects = self.objects if objects is None else objects
        by_class: dict[int, list[ObjectFacts]] = {}
        for obj in objects:
            by_class.setdefault(obj.class_id, []).append(obj)
        order = list(by_class)
        self.rng.shuffle(order)
        return join([self.group(c, by_class[c]) for c in order]), len(by_class[order[0]])

    def stuff_phrase(self, class_id: int) -> str:
        self.named.add(class_id)
        phrases = world.STUFF[world.CLASSES[class_id].name]
        return self.pick(phrases[1:]) if self.chance(STUFF_PHRASE_RATE) else phrases[0]

    def stuff_list(self) -> str:
        order = list(self.stuff)
        self.rng.shuffle(order)
        return join([self.stuff_phrase(s.class_id) for s in order])

    def layout(self) -> str:
        """The background as a layout: "water at the top and sand at the bottom"."""
        parts = []
        for s in self.stuff:
            name = world.CLASSES[s.class_id].name
            self.named.add(s.class_id)
            if s.where == "all":
                if len(self.stuff) == 1:
                    if name in GROUND and self.chance(0.5):
                        parts.append(f"ground covered in {world.STUFF[name][0]}")
                    else:
                        parts.append(self.pick(("a background of {}", "{} everywhere", "a scene of {}")).format(self.stuff_phrase(s.class_id)))
                else:
                    parts.append(f"{self.stuff_phrase(s.class_id)} all around")
            elif s.where == "patch":
                parts.append(f"a patch of {MASS_NOUN.get(name, name)}")
            elif s.where in ("left", "right"):
                parts.append(f"{self.stuff_phrase(s.class_id)} on the {s.where}")
            elif s.where == "middle":
                parts.append(f"{self.stuff_phrase(s.class_id)} in the middle")
            else:
                parts.append(f"{self.stuff_phrase(s.class_id)} at the {s.where}")
        return join(parts)

    # -- captions ----------------------------------------------------------------------------
    def inventory(self) -> str:
        things, first = self.things()
        n = len(self.objects)
        template = int(self.rng.integers(6))
        if template == 0:
            return f"{self.pick(('a photo', 'a picture', 'an image', 'a drawing', 'a rendering'))} of {things} on {self.stuff_list()}."
        if template == 1:
            return f"{things} in front of {self.stuff_list()}."
        if template == 2:
            return f"there {'is' if first == 1 else 'are'} {things} in this picture, with {self.stuff_list()} behind."
        if template == 3:
            return f"{self.layout()}, with {things}."
        if template == 4:
            return f"{NUMBERS[n]} {'shape' if n == 1 else 'shapes'} on {self.stuff_list()}: {things}."
        return f"{things}. the background is {self.stuff_list()}."

    def relation_pairs(self) -> list[tuple[int, int]]:
        """Pairs of objects whose classes occur once each (so "the red circle" is unambiguous)."""
        counts: dict[int, int] = {}
        for o in self.objects:
            counts[o.class_id] = counts.get(o.class_id, 0) + 1
        single = [i for i, o in enumerate(self.objects) if counts[o.class_id] == 1]
        return [(i, j) for i in single for j in single if i != j]

    def relation(self) -> str | None:
        pairs = self.relation_pairs()
        if not pairs:
            return None
        i, j = pairs[int(self.rng.integers(len(pairs)))]
        a, b = self.objects[i], self.objects[j]
        if j in a.hidden_by:
            rel = self.pick(("partly hidden behind", "behind"))
        elif i in b.hidden_by:
            rel = self.pick(("in front of", "partly covering"))
        else:
            dy, dx = b.cy - a.cy, b.cx - a.cx
            if max(abs(dx), abs(dy)) < 0.08:
                rel = self.pick(("next to", "near"))
            elif abs(dx) >= abs(dy):
                rel = self.pick(("to the left of", "left of")) if dx > 0 else self.pick(("to the right of", "right of"))
            else:
                rel = self.pick(("above", "over")) if dy > 0 else self.pick(("below", "under"))
        text = f"{self.thing(a)} {rel} {self.thing(b)}"
        return self.pick(("{}.", "there is {}.", "a picture with {}.")).format(text)

    def on_stuff(self) -> str:
        obj = self.objects[int(self.rng.integers(len(self.objects)))]
        name = world.CLASSES[obj.under].name
        prep = self.pick(PREPOSITIONS.get(name, ("on", "lying on", "sitting on")))
        return f"{self.pick(PHOTO_OF)}{self.thing(obj, partial=True)} {prep} {self.stuff_phrase(obj.under)}."

    def layout_only(self) -> str:
        n = len(self.objects)
        return self.pick(("{}.", "{}, with {} shapes.", "a view of {}.")).format(self.layout(), NUMBERS[n])

    def pair(self) -> str | None:
        if len(self.objects) < 2:
            return None
        i, j = self.rng.choice(len(self.objects), 2, replace=False)
        a, b = self.objects[int(i)], self.objects[int(j)]
        if a.class_id == b.class_id:
            return None
        return self.pick(PHOTO_OF) + self.pick(("{} and {}.", "{} with {}.")).format(self.thing(a, partial=True), self.thing(b, partial=True))

    def shapes(self) -> str:
        """The objects by shape only: "two stars, a circle and a heart." (names no class of thing; the
        background only sometimes, so that it cannot stand in for the shapes)."""
        counts: dict[str, list[int]] = {}
        for o in self.objects:
            counts.setdefault(world.CLASSES[o.class_id].shape, []).append(o.class_id)
        order = list(counts)
        self.rng.shuffle(order)
        parts = []
        for shape in order:
            ids = counts[shape]
            word = self.shape_word(ids[0], plural=len(ids) > 1)
            parts.append(f"{NUMBERS[len(ids)] if len(ids) > 1 else ('an' if word[0] in 'aeiou' else 'a')} {word}")
        if self.chance(0.3):
            return self.pick(("{} on {}.", "a picture of {} on {}.", "{} in front of {}.")).format(join(parts), self.stuff_list())
        there = "there are" if len(counts[order[0]]) > 1 else "there is"
        return self.pick(("{}.", "a picture of {}.", there + " {} here.", "{}, nothing else.")).format(join(parts))


KINDS = ("inventory", "relation", "on-stuff", "layout", "pair", "shapes")
KIND_WEIGHTS = (0.2, 0.25, 0.15, 0.1, 0.1, 0.2)


def join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def write_captions(rng: np.random.Generator, objects: list[ObjectFacts], stuff: list[StuffFacts], n: int) -> list[Caption]:
    """n captions; the first is an inventory (names every class present), the others vary."""
    if not objects or not stuff:
        raise ValueError("a scene needs at least one object and one stuff region to be captioned")
    writer = _Writer(rng, objects, stuff)
    kinds = {
        "inventory": writer.inventory,
        "relation": writer.relation,
        "on-stuff": writer.on_stuff,
        "layout": writer.layout_only,
        "pair": writer.pair,
        "shapes": writer.shapes,
    }

    def caption(first: bool) -> tuple[str | None, str]:
        kind = "inventory" if first else KINDS[int(rng.choice(len(KINDS), p=KIND_WEIGHTS))]
        return kinds[kind](), kind

    return _distinct(writer, n, caption)


CUTOUT_FORMS = ("{}{}.", "{}{} on a plain background.", "{}{}, isolated.", "{}{} against a plain backdrop.")


def write_cutout_captions(rng: np.random.Generator, obj: ObjectFacts, n: int) -> list[Caption]:
    """n captions of an object photo (one object cut out on a plain backdrop): each names the object
    alone ("a photo of a striped red star.", "a red star on a plain background."), as such photos are
    captioned; the first always names its class."""
    writer = _Writer(rng, [obj], [])

    def caption(first: bool) -> tuple[str | None, str]:
        thing = writer.thing(obj, partial=not first)
        return writer.pick(CUTOUT_FORMS).format(writer.pick(PHOTO_OF), thing), "object"

    return _distinct(writer, n, caption)


def _distinct(writer: _Writer, n: int, caption: Callable[[bool], tuple[str | None, str]]) -> list[Caption]:
    """Up to n distinct captions from caption(first) -> (text or None, kind), within 20 n tries; each
    records the classes the writer named while writing it."""
    out: list[Caption] = []
    texts: set[str] = set()
    for _ in range(20 * n):
        if len(out) == n:
            break
        writer.named = set()
        text, kind = caption(not out)
        if text is None or text in texts:
            continue
        texts.add(text)
        out.append(Caption(text, frozenset(writer.named), kind))
    return out
