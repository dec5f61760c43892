"""Errors the CLI turns into clean messages (no traceback) and exit codes.

BadInput (exit 2) is the user's to fix: a recipe, an argument, a missing file. Anything else that
escapes a run is a failure at run time (exit 1).
"""

from __future__ import annotations

from dataclasses import dataclass


class OvframeError(Exception):
    """Base of the project's own errors."""

    exit_code = 1


class BadInput(OvframeError):
    """The user's input is wrong: the message says what and what to do."""

    exit_code = 2


@dataclass(frozen=True)
class Location:
    """A place in a recipe file (1-based line and column), or a command-line override."""

    file: str
    line: int = 0
    column: int = 0
    note: str = ""  # e.g. "set by -o fuser.lam=abc"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        return f"{where} ({self.note})" if self.note else where


class RecipeError(BadInput):
    """One or more problems in a recipe, each with its file:line:column and dotted key."""

    def __init__(self, problems: list[tuple[Location | None, str, str]]):
        self.problems = problems  # (where, dotted key or "", message)
        super().__init__(self.format())

    def format(self) -> str:
        lines = []
        for where, key, message in self.problems:
            prefix = f"{where}: " if where else ""
            keypart = f"{key}: " if key else ""
            lines.append(f"{prefix}{keypart}{message}")
        return "\n".join(lines)


class PluginError(BadInput):
    """A plugin is broken or two plugins clash (duplicate component names)."""


@dataclass(frozen=True)
class RequiredFile:
    """A file a component needs before it can run: what it is and how to get it."""

    path: str
    what: str
    how_to_get: str
    sha256: str | None = None


class MissingFiles(BadInput):
    """Files the recipe needs are not there. Lists every one with where to get it."""

    def __init__(self, missing: list[RequiredFile], context: str = ""):
        self.missing = missing
        lines = ([context] if context else []) + [f"{len(missing)} file(s) this recipe needs are missing:"]
        for f in missing:
            lines.append(f"  - {f.path}\n      {f.what}\n      get it: {f.how_to_get}")
        super().__init__("\n".join(lines))


class SampleError(OvframeError):
    """One sample cannot be read (corrupt or unreadable image): reported and skipped, never fatal."""

    def __init__(self, sample_id: str, reason: str):
        self.sample_id = sample_id
        self.reason = reason
        super().__init__(f"{sample_id}: {reason}")

    def __reduce__(self):  # travels from data-loader workers to the main process
        return (type(self), (self.sample_id, self.reason))


def damaged_state(path: object, error: BaseException, what: str, undo: str = "") -> BadInput:
    """The error for resume state that cannot be read: what to do, never a traceback."""
    undo = undo or f"delete {path} to redo what it held"
    return BadInput(
        f"{path}: the saved {what} is damaged ({type(error).__name__}: {str(error)[:160]}). Start over with "
        f"`ovframe run RECIPE --fresh` (the old run directory is kept), or {undo}."
    )
