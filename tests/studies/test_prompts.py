"""Prompt curation: normalisation, caption and content clusters, ranking, and the public list readers."""
import itertools
import json

import numpy as np
import pandas as pd
import pytest

from diffmem.errors import BadInputError
from diffmem.studies.prompts import (
    PromptEntry, caption_clusters, caption_similarity, content_clusters, curate_prompts, duplicate_recall,
    normalize_caption, read_prompts, write_prompts,
)


# ---------------------------------------------------------------------------------------------- text

@pytest.mark.parametrize("raw, expected", [
    ("<i>The Interview</i>, on VOD!", "the interview on vod"),
    ("  A  cat\twalking.\n", "a cat walking"),
    ("ｆｕｌｌ　ｗｉｄｔｈ", "full width"),                 # NFKC folds full-width letters and space
    ("Cafe\u0301 au lait", "café au lait"),             # combining accent == precomposed
    ("Caf\u00e9 au lait", "café au lait"),
    ("Shaw_Floors 00205-19829", "shaw floors 00205 19829"),
    ("", ""),
])
def test_normalize_caption(raw, expected):
    assert normalize_caption(raw) == expected


def test_caption_similarity_by_hand():
    # " abc " -> { " a", "ab", "bc", "c " }; " abd " -> { " a", "ab", "bd", "d " }: 2 shared of 6
    assert caption_similarity("abc", "abd", ngram=2) == pytest.approx(2 / 6)
    assert caption_similarity("A cat!", "a cat", ngram=3) == 1.0
    assert caption_similarity("abc", "xyz", ngram=2) == 0.0


def _brute_force_clusters(captions, threshold, ngram):
    norms = [normalize_caption(c) for c in captions]
    n = len(norms)
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for i, j in itertools.combinations(range(n), 2):
        if norms[i] == norms[j] or caption_similarity(captions[i], captions[j], ngram) >= threshold:
            a, b = find(i), find(j)
            parent[max(a, b)] = min(a, b)
    return [find(i) for i in range(n)]


def test_caption_clusters_match_all_pairs_reference():
    rng = np.random.default_rng(3)
    words = "red blue green cat dog car road tree house river walking running slowly fast big small".split()
    base = [" ".join(rng.choice(words, size=6)) for _ in range(30)]
    captions = []
    for b in base:
        captions.append(b)
        if rng.random() < 0.5:  # a light edit: punctuation/case (exact after normalising)
            captions.append(b.upper() + ".")
        if rng.random() < 0.5:  # a near duplicate: one word appended
            captions.append(b + " " + rng.choice(words))
    for t in (0.6, 0.8):
        got = caption_clusters(captions, threshold=t, ngram=4)
        want = _brute_force_clusters(captions, t, 4)
        # same partition (labels may differ only by name; both use the first index, so they are equal)
        assert list(got) == want, t


def test_caption_clusters_exact_only_and_labels_are_first_index():
    caps = ["A dog.", "a cat", "a dog", "A DOG!!", "a cats"]
    assert list(caption_clusters(caps, threshold=1.0)) == [0, 1, 0, 0, 4]


# ---------------------------------------------------------------------------------------------- content

def _unit(v):
    return v / np.linalg.norm(v)


def test_content_clusters_known_construction():
    rng = np.random.default_rng(0)
    d = 32
    basis = np.linalg.qr(rng.normal(size=(d, d)))[0]  # orthonormal: distinct items have similarity 0
    v = [basis[0], basis[0] + 0.05 * basis[5], basis[1], basis[2], basis[1] + 0.1 * basis[6], np.zeros(d), basis[0]]
    vecs = np.stack([_unit(x) if np.linalg.norm(x) else x for x in v]).astype(np.float32)
    labels = content_clusters(vecs, threshold=0.9)
    assert list(labels) == [0, 0, 2, 3, 2, 5, 0]


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


def test_reads_wen_et_al_jsonl_as_memorized(tmp_path):
    # the schema of the 500 memorized Stable Diffusion prompts (caption, index, url)
    p = tmp_path / "sdv1_500_memorized.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in [
        {"caption": "The No Limits Business Woman Podcast", "index": 1030727993, "url": "https://x/1.jpg"},
        {"caption": "Sony Won't Release <i>The Interview</i> on VOD", "index": 851022632, "url": "https://x/2.jpg"},
    ]) + "\n\n")
    e = read_prompts(p)
    assert [x.prompt for x in e] == ["The No Limits Business Woman Podcast", "Sony Won't Release <i>The Interview</i> on VOD"]
    assert [x.id for x in e] == ["1030727993", "851022632"]
    assert all(x.label is True for x in e)
    assert e[0].evidence["url"] == "https://x/1.jpg"


def test_reads_webster_groundtruth_parquet(tmp_path):
    p = tmp_path / "sdv1_bb_edge_groundtruth.parquet"
    pd.DataFrame({
        "caption": ["Mothers influence on her young hippo", "Galaxy Women's Leather Boots", "a painting of a fox", "x"],
        "url": ["u1", "u2", "u3", "u4"],
        "overfit_type": ["MV", "TV", "N", "RV"],
        "gen_seeds": [[0, 1], [2], [], [3]],
    }).to_parquet(p)
    e = read_prompts(p)
    assert [x.label for x in e] == [True, True, False, True]
    assert [x.evidence["overfit_type"] for x in e] == ["MV", "TV", "N", "RV"]
    assert [x.id for x in e] == ["p00000", "p00001", "p00002", "p00003"]


def test_reads_world_prompts_with_groups_and_csv_and_text(tmp_path):
    w = tmp_path / "prompts.jsonl"
    w.write_text(json.dumps({"id": "q1", "prompt": "a", "group": "duplicated_video", "label": True,
                             "train_ids": ["vid0001", "vid0007"]}) + "\n"
                 + json.dumps({"id": "q2", "prompt": "b", "group": "novel", "label": "novel", "train_ids": []}) + "\n")
    e = read_prompts(w)
    assert [(x.id, x.group, x.label) for x in e] == [("q1", "duplicated_video", True), ("q2", "novel", False)]
    assert e[0].evidence == {"train_ids": ["vid0001", "vid0007"]}

    c = tmp_path / "p.csv"
    pd.DataFrame({"prompt": ["one", "two"], "label": [1, 0]}).to_csv(c, index=False)
    assert [(x.prompt, x.label) for x in read_prompts(c)] == [("one", True), ("two", False)]

    t = tmp_path / "p.txt"
    t.write_text("first prompt\n\n  second prompt  \n")
    assert [(x.id, x.prompt) for x in read_prompts(t)] == [("p00000", "first prompt"), ("p00001", "second prompt")]


def test_duplicate_ids_are_made_unique(tmp_path):
    p = tmp_path / "p.jsonl"
    p.write_text('{"id": 7, "prompt": "a"}\n{"id": 7, "prompt": "b"}\n')
    assert [x.id for x in read_prompts(p)] == ["7-1", "7-2"]


@pytest.mark.parametrize("name, content, message", [
    ("bad.jsonl", '{"prompt": "ok"}\n{not json\n', "line 2: not JSON"),
    ("nofield.jsonl", '{"title": "x"}\n', "line 1: no text field"),
    ("empty.txt", "\n\n", "no prompts"),
    ("label.jsonl", '{"prompt": "x", "label": "maybe"}\n', "not a boolean"),
    ("blank.jsonl", '{"prompt": "  "}\n', "is empty"),
])
def test_bad_files_name_file_and_problem(tmp_path, name, content, message):
    p = tmp_path / name
    p.write_text(content)
    with pytest.raises(BadInputError) as e:
        read_prompts(p)
    assert str(p) in str(e.value) and message in str(e.value)


def test_missing_file_and_wrong_columns(tmp_path):
    with pytest.raises(BadInputError, match="no such file"):
        read_prompts(tmp_path / "nope.jsonl")
    p = tmp_path / "x.parquet"
    pd.DataFrame({"title": ["a"]}).to_parquet(p)
    with pytest.raises(BadInputError, match="no text column"):
        read_prompts(p)
    with pytest.raises(BadInputError, match="is a folder"):
        read_prompts(tmp_path)


# ---------------------------------------------------------------------------------------------- on a world

@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    from diffmem.world import make_world

    out = tmp_path_factory.mktemp("world")
    make_world(out, seed=0, size="tiny")
    return out


def test_copies_in_a_world_score_one_and_distinct_sources_do_not(tiny_world):
    from diffmem.data.manifest import load_manifest
    from diffmem.studies.prompts import DEFAULT_CONTENT_THRESHOLD, item_vectors

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
    from diffmem.detect.calibrate import DetectSettings
    from diffmem.models import load_adapter
    from diffmem.studies.detect import prompt_scores

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
    ref = prompt_scores(load_adapter("builtin:tiny-t2v"), [x.prompt for x in e], DetectSettings(seeds=1, steps=1))
    for x in e:
        assert x.evidence["magnitude"] == pytest.approx(ref[x.prompt]["total"], rel=1e-5)
    summary = json.loads((tmp_path / "m.summary.json").read_text())
    assert summary["ranking"] == "detection magnitude" and summary["config"]["model"] == "builtin:tiny-t2v"
