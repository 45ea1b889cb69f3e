"""Results are Parquet (one row per item) + a JSON summary; every one records how it was made.

Writes are atomic (temp file + rename) so a killed run never leaves a half-written result.
"""
from __future__ import annotations

import io
import json
import math
import platform
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from .atomic import atomic_output

_PACKAGES = ("diffmem", "torch", "numpy", "av", "opencv-python-headless", "faiss-cpu",
             "diffusers", "transformers", "pyarrow", "scikit-image")


def environment() -> dict:
    """Package versions and platform, stored in every result so it can be reproduced."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"python": sys.version.split()[0], "platform": platform.platform(), "packages": versions}


def to_jsonable(obj: Any) -> Any:
    """Numpy scalars/arrays, Paths and dataclass-likes to plain JSON; NaN/inf to None."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "as_dict"):
        return to_jsonable(obj.as_dict())
    return obj


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_json(path: str | Path, obj: Any) -> Path:
    path = Path(path)
    _atomic_write_bytes(path, (json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n").encode())
    return path


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_text(path: str | Path, text: str) -> Path:
    path = Path(path)
    _atomic_write_bytes(path, text.encode("utf-8"))
    return path


_JSON_COLUMNS = b"diffmem.json_columns"  # Parquet schema metadata: the columns that hold JSON text


def write_parquet(path: str | Path, rows: Iterable[dict] | "pandas.DataFrame") -> Path:  # noqa: F821
    """One row per item. Nested values (dicts, lists) are stored as JSON text, with NaN as null, so any
    reader can open the file; the schema names those columns, and `read_table` gives them back nested.

    Rows are dicts (columns: every key, in order of first appearance; a missing key is null) or a
    DataFrame. Column types follow pandas' rules (ints with a missing value are float64)."""
    if hasattr(rows, "columns") and hasattr(rows, "to_dict"):  # a DataFrame
        columns = {str(c): to_jsonable(rows[c].tolist()) for c in rows.columns}  # NaN -> None
    else:
        rows = [to_jsonable(r) for r in rows]
        columns = {c: [r.get(c) for r in rows] for c in dict.fromkeys(k for r in rows for k in r)}
    n = len(rows)
    nested = []
    for col, values in columns.items():
        if any(isinstance(v, (dict, list, tuple)) for v in values):
            columns[col] = [json.dumps(v, allow_nan=False) if isinstance(v, (dict, list, tuple)) else v for v in values]
            nested.append(col)
    table = _arrow_table(columns, n)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), _JSON_COLUMNS: json.dumps(nested).encode()})
    path = Path(path)
    with atomic_output(path) as tmp:
        pq.write_table(table, tmp)
    return path


def _arrow_table(columns: dict[str, list], n: int) -> pa.Table:
    """Columns of plain Python values (None, bool, int, float, str) -> an Arrow table, typed by
    `_arrow_type`. The values reach Arrow as JSON lines read by its C++ reader under that schema:
    converting Python objects with `pa.array` imports pandas (0.27 s of `diffmem detect`'s 3 s)."""
    schema = pa.schema([pa.field(c, _arrow_type(c, v)) for c, v in columns.items()])
    if n == 0:
        return schema.empty_table()
    names = list(columns)
    lines = "\n".join(json.dumps(dict(zip(names, vals)), allow_nan=False) for vals in zip(*columns.values()))
    data = (lines or "\n".join("{}" for _ in range(n))).encode()
    return pa_json.read_json(io.BytesIO(data), read_options=pa_json.ReadOptions(block_size=max(len(data) + 1, 1 << 20)),
                             parse_options=pa_json.ParseOptions(explicit_schema=schema,
                                                                unexpected_field_behavior="error"))


def _arrow_type(name: str, values: list) -> pa.DataType:
    """pandas' column types: bool, int64 (float64 when a value is missing), float64, string; null when
    every value is missing."""
    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return pa.null()
    if kinds == {bool}:
        return pa.bool_()
    if kinds == {int}:
        return pa.float64() if None in values else pa.int64()
    if kinds <= {int, float}:
        return pa.float64()
    if kinds == {str}:
        return pa.string()
    raise TypeError(f"column {name!r}: cannot store values of types {sorted(k.__name__ for k in kinds)} in one column")


def read_table(path: str | Path) -> "pandas.DataFrame":  # noqa: F821
    """A result table, nested columns as Python lists and dicts (not JSON text), missing values as None:
    Parquet written by `write_parquet`, or JSON lines (prompt and label files)."""
    import pandas as pd  # 0.27 s: only for the commands that read tables back

    path = Path(path)
    if path.suffix == ".jsonl":
        return pd.DataFrame([json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()])
    table = pq.read_table(path)
    nested = json.loads((table.schema.metadata or {}).get(_JSON_COLUMNS, b"[]"))
    df = table.to_pandas()
    for col in nested:
        if col in df.columns:
            df[col] = df[col].map(lambda v: json.loads(v) if isinstance(v, str) else None)
    return df


def read_records(path: str | Path) -> list[dict]:
    """The rows of a CSV or Parquet input table (prompts, labels) as dicts; CSV cells are kept as text
    (an empty cell is "", not NaN). Errors are pandas' / pyarrow's own: callers name the file."""
    import pandas as pd  # 0.27 s: only for these formats, so that `diffmem detect P.jsonl` starts without it

    path = Path(path)
    df = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path, keep_default_na=False)
    return df.to_dict("records")


@dataclass
class Result:
    """What a study returns: its folder, its summary, its tables (`to_pandas`) and its HTML report."""

    out: Path
    summary: dict
    tables: dict[str, Path] = field(default_factory=dict)   # name -> file; the first is the main one
    report: Path | None = None

    def to_pandas(self, table: str | None = None) -> "pandas.DataFrame":  # noqa: F821
        """A table as a DataFrame (default: the main one), nested columns as lists and dicts."""
        if not self.tables:
            raise ValueError(f"{self.out}: this result has no table")
        name = table or next(iter(self.tables))
        if name not in self.tables:
            raise ValueError(f"no table {name!r}; this result has {', '.join(self.tables)}")
        return read_table(self.tables[name])

    def __repr__(self) -> str:
        nums = [f"{k}={v!r}" for k, v in self.summary.items()
                if isinstance(v, (int, float, str)) and not isinstance(v, bool)][:6]
        return f"{type(self).__name__}(out={str(self.out)!r}, tables={list(self.tables)}, {', '.join(nums)})"
