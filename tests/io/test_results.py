"""The shared result writers: atomic, JSON-safe, Parquet-readable, provenance recorded."""
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from diffmem.io import results


def test_to_jsonable_converts_numpy_paths_and_non_finite():
    obj = {"a": np.float32(0.5), "b": np.arange(3), "c": Path("/x/y"), "d": math.nan, "e": np.bool_(True),
           "f": (np.int64(7), float("inf"))}
    assert results.to_jsonable(obj) == {"a": 0.5, "b": [0, 1, 2], "c": "/x/y", "d": None, "e": True,
                                        "f": [7, None]}


def test_write_json_is_valid_and_leaves_no_temp_files(tmp_path):
    p = results.write_json(tmp_path / "sub" / "r.json", {"x": np.float64(1.25), "nan": float("nan")})
    assert json.loads(p.read_text()) == {"x": 1.25, "nan": None}
    assert [f.name for f in p.parent.iterdir()] == ["r.json"]


def test_failed_write_keeps_the_previous_file(tmp_path):
    p = results.write_json(tmp_path / "r.json", {"v": 1})

    class Unserialisable:
        pass

    with pytest.raises(TypeError):
        results.write_json(p, {"v": Unserialisable()})
    assert json.loads(p.read_text()) == {"v": 1}
    assert len(list(tmp_path.iterdir())) == 1


def test_write_parquet_nested_values_become_json_strings(tmp_path):
    rows = [{"id": "a", "score": np.float32(0.75), "match": {"train_id": "t1", "frame": 3}},
            {"id": "b", "score": 0.25, "match": {"train_id": "t2", "frame": 0}}]
    df = pd.read_parquet(results.write_parquet(tmp_path / "r.parquet", rows))
    assert list(df["id"]) == ["a", "b"]
    assert df["score"].tolist() == [0.75, 0.25]
    assert json.loads(df["match"][0]) == {"train_id": "t1", "frame": 3}


def test_environment_records_versions():
    env = results.environment()
    assert env["packages"]["torch"].startswith("2.")
    assert env["packages"]["diffmem"] is not None


def test_written_files_are_readable_by_others(tmp_path):
    import stat

    p = results.write_json(tmp_path / "r.json", {"v": 1})
    assert stat.S_IMODE(p.stat().st_mode) == 0o644


def test_write_parquet_types_columns_as_pandas_did_and_keeps_text_as_text(tmp_path):
    import pyarrow.parquet as pq

    rows = [{"i": 1, "j": 2, "x": 0.5, "b": True, "s": "2026-12-07", "none": None, "mix": 1},
            {"i": 3, "x": float("nan"), "b": None, "s": None, "late": "only here", "mix": 2.5}]
    path = results.write_parquet(tmp_path / "t.parquet", rows)
    schema = pq.read_schema(path)
    types = {f.name: str(f.type) for f in schema}
    # ints stay int64; an int column with a missing value is float64 (pandas' rule); an ISO date stays a string;
    # a missing key is null; columns in order of first appearance
    assert types == {"i": "int64", "j": "double", "x": "double", "b": "bool", "s": "string", "none": "null",
                     "mix": "double", "late": "string"}
    back = pq.read_table(path).to_pylist()
    assert back == [{"i": 1, "j": 2.0, "x": 0.5, "b": True, "s": "2026-12-07", "none": None, "mix": 1.0, "late": None},
                    {"i": 3, "j": None, "x": None, "b": None, "s": None, "none": None, "mix": 2.5, "late": "only here"}]
    df = pd.DataFrame({"a": [1.5, np.nan], "n": [np.int64(4), np.int64(5)]})
    assert pq.read_table(results.write_parquet(tmp_path / "d.parquet", df)).to_pylist() == [{"a": 1.5, "n": 4},
                                                                                          {"a": None, "n": 5}]
    assert pq.read_table(results.write_parquet(tmp_path / "e.parquet", [])).num_rows == 0
    with pytest.raises(TypeError, match="column 'm'"):
        results.write_parquet(tmp_path / "m.parquet", [{"m": 1}, {"m": "one"}])


def test_writing_a_table_does_not_import_pandas(fresh_python):
    """pandas is 0.27 s of a short command's start-up; `diffmem detect` writes two tables and reads none."""
    code = ("import sys, tempfile, pathlib; from diffmem.io.results import write_parquet; "
            "write_parquet(pathlib.Path(tempfile.mkdtemp()) / 't.parquet', [{'a': 1, 'b': [1, 2]}]); "
            "print('pandas' in sys.modules)")
    assert fresh_python(code).strip() == "False"
