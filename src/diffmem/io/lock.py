"""One writer per output folder: a lock file that a second writer sees, and a stale one that is taken over.

    with folder_lock(out, "index build"):
        ...  # only this process writes into `out`

The lock is `out/.diffmem.lock`, created atomically (O_CREAT | O_EXCL) and holding who made it (pid, host,
command, start time). A second writer gets a `LockedError` naming the holder. A lock whose process is gone
(same host, pid not running) is stale: the next writer takes it over. Locks are re-entrant within a
process (a study that calls another study on the same folder does not lock itself out).
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import socket
import time
from pathlib import Path
from typing import Iterator

from ..errors import BadInputError, DiffmemError

LOCK_NAME = ".diffmem.lock"
_HELD: dict[Path, int] = {}  # folders this process holds, with a nesting count


class LockedError(DiffmemError):
    """Another run is writing into the folder."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def _holder(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # being written or damaged: treat as held, but unknown


def _stale(info: dict) -> bool:
    return bool(info) and info.get("host") == socket.gethostname() and not _alive(int(info.get("pid", -1)))


def _try_create(path: Path, command: str) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                   "since": time.strftime("%Y-%m-%d %H:%M:%S")}, f)
    return True


@contextlib.contextmanager
def folder_lock(folder: str | Path, command: str) -> Iterator[Path]:
    """Hold the write lock of `folder` (created if missing) for the duration of the block."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise BadInputError(folder, "exists and is not a folder (an output folder was expected)")
    folder.mkdir(parents=True, exist_ok=True)
    key = folder.resolve()
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield folder
        finally:
            _HELD[key] -= 1
        return
    path = folder / LOCK_NAME
    if not _try_create(path, command):
        info = _holder(path)
        if info is not None and not _stale(info):
            who = (f"{info.get('command', '?')} (pid {info.get('pid', '?')} on {info.get('host', '?')}, since "
                   f"{info.get('since', '?')})") if info else "another run"
            raise LockedError(f"{folder}: {who} is writing here; wait for it to finish, or remove {path} "
                              "if that run is dead")
        # stale (its process is gone): move it aside atomically; if what was moved is a live lock (another
        # taker's, made in between), put it back and give way, so two takers cannot both win
        aside = path.with_name(f"{LOCK_NAME}.stale.{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            os.replace(path, aside)
            moved = _holder(aside)
            if moved and not _stale(moved):
                with contextlib.suppress(FileExistsError):
                    os.link(aside, path)
                aside.unlink()
                raise LockedError(f"{folder}: another run took over the stale lock {path} first")
            aside.unlink()
        if not _try_create(path, command):
            raise LockedError(f"{folder}: another run took over the stale lock {path} first")
    _HELD[key] = 1
    try:
        yield folder
    finally:
        _HELD.pop(key, None)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def writes_folder(command: str, arg: str = "out"):
    """Decorator: the function holds `folder_lock` on its argument `arg` (the output folder) while it runs."""
    def deco(fn):
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with folder_lock(sig.bind(*args, **kwargs).arguments[arg], command):
                return fn(*args, **kwargs)
        return wrapper
    return deco
