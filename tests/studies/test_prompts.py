"""Prompt curation: candidates from caption and content clusters, evidence, ranking (by duplicate counts or
by a model's detection magnitude), duplicate recall, and `diffmem prompts` on the embedded world.

(The clusters themselves: tests/metrics/test_duplicates.py; the prompt files: tests/data/test_data_prompts.py.)"""
import json

import numpy as np
import pytest

from diffmem.data.prompts import PromptEntry, read_prompts, write_prompts
from diffmem.studies.prompts import curate_prompts, duplicate_recall


# ---------------------------------------------------------------------------------------------- curation

def _toy_training_set():
    """A: one clip 3x with one caption; B: one clip 2x with two captions; C: one caption on 3 clips."""
    rng = np.random.default_rng(1)
    basis = np.linalg.qr(rng.normal(size=(24, 24)))[0]
    rows = [
        ("a1", "A red car drives on a road.", basis[0]),
        ("a2", "a red car drives on a road", basis[0]),
        ("a3", "A red car drives on a road!", basis[0]),
        ("b1", "the astronaut photo", basis[1]),
        ("b2", "portrait of a woman in a suit", basis[1]),
        ("c1", "ocean waves", basis[2]),
        ("c2", "Ocean waves", basis[3]),
        ("c3", "ocean waves.", basis[4]),
        ("n1", "a coffee cup on a table", basis[5]),
        ("n2", "hands typing on a keyboard", basis[6]),
    ]
    ids = [r[0] for r in rows]
    caps = [r[1] for r in rows]
    vecs = np.stack([r[2] for r in rows]).astype(np.float32)
    return ids, caps, vecs


def test_curate_ranks_duplicated_pairs_first_and_records_evidence():
    ids, caps, vecs = _toy_training_set()
    entries = curate_prompts(ids, caps, vectors=vecs, content_threshold=0.5)
    got = [(e.prompt, e.evidence["n_both"], e.evidence["n_content"], e.evidence["n_caption"]) for e in entries]
    assert got == [
        ("A red car drives on a road.", 3, 3, 3),       # same clip + same caption, 3 times
        ("the astronaut photo", 1, 2, 1),               # same clip, captions differ (tie -> first item)
        ("ocean waves", 1, 1, 3),                       # same caption, different clips
    ]
    a = entries[0].evidence
    assert a["reasons"] == ["exact_duplicate_caption", "duplicate_content"]
    assert a["caption_ids"] == ["a1", "a2", "a3"] and a["content_ids"] == ["a1", "a2", "a3"]
    assert a["normalized_forms"] == {"a red car drives on a road": 3}
    assert entries[1].evidence["content_ids"] == ["b1", "b2"]
    assert entries[1].evidence["reasons"] == ["duplicate_content"]
    assert entries[2].evidence["reasons"] == ["exact_duplicate_caption"]
    assert [e.id for e in entries] == ["p00001", "p00002", "p00003"]
    assert [e.evidence["rank"] for e in entries] == [1, 2, 3]


def test_curate_without_content_finds_caption_duplicates_only():
    ids, caps, _ = _toy_training_set()
    prompts = [e.prompt for e in curate_prompts(ids, caps)]
    assert prompts == ["A red car drives on a road.", "ocean waves"]


def test_curate_near_duplicate_captions_join():
    ids = ["x1", "x2", "x3"]
    caps = ["Shaw Floors Sandy Hollow 15 Adobe 00108", "Shaw Floors Sandy Hollow 15 Adobe 00109", "a dog"]
    e = curate_prompts(ids, caps, caption_threshold=0.7)
    assert len(e) == 1 and e[0].evidence["n_caption"] == 2 and e[0].evidence["n_exact"] == 1
    assert e[0].evidence["reasons"] == ["near_duplicate_caption"]
    assert curate_prompts(ids, caps, caption_threshold=0.95) == []


def test_curate_ranks_by_magnitude_when_given():
    ids, caps, vecs = _toy_training_set()
    mags = {"A red car drives on a road.": 0.1, "the astronaut photo": 0.2, "ocean waves": 0.9}
    entries = curate_prompts(ids, caps, vectors=vecs, content_threshold=0.5, magnitudes=mags)
    assert [e.prompt for e in entries] == ["ocean waves", "the astronaut photo", "A red car drives on a road."]
    assert entries[0].evidence["magnitude"] == 0.9 and entries[0].evidence["n_caption"] == 3
    # a function works the same way; singletons join the candidates when asked
    entries = curate_prompts(ids, caps, magnitudes=lambda ps: [len(p) for p in ps], include_singletons=True, top=2)
    assert [e.prompt for e in entries] == ["portrait of a woman in a suit", "A red car drives on a road."]


def test_duplicate_recall_by_hand():
    e = [PromptEntry("p1", "x", evidence={"caption_ids": ["a1", "a2"], "content_ids": ["a1"]}),
         PromptEntry("p2", "y", evidence={"caption_ids": ["c1"], "content_ids": ["b2"]})]
    r = duplicate_recall(e, [["a1", "a2", "a3"], ["b1", "b2"], ["d1", "d2"]], top=1)
    assert (r["recalled"], r["groups"], r["items_recalled"], r["items"]) == (1, 3, 2, 7)
    r = duplicate_recall(e, [["a1", "a2", "a3"], ["b1", "b2"], ["d1", "d2"]])
    assert r["recall"] == pytest.approx(2 / 3) and r["item_recall"] == pytest.approx(3 / 7)


# ---------------------------------------------------------------------------------------------- files

def test_round_trip(tmp_path):
    ids, caps, vecs = _toy_training_set()
    entries = curate_prompts(ids, caps, vectors=vecs, content_threshold=0.5)
    p = write_prompts(tmp_path / "p.jsonl", entries)
    back = read_prompts(p)
    assert [(b.id, b.prompt, b.evidence) for b in back] == [(e.id, e.prompt, e.evidence) for e in entries]
    assert all(b.label is None for b in back)


# ---------------------------------------------------------------------------------------------- on a world

@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    from diffmem.world import make_world

    out = tmp_path_factory.mktemp("world")
    make_world(out, seed=0, size="tiny")
    return out


def test_copies_in_a_world_score_one_and_distinct_sources_do_not(tiny_world):
    from diffmem.data.manifest import load_manifest
    from diffmem.studies.item_vectors import item_vectors
    from diffmem.studies.prompts import DEFAULT_CONTENT_THRESHOLD

    gt = json.loads((tiny_world / "ground_truth.json").read_text())
    source = {it["id"]: it["source"] for it in gt["items"]}
    items = load_manifest(tiny_world / "train.parquet").items
    v = item_vectors(items, progress=False)
    s = v @ v.T
    same = np.array([[source[a.id] == source[b.id] for b in items] for a in items])
    assert s[same].min() > 0.999                     # byte-identical copies
    assert s[~same].max() < DEFAULT_CONTENT_THRESHOLD  # nothing else reaches the dedup threshold


def test_cli_curates_the_worlds_duplicates_first(tiny_world, tmp_path, capsys):
    from diffmem import cli

    out = tmp_path / "prompts.jsonl"
    assert cli.main(["prompts", str(tiny_world / "train.parquet"), "--out", str(out)]) == 0
    assert "prompts from 38 items" in capsys.readouterr().out
    gt = json.loads((tiny_world / "ground_truth.json").read_text())
    entries = read_prompts(out)
    n_dup = len(gt["duplicate_groups"])
    # the duplicated sources come first, in decreasing copy count, then the caption-only duplicates
    assert {e.prompt for e in entries[:n_dup]} == {g["caption"] for g in gt["duplicate_groups"]}
    count = {g["caption"]: g["count"] for g in gt["duplicate_groups"]}
    assert [count[e.prompt] for e in entries[:n_dup]] == sorted(count.values(), reverse=True)
    assert [e.evidence["n_both"] for e in entries[:n_dup]] == sorted(count.values(), reverse=True)
    assert duplicate_recall(entries, [g["ids"] for g in gt["duplicate_groups"]], top=n_dup)["recall"] == 1.0
    cap = {e.prompt for e in entries[n_dup:]}
    assert set(gt["caption_duplicated_captions"]) <= cap
    summary = json.loads((tmp_path / "prompts.summary.json").read_text())
    assert summary["n_prompts"] == len(entries) and summary["config"]["content_threshold"] == 0.95


def test_an_index_gives_the_same_prompts_as_the_media(tiny_world, tmp_path):
    from diffmem.index import build_content_index
    from diffmem.studies.prompts import run_prompts

    build_content_index(tiny_world / "train.parquet", tmp_path / "idx", progress=False)
    run_prompts(tiny_world / "train.parquet", tmp_path / "a.jsonl", progress=False)
    s = run_prompts(tmp_path / "idx", tmp_path / "b.jsonl", progress=False)
    a, b = read_prompts(tmp_path / "a.jsonl"), read_prompts(tmp_path / "b.jsonl")
    assert [(x.prompt, x.evidence["n_both"], x.evidence["content_ids"]) for x in a] == \
           [(x.prompt, x.evidence["n_both"], x.evidence["content_ids"]) for x in b]
    assert s["config"]["descriptor"] == "builtin"


def test_ranking_by_detection_magnitude_of_a_memorizing_model(tiny_world, tmp_path):
    """With a model, prompts are ranked by its magnitude: the memorizer knows the duplicated sources'
    captions (D > 0) and not the caption-only duplicates (D = 0 by construction)."""
    import sys
    from pathlib import Path

    from diffmem.studies.prompts import run_prompts

    sys.path.insert(0, str(Path(__file__).parent))
    from _memorizer import WorldMemorizer

    gt = json.loads((tiny_world / "ground_truth.json").read_text())
    s = run_prompts(tiny_world / "train.parquet", tmp_path / "m.jsonl", content=False, detect_seeds=1,
                    model=WorldMemorizer(tiny_world), progress=False)
    e = read_prompts(tmp_path / "m.jsonl")
    assert s["ranking"] == "detection magnitude"
    mags = [x.evidence["magnitude"] for x in e]
    assert mags == sorted(mags, reverse=True)
    n_dup = len(gt["duplicate_groups"])
    assert {x.prompt for x in e[:n_dup]} == {g["caption"] for g in gt["duplicate_groups"]}
    assert all(m > 0 for m in mags[:n_dup]) and all(m == 0 for m in mags[n_dup:])
    assert set(e[0].evidence["magnitudes"]) >= {"content", "motion", "total"}


def test_cli_ranks_by_the_magnitude_of_a_named_model(tiny_world, tmp_path, capsys):
    """`--model builtin:tiny-t2v` (committed weights, no download): the model is loaded by name and every
    prompt's evidence carries its detection magnitudes, as the detection study scores them."""
    import math

    from diffmem import cli
    from diffmem.detect.calibrate import DetectConfig
    from diffmem.detect.prompts import prompt_scores
    from diffmem.models import load_adapter

    out = tmp_path / "m.jsonl"
    assert cli.main(["prompts", str(tiny_world / "train.parquet"), "--out", str(out), "--no-content",
                     "--model", "builtin:tiny-t2v", "--detect-seeds", "1"]) == 0
    text = capsys.readouterr().out
    assert "ranked by detection magnitude" in text and "magnitude=" in text
    e = read_prompts(out)
    mags = [x.evidence["magnitude"] for x in e]
    assert len(e) > 3 and mags == sorted(mags, reverse=True) and mags[0] > mags[-1] > 0
    for x in e:  # one seed, one step: the orthogonal split holds exactly per prompt
        m = x.evidence["magnitudes"]
        assert x.evidence["magnitude"] == m["total"]
        assert math.isclose(m["content"] ** 2 + m["motion"] ** 2, m["total"] ** 2, rel_tol=1e-4)
    ref = prompt_scores(load_adapter("builtin:tiny-t2v"), [x.prompt for x in e], DetectConfig(seeds=1, steps=1))
    for x in e:
        assert x.evidence["magnitude"] == pytest.approx(ref[x.prompt]["total"], rel=1e-5)
    summary = json.loads((tmp_path / "m.summary.json").read_text())
    assert summary["ranking"] == "detection magnitude" and summary["config"]["model"] == "builtin:tiny-t2v"


def test_caption_only_metadata_is_curated_without_media(tmp_path, capsys):
    """Wen et al.'s prompt list (caption, index, url) and a LAION-style parquet (url, caption, key) have no
    media paths; `diffmem prompts` refused them ("no 'path' field"). Curation needs only the captions."""
    import json

    import pandas as pd

    from diffmem import cli
    from diffmem.data.prompts import read_prompts

    rows = [{"caption": "The Great Wave off Kanagawa", "index": i, "url": f"https://x/{i}.jpg"} for i in range(3)]
    others = ["a red bicycle leaning on a wall", "portrait of an old fisherman", "mountain lake at dawn",
              "bowl of ramen with an egg", "city skyline at night"]
    rows += [{"caption": c, "index": 10 + i, "url": f"https://x/u{i}.jpg"} for i, c in enumerate(others)]
    (tmp_path / "wen.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pd.DataFrame([{"url": r["url"], "caption": r["caption"], "key": f"k{r['index']}"} for r in rows]).to_parquet(
        tmp_path / "laion.parquet")
    for name in ("wen.jsonl", "laion.parquet"):
        out = tmp_path / f"{name}.prompts.jsonl"
        assert cli.main(["prompts", str(tmp_path / name), "--out", str(out)]) == 0, capsys.readouterr().err
        got = read_prompts(out)
        assert got[0].prompt == "The Great Wave off Kanagawa" and got[0].evidence["n_caption"] == 3
        assert json.loads((tmp_path / f"{name}.prompts.summary.json").read_text())["config"]["content"] is False


def test_caption_only_curation_looks_at_no_media_path(tmp_path, monkeypatch):
    """Caption-only curation of a manifest with paths (--no-content) needs no file: it stats none of them
    (the loader used to stat every path four times, the media being absent on a curation machine)."""
    import os

    import pandas as pd

    from diffmem.data.manifest import load_manifest
    from diffmem.studies.prompts import run_prompts

    media = tmp_path / "media"
    media.mkdir()
    rng = np.random.default_rng(0)
    caps = ["a dog on a beach"] * 3 + [" ".join("".join(rng.choice(list("abcdefghij"), 6)) for _ in range(3))
                                       for _ in range(40)]  # unrelated captions
    pd.DataFrame({"path": [f"media/v{i}.mp4" for i in range(len(caps))], "caption": caps}).to_csv(
        tmp_path / "train.csv", index=False)
    for i in range(5):  # a few files present: with content, those are checked (one stat each)
        (media / f"v{i}.mp4").write_bytes(b"x")
    seen = []
    real_stat = os.stat

    def spy(path, *a, **k):
        if str(media) in os.fspath(path):
            seen.append(os.fspath(path))
        return real_stat(path, *a, **k)

    monkeypatch.setattr(os, "stat", spy)
    s = run_prompts(tmp_path / "train.csv", tmp_path / "p.jsonl", content=False, progress=False)
    assert s["n_items"] == len(caps) and s["n_prompts"] == 1 and seen == []
    m = load_manifest(tmp_path / "train.csv")
    from collections import Counter

    n = Counter(seen)  # a present file: one stat; a missing one: its stat and a look at the link
    assert len(m.items) == 5 and len(n) == len(caps)
    assert all(n[str(media / f"v{i}.mp4")] == (1 if i < 5 else 2) for i in range(len(caps))), n
