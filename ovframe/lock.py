"""One run at a time in a run directory.

`run_lock(run_dir)` holds an exclusive lock on `<run_dir>/.lock` (made with the directory). The lock is the
kernel's (flock): a process that dies, even by kill -9, releases it, so a stale lock never blocks anyone.
The file holds who has it (pid, host, start time) for the message a second run gets, and is emptied when
a run ends; a run that finds it non-empty knows the previous one was stopped before its end (and says so:
it resumes). `--fresh` moves a directory only while holding its lock, then locks the new one.
"""

from __future__ import annotations

import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import BadInput

try:
    import fcntl
except ImportError:  # not POSIX: runs are not locked
    fcntl = None  # type: ignore[assignment]


LOCK_NAME = ".lock"


def lock_path(run_dir: Path) -> Path:
    return run_dir / LOCK_NAME


@contextmanager
def run_lock(run_dir: Path) -> Iterator[str]:
    """Hold the lock of `run_dir` for the block; BadInput naming the holder when another process has it.
    Yields "" or, when the previous run there was stopped before its end, who that was."""
    if fcntl is None:
        yield ""
        return
    path = lock_path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise BadInput(f"{run_dir} is a file, where this recipe's run directory should be; move it or change `name`")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise BadInput(f"cannot create the run directory {run_dir}: {e.strerror or e}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise BadInput(
                f"{run_dir} is in use by another ovframe run ({_describe(_read(fd))}). Wait for it to finish or stop "
                "it; to run both, give this one another name (-o name=...) or, for predict, another --out."
            ) from None
        previous = _read(fd)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        _write(fd, json.dumps(me))
        try:
            yield _describe(previous) if previous else ""
        finally:
            _write(fd, "")
    finally:
        os.close(fd)  # releases the lock


def _read(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    try:
        data = json.loads(os.read(fd, 4096).decode("utf-8", "replace") or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _write(fd: int, text: str) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, text.encode("utf-8"))


def _describe(holder: dict) -> str:
    if not holder:
        return "process unknown"
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started {holder.get('started', '?')}"
