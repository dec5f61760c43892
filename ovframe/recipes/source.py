"""Reading recipe YAML into plain data plus where every value was written, and merging such trees.

A `Tree` is (data, loc): `data` is what yaml.safe_load would give; `loc` mirrors it, one `Loc` per value
with the file:line:column where it was written (for a mapping's value: where its key was written) and
the `Loc`s of its children, so an error anywhere names its place.

The reader is bounded, whatever the file holds (docs/recipes.md, "Limits"):
    MAX_RECIPE_BYTES  a recipe file is at most this large;
    MAX_DEPTH         mappings and lists nest at most this deep;
    MAX_VALUES        at most this many values, counting every value an alias (`*name`) repeats.
It reads UTF-8 text only (a clear error names the first byte that is not), composes the YAML events
itself (no recursion, so no depth can crash it; an alias shares the anchored value instead of copying
it), supports `<<: *anchor` merge keys, refuses tags other than YAML's plain types, and expands
`${VAR}` / `${VAR:-default}` in string values (`$${` is a literal `${`; any other `${` is an error).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import Location, RecipeError

KeyPath = tuple[Any, ...]
Problem = tuple[Location | None, str, str]

MAX_RECIPE_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 64
MAX_VALUES = 1_000_000

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TAG = "tag:yaml.org,2002:"
_STR, _MERGE = _TAG + "str", _TAG + "merge"
_SCALAR_TAGS = {_TAG + t for t in ("str", "int", "float", "bool", "null", "timestamp")}
_COLLECTION_TAGS = {None, "!", _TAG + "map", _TAG + "seq"}
_CONSTRUCTORS = yaml.constructor.SafeConstructor.yaml_constructors


class Loc:
    """Where a value was written, and the Locs of its children (a dict for a mapping, a list for a list).

    `weak`: set by an override for the mappings on the way to the value it sets; a merge keeps the place
    where such a mapping was first written."""

    __slots__ = ("file", "line", "column", "note", "children", "weak")

    def __init__(self, file: str, line: int = 0, column: int = 0, note: str = "", children: Any = None, weak: bool = False):
        self.file, self.line, self.column, self.note = file, line, column, note
        self.children = children
        self.weak = weak

    @classmethod
    def at(cls, where: Location, children: Any = None, weak: bool = False) -> "Loc":
        return cls(where.file, where.line, where.column, where.note, children, weak)

    def location(self) -> Location:
        return Location(self.file, self.line, self.column, self.note)

    def with_children(self, children: Any) -> "Loc":
        return Loc(self.file, self.line, self.column, self.note, children, self.weak)


@dataclass
class Tree:
    data: Any
    loc: Loc

    def where(self, path: KeyPath) -> Location | None:
        """Location of `path`, or of its nearest ancestor that has one."""
        loc = self.loc
        for p in path:
            children = loc.children
            if isinstance(children, dict) and isinstance(p, str) and p in children:
                loc = children[p]
            elif isinstance(children, list) and isinstance(p, int) and 0 <= p < len(children):
                loc = children[p]
            else:
                break
        return loc.location()

    def pop(self, key: str, default: Any = None) -> Any:
        """Remove a top-level key (the data of a recipe is a mapping)."""
        if isinstance(self.loc.children, dict):
            self.loc.children.pop(key, None)
        return self.data.pop(key, default)

    def set_top(self, key: str, value: Any, loc: Loc) -> None:
        self.data[key] = value
        self.loc.children[key] = loc


def dotted(path: KeyPath) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


# -- bytes to text ----------------------------------------------------------------------------------
# YAML's printable characters: anything else (control characters, NUL, lone surrogates) is refused.
_NOT_PRINTABLE = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _position(data: bytes | str, offset: int) -> tuple[int, int]:
    """1-based line and column of `offset` (columns count characters; bytes decoded leniently)."""
    before = data[:offset]
    text = before.decode("utf-8", "replace") if isinstance(before, bytes) else before
    line = text.count("\n") + 1
    return line, len(text) - (text.rfind("\n") + 1) + 1


def _looks_like_utf16(head: bytes) -> bool:
    """ASCII text in UTF-16 without a byte-order mark: every other byte is zero."""
    if len(head) < 4:
        return False
    even, odd = head[0::2], head[1::2]
    return (even.count(0) == len(even)) != (odd.count(0) == len(odd))


def decode_text(data: bytes, file: str, what: str = "a recipe") -> str:
    """UTF-8 text of a file, or a RecipeError at the first byte that is not text."""

    def fail(offset: int, message: str) -> RecipeError:
        line, column = _position(data, offset)
        return RecipeError([(Location(file, line, column), "", message)])

    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or _looks_like_utf16(data[:64]):
        raise fail(0, f"{what} must be UTF-8 text; this file looks like UTF-16. Save it as UTF-8")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise fail(nul, f"{what} must be UTF-8 text; this file has a NUL byte (is it a binary file?)")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        byte = data[e.start]
        guess = " (Latin-1 or Windows-1252 text?)" if 0xA0 <= byte <= 0xFF else " (is it a binary file?)"
        raise fail(e.start, f"{what} must be UTF-8 text; byte 0x{byte:02X} here is not UTF-8{guess}. Save it as UTF-8") from None
    bad = _NOT_PRINTABLE.search(text)
    if bad:
        line, column = _position(text, bad.start())
        raise RecipeError(
            [(Location(file, line, column), "", f"{what} may not contain the control character U+{ord(bad.group()):04X}")]
        )
    return text


def read_text(path: Path, what: str = "recipe", max_bytes: int = MAX_RECIPE_BYTES) -> str:
    """The UTF-8 text of a file of at most `max_bytes` bytes; RecipeError otherwise."""
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise RecipeError([(Location(str(path)), "", f"cannot read {what}: {e.strerror or e}")]) from None
    if len(data) > max_bytes:
        raise RecipeError([(Location(str(path)), "", f"larger than {max_bytes // (1024 * 1024)} MiB: too large for a {what}")])
    return decode_text(data, str(path), f"a {what}")


# -- text to tree ---------------------------------------------------------------------------------
class _Frame:
    """A mapping or list being composed."""

    __slots__ = ("is_map", "data", "locs", "anchor", "loc", "size", "key", "key_loc", "merges", "skip")

    def __init__(self, is_map: bool, anchor: str | None, loc: Loc):
        self.is_map = is_map
        self.data: Any = {} if is_map else []
        self.locs: Any = {} if is_map else []
        self.anchor, self.loc, self.size = anchor, loc, 1
        self.key: Any = _NO_KEY  # a mapping's pending key
        self.key_loc: Loc | None = None
        self.merges: list[tuple[dict, Loc]] = []  # `<<:` sources, in order
        self.skip = False  # the pending key was refused: drop its value


_NO_KEY = object()
_MERGE_KEY = object()
_PLAIN_INT = re.compile(r"[1-9][0-9]{0,17}|0")  # what YAML 1.1 reads as a decimal int, the common case


def parse_yaml(text: str, file: str, interpolate: bool = True) -> Tree:
    """Compose YAML text into a Tree: bounded depth and size, merge keys, ${VAR} expanded in strings."""
    return _Composer(text, file, interpolate).run()


class _Composer:
    def __init__(self, text: str, file: str, interpolate: bool = True):
        self.text, self.file, self.interpolate = text, file, interpolate
        self.problems: list[Problem] = []
        self.anchors: dict[str, tuple[Any, Loc, int]] = {}
        self.values = 0

    def fail(self, mark: Any, message: str, key: str = "") -> RecipeError:
        where = Location(self.file, mark.line + 1, mark.column + 1) if mark is not None else Location(self.file)
        return RecipeError([*self.problems, (where, key, message)])

    def run(self) -> Tree:
        loader = _Loader(self.text)
        try:
            return self._compose(loader)
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            raise self.fail(mark, f"invalid YAML: {e.problem or e}") from None
        except yaml.YAMLError as e:
            raise RecipeError([(Location(self.file), "", f"invalid YAML: {e}")]) from None
        finally:
            loader.dispose()

    def _compose(self, loader: Any) -> Tree:
        """The YAML events, composed with an explicit stack (the hot loop: keep it plain)."""
        stack: list[_Frame] = []
        root: tuple[Any, Loc] | None = None
        documents = 0
        file = self.file
        get_event = loader.get_event
        ScalarEvent, AliasEvent = yaml.ScalarEvent, yaml.AliasEvent
        MappingStartEvent, SequenceStartEvent = yaml.MappingStartEvent, yaml.SequenceStartEvent
        MappingEndEvent, SequenceEndEvent = yaml.MappingEndEvent, yaml.SequenceEndEvent
        while True:
            event = get_event()
            kind = event.__class__
            if kind is ScalarEvent:
                top = stack[-1] if stack else None
                mark = event.start_mark
                if top is not None and top.is_map and top.key is _NO_KEY:  # a key
                    value = self._scalar(loader, event, stack, True)
                    self._take_key(top, stack, value, Loc(file, mark.line + 1, mark.column + 1))
                    continue
                self.values += 1
                if self.values > MAX_VALUES:
                    self._count(0, event)
                value = self._scalar(loader, event, stack, False)
                if top is None:
                    root = value, Loc(file, mark.line + 1, mark.column + 1)
                elif top.is_map:
                    top.size += 1
                    key = top.key
                    top.key = _NO_KEY
                    if key is _MERGE_KEY:
                        self._merge_sources(top, stack, value, None)
                    elif not top.skip:
                        top.data[key] = value
                        top.locs[key] = top.key_loc  # a mapping's value is placed at its key
                else:
                    top.size += 1
                    top.data.append(value)
                    top.locs.append(Loc(file, mark.line + 1, mark.column + 1))
                if event.anchor is not None:
                    self.anchors[event.anchor] = (value, Loc(file, mark.line + 1, mark.column + 1), 1)
            elif kind is MappingStartEvent or kind is SequenceStartEvent:
                if event.tag not in _COLLECTION_TAGS:
                    raise self.fail(event.start_mark, f"the YAML tag {event.tag} is not supported in recipes")
                if len(stack) >= MAX_DEPTH:
                    raise self.fail(event.start_mark, f"nested more than {MAX_DEPTH} levels deep: recipes are not that deep")
                mark = event.start_mark
                stack.append(_Frame(kind is MappingStartEvent, event.anchor, Loc(file, mark.line + 1, mark.column + 1)))
                self._count(1, event)
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                frame = stack.pop()
                data = self._finish_mapping(frame) if frame.is_map else frame.data
                loc = frame.loc.with_children(frame.locs)
                if frame.anchor is not None:
                    self.anchors[frame.anchor] = (data, loc, frame.size)
                root = self._deliver(stack, data, loc, frame.size) or root
            elif kind is AliasEvent:
                if event.anchor not in self.anchors:
                    raise self.fail(event.start_mark, f"unknown alias *{event.anchor} (an anchor &{event.anchor} must come before it)")
                value, loc, size = self.anchors[event.anchor]
                top = stack[-1] if stack else None
                if not (top is not None and top.is_map and top.key is _NO_KEY):
                    self._count(size, event, alias=event.anchor)
                root = self._deliver(stack, value, loc, size) or root
            elif kind is yaml.DocumentStartEvent:
                documents += 1
                if documents > 1:
                    raise self.fail(event.start_mark, "a recipe is one YAML document; this file has more than one (---)")
            elif kind is yaml.StreamEndEvent:
                break
        if self.problems:
            raise RecipeError(self.problems)
        if root is None:
            return Tree({}, Loc(self.file, 1, 1, children={}))
        return Tree(root[0], root[1])

    def _count(self, n: int, event: Any, alias: str | None = None) -> None:
        self.values += n
        if self.values > MAX_VALUES:
            why = f"the alias *{alias} repeats {n:,} values; " if alias else ""
            raise self.fail(event.start_mark, f"{why}a recipe may hold at most {MAX_VALUES:,} values (aliases expanded)")

    def _take_key(self, frame: _Frame, stack: list[_Frame], key: Any, loc: Loc) -> None:
        frame.key, frame.key_loc, frame.skip = key, loc, False
        if key is _MERGE_KEY:
            return
        if not isinstance(key, str):
            shown = key if isinstance(key, (int, float, bool)) or key is None else type(key).__name__
            self.problems.append((loc.location(), dotted(_path(stack)[:-1]), f"keys must be strings, got {shown!r}"))
            frame.skip = True
        elif key in frame.data:
            self.problems.append((loc.location(), dotted(_path(stack)), "duplicate key"))
            frame.skip = True

    def _deliver(self, stack: list[_Frame], value: Any, loc: Loc, size: int) -> tuple[Any, Loc] | None:
        """Hand a finished collection (or an alias) to the collection it is in; return it when it is the document."""
        if not stack:
            return value, loc
        parent = stack[-1]
        if parent.is_map and parent.key is _NO_KEY:  # a mapping or list written as a key
            self._take_key(parent, stack, value, loc)
            return None
        parent.size += size
        if not parent.is_map:
            parent.data.append(value)
            parent.locs.append(loc)
            return None
        key, key_loc = parent.key, parent.key_loc
        parent.key = _NO_KEY
        if key is _MERGE_KEY:
            self._merge_sources(parent, stack, value, loc)
        elif not parent.skip:
            parent.data[key] = value
            assert key_loc is not None
            parent.locs[key] = key_loc.with_children(loc.children)
        return None

    def _merge_sources(self, frame: _Frame, stack: list[_Frame], value: Any, loc: Loc | None) -> None:
        sources = list(zip(value, loc.children)) if isinstance(value, list) and loc is not None else [(value, loc)]
        for source, source_loc in sources:
            if not isinstance(source, dict) or source_loc is None:
                where = frame.key_loc.location() if frame.key_loc is not None else None
                self.problems.append((where, dotted(_path(stack)[:-1]), "a merge key (<<) takes a mapping or a list of mappings"))
                return
            frame.merges.append((source, source_loc))

    @staticmethod
    def _finish_mapping(frame: _Frame) -> dict:
        """Apply `<<` merges: explicit keys win; of the merged mappings, the earlier ones win."""
        if not frame.merges:
            return frame.data
        data: dict[str, Any] = {}
        locs: dict[str, Loc] = {}
        for source, source_loc in frame.merges:
            for k, v in source.items():
                if k not in data:
                    data[k], locs[k] = v, source_loc.children[k]
        data.update(frame.data)
        locs.update(frame.locs)
        frame.locs = locs
        return data

    def _scalar(self, loader: Any, event: Any, stack: list[_Frame], is_key: bool) -> Any:
        value = event.value
        tag = event.tag
        if tag is None or tag == "!":
            plain = event.implicit[0]
            if not plain or (value and value[0] not in _FIRST_CHARS):
                tag = _STR
            elif _PLAIN_INT.fullmatch(value):
                return int(value)
            else:
                tag = loader.resolve(yaml.ScalarNode, value, event.implicit)
        if tag == _STR:
            if is_key or not self.interpolate or "$" not in value:
                return value
            try:
                return interpolate(value)
            except ValueError as e:
                self._value_problem(stack, event, str(e))
                return value
        if tag == _MERGE and is_key:
            return _MERGE_KEY
        if tag not in _SCALAR_TAGS:
            self._value_problem(stack, event, f"the YAML tag {tag} is not supported in recipes")
            return None
        node = yaml.ScalarNode(tag, value, event.start_mark, event.end_mark, event.style)
        try:
            return _CONSTRUCTORS[tag](loader, node)
        except (ValueError, OverflowError, yaml.YAMLError) as e:
            self._value_problem(stack, event, f"cannot read the value {value[:40]!r}: {e}")
            return None

    def _value_problem(self, stack: list[_Frame], event: Any, message: str) -> None:
        """A problem with a value, placed as schema errors are: at the key of a mapping's value."""
        parent = stack[-1] if stack else None
        if parent is not None and parent.is_map and parent.key is not _NO_KEY and parent.key_loc is not None:
            where = parent.key_loc.location()
        else:
            where = Location(self.file, event.start_mark.line + 1, event.start_mark.column + 1)
        self.problems.append((where, dotted(_path(stack)), message))


_FIRST_CHARS = frozenset(ch for ch in yaml.resolver.Resolver.yaml_implicit_resolvers if ch is not None)
"""The first characters of plain scalars that may be something other than a string (a number, true, null ...)."""


def _path(stack: list[_Frame]) -> KeyPath:
    """The key path of the value being composed (a mapping's pending key, a list's next index)."""
    out: list[Any] = []
    for frame in stack:
        if frame.is_map:
            out.append(frame.key if isinstance(frame.key, str) else "<<" if frame.key is _MERGE_KEY else "?")
        else:
            out.append(len(frame.data))
    return tuple(out)


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def interpolate(text: str, environ: Any = None) -> str:
    """Expand `${VAR}` and `${VAR:-default}`; `$${` is a literal `${`. ValueError for anything else
    written after `${` (a bad name, another operator, a nested `${`, no closing brace) or an unset VAR."""
    environ = os.environ if environ is None else environ
    out: list[str] = []
    i, n = 0, len(text)
    while True:
        j = text.find("$", i)
        if j < 0:
            out.append(text[i:])
            return "".join(out)
        out.append(text[i:j])
        if text.startswith("$${", j):
            out.append("${")
            i = j + 3
            continue
        if not text.startswith("${", j):
            out.append("$")
            i = j + 1
            continue
        start = j + 2
        close = text.find("}", start)
        if close < 0:
            raise ValueError(f"unclosed ${{ in {text!r}: write ${{VAR}} or ${{VAR:-default}} ($${{ for a literal ${{)")
        body = text[start:close]
        m = _NAME.match(body)
        if not m:
            what = "an empty ${}" if not body else f"${{{body}}}: {body.split(':')[0]!r} is not a variable name"
            raise ValueError(f"{what} (names are letters, digits and _, not starting with a digit; $${{ for a literal ${{)")
        name, rest = m.group(), body[m.end():]
        if rest and not rest.startswith(":-"):
            raise ValueError(f"${{{body}}}: after the name comes }} or :-default, not {rest!r}")
        default = rest[2:] if rest else None
        if default is not None and "${" in default:
            raise ValueError(f"${{{body}...}}: a default is plain text; nested ${{...}} is not supported")
        if name in environ:
            out.append(environ[name])
        elif default is not None:
            out.append(default)
        else:
            raise ValueError(f"environment variable {name} is not set; set it or write ${{{name}:-default}}")
        i = close + 1


def load_yaml_file(path: Path) -> Tree:
    return parse_yaml(read_text(path), str(path))


# -- merging -----------------------------------------------------------------------------------------
def merge(base: Tree, child: Tree) -> Tree:
    """Deep-merge `child` over `base`: mappings merge key by key; anything else replaces, None too (null
    switches an optional section or option off; validation refuses it where nothing can be switched off).

    A mapping that selects another component (its `plugin` differs from the base's) replaces the base's
    mapping instead of merging into it, at any depth: the new component starts from its own defaults
    plus the keys written beside its `plugin`. Nothing of the old component's options (weights, sha256,
    a threshold ...) carries over to a component that may read them differently."""
    data, loc = merge_value(base.data, base.loc, child.data, child.loc)
    return Tree(data, loc)


def selects_other_component(base: Any, child: Any) -> bool:
    """Whether mapping `child` names a component other than mapping `base`'s (so it replaces it)."""
    return isinstance(base, dict) and isinstance(child, dict) and "plugin" in base and "plugin" in child and child["plugin"] != base["plugin"]


def merge_value(base: Any, bloc: Loc, child: Any, cloc: Loc) -> tuple[Any, Loc]:
    if not (isinstance(base, dict) and isinstance(child, dict)):
        return child, cloc
    if selects_other_component(base, child):
        return child, cloc
    out, locs = dict(base), dict(bloc.children)
    for key, value in child.items():
        kloc = cloc.children[key]
        if key not in out:
            out[key], locs[key] = value, kloc
        else:
            out[key], locs[key] = merge_value(out[key], locs[key], value, kloc)
    return out, (bloc if cloc.weak else cloc).with_children(locs)
