"""The docs keep up with the code: every hook is documented with its signature."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from ovframe import hookspecs

DOCS = Path(__file__).resolve().parents[2] / "docs"
HOOKS = [name for name, f in vars(hookspecs).items() if inspect.isfunction(f) and name.startswith("register_")]


def test_there_are_hooks():
    assert len(HOOKS) == 7


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_with_its_signature(hook):
    params = ", ".join(inspect.signature(getattr(hookspecs, hook)).parameters)
    assert f"### `{hook}({params})`" in (DOCS / "writing-a-plugin.md").read_text()


def test_documented_hooks_exist():
    text = (DOCS / "writing-a-plugin.md").read_text()
    documented = {line.split("`")[1].split("(")[0] for line in text.splitlines() if line.startswith("### `register_")}
    assert documented == set(HOOKS)


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings (code blocks left out)."""
    import re

    out, inside = set(), False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            inside = not inside
        elif not inside and (m := re.match(r"#+\s+(.*)", line)):
            out.add(re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-"))
    return out


def test_links_between_pages_land():
    """Every relative link of the README and docs/ names a file that exists, and a heading of it when it has #anchor."""
    import re

    root = DOCS.parent
    for page in [root / "README.md", *sorted(DOCS.rglob("*.md"))]:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+://|mailto:", target):
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            assert dest.exists(), f"{page.relative_to(root)}: link to {target}: no such file"
            if anchor and dest.suffix == ".md":
                assert anchor in _anchors(dest), f"{page.relative_to(root)}: link to {target}: no such heading"
