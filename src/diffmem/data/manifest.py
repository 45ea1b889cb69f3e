"""Manifests: what a set of items (training or generated videos and images) is.

One loader for every source:

- a folder of media files, searched recursively (hidden files and folders skipped): the id is
  the path relative to the folder without its extension, with '/' separators
  (``clips/cat.mp4`` -> ``clips/cat``); the caption is read from a sidecar ``clips/cat.txt``
  when there is one, else empty;
- a CSV (or TSV), JSONL or Parquet file with columns ``path`` (required), ``id``, ``caption``
  and ``kind`` (optional). Relative paths resolve against the manifest file's folder; a
  missing id is derived from the path as above; a missing kind comes from the extension.
  A `ColumnMap` (``columns=``) reads tables in other layouts: which column is the id, which the
  caption, and which the path, or a path *template* built from the row (``{page_dir}/{videoid}.mp4``);
  `PRESETS` names the field's layouts: ``webvid`` (WebVid-10M CSV: videoid, name, page_dir; video
  ``{page_dir}/{videoid}.mp4``) and ``laion`` (img2dataset's parquet: key, caption; image
  ``{key:.5}/{key}.jpg``). A template naming a column the table lacks is refused before any row is read
  (`NoPathsError`); a table without its caption column loads with empty captions and a warning naming
  the file and its columns (an explicitly mapped caption or id column that is missing is an error).

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
import stat
import string
import unicodedata
import warnings
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from diffmem.errors import BadInputError, Skipped
from diffmem.io.results import write_parquet, write_text
from diffmem.io.video import MEDIA_EXTENSIONS, media_kind

__all__ = ["Item", "Manifest", "ColumnMap", "PRESETS", "column_map", "load_manifest", "write_manifest",
           "load_captions", "iter_captions", "clean_caption", "MANIFEST_EXTENSIONS", "MAX_CAPTION_CHARS", "NoPathsError",
           "ManifestWarning"]

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
    text = str(text)
    if text.isascii() and text.isprintable():  # most captions: nothing to remove, NFC is the identity
        return text.strip()[:max_chars].rstrip()
    out = []
    for ch in text:
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
    """Why `path` is no usable media file, or None; one stat for a good file (a million-row manifest
    stats each path once), the link is looked at only when that stat fails."""
    try:
        st = path.stat()
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "symbolic link loop"
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            try:
                return "broken symbolic link" if path.is_symlink() else "file not found"
            except OSError:
                return "file not found"
        return f"cannot access file ({e.strerror or e})"  # e.g. a name too long, permission denied on a parent
    except ValueError as e:  # a name the file system cannot encode
        return f"invalid file name ({e})"
    if stat.S_ISDIR(st.st_mode):
        return "is a directory, not a file"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_size == 0:
        return "file is empty (0 bytes)"
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


class ManifestWarning(UserWarning):
    """A manifest loads, but probably not as meant (e.g. no caption column: every caption is empty)."""


def _as_text(v) -> str:
    """A row value as a template sees it: None / NaN -> '', 12.0 -> '12' (an integer column with gaps)."""
    if v is None or (isinstance(v, float) and v != v):
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace")
    return str(v)


class _Fields(dict):
    """Template values by lower-case column name; a template may spell a column in any case."""

    def __missing__(self, key):
        if isinstance(key, str) and _norm_key(key) in self:
            return self[_norm_key(key)]
        raise KeyError(key)


@dataclass(frozen=True)
class ColumnMap:
    """Which columns of a manifest table are the id, the caption and the media path: the path is a column
    (`path`) or a `template` with ``{column}`` fields, filled by ``str.format_map`` with the row's values as
    strings (format specs apply to strings: ``{key:.5}`` is the first 5 characters). Column names match
    case-insensitively. The path a template gives is checked like any other (no '..' or absolute escapes).
    `preset`: the name of the `PRESETS` entry this map started from."""

    id: str = "id"
    caption: str = "caption"
    path: str | None = "path"
    template: str | None = None
    preset: str = "default"

    def __post_init__(self):
        for f in ("id", "caption", "path"):
            if getattr(self, f) is not None:
                object.__setattr__(self, f, _norm_key(getattr(self, f)))
        if (self.path is None) == (self.template is None):
            raise ValueError("a column map needs a path column or a path template (one of them)")
        if self.template is not None:
            fields = self.fields  # a field that names no column is refused here
            try:
                self.template.format_map(_Fields({f: "000000000" for f in fields}))
            except (ValueError, KeyError, IndexError) as e:
                raise ValueError(f"bad path template {self.template!r}: {e}") from None

    @property
    def fields(self) -> tuple[str, ...]:
        """The columns the path template uses (lower case), in order."""
        if self.template is None:
            return ()
        try:
            parsed = list(string.Formatter().parse(self.template))
        except ValueError as e:
            raise ValueError(f"bad path template {self.template!r}: {e}") from None
        out = []
        for _, name, spec, _ in parsed:
            if name is None:
                continue
            if not name.strip() or name.isdigit() or any(c in name for c in ".[") or "{" in (spec or ""):
                raise ValueError(f"bad path template {self.template!r}: every field must name a column, "
                                 f"as in {{page_dir}}/{{videoid}}.mp4 (got {{{name}}})")
            if _norm_key(name) not in out:
                out.append(_norm_key(name))
        if not out:
            raise ValueError(f"path template {self.template!r} uses no column: every row would name one file")
        return tuple(out)

    def check(self, source: Path, keys: Iterable[str], *, path_column: bool = True) -> None:
        """Refuse (or warn once) before any row is read, naming the file and the columns it has.
        path_column=False: leave the path column's check to the caller (JSONL: any line may have it)."""
        keys = list(keys)
        found = f"columns: {', '.join(keys) or 'none'}"
        if path_column and self.path is not None and self.path not in keys:
            hint = next((f"; it looks like {n}: use the {n!r} preset (--preset {n})" for n, cm in PRESETS.items()
                         if cm.template and set(cm.fields) | {cm.caption} <= set(keys)), "")
            raise NoPathsError(source, f"no {self.path!r} column ({found}){hint}")
        for f in self.fields:
            if f not in keys:
                raise NoPathsError(source, f"path template {self.template!r} uses column {f!r}, which the table "
                                           f"does not have ({found})")
        if self.id != "id" and self.id not in keys:
            raise BadInputError(source, f"no {self.id!r} column for the ids ({found})")
        if self.caption not in keys:
            if self.caption != "caption":  # a column the user (or the preset) named
                raise BadInputError(source, f"no {self.caption!r} column for the captions ({found})")
            if set(keys) <= {self.id, self.path, "kind", *self.fields} or (self.path and self.path not in keys):
                return  # a list of media without captions (e.g. generated items), or not a manifest at all
            warnings.warn(f"{source}: no 'caption' column ({found}): every caption is empty; name the caption "
                          "column with --caption-column (columns=ColumnMap(caption=...)) or a --preset",
                          ManifestWarning, stacklevel=2)

    def resolve(self, row: dict) -> tuple:
        """(id, path text, caption, kind, problem) of a row (keys lower case); problem is None or why the
        path cannot be made."""
        if self.template is None:
            path, problem = _text(row.get(self.path)), None
        else:
            missing = [f for f in self.fields if not _as_text(row.get(f)).strip()]
            if missing:
                path, problem = None, f"no {missing[0]!r} value for the path template {self.template!r}"
            else:
                path, problem = self.template.format_map(_Fields({f: _as_text(row.get(f)) for f in self.fields})), None
        return _text(row.get(self.id)), path, row.get(self.caption), _text(row.get("kind")), problem


PRESETS: dict[str, ColumnMap] = {
    "default": ColumnMap(),
    # WebVid-10M's CSV: videoid, name (the caption), page_dir, duration, contentUrl; the videos downloaded as
    # {page_dir}/{videoid}.mp4 (the layout of the WebVid download scripts)
    "webvid": ColumnMap(id="videoid", caption="name", path=None, template="{page_dir}/{videoid}.mp4",
                        preset="webvid"),
    # img2dataset's output (output_format files): key is the 9-digit shard+index string, the image
    # {shard}/{key}.jpg with the shard folder the first 5 digits (its default 10,000 samples per shard)
    "laion": ColumnMap(id="key", caption="caption", path=None, template="{key:.5}/{key}.jpg", preset="laion"),
}


def column_map(preset: str | None = None, *, id: str | None = None, caption: str | None = None,
               path: str | None = None, template: str | None = None) -> ColumnMap:
    """The `ColumnMap` of a preset (default: 'default') with the columns given explicitly overriding it; a
    path column replaces the preset's template and a template its path column. ValueError on a bad name."""
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown manifest preset {preset!r}; use one of {', '.join(PRESETS)}")
    if path and template:
        raise ValueError("give a path column or a path template, not both")
    changes: dict = {k: v for k, v in (("id", id), ("caption", caption)) if v}
    if path:
        changes.update(path=path, template=None)
    if template:
        changes.update(template=template, path=None)
    return replace(PRESETS[preset or "default"], **changes)


def _rows_csv(path: Path, delimiter: str, cm: ColumnMap) -> Iterator[tuple[str, dict]]:
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
        cm.check(path, [k for k in keys if k])
        for n, row in enumerate(reader, start=1):
            if not any(cell.strip() for cell in row):
                continue  # blank line
            yield f"row {n}", {k: v for k, v in zip(keys, row) if k}
    except csv.Error as e:
        raise BadInputError(path, f"not a readable CSV file ({e})") from None
    finally:
        csv.field_size_limit(old_limit)
        f.close()


def _rows_jsonl(path: Path, cm: ColumnMap) -> Iterator[tuple[str, dict]]:
    checked = False
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
            row = {_norm_key(k): v for k, v in obj.items()}
            if not checked:  # the first object stands for the file (the path field: see _load_table)
                cm.check(path, list(row), path_column=False)
                checked = True
            yield f"line {n}", row


def _rows_parquet(path: Path, cm: ColumnMap) -> Iterator[tuple[str, dict]]:
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise BadInputError(path, f"not a readable Parquet file ({e})") from None
    cm.check(path, [_norm_key(n) for n in pf.schema_arrow.names])
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


def _load_table(path: Path, b: _Builder, cm: ColumnMap) -> None:
    ext = path.suffix.lower()
    if ext in (".csv", ".tsv"):
        rows = _rows_csv(path, "\t" if ext == ".tsv" else ",", cm)
    elif ext in (".jsonl", ".ndjson"):
        rows = _rows_jsonl(path, cm)
    else:
        rows = _rows_parquet(path, cm)
    any_path = False
    n_rows = 0
    for where, row in rows:
        n_rows += 1
        if isinstance(row, Exception):
            b.skip("", "", f"{row} ({where})")
            continue
        if cm.path is None or cm.path in row:
            any_path = True
        id_, path_text, caption, kind, problem = cm.resolve(row)
        if problem:
            b.skip(clean_caption(id_) if id_ else "", "", f"{problem} ({where})")
            continue
        b.add(where, id_, path_text, caption, kind)
    if ext in (".jsonl", ".ndjson") and n_rows and not any_path:
        raise NoPathsError(path, f"no {cm.path!r} field in any line")


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
                  root: str | Path | None = None, columns: ColumnMap | str | None = None) -> Manifest:
    """Load a folder of media, or a CSV / TSV / JSONL / Parquet manifest (see module doc). A folder holding
    `train.parquet` is read through that manifest (`manifest_file`).

    kind: keep only 'video' or 'image' items (the others are reported as skipped).
    check_files: skip rows whose file is missing, empty or a directory (no decoding is done).
    root: the folder relative paths resolve against and must stay inside; default the
    manifest file's folder (or the source folder itself).
    columns: a `ColumnMap`, or the name of one of `PRESETS`, for a table (default: columns id, path, caption).
    """
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be 'video', 'image' or None, got {kind!r}")
    cm = column_map(columns) if columns is None or isinstance(columns, str) else columns
    src = manifest_file(source)
    if not src.exists():
        raise BadInputError(src, "manifest not found")
    src = src.resolve()
    if src.is_dir():
        if root is not None and Path(os.path.abspath(root)) != src:
            raise BadInputError(src, "a folder is its own root: --root / root= applies to a manifest file")
        if cm != PRESETS["default"]:
            raise BadInputError(src, f"a folder of media has no columns: the {cm.preset!r} preset and column "
                                     "options apply to a manifest file (CSV / TSV / JSONL / Parquet)")
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
    _load_table(src, b, cm)
    return Manifest(b.items, b.skipped, base, src)


def iter_captions(source: str | Path, *, columns: ColumnMap | str | None = None,
                  batch: int = 100_000) -> Iterator[list[tuple[str, str]]]:
    """The (id, caption) pairs of a manifest table whose media is not needed (prompt curation), `batch`
    rows at a time, streamed: memory is bounded by `batch` whatever the table's size (a 10 M-row WebVid CSV,
    a LAION parquet part). The map's path column or template is not used; captions are cleaned
    (`clean_caption`) and rows without one are left out; a missing id is the row's number (p00000, ...).
    Ids are not checked for repeats here (`load_captions` does)."""
    cm = column_map(columns) if columns is None or isinstance(columns, str) else columns
    src = manifest_file(source)
    if src.suffix.lower() not in MANIFEST_EXTENSIONS or not src.is_file():
        raise BadInputError(src, "captions are read from a manifest table (.csv, .tsv, .jsonl or .parquet)")
    text_only = replace(cm, path=cm.caption, template=None)  # the caption column is the one that must be there
    ext = src.suffix.lower()
    if ext in (".parquet", ".pq"):
        yield from _parquet_captions(src, text_only, batch)
        return
    rows = (_rows_csv(src, "\t" if ext == ".tsv" else ",", text_only) if ext in (".csv", ".tsv")
            else _rows_jsonl(src, text_only))
    out: list[tuple[str, str]] = []
    for k, (_, row) in enumerate(rows):
        if isinstance(row, Exception):
            continue
        id_, _, caption, _, _ = text_only.resolve(row)
        caption, id_ = clean_caption(caption), clean_caption(id_) or f"p{k:05d}"
        if caption:
            out.append((id_, caption))
            if len(out) >= batch:
                yield out
                out = []
    if out:
        yield out


def _parquet_captions(src: Path, cm: ColumnMap, batch: int) -> Iterator[list[tuple[str, str]]]:
    """`iter_captions` for a Parquet table, column by column (no dict per row: 1 M LAION rows in seconds)."""
    try:
        pf = pq.ParquetFile(src)
    except (pa.ArrowException, OSError) as e:
        raise BadInputError(src, f"not a readable Parquet file ({e})") from None
    names = pf.schema_arrow.names
    cm.check(src, [_norm_key(n) for n in names])
    cap_col = next(c for c in names if _norm_key(c) == cm.caption)
    id_col = next((c for c in names if _norm_key(c) == cm.id), None)
    out: list[tuple[str, str]] = []
    k = 0
    try:
        for b in pf.iter_batches(batch_size=65_536, columns=[cap_col] + ([id_col] if id_col else [])):
            caps = b.column(cap_col).to_pylist()
            ids = b.column(id_col).to_pylist() if id_col else [None] * len(caps)
            for id_, caption in zip(ids, caps):
                caption, id_ = clean_caption(_text(caption)), clean_caption(_text(id_)) or f"p{k:05d}"
                k += 1
                if caption:
                    out.append((id_, caption))
                    if len(out) >= batch:
                        yield out
                        out = []
    except (pa.ArrowException, OSError) as e:
        raise BadInputError(src, f"Parquet file is damaged after row {k} ({e})") from None
    if out:
        yield out


def load_captions(source: str | Path, *, columns: ColumnMap | str | None = None) -> list[Item]:
    """The ids and captions of a manifest table whose media is not needed (prompt curation), as Items with
    an empty path (`iter_captions`); of rows with the same id the first is kept."""
    items, seen = [], set()
    for batch in iter_captions(source, columns=columns):
        for id_, caption in batch:
            if id_ not in seen:
                seen.add(id_)
                items.append(Item(id_, Path(), caption, "image"))
    return items


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
