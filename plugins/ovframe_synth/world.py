"""The synthetic world's classes: what exists, what it is called, and which classes are seen.

Pure Python (no NumPy, no torch), so that configs and docs can read it cheaply.

Things are colour + shape compounds ("purple star"): 6 colours x 5 shapes = 30 classes. Stuff classes
are named textures ("grass", "brick wall"): 10 classes. 40 classes in all, things first, then stuff,
in the order of `CLASSES` (the label order of every split and of the exported classes.txt).

The seen/unseen split plays the COCO-Stuff (seen: proposal training) / ADE (unseen: zero-shot) roles.
Unseen things form a Latin pattern: each shape is unseen in exactly 2 colours and each colour is unseen
in 1 or 2 shapes, so every colour word and every shape word is seen with other partners. That is what
makes unseen compounds recognisable from words seen in other combinations. 3 of the 10 stuff classes
are unseen. Unseen classes still appear in training images and are named in their captions; only
their pixel labels are withheld from proposal training (see dataset.py, `labels: seen`).

The package ships the class list as classes.txt (label order) and seen.txt (seen names), and the other
phrases captions use for each class as aliases.json (judging mined pairs), for recipes
(`vocabulary: {file: pkg://ovframe_synth/classes.txt}`); a test keeps them in step with this module.
Changing anything here changes the world: bump WORLD_VERSION, regenerate the three files
(`python -m ovframe_synth.world`) and retrain the shipped models.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

WORLD_VERSION = 1

# name -> (RGB base colour in 0..1, synonyms used in captions)
COLOURS: dict[str, tuple[tuple[float, float, float], tuple[str, ...]]] = {
    "red": ((0.84, 0.11, 0.10), ("crimson", "scarlet")),
    "orange": ((0.96, 0.50, 0.06), ()),
    "yellow": ((0.96, 0.86, 0.12), ("golden",)),
    "green": ((0.16, 0.66, 0.22), ("emerald",)),
    "blue": ((0.14, 0.30, 0.90), ("azure",)),
    "purple": ((0.56, 0.16, 0.72), ("violet",)),
}

# name -> (plural, synonyms (singular, plural))
SHAPES: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "circle": ("circles", (("disc", "discs"), ("disk", "disks"))),
    "square": ("squares", (("box", "boxes"),)),
    "triangle": ("triangles", ()),
    "star": ("stars", ()),
    "heart": ("hearts", ()),
}

# stuff name -> caption phrases that name it (the first is the plain name); all are mass nouns or
# noun phrases that read after "on", "with", "covered in" ...
STUFF: dict[str, tuple[str, ...]] = {
    "grass": ("grass", "a lawn", "a grassy field"),
    "water": ("water", "a lake", "the sea"),
    "sand": ("sand", "a sandy beach", "sandy ground"),
    "brick wall": ("a brick wall", "a wall of bricks", "bricks"),
    "wood": ("wood", "wooden planks", "a wooden floor"),
    "gravel": ("gravel", "pebbles", "a gravel path"),
    "sky": ("the sky", "a clear sky", "a cloudy sky"),
    "snow": ("snow", "snowy ground", "a snowfield"),
    "lava": ("lava", "molten lava", "a lava field"),
    "tiles": ("tiles", "a tiled floor", "floor tiles"),
}

# Object surface patterns: a nuisance, not a class. name -> caption adjectives ("" = none said).
PATTERNS: dict[str, tuple[str, ...]] = {
    "plain": ("", "plain", "solid"),
    "striped": ("striped",),
    "dotted": ("dotted", "spotted", "polka-dot"),
    "checkered": ("checkered",),
    "gradient": ("", "shaded"),
}

UNSEEN_THINGS: tuple[str, ...] = (
    "orange circle", "blue circle",
    "yellow square", "purple square",
    "red triangle", "green triangle",
    "orange star", "blue star",
    "yellow heart", "purple heart",
)
UNSEEN_STUFF: tuple[str, ...] = ("snow", "lava", "tiles")


@dataclass(frozen=True)
class ClassInfo:
    """One class of the world. `colour`/`shape` are set for things, None for stuff."""

    index: int
    name: str
    kind: str  # "thing" or "stuff"
    seen: bool
    colour: str | None = None
    shape: str | None = None

    @property
    def is_thing(self) -> bool:
        return self.kind == "thing"


def _build_classes() -> tuple[ClassInfo, ...]:
    out: list[ClassInfo] = []
    for colour in COLOURS:
        for shape in SHAPES:
            name = f"{colour} {shape}"
            out.append(ClassInfo(len(out), name, "thing", name not in UNSEEN_THINGS, colour, shape))
    for stuff in STUFF:
        out.append(ClassInfo(len(out), stuff, "stuff", stuff not in UNSEEN_STUFF))
    return tuple(out)


CLASSES: tuple[ClassInfo, ...] = _build_classes()
CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in CLASSES)
SEEN: tuple[bool, ...] = tuple(c.seen for c in CLASSES)
THING_IDS: tuple[int, ...] = tuple(c.index for c in CLASSES if c.is_thing)
STUFF_IDS: tuple[int, ...] = tuple(c.index for c in CLASSES if not c.is_thing)
SEEN_IDS: tuple[int, ...] = tuple(c.index for c in CLASSES if c.seen)
UNSEEN_IDS: tuple[int, ...] = tuple(c.index for c in CLASSES if not c.seen)
CLASS_INDEX: dict[str, int] = {c.name: c.index for c in CLASSES}

DATA_DIR = Path(__file__).parent


def _check() -> None:
    unknown = (set(UNSEEN_THINGS) | set(UNSEEN_STUFF)) - set(CLASS_NAMES)
    if unknown:
        raise AssertionError(f"unseen classes not in the world: {sorted(unknown)}")
    words = set(COLOURS) | {s for c in COLOURS.values() for s in c[1]}
    shape_words = set(SHAPES) | {p for p, _ in SHAPES.values()} | {w for s in SHAPES.values() for pair in s[1] for w in pair}
    for phrases in STUFF.values():  # a stuff phrase must never read as a thing mention
        for phrase in phrases:
            clash = set(phrase.split()) & (words | shape_words)
            if clash:
                raise AssertionError(f"stuff phrase {phrase!r} uses colour/shape words {clash}")


_check()


def class_file_texts() -> tuple[str, str]:
    """The contents of classes.txt (label order) and seen.txt (seen names)."""
    return "".join(n + "\n" for n in CLASS_NAMES), "".join(c.name + "\n" for c in CLASSES if c.seen)


def class_aliases() -> dict[str, list[str]]:
    """Every other phrase captions name each class by (colour and shape synonyms, stuff phrases), for
    judging phrases mined from captions (mine-pairs' precision); shipped as aliases.json."""
    out: dict[str, list[str]] = {}
    for c in CLASSES:
        if c.is_thing:
            colours = (c.colour,) + COLOURS[c.colour][1]
            shapes = (c.shape,) + tuple(singular for singular, _ in SHAPES[c.shape][1])
            phrases = [f"{a} {b}" for a in colours for b in shapes]
        else:
            phrases = list(STUFF[c.name])
        out[c.name] = [p for p in phrases if p != c.name]
    return out


def aliases_text() -> str:
    import json

    return json.dumps(class_aliases(), indent=1) + "\n"


if __name__ == "__main__":  # regenerate the shipped class files
    classes, seen = class_file_texts()
    (DATA_DIR / "classes.txt").write_text(classes, encoding="utf-8")
    (DATA_DIR / "seen.txt").write_text(seen, encoding="utf-8")
    (DATA_DIR / "aliases.json").write_text(aliases_text(), encoding="utf-8")
    print(f"wrote {DATA_DIR}/classes.txt ({len(CLASSES)} classes), seen.txt ({sum(SEEN)} seen) and aliases.json")
