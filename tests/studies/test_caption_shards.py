"""Sharded caption clustering (studies/caption_shards.py): the same clusters as in memory, resumable, through
`diffmem prompts --work`, locally and on Ray."""
import json
import os

import numpy as np
import pandas as pd
import pytest

from diffmem import cli
from diffmem.data.prompts import read_prompts
from diffmem.errors import DiffmemError
from diffmem.metrics.duplicates import normalize_caption, normalized_caption_clusters
from diffmem.studies.caption_shards import dense_labels, sharded_caption_clusters


def _captions(n: int, seed: int = 0) -> list[str]:
    """Unrelated captions from a small vocabulary, 10 % of them copies of an earlier one: exact (other case and
    punctuation) or near (one word changed or added), and one caption repeated 80 times (a bucket of more
    than 64, where candidates are anchors)."""
    rng = np.random.default_rng(seed)
    vocab = ["".join(rng.choice(list("abcdefghijklmnop"), int(rng.integers(3, 8)))) for _ in range(500)]
    out = [" ".join(rng.choice(vocab, int(rng.integers(5, 10)))) for _ in range(n)]
    for j in rng.choice(np.arange(1, n), n // 10, replace=False):
        w = out[int(rng.integers(0, j))].split()
        r = rng.random()
        if r < 0.4:
            out[j] = " ".join(w).upper() + "!"
        elif r < 0.7:
            w[int(rng.integers(len(w)))] = str(rng.choice(vocab))
            out[j] = " ".join(w)
        else:
            out[j] = " ".join(w + [str(rng.choice(vocab))])
    for j in rng.choice(n, 80, replace=False):
        out[j] = "stock footage of a city at night"
    return out


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """The captions split over a CSV and a Parquet table (ids v0..)."""
    root = tmp_path_factory.mktemp("caps")
    caps = _captions(3000)
    pd.DataFrame({"id": [f"v{i}" for i in range(1800)], "caption": caps[:1800]}).to_csv(root / "a.csv", index=False)
    pd.DataFrame({"id": [f"v{i}" for i in range(1800, 3000)], "caption": caps[1800:]}).to_parquet(root / "b.parquet")
    return root, caps


def test_the_clusters_are_those_of_all_captions_in_memory(tables, tmp_path):
    root, caps = tables
    exact, near = normalized_caption_clusters([normalize_caption(c) for c in caps])
    assert (near != np.arange(len(caps))).sum() > 200  # most planted copies (and the 80 repeats) are joined
    r = sharded_caption_clusters([root / "a.csv", root / "b.parquet"], tmp_path / "w", shard_rows=700,
                                 partitions=3, workers=1)
    assert r["n"] == len(caps) and len(r["shards"]) == 5  # 1800 rows: 700, 700, 400; 1200 rows: 700, 500
    assert len(r["rows"]) < len(caps)  # only the captions with a duplicate are held at the end
    got_exact, got_near = dense_labels(r)
    np.testing.assert_array_equal(got_exact, exact)
    np.testing.assert_array_equal(got_near, near)


def test_a_killed_run_resumes_and_other_settings_are_refused(tables, tmp_path):
    root, caps = tables
    work = tmp_path / "w"
    first = sharded_caption_clusters([root / "b.parquet"], work, shard_rows=500, partitions=4, workers=1)
    # as if killed: one shard not signed, one partition not linked
    (work / "shards" / "00001" / "n.json").unlink()
    (work / "links" / "0002.npz").unlink()
    kept = work / "links" / "0000.npz"
    stamp = kept.stat().st_mtime_ns
    again = sharded_caption_clusters([root / "b.parquet"], work, shard_rows=500, partitions=4, workers=1)
    for a, b in zip(dense_labels(again), dense_labels(first)):
        np.testing.assert_array_equal(a, b)
    assert kept.stat().st_mtime_ns == stamp and (work / "links" / "0002.npz").is_file()
    with pytest.raises(DiffmemError, match="other settings"):
        sharded_caption_clusters([root / "b.parquet"], work, shard_rows=500, partitions=4, workers=1, threshold=0.7)


def _prompts(path):
    return [(e.prompt, e.evidence["n_caption"], e.evidence["n_exact"], sorted(e.evidence["caption_ids"]))
            for e in read_prompts(path)]


def test_cli_work_gives_the_prompts_of_caption_only_curation(tables, tmp_path, capsys):
    """Two tables, a process pool of 2: the same prompts (and evidence) as `--no-content` on all captions."""
    root, caps = tables
    pd.concat([pd.read_csv(root / "a.csv"), pd.read_parquet(root / "b.parquet")]).to_parquet(tmp_path / "all.parquet")
    assert cli.main(["prompts", str(tmp_path / "all.parquet"), "--no-content", "--out", str(tmp_path / "plain.jsonl")]) == 0
    assert cli.main(["prompts", str(root / "a.csv"), str(root / "b.parquet"), "--work", str(tmp_path / "w"),
                     "--shard-rows", "1000", "--partitions", "3", "--workers", "2",
                     "--out", str(tmp_path / "sharded.jsonl")]) == 0, capsys.readouterr().err
    plain, sharded = _prompts(tmp_path / "plain.jsonl"), _prompts(tmp_path / "sharded.jsonl")
    assert len(plain) > 100 and sharded == plain
    assert plain[0][0] == "stock footage of a city at night" and plain[0][1] == 80
    s = json.loads((tmp_path / "sharded.summary.json").read_text())
    assert s["n_items"] == len(caps) and s["config"]["content"] is False


@pytest.mark.parametrize("argv,why", [
    (["--work", "W", "--model", "builtin:tiny-t2v"], "--model does not apply to --work"),
    (["--engine", "ray"], "--engine ray is for the sharded curation"),
    (["--work", "W", "--address", "auto"], "--address joins a Ray cluster"),
])
def test_bad_sharding_options_are_one_line_errors(tables, tmp_path, capsys, argv, why):
    root, _ = tables
    argv = [a.replace("W", str(tmp_path / "w")) for a in argv]
    assert cli.main(["prompts", str(root / "b.parquet"), *argv, "--out", str(tmp_path / "p.jsonl")]) == 1
    err = capsys.readouterr().err
    assert why in err and len(err.strip().splitlines()) == 1, err


def test_several_tables_need_work(tables, tmp_path, capsys):
    root, _ = tables
    assert cli.main(["prompts", str(root / "a.csv"), str(root / "b.parquet"), "--out", str(tmp_path / "p.jsonl")]) == 1
    assert "with --work DIR" in capsys.readouterr().err


@pytest.mark.slow
def test_on_ray_the_same_clusters(tables, tmp_path):
    pytest.importorskip("ray")
    root, caps = tables
    local = sharded_caption_clusters([root / "b.parquet"], tmp_path / "local", shard_rows=400, partitions=3, workers=1)
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
    ray = sharded_caption_clusters([root / "b.parquet"], tmp_path / "ray", shard_rows=400, partitions=3, engine="ray")
    for a, b in zip(dense_labels(ray), dense_labels(local)):
        np.testing.assert_array_equal(a, b)
