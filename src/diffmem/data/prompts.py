"""Prompt files: the `PromptEntry` record every reader returns, `read_prompts` and `write_prompts`.

Readers (`read_prompts`) accept, by file type:

- `.jsonl`: one JSON object per line with the text in `prompt`, `caption` or `text`; optional
  `id` (or `index`, `key`), `group`, `label`/`memorized` (bool), `overfit_type`, `evidence`; any
  other field is kept in the entry's evidence.
  This covers the JSONL of 500 memorized Stable Diffusion prompts of Wen et al. (ICLR 2024;
  fields `caption`, `index`, `url`: every line is memorized), the embedded world's
  `prompts.jsonl`, and the files `diffmem prompts` writes.
- `.parquet` / `.csv`: the same columns. Webster's ground-truth parquets (arXiv 2305.08694,
  `*_groundtruth.parquet`) have `caption` and `overfit_type` in {MV (matching verbatim), RV
  (retrieved verbatim), TV (template verbatim), N (none)}: MV/RV/TV are labelled memorized, N not.
- anything else (`.txt`): one prompt per non-empty line.

Labels are parsed by `diffmem.data.labels.as_bool`; a missing label is unknown (None).
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..errors import BadInputError, DiffmemError
from ..io.results import read_records, to_jsonable, write_text
from .labels import as_bool

__all__ = ["PromptEntry", "read_prompts", "write_prompts", "WEBSTER_MEMORIZED_TYPES"]

# Webster (2023) labels: matching verbatim, retrieved verbatim, template verbatim; "N" is none.
WEBSTER_MEMORIZED_TYPES = frozenset({"MV", "RV", "TV"})

_TEXT_FIELDS = ("prompt", "caption", "text")
UNCONDITIONAL = "unconditional"  # the group of the empty prompt (unconditional samples) in a prompt file
_ID_FIELDS = ("id", "index", "key", "uid")


@dataclass
class PromptEntry:
    """One prompt. `label`: True = known memorized, False = known novel, None = unknown."""

    id: str
    prompt: str
    group: str | None = None
    label: bool | None = None
    evidence: dict = field(default_factory=dict)
    source: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def as_prompt_entries(prompts, *, allow_empty: bool = True) -> list[PromptEntry]:
    """The prompts a study is given, as entries: a prompt file (any format `read_prompts` reads), or a list
    of strings (ids p00000, p00001, ...), dicts with "prompt" (and "id", "group"), or entries. Ids must be
    unique (they name files); allow_empty=False refuses empty prompts (detection has nothing to score)."""
    if isinstance(prompts, (str, Path)):
        entries = read_prompts(prompts)
    else:
        entries = []
        for k, p in enumerate(prompts):
            if isinstance(p, PromptEntry):
                entries.append(p)
            elif isinstance(p, str):
                entries.append(PromptEntry(f"p{k:05d}", p))
            elif isinstance(p, dict) and "prompt" in p:
                entries.append(PromptEntry(str(p.get("id", f"p{k:05d}")), str(p["prompt"]), p.get("group")))
            else:
                raise DiffmemError(f"prompt {k}: expected text, a dict with 'prompt', or a PromptEntry; got "
                                   f"{type(p).__name__}")
    if not entries:
        raise DiffmemError("no prompts given")
    if not allow_empty:
        empty = [k for k, e in enumerate(entries) if not e.prompt.strip()]
        if empty:
            raise DiffmemError(f"prompt {empty[0]} is empty")
    if len({e.id for e in entries}) != len(entries):
        raise DiffmemError("prompt ids must be unique (they name the sample files)")
    return entries


def write_prompts(path: str | Path, entries: Sequence[PromptEntry]) -> Path:
    """One JSON object per line: id, prompt, group, label, evidence (read back by read_prompts)."""
    lines = []
    for e in entries:
        d = {"id": e.id, "prompt": e.prompt}
        if e.group is not None:
            d["group"] = e.group
        if e.label is not None:
            d["label"] = e.label
        if e.evidence:
            d["evidence"] = e.evidence
        lines.append(json.dumps(to_jsonable(d), ensure_ascii=False))
    return write_text(path, "\n".join(lines) + ("\n" if lines else ""))


def _entry_from_record(rec: Mapping, k: int, path: Path, where: str, default_label: bool | None) -> PromptEntry:
    text = next((rec[f] for f in _TEXT_FIELDS if f in rec and rec[f] is not None), None)
    if text is None or not isinstance(text, str):
        raise BadInputError(path, f"{where}: no text field (one of {', '.join(_TEXT_FIELDS)})")
    pid = next((rec[f] for f in _ID_FIELDS if f in rec and rec[f] is not None), None)
    label = default_label
    for f in ("label", "memorized"):
        if f in rec:
            label = as_bool(rec[f], path, where, missing=None)
            break
    else:
        ot = rec.get("overfit_type")
        if isinstance(ot, str) and ot.strip():
            label = ot.strip().upper() in WEBSTER_MEMORIZED_TYPES
    evidence = rec.get("evidence") or {}
    if isinstance(evidence, str):
        try:
            evidence = json.loads(evidence)
        except json.JSONDecodeError:
            evidence = {"note": evidence}
    # every other field (url, overfit_type, the world's train_ids ...) is kept as evidence
    known = set(_TEXT_FIELDS) | set(_ID_FIELDS) | {"label", "memorized", "evidence", "group"}
    for f, v in rec.items():
        if f not in known and v is not None and f not in evidence:
            evidence[f] = v.tolist() if isinstance(v, np.ndarray) else v
    group = rec.get("group")
    return PromptEntry(id=str(pid) if pid is not None else f"p{k:05d}", prompt=text,
                       group=str(group) if group is not None else None, label=label,
                       evidence=dict(evidence), source=path.name)


def _known_memorized_list(path: Path, first: Mapping) -> bool:
    """The JSONL of Wen et al. lists memorized prompts only (caption, index, url, no label)."""
    return "caption" in first and "url" in first and not ({"label", "memorized", "overfit_type"} & set(first))


def read_prompts(path: str | Path) -> list[PromptEntry]:
    """Read a prompt list (format by extension; see the module docstring). Empty prompts are errors."""
    path = Path(path)
    if not path.exists():
        raise BadInputError(path, "no such file")
    if path.is_dir():
        raise BadInputError(path, "is a folder, expected a prompt file (.jsonl, .parquet, .csv or .txt)")
    suffix = path.suffix.lower()
    entries: list[PromptEntry] = []
    if suffix in (".jsonl", ".ndjson"):
        records = []
        with open(path, encoding="utf-8") as f:
            for ln, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise BadInputError(path, f"line {ln}: not JSON ({e.msg})") from None
                if isinstance(rec, str):
                    rec = {"prompt": rec}
                if not isinstance(rec, dict):
                    raise BadInputError(path, f"line {ln}: expected a JSON object")
                records.append((ln, rec))
        default = True if records and _known_memorized_list(path, records[0][1]) else None
        for k, (ln, rec) in enumerate(records):
            entries.append(_entry_from_record(rec, k, path, f"line {ln}", default))
    elif suffix in (".parquet", ".csv"):
        try:
            rows = read_records(path)
        except Exception as e:  # pyarrow / pandas raise many types for a bad file
            raise BadInputError(path, f"cannot read as {suffix[1:]}: {e}") from None
        columns = list(dict.fromkeys(k for r in rows for k in r))
        if rows and not any(f in columns for f in _TEXT_FIELDS):
            raise BadInputError(path, f"no text column (one of {', '.join(_TEXT_FIELDS)}); columns are {columns}")
        for k, rec in enumerate(rows):
            entries.append(_entry_from_record(rec, k, path, f"row {k + 1}", None))
    elif suffix in ("", ".txt", ".text", ".prompts"):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise BadInputError(path, "not UTF-8 text") from None
        for line in (ln.strip() for ln in text.splitlines()):
            if line:
                entries.append(PromptEntry(id=f"p{len(entries):05d}", prompt=line, source=path.name))
    else:  # a PDF, a picture, a model file given by mistake would be read as lines of "prompts"
        raise BadInputError(path, f"unknown prompt file type {suffix!r}; use .jsonl, .parquet, .csv or .txt "
                                  "(one prompt per line)")
    for e in entries:  # the empty prompt only on purpose: a world's unconditional group
        if not e.prompt.strip() and e.group != UNCONDITIONAL:
            raise BadInputError(path, f"prompt {e.id} is empty (an empty prompt must have group {UNCONDITIONAL!r})")
    seen: Counter = Counter(e.id for e in entries)
    dups = [i for i, c in seen.items() if c > 1]
    if dups:  # ids name output folders: make them unique rather than refuse a public list
        counter: Counter = Counter()
        for e in entries:
            if seen[e.id] > 1:
                counter[e.id] += 1
                e.id = f"{e.id}-{counter[e.id]}"
    if not entries:
        raise BadInputError(path, "no prompts")
    return entries
