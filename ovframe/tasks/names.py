"""File names made from image names and sample ids, contained in the folder they are written to."""

from __future__ import annotations

import hashlib
import re

MAX_PART_BYTES = 180
"""Bytes per path component (file systems allow 255; room is left for suffixes such as .overlay.png)."""

_UNSAFE = re.compile(r'[\x00-\x1f\x7f:*?"<>|]')


def safe_name(name: str) -> str:
    """A relative path from `name`: `/` (or `\\`) still separates folders, but no part is empty, `.` or
    `..`, starts with a dot, holds a control character or is too long; an empty name becomes `_`."""
    parts = []
    for part in re.split(r"[/\\]+", name):
        part = _UNSAFE.sub("_", part).strip().lstrip(".").strip()
        if not part:
            continue
        if len(part.encode("utf-8")) > MAX_PART_BYTES:
            digest = hashlib.sha1(part.encode("utf-8")).hexdigest()[:10]
            part = part.encode("utf-8")[: MAX_PART_BYTES - 11].decode("utf-8", "ignore") + "-" + digest
        parts.append(part)
    return "/".join(parts) or "_"
