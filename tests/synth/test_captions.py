"""Captions name exactly the classes of their image (read back from the text by a parser written
here), say true things about positions, vary, and fit a CLIP tokenizer's context."""

from __future__ import annotations

import re

import numpy as np

from ovframe_synth import world

COLOUR_WORDS = {
    "red": "red", "crimson": "red", "scarlet": "red", "orange": "orange", "yellow": "yellow", "golden": "yellow",
    "green": "green", "emerald": "green", "blue": "blue", "azure": "blue", "purple": "purple", "violet": "purple",
}
SHAPE_WORDS = {
    "circle": "circle", "circles": "circle", "disc": "circle", "discs": "circle", "disk": "circle", "disks": "circle",
    "square": "square", "squares": "square", "box": "square", "boxes": "square", "triangle": "triangle",
    "triangles": "triangle", "star": "star", "stars": "star", "heart": "heart", "hearts": "heart",
}
STUFF_WORDS = {
    "grass": "grass", "lawn": "grass", "grassy": "grass", "water": "water", "lake": "water", "sea": "water",
    "sand": "sand", "sandy": "sand", "brick": "brick wall", "bricks": "brick wall", "wood": "wood", "wooden": "wood",
    "gravel": "gravel", "pebbles": "gravel", "sky": "sky", "snow": "snow", "snowy": "snow", "snowfield": "snow",
    "lava": "lava", "tiles": "tiles", "tiled": "tiles",
}
THING = r"\b({c}) ({s})\b".format(c="|".join(COLOUR_WORDS), s="|".join(SHAPE_WORDS))


def parse(text: str) -> set[int]:
    """Class ids a caption names, from its words alone."""
    found = {world.CLASS_INDEX[f"{COLOUR_WORDS[c]} {SHAPE_WORDS[s]}"] for c, s in re.findall(THING, text)}
    words = re.findall(r"[a-z]+", text)
    found |= {world.CLASS_INDEX[STUFF_WORDS[w]] for w in words if w in STUFF_WORDS}
    # a colour word is followed by a shape word (a class) or by "shape" (colour alone, no class)
    for i, w in enumerate(words):
        if w in COLOUR_WORDS:
            assert i + 1 < len(words) and (words[i + 1] in SHAPE_WORDS or words[i + 1] == "shape"), text
    return found


def partial_mentions(text: str) -> tuple[list[str], list[str]]:
    """Shapes named without a colour, and colours named without a shape."""
    words = re.findall(r"[a-z]+", text)
    shapes = [SHAPE_WORDS[w] for i, w in enumerate(words) if w in SHAPE_WORDS and (i == 0 or words[i - 1] not in COLOUR_WORDS)]
    colours = [COLOUR_WORDS[w] for i, w in enumerate(words) if w in COLOUR_WORDS and words[i + 1] == "shape"]
    return shapes, colours


def test_captions_name_exactly_the_classes_present(val_scenes):
    for scene in val_scenes:
        present = scene.present()
        assert len(scene.captions) == 5
        named: set[int] = set()
        for caption in scene.captions:
            ids = parse(caption.text)
            assert ids == set(caption.mentions), (caption.text, ids, caption.mentions)
            assert ids <= present, (scene.key, caption.text)
            named |= ids
        assert parse(scene.captions[0].text) == present, "the first caption names every class present"
        assert named == present


def test_partial_descriptions_are_true(val_scenes):
    """Objects described by shape or colour alone exist in the image with that shape or colour."""
    counted = 0
    for scene in val_scenes:
        shapes = [world.CLASSES[o.class_id].shape for o in scene.objects]
        colours = {world.CLASSES[o.class_id].colour for o in scene.objects}
        for caption in scene.captions:
            named_shapes, named_colours = partial_mentions(caption.text)
            for shape in set(named_shapes):
                assert shape in shapes, caption.text
            assert set(named_colours) <= colours, caption.text
            counted += len(named_shapes) + len(named_colours)
            if caption.kind == "shapes":  # counts per shape are right
                for number, word in re.findall(r"\b(two|three|four|five|six) ([a-z]+)\b", caption.text):
                    if word in SHAPE_WORDS:
                        n = ["two", "three", "four", "five", "six"].index(number) + 2
                        assert shapes.count(SHAPE_WORDS[word]) == n, caption.text
    assert counted > 50


def test_unseen_classes_are_named_in_captions(val_scenes):
    unseen = set(world.UNSEEN_IDS)
    named = {i for s in val_scenes for c in s.captions for i in parse(c.text)}
    assert unseen <= named


def _centroid(obj):
    ys, xs = np.nonzero(obj.visible)
    return ys.mean(), xs.mean()


def test_relations_are_true(val_scenes):
    thing = r"(?:{c}) (?:{s})".format(c="|".join(COLOUR_WORDS), s="|".join(SHAPE_WORDS))
    rel = re.compile(
        rf"({thing}) (to the left of|left of|to the right of|right of|above|over|below|under|behind|partly hidden behind|"
        rf"in front of|partly covering|next to|near) (?:an? )?(?:[a-z-]+ )*?({thing})"
    )
    checked = 0
    for scene in val_scenes:
        by_class = {}
        for obj in scene.objects:
            by_class.setdefault(obj.class_id, []).append(obj)
        for caption in scene.captions:
            if caption.kind != "relation":
                continue
            m = rel.search(caption.text)
            assert m, caption.text
            (a_id,), (b_id,) = parse(m.group(1)), parse(m.group(3))
            (a,), (b,) = by_class[a_id], by_class[b_id]  # relations only name classes that occur once
            (ay, ax), (by, bx) = _centroid(a), _centroid(b)
            word = m.group(2)
            if word in ("to the left of", "left of"):
                assert ax < bx, caption.text
            elif word in ("to the right of", "right of"):
                assert ax > bx, caption.text
            elif word in ("above", "over"):
                assert ay < by, caption.text
            elif word in ("below", "under"):
                assert ay > by, caption.text
            elif word in ("behind", "partly hidden behind"):
                assert b.z > a.z and (a.mask & b.mask).any(), caption.text
            elif word in ("in front of", "partly covering"):
                assert a.z > b.z and (a.mask & b.mask).any(), caption.text
            checked += 1
    assert checked > 30


def test_captions_vary(val_scenes):
    captions = [c for s in val_scenes for c in s.captions]
    assert {c.kind for c in captions} == {"inventory", "relation", "on-stuff", "layout", "pair", "shapes"}
    text = " ".join(c.text for c in captions)
    words = set(re.findall(r"[a-z-]+", text))
    assert {"violet", "crimson", "disc", "lawn"} & words, "synonyms are used"
    assert {"striped", "dotted", "small", "large"} & words and len({"striped", "dotted", "checkered"} & words) >= 2
    assert "ground covered in" in text or "at the top" in text
    for scene in val_scenes:
        assert len({c.text for c in scene.captions}) == len(scene.captions), "an image's captions all differ"
    assert len({c.text for c in captions}) > 0.95 * len(captions)


def test_captions_fit_the_clip_context(val_scenes):
    import open_clip

    tokenizer = open_clip.SimpleTokenizer()  # the bundled BPE vocabulary: no network
    lengths = [len(tokenizer.encode(c.text)) + 2 for s in val_scenes for c in s.captions]
    assert max(lengths) <= 77


def test_closeup_captions_name_their_one_object():
    from ovframe_synth.scene import WorldSpec, make_scene

    for i in range(40):
        scene = make_scene(0, "train", i, WorldSpec(closeups=1.0))
        assert scene.closeup and len(scene.objects) == 1
        assert set().union(*(parse(c.text) for c in scene.captions)) == scene.present()
