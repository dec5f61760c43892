"""The world's classes: enough of them, a fixed seen/unseen split with the compositional property, and
the shipped class files in step with the code."""

from __future__ import annotations

from importlib import resources

from ovframe_synth import world


def test_class_counts_and_order():
    assert len(world.CLASSES) == 40 >= 30
    assert [c.index for c in world.CLASSES] == list(range(40))
    things = [c for c in world.CLASSES if c.is_thing]
    stuff = [c for c in world.CLASSES if not c.is_thing]
    assert len(things) == 30 and len(stuff) == 10
    assert world.CLASSES[: len(things)] == tuple(things), "things come first, then stuff"
    assert all(c.name == f"{c.colour} {c.shape}" for c in things)
    assert len(set(world.CLASS_NAMES)) == 40


def test_split_is_about_two_thirds_seen_and_compositional():
    seen = [c for c in world.CLASSES if c.seen]
    assert len(seen) == 27 and 0.6 <= len(seen) / len(world.CLASSES) <= 0.75
    unseen_things = [c for c in world.CLASSES if c.is_thing and not c.seen]
    unseen_stuff = [c for c in world.CLASSES if not c.is_thing and not c.seen]
    assert len(unseen_things) == 10 and len(unseen_stuff) == 3
    # every colour word and every shape word is seen in some compound and unseen in another
    for colour in world.COLOURS:
        kinds = {c.seen for c in world.CLASSES if c.colour == colour}
        assert kinds == {True, False}, colour
    for shape in world.SHAPES:
        members = [c for c in world.CLASSES if c.shape == shape]
        assert sum(not c.seen for c in members) == 2, shape


def test_shipped_class_files_match_the_world():
    package = resources.files("ovframe_synth")
    classes = package.joinpath("classes.txt").read_text(encoding="utf-8").splitlines()
    seen = package.joinpath("seen.txt").read_text(encoding="utf-8").splitlines()
    assert classes == list(world.CLASS_NAMES)
    assert seen == [c.name for c in world.CLASSES if c.seen]


def test_shipped_aliases_match_the_world_and_the_captions():
    import json

    from ovframe_synth import captions

    package = resources.files("ovframe_synth")
    assert package.joinpath("aliases.json").read_text(encoding="utf-8") == world.aliases_text()
    aliases = json.loads(world.aliases_text())
    assert set(aliases) == set(world.CLASS_NAMES)
    assert "violet star" in aliases["purple star"] and "red disc" in aliases["red circle"] and "a lawn" in aliases["grass"]
    phrases = [p for name, ps in aliases.items() for p in [name, *ps]]
    assert len(phrases) == len(set(phrases)), "an alias names two classes"
    assert captions.STUFF_PHRASE_RATE > 0  # stuff aliases are the phrases captions use (world.STUFF)
