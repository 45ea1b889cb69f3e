"""Label files: the reader, labels from audited generations (pooled, or per prompt id with a minimum rate),
the writer, and the one boolean parser."""
import numpy as np
import pandas as pd
import pytest

from diffmem.data.labels import as_bool, labels_from_audit_counts, read_labels, write_labels
from diffmem.errors import BadInputError


def test_labels_reader(tmp_path):
    p = tmp_path / "l.csv"
    p.write_text("prompt,memorized,kind\na,true,motion\nb,0,\nc,yes,\n")
    assert read_labels(p) == {"a": {"memorized": True, "kind": "motion"}, "b": {"memorized": False, "kind": "none"},
                              "c": {"memorized": True, "kind": "content"}}
    p.write_text("prompt,memorized,kind\na,false,motion\n")
    with pytest.raises(BadInputError, match="contradicts"):
        read_labels(p)
    p.write_text("prompt,memorized\na,maybe\n")
    with pytest.raises(BadInputError, match="l.csv: row 1"):
        read_labels(p)
    p.write_text("prompt,memorized\na,1\na,0\n")
    with pytest.raises(BadInputError, match="twice"):
        read_labels(p)
    with pytest.raises(BadInputError, match="no such"):
        read_labels(tmp_path / "none.csv")


def test_labels_from_the_extract_table(tmp_path):
    # per-prompt audit counts, as `diffmem extract` writes them; a prompt listed twice pools its samples
    df = pd.DataFrame([
        {"prompt_id": "p0", "prompt": "copy", "n_samples": 4, "n_content": 3, "n_motion": 0},
        {"prompt_id": "p1", "prompt": "moved", "n_samples": 4, "n_content": 0, "n_motion": 1},
        {"prompt_id": "p2", "prompt": "novel", "n_samples": 4, "n_content": 0, "n_motion": 0},
        {"prompt_id": "p3", "prompt": "twice", "n_samples": 2, "n_content": 1, "n_motion": 0},
        {"prompt_id": "p4", "prompt": "twice", "n_samples": 2, "n_content": 0, "n_motion": 2},
        {"prompt_id": "p5", "prompt": "unsampled", "n_samples": 0, "n_content": 0, "n_motion": 0},
    ])
    df.to_parquet(tmp_path / "extract.parquet")
    lab = read_labels(tmp_path / "extract.parquet")
    assert {p: (v["memorized"], v["kind"]) for p, v in lab.items()} == {
        "copy": (True, "content"), "moved": (True, "motion"), "novel": (False, "none"), "twice": (True, "both")}


def _per_prompt():
    # rows as `diffmem extract` tabulates them (one per prompt id): counts, rates, id and group
    rows = [("p0", "copy", "dup", 4, 3, 0, 0, 3), ("p1", "moved", "dup", 4, 0, 1, 0, 1),
            ("p2", "once", "dup", 4, 1, 1, 1, 1), ("p3", "novel", None, 4, 0, 0, 0, 0),
            ("p4", "unsampled", None, 0, 0, 0, 0, 0), ("p5", "copy", "again", 2, 0, 0, 0, 0)]
    cols = ["prompt_id", "prompt", "group", "n_samples", "n_content", "n_motion", "n_both", "n_extracted_samples"]
    return [dict(zip(cols, r)) for r in rows]


def test_labels_per_prompt_id_with_a_minimum_rate():
    fields = {"rate_extracted": "rate_extracted", "id": "prompt_id", "group": "group"}
    lab = labels_from_audit_counts(_per_prompt(), pool=False, fields=fields)
    # "copy" is listed twice: its last row with samples (p5, nothing extracted) gives its label, in p0's place
    assert list(lab) == ["copy", "moved", "once", "novel"]
    assert lab["copy"] == {"memorized": False, "kind": "none", "rate_extracted": 0.0, "id": "p5", "group": "again"}
    assert lab["moved"] == {"memorized": True, "kind": "motion", "rate_extracted": 0.25, "id": "p1", "group": "dup"}
    assert lab["once"]["kind"] == "both" and lab["once"]["rate_extracted"] == 0.25
    # more than 25 % of the samples must be extracted: 1 of 4 is not enough, and then the kind is none
    strict = labels_from_audit_counts(_per_prompt()[:3], pool=False, min_rate=0.25, fields=fields)
    assert {p: (v["memorized"], v["kind"]) for p, v in strict.items()} == {
        "copy": (True, "content"), "moved": (False, "none"), "once": (False, "none")}


def test_pooled_labels_carry_the_counts():
    lab = labels_from_audit_counts(_per_prompt())
    assert lab["copy"] == {"memorized": True, "kind": "content", "n_samples": 6, "n_content": 3, "n_motion": 0}
    assert "unsampled" not in lab
    # n_both or n_extracted_samples is needed to apply a minimum rate
    rows = [{"prompt": "a", "n_samples": 4, "n_content": 1, "n_motion": 1}]
    assert labels_from_audit_counts(rows)["a"]["kind"] == "both"
    with pytest.raises(BadInputError, match="min_rate"):
        labels_from_audit_counts(rows, min_rate=0.1)
    with pytest.raises(BadInputError, match="row 1: bad sample counts"):
        labels_from_audit_counts([{"prompt": "a", "n_samples": "x", "n_content": 0, "n_motion": 0}])


def test_write_then_read(tmp_path):
    lab = {"a": {"memorized": True, "kind": "both", "id": "p0"}, "b": {"memorized": False, "kind": "none"}}
    back = read_labels(write_labels(tmp_path / "l.jsonl", lab))
    assert back == {"a": {"memorized": True, "kind": "both"}, "b": {"memorized": False, "kind": "none"}}


@pytest.mark.parametrize("value, expected", [
    (True, True), (np.bool_(False), False), (1, True), (np.int64(0), False), (1.0, True), (0.0, False),
    ("TRUE", True), (" no ", False), ("y", True), ("f", False), ("Memorized", True), ("novel", False),
])
def test_as_bool_accepts(value, expected):
    assert as_bool(value, "f.csv", "row 1") is expected


def test_as_bool_missing_and_refused():
    for missing in (None, float("nan"), "", "  "):
        assert as_bool(missing, "f.csv", "row 1", missing=None) is None
        assert as_bool(missing, "f.csv", "row 1", missing=False) is False
        with pytest.raises(BadInputError, match="not a boolean"):
            as_bool(missing, "f.csv", "row 1")
    for bad in ("maybe", 2, 0.5):
        with pytest.raises(BadInputError, match="f.csv: row 3: label"):
            as_bool(bad, "f.csv", "row 3", missing=None)


def test_the_extract_table_gives_labels_from_its_audit_counts_not_its_prior_label_column(tmp_path):
    """README: `diffmem detect --labels OUT/extract/extract.parquet`. The table carries the prompt file's
    prior `label` (None for curated prompts); that failed ("memorized must be true/false, got None")."""
    from diffmem.data.labels import read_labels
    from diffmem.io.results import write_parquet

    rows = [{"prompt_id": "p1", "prompt": "a copied clip", "group": "duplicated_video", "label": None,
             "n_samples": 4, "n_content": 3, "n_motion": 0, "n_both": 0, "train_extracted": ["vid1"]},
            {"prompt_id": "p2", "prompt": "a novel clip", "group": "novel", "label": None,
             "n_samples": 4, "n_content": 0, "n_motion": 0, "n_both": 0, "train_extracted": []}]
    write_parquet(tmp_path / "extract.parquet", rows)
    lab = read_labels(tmp_path / "extract.parquet")
    assert lab["a copied clip"]["memorized"] is True and lab["a copied clip"]["kind"] == "content"
    assert lab["a novel clip"]["memorized"] is False
