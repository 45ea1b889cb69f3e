"""Results are Parquet (one row per item) + a JSON summary; every one records how it was made.

Writes are atomic (temp file + rename) so a killed run never leaves a half-written result.
"""
from __future__ import annotations

import json
import math
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

import numpy as np

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


def write_parquet(path: str | Path, rows: Iterable[dict] | "pandas.DataFrame") -> Path:  # noqa: F821
    """One row per item. Nested values (dicts, lists) are stored as JSON strings so any reader can open it."""
    import pandas as pd

    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame([to_jsonable(r) for r in rows])
    df = df.copy()
    for col in df.columns:
        if df[col].map(lambda v: isinstance(v, (dict, list))).any():
            df[col] = df[col].map(lambda v: json.dumps(v) if isinstance(v, (dict, list)) else v)
    path = Path(path)
    with atomic_output(path) as tmp:
        df.to_parquet(tmp, index=False)
    return path
