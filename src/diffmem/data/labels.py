"""Prompt labels: which prompts are memorized (ground truth for evaluating detection).

    labels = read_labels("labels.csv")   # {prompt: {"memorized": bool, "kind": content|motion|both|none}}
    write_labels("labels.jsonl", labels)

Label files (`read_labels`): CSV, JSONL or Parquet with columns ``prompt`` (or ``caption``/``text``),
``memorized`` (or ``label``; a boolean: true/false, 1/0, yes/no, memorized/novel) and optionally ``kind``
in content|motion|both|none; or the per-prompt table of `diffmem extract` (``extract.parquet``: prompt,
n_samples, n_content, n_motion), whose audited generations give the labels (`labels_from_audit_counts`).
Ground truth should come from auditing generations, not from a duplication list.

`as_bool` is the one boolean parser of the prompt and label files (`diffmem.data.prompts` uses it too).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from ..errors import BadInputError
from ..io.results import read_records, write_text

__all__ = ["KINDS", "as_bool", "read_labels", "labels_from_audit_counts", "write_labels", "COUNT_FIELDS"]

KINDS = ("content", "motion", "both", "none")
_TRUE = {"true", "1", "yes", "y", "t", "memorized"}
_FALSE = {"false", "0", "no", "n", "f", "novel"}
_RAISE = object()

#: What a label made from audit counts carries by default besides memorized and kind.
COUNT_FIELDS = {"n_samples": "n_samples", "n_content": "n_content", "n_motion": "n_motion"}


def as_bool(v, path, where: str, *, name: str = "label", missing=_RAISE) -> bool | None:
    """A boolean cell of a prompt or label file: bool, 0/1 (int or float), or (any case) true/false, 1/0,
    yes/no, y/n, t/f, memorized/novel. A missing value (None, NaN or a blank string) gives `missing`; by
    default it is an error like any other value. Errors name `path` and `where` (e.g. "row 3")."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if v is None or (isinstance(v, float) and np.isnan(v)) or (isinstance(v, str) and not v.strip()):
        if missing is not _RAISE:
            return missing
    elif isinstance(v, (int, np.integer, float, np.floating)) and v in (0, 1):
        return bool(v)
    elif isinstance(v, str) and v.strip().lower() in _TRUE | _FALSE:
        return v.strip().lower() in _TRUE
    raise BadInputError(path, f"{where}: {name} {v!r} is not a boolean (true/false, 1/0, yes/no, memorized/novel)")


def read_labels(path: str | Path) -> dict[str, dict]:
    """{prompt: {"memorized": bool, "kind": content|motion|both|none}} from CSV / JSONL / Parquet.

    `kind` defaults to "content" for memorized prompts and "none" otherwise; a blank memorized cell is
    novel. A prompt listed twice must carry the same label both times. The per-prompt table of
    `diffmem extract` gives `labels_from_audit_counts` (pooled over a prompt listed twice).
    """
    path = Path(path)
    if not path.exists():
        raise BadInputError(path, "no such labels file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".jsonl", ".ndjson"):
            records = []
            for ln, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise BadInputError(path, f"line {ln}: not JSON ({e.msg})") from None
                    if not isinstance(rec, dict):
                        raise BadInputError(path, f"line {ln}: expected a JSON object")
                    records.append(rec)
        elif suffix in (".csv", ".parquet"):
            records = read_records(path)
        else:
            raise BadInputError(path, "labels must be .csv, .jsonl or .parquet")
    except BadInputError:
        raise
    except Exception as e:  # pandas / pyarrow raise many types for a bad file
        raise BadInputError(path, f"cannot read labels: {e}") from None
    # `diffmem extract`'s per-prompt table: labels come from its audit counts (its `label` column is the
    # prompt file's prior label, often empty, not what the audit found)
    if records and "memorized" not in records[0] and {"n_samples", "n_content", "n_motion"} <= set(records[0]):
        out = labels_from_audit_counts(records, path)
        if not out:
            raise BadInputError(path, "no audited samples to take labels from")
        return out
    out: dict[str, dict] = {}
    for k, rec in enumerate(records, 1):
        where = f"row {k}"
        text = next((rec[f] for f in ("prompt", "caption", "text") if isinstance(rec.get(f), str)), None)
        if not text or not text.strip():
            raise BadInputError(path, f"{where}: no prompt (column prompt, caption or text)")
        if "memorized" in rec:
            mem = as_bool(rec["memorized"], path, where, name="memorized", missing=False)
        elif "label" in rec:
            mem = as_bool(rec["label"], path, where, name="memorized", missing=False)
        else:
            raise BadInputError(path, f"{where}: no memorized column")
        kind = rec.get("kind")
        kind = (str(kind).strip().lower() if kind not in (None, "") else ("content" if mem else "none"))
        if kind not in KINDS:
            raise BadInputError(path, f"{where}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if mem != (kind != "none"):
            raise BadInputError(path, f"{where}: memorized={mem} contradicts kind={kind!r}")
        lab = {"memorized": mem, "kind": kind}
        if text in out and out[text] != lab:
            raise BadInputError(path, f"{where}: prompt {text[:60]!r} is labelled twice, differently")
        out[text] = lab
    if not out:
        raise BadInputError(path, "no labels")
    return out


def labels_from_audit_counts(records: Iterable[Mapping], path: str | Path = "<audit table>", *,
                             min_rate: float = 0.0, pool: bool = True,
                             fields: Mapping[str, str] = COUNT_FIELDS) -> dict[str, dict]:
    """Labels from audited generations: the per-prompt table of `diffmem extract` (extract.parquet).

    Each row: prompt, n_samples, n_content (samples with a content or both verdict), n_motion (motion or
    both), and, when known, n_extracted_samples (any verdict but none). A prompt is memorized when more
    than `min_rate` of its samples were extracted (default: at least one); its kind is content, motion or
    both by which verdicts its samples got ("none" when not memorized). Prompts without audited samples
    are left unlabelled ({} when no prompt has any).

    pool: a prompt listed twice pools its samples (`read_labels`); False: its last row with samples
    gives its label (`run_extract`'s labels.jsonl, one row per prompt id).
    fields: what each label carries besides memorized and kind, as {key: source}: a source is one of the
    prompt's counts (n_samples, n_content, n_motion, n_extracted_samples, rate_extracted) or another
    column of its (last) row, e.g. {"id": "prompt_id", "group": "group"}.
    """
    pooled: dict[str, dict] = {}
    for k, rec in enumerate(records, 1):
        text = rec.get("prompt")
        if not isinstance(text, str) or not text.strip():
            raise BadInputError(path, f"row {k}: no prompt")
        try:
            n, c, m = (int(rec[f]) for f in ("n_samples", "n_content", "n_motion"))
            ext = (int(rec["n_extracted_samples"]) if "n_extracted_samples" in rec
                   else c + m - int(rec["n_both"]) if "n_both" in rec else None)
        except (TypeError, ValueError, KeyError) as e:
            raise BadInputError(path, f"row {k}: bad sample counts ({e})") from None
        if not pool:
            if n == 0:
                continue
            pooled[text] = {"n": 0, "c": 0, "m": 0, "ext": 0}  # replaces an earlier row, keeps its place
        acc = pooled.setdefault(text, {"n": 0, "c": 0, "m": 0, "ext": 0})
        acc["row"] = rec
        acc["n"] += n
        acc["c"] += c
        acc["m"] += m
        acc["ext"] = None if ext is None or acc["ext"] is None else acc["ext"] + ext
    out = {}
    for text, acc in pooled.items():
        n, c, m, ext = acc["n"], acc["c"], acc["m"], acc["ext"]
        if n == 0:
            continue
        rate = None if ext is None else ext / n
        if rate is None and min_rate > 0:
            raise BadInputError(path, "min_rate needs n_extracted_samples (or n_both) per prompt")
        mem = bool((ext > 0 and rate > min_rate) if ext is not None else (c > 0 or m > 0))
        kind = ("both" if c and m else "content" if c else "motion" if m else "none") if mem else "none"
        counts = {"n_samples": n, "n_content": c, "n_motion": m, "n_extracted_samples": ext, "rate_extracted": rate}
        out[text] = {"memorized": mem, "kind": kind,
                     **{key: counts[src] if src in counts else acc["row"].get(src) for key, src in fields.items()}}
    return out


def write_labels(path: str | Path, labels: Mapping[str, Mapping]) -> Path:
    """Write {prompt: {memorized, kind, ...}} as JSONL (the format `read_labels` reads)."""
    lines = [json.dumps({"prompt": p, **{k: v for k, v in lab.items()}}) + "\n" for p, lab in labels.items()]
    return write_text(path, "".join(lines))
