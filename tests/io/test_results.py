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
