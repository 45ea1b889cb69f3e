"""Errors that name the file and the problem, and the record of an item skipped in a set."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class DiffmemError(Exception):
    """Base class: every error diffmem raises on purpose."""


class BadInputError(DiffmemError):
    """A file or manifest row that cannot be used. The message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class PolicyMismatchError(DiffmemError):
    """Two descriptor (or motion) policies were mixed, e.g. querying an index built with another one."""


@dataclass(frozen=True)
class Skipped:
    """An item of a set that was reported and left out, so the rest could be processed."""

    id: str
    path: str
    reason: str

    def as_dict(self) -> dict:
        return {"id": self.id, "path": self.path, "reason": self.reason}
