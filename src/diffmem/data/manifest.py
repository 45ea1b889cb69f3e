"""Manifests: what a set of items (training or generated videos and images) is.

One loader for every source:

- a folder of media files, searched recursively (hidden files and folders skipped): the id is
  the path relative to the folder without its extension, with '/' separators
  (``clips/cat.mp4`` -> ``clips/cat``); the caption is read from a sidecar ``clips/cat.txt``
  when there is one, else empty;
- a CSV (or TSV), JSONL or Parquet file with columns ``path`` (required), ``id``, ``caption``
  and ``kind`` (optional). Relative paths resolve against the manifest file's folder; a
  missing id is derived from the path as above; a missing kind comes from the extension.

Every path must stay inside the manifest's folder (or the ``root`` given): ``../../etc/passwd``
or an absolute path elsewhere is refused ("path escapes the manifest folder"). The check is
on the path as written (symlinks placed inside the folder by whoever owns it are followed).

A row that cannot be used becomes a `Skipped` with the reason, and the rest loads: empty
path, path escaping the folder, file missing / empty / a directory (with check_files),
unknown media type, bad kind, duplicate id (the first one is kept; the same *path* under
two ids is allowed: duplicated training data is what memorization studies look for).
Captions are normalised, not refused: NFC, control characters removed (tabs and line
breaks become spaces), undecodable bytes become U+FFFD, cut at `MAX_CAPTION_CHARS`.
Markup such as ``<script>`` is kept verbatim as text: escaping is the HTML layer's job.
"""
from __future__ import annotations

import csv
import errno
import io
import json
import os
import re
import unicodedata
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from diffmem.errors import BadInputError, Skipped
from diffmem.io.results import write_parquet, write_text
from diffmem.io.video import MEDIA_EXTENSIONS, media_kind

__all__ = ["Item", "Manifest", "load_manifest", "write_manifest", "clean_caption",
           "MANIFEST_EXTENSIONS", "MAX_CAPTION_CHARS"]

KINDS = ("video", "image")
MANIFEST_EXTENSIONS = frozenset({".csv", ".tsv", ".jsonl", ".ndjson", ".parquet", ".pq"})
# Text encoders read far less (CLIP: 77 tokens, T5 in CogVideoX: 226 tokens, ~1000 chars);
# the cap only stops a runaway field from bloating indexes and reports.
MAX_CAPTION_CHARS = 2000
_ESCAPES = "path escapes the manifest folder"
_SURROGATES = re.compile("[\ud800-\udfff]")



class NoPathsError(BadInputError):
    """A table with no media paths (caption-only metadata): fine where no media is needed."""

@dataclass(frozen=True)
class Item:
    """A training or generated sample. `path` is absolute."""

    id: str
    path: Path
    caption: str = ""
    kind: str = "video"

    def as_dict(self) -> dict:
        return {"id": self.id, "path": str(self.path), "caption": self.caption, "kind": self.kind}


@dataclass
class Manifest:
    items: list[Item]
    skipped: list[Skipped] = field(default_factory=list)
    root: Path = Path(".")
    source: Path | None = None

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Item]:
        return iter(self.items)


def clean_caption(text, max_chars: int = MAX_CAPTION_CHARS) -> str:
    """Caption text as stored: NFC, no control characters (whitespace ones become a space),
    lone surrogates (undecodable bytes) as U+FFFD, trimmed, at most `max_chars`."""
    if text is None or (isinstance(text, float) and text != text):  # None / NaN from a table
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    out = []
    for ch in str(text):
        cat = unicodedata.category(ch)
        if ch in "\t\n\r\v\f\x85\u2028\u2029":
            out.append(" ")
        elif cat == "Cs":  # lone surrogate: an undecodable byte or a bad JSON escape
            out.append("\ufffd")
        elif cat == "Cc":
            continue
        else:
            out.append(ch)
    text = unicodedata.normalize("NFC", "".join(out)).strip()
    return text[:max_chars].rstrip()


def _id_from_path(rel: str) -> str:
    p = Path(rel)
    return p.with_suffix("").as_posix() if p.suffix else p.as_posix()


def _file_problem(path: Path) -> str | None:
    try:
        if not path.exists():
            if path.is_symlink():
                try:
                    path.resolve(strict=True)
                except RuntimeError:  # Python < 3.13 raises this for a loop
                    return "symbolic link loop"
                except OSError as e:
                    return "symbolic link loop" if e.errno == errno.ELOOP else "broken symbolic link"
                return "broken symbolic link"
            return "file not found"
        if path.is_dir():
            return "is a directory, not a file"
        if not path.is_file():
            return "not a regular file"
        if path.stat().st_size == 0:
            return "file is empty (0 bytes)"
    except OSError as e:  # e.g. a name too long, permission denied on a parent
        return f"cannot access file ({e.strerror or e})"
    except ValueError as e:  # a name the file system cannot encode
        return f"invalid file name ({e})"
    return None


class _Builder:
    """Turns raw rows into Items and Skipped, with the checks shared by every format."""

    def __init__(self, root: Path, kind: str | None, check_files: bool):
        self.root = root
        self.kind = kind
        self.check_files = check_files
        self.items: list[Item] = []
        self.skipped: list[Skipped] = []
        self.seen: dict[str, str] = {}

    def skip(self, id_: str, path: str, reason: str) -> None:
        self.skipped.append(Skipped(id_, path, reason))

    def add(self, where: str, raw_id, raw_path, raw_caption, raw_kind) -> None:
        id_ = clean_caption(raw_id, max_chars=10_000) if raw_id is not None else ""
        path_text = "" if raw_path is None or (isinstance(raw_path, float) and raw_path != raw_path) \
            else str(raw_path)
        # NUL cannot be in a file name; lone surrogates (JSON escapes) cannot be encoded: U+FFFD
        path_text = path_text.replace("\x00", "").strip()
        path_text = _SURROGATES.sub("\ufffd", path_text)
        shown = clean_caption(path_text, max_chars=10_000)
        if not path_text:
            self.skip(id_, "", f"empty path ({where})")
            return
        full = Path(os.path.normpath(self.root / path_text))  # lexical: '..' is resolved, links not
        if full == self.root:
            self.skip(id_, shown, f"path is the manifest folder itself, not a file ({where})")
            return
        if not full.is_relative_to(self.root):
            self.skip(id_, shown, f"{_ESCAPES} ({where})")
            return
        rel = full.relative_to(self.root).as_posix()
        if not id_:
            id_ = _id_from_path(rel)
        elif id_.startswith("/") or ".." in id_.split("/"):
            # ids become per-item output names downstream; one that climbs folders is refused
            self.skip(id_, shown, f"id must not start with '/' or contain a '..' part ({where})")
            return
        kind = clean_caption(raw_kind).lower() if raw_kind is not None else ""
        if kind:
            if kind not in KINDS:
                self.skip(id_, shown, f"kind must be 'video' or 'image', got {kind[:40]!r} ({where})")
                return
        else:
            kind = media_kind(full) or ""
            if not kind:
                self.skip(id_, shown, f"unknown media type {full.suffix or '(no extension)'!r}; "
                                      f"add a 'kind' column ({where})")
                return
        if self.kind is not None and kind != self.kind:
            self.skip(id_, shown, f"is a {kind}; only {self.kind} items were requested ({where})")
            return
        if id_ in self.seen:
            self.skip(id_, shown, f"duplicate id {id_!r}, first used {self.seen[id_]} ({where})")
            return
        if self.check_files:
            problem = _file_problem(full)
            if problem:
                self.skip(id_, shown, f"{problem} ({where})")
                return
        self.seen[id_] = where
        self.items.append(Item(id_, full, clean_caption(raw_caption), kind))


def _norm_key(k) -> str:
    return str(k).strip().lstrip("\ufeff").lower() if k is not None else ""


def _rows_csv(path: Path, delimiter: str) -> Iterator[tuple[str, dict]]:
    f = open(path, encoding="utf-8-sig", errors="replace", newline="")
    old_limit = csv.field_size_limit()
    csv.field_size_limit(1 << 30)  # a runaway caption should be cut, not abort the whole file
    try:
        # NUL is never valid in a path or caption; dropping it keeps the csv reader happy.
        reader = csv.reader((line.replace("\x00", "") for line in f), delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            raise BadInputError(path, "empty manifest: no header row (needs a 'path' column)")
        keys = [_norm_key(h) for h in header]
        if "path" not in keys:
            raise NoPathsError(path, f"no 'path' column (columns: {', '.join(keys) or 'none'})")
        for n, row in enumerate(reader, start=1):
            if not any(cell.strip() for cell in row):
                continue  # blank line
            yield f"row {n}", {k: v for k, v in zip(keys, row) if k}
    except csv.Error as e:
        raise BadInputError(path, f"not a readable CSV file ({e})") from None
    finally:
        csv.field_size_limit(old_limit)
        f.close()


def _rows_jsonl(path: Path) -> Iterator[tuple[str, dict]]:
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                yield f"line {n}", ValueError("not valid JSON")
                continue
            if not isinstance(obj, dict):
                yield f"line {n}", ValueError("not a JSON object")
                continue
            yield f"line {n}", {_norm_key(k): v for k, v in obj.items()}


def _rows_parquet(path: Path) -> Iterator[tuple[str, dict]]:
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise BadInputError(path, f"not a readable Parquet file ({e})") from None
    keys = [_norm_key(n) for n in pf.schema_arrow.names]
    if "path" not in keys:
        raise NoPathsError(path, f"no 'path' column (columns: {', '.join(keys) or 'none'})")
    n = 0
    try:
        for batch in pf.iter_batches(batch_size=65_536):
            for row in batch.to_pylist():
                n += 1
                yield f"row {n}", {_norm_key(k): v for k, v in row.items()}
    except (pa.ArrowException, OSError) as e:
        raise BadInputError(path, f"Parquet file is damaged after row {n} ({e})") from None


def _text(v):
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, float) and v != v:
        return None
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace")
    return str(v)


def _load_table(path: Path, b: _Builder) -> None:
    ext = path.suffix.lower()
    if ext in (".csv", ".tsv"):
        rows = _rows_csv(path, "\t" if ext == ".tsv" else ",")
    elif ext in (".jsonl", ".ndjson"):
        rows = _rows_jsonl(path)
    else:
        rows = _rows_parquet(path)
    any_path = False
    n_rows = 0
    for where, row in rows:
        n_rows += 1
        if isinstance(row, Exception):
            b.skip("", "", f"{row} ({where})")
            continue
        if "path" in row:
            any_path = True
        b.add(where, _text(row.get("id")), _text(row.get("path")), row.get("caption"),
              _text(row.get("kind")))
    if ext in (".jsonl", ".ndjson") and n_rows and not any_path:
        raise NoPathsError(path, "no 'path' field in any line")


def _load_folder(folder: Path, b: _Builder) -> None:
    files = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in dirnames:  # a folder named like a media file is reported, not silently passed over
            if Path(name).suffix.lower() in MEDIA_EXTENSIONS:
                rel = (Path(dirpath) / name).relative_to(folder).as_posix()
                b.skip(_id_from_path(rel), rel, "is a directory, not a media file")
        for name in filenames:
            if not name.startswith(".") and Path(name).suffix.lower() in MEDIA_EXTENSIONS:
                files.append(Path(dirpath) / name)
    files.sort(key=lambda p: p.relative_to(folder).as_posix())
    # ids are paths without the extension; files whose ids would collide (clip.mp4, clip.png) keep it
    stems = Counter(_id_from_path(f.relative_to(folder).as_posix()) for f in files)
    clashes = [f.relative_to(folder).as_posix() for f in files
               if stems[_id_from_path(f.relative_to(folder).as_posix())] > 1]
    if clashes:
        warnings.warn(f"{folder}: {len(clashes)} files share a name with another file but for the extension; "
                      f"their ids keep the extension (e.g. {', '.join(clashes[:3])})", stacklevel=3)
    clash_set = set(clashes)
    for f in files:
        rel = f.relative_to(folder).as_posix()
        sidecar = f.with_suffix(".txt")
        caption = ""
        if sidecar.is_file():
            try:
                caption = sidecar.read_bytes().decode("utf-8", errors="replace")
            except OSError:
                caption = ""
        b.add(rel, rel if rel in clash_set else None, rel, caption, None)


MANIFEST_NAME = "train.parquet"  # a folder holding this file (a diffmem world, a prepared set) means it


def manifest_file(source: str | Path) -> Path:
    """What a source names: a folder holding `train.parquet` means that manifest (its captions and kinds,
    which a scan of the folder's media would not have); anything else is itself. Every command reads a
    training set through this, so `index build WORLD`, `prompts WORLD` and `generate --index WORLD` agree."""
    src = Path(source).expanduser()
    return src / MANIFEST_NAME if src.is_dir() and (src / MANIFEST_NAME).is_file() else src


def load_manifest(source: str | Path, *, kind: str | None = None, check_files: bool = True,
                  root: str | Path | None = None) -> Manifest:
    """Load a folder of media, or a CSV / TSV / JSONL / Parquet manifest (see module doc). A folder holding
    `train.parquet` is read through that manifest (`manifest_file`).

    kind: keep only 'video' or 'image' items (the others are reported as skipped).
    check_files: skip rows whose file is missing, empty or a directory (no decoding is done).
    root: the folder relative paths resolve against and must stay inside; default the
    manifest file's folder (or the source folder itself).
    """
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be 'video', 'image' or None, got {kind!r}")
    src = manifest_file(source)
    if not src.exists():
        raise BadInputError(src, "manifest not found")
    src = src.resolve()
    if src.is_dir():
        if root is not None and Path(os.path.abspath(root)) != src:
            raise BadInputError(src, "a folder is its own root: --root / root= applies to a manifest file")
        b = _Builder(src, kind, check_files)
        _load_folder(src, b)
        return Manifest(b.items, b.skipped, src, src)
    ext = src.suffix.lower()
    if ext not in MANIFEST_EXTENSIONS:
        raise BadInputError(src, f"unknown manifest format {src.suffix or '(no extension)'!r}; "
                                 "use a folder, .csv, .tsv, .jsonl or .parquet")
    if not src.is_file():
        raise BadInputError(src, "not a regular file")
    if not os.access(src, os.R_OK):
        raise BadInputError(src, "manifest is not readable (permission denied)")
    base = Path(os.path.abspath(root)) if root is not None else src.parent
    b = _Builder(base, kind, check_files)
    _load_table(src, b)
    return Manifest(b.items, b.skipped, base, src)


def write_manifest(items: Iterable[Item] | Manifest, path: str | Path) -> Path:
    """Write items as .parquet / .csv / .tsv / .jsonl (by extension), atomically, with columns
    id, path, caption, kind. Paths inside the manifest's folder are written relative to it
    (portable); others absolute (loading those back needs `root=`)."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in MANIFEST_EXTENSIONS:
        raise ValueError(f"{p}: manifest extension must be one of {sorted(MANIFEST_EXTENSIONS)}")
    base = Path(os.path.abspath(p.parent))
    rows = []
    for it in items:
        full = Path(os.path.abspath(it.path))
        shown = full.relative_to(base).as_posix() if full.is_relative_to(base) else str(full)
        rows.append({"id": it.id, "path": shown, "caption": it.caption, "kind": it.kind})
    cols = ["id", "path", "caption", "kind"]
    if ext in (".parquet", ".pq"):
        return write_parquet(p, pd.DataFrame(rows, columns=cols, dtype=object).astype(str))
    if ext in (".jsonl", ".ndjson"):
        return write_text(p, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=cols, delimiter="\t" if ext == ".tsv" else ",",
                       lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return write_text(p, buf.getvalue())
