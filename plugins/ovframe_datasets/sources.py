"""The official downloads, as `ovframe prepare --source PATH` gets them.

PATH is an archive (zip, tar, tar.gz ...), the folder an archive was unpacked to, or a folder holding
the archives (their members are read in place, never extracted to disk). Members are named by their
path inside the archive or folder, with forward slashes; preparations look them up by pattern, so it
does not matter whether the top folder of an archive (ADEChallengeData2016/ ...) is there or not.
Output names are always built from validated stems, never from member paths.
"""

from __future__ import annotations

import re
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from ovframe import BadInput

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


@dataclass(frozen=True)
class _Member:
    container: Any  # Path (a plain file), zipfile.ZipFile or tarfile.TarFile
    key: Any  # None, the zip name, or the TarInfo
    order: tuple[int, int]  # (container index, offset): reading in this order never seeks backwards


class Source:
    """Read-only access to the files of an official download."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        self._members: dict[str, _Member] = {}
        self._open: list[Any] = []
        if is_archive(self.path):
            self._add_archive(self.path)
        elif self.path.is_dir():
            for file in sorted(p for p in self.path.rglob("*") if p.is_file()):
                rel = file.relative_to(self.path)
                if len(rel.parts) == 1 and is_archive(file):
                    self._add_archive(file)
                else:
                    self._add(rel.as_posix(), _Member(file, None, (0, 0)))
        elif self.path.exists():
            raise BadInput(f"--source {path}: not a folder nor a zip/tar archive")
        else:
            raise BadInput(f"--source {path}: no such file or folder")

    def _add(self, name: str, member: _Member) -> None:
        self._members.setdefault(name, member)

    def _add_archive(self, path: Path) -> None:
        index = len(self._open) + 1
        try:
            if path.name.lower().endswith(".zip"):
                archive: Any = zipfile.ZipFile(path)
                self._open.append(archive)
                for n, info in enumerate(archive.infolist()):
                    if not info.is_dir():
                        self._add(info.filename, _Member(archive, info.filename, (index, n)))
            else:
                archive = tarfile.open(path, "r:*")
                self._open.append(archive)
                for info in archive.getmembers():
                    if info.isfile():
                        self._add(info.name, _Member(archive, info, (index, info.offset_data)))
        except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as e:
            raise BadInput(f"{path}: cannot read the archive ({e}); download it again") from None

    def close(self) -> None:
        for archive in self._open:
            archive.close()
        self._open.clear()

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def names(self) -> list[str]:
        return sorted(self._members)

    def find(self, pattern: str) -> list[str]:
        """Member names matching the regular expression `pattern` (re.search), sorted."""
        rx = re.compile(pattern)
        return sorted(n for n in self._members if rx.search(n))

    def find_one(self, pattern: str) -> str | None:
        found = self.find(pattern)
        return found[0] if found else None

    def read(self, name: str) -> bytes:
        member = self._members[name]
        if isinstance(member.container, Path):
            return member.container.read_bytes()
        if isinstance(member.container, zipfile.ZipFile):
            return member.container.read(member.key)
        handle = member.container.extractfile(member.key)
        if handle is None:
            raise BadInput(f"{self.path}: cannot read {name}")
        with handle:
            return handle.read()

    def read_many(self, names: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        """(name, bytes) for each name, in archive order (a compressed tar is then read once, not once per member)."""
        for name in sorted(names, key=lambda n: self._members[n].order):
            yield name, self.read(name)

    def local_path(self, name: str) -> Path | None:
        """The file on disk when the member is a plain file of a folder source."""
        member = self._members[name]
        return member.container if isinstance(member.container, Path) else None
