"""Prompt curation at scale: caption clustering (MinHash LSH) on up to millions of captions.

    nice -n 10 python benchmarks/bench_curation.py                        # 20 k, 100 k, 1 M; recall on 20 k
    python benchmarks/bench_curation.py --sizes 100000 --recall-sample 5000
    python benchmarks/bench_curation.py --sharded --sizes 1000000,10000000 --workers 2   # studies.caption_shards

Captions are synthetic, seeded, WebVid-like: 6-15 words drawn from a Zipf law over 20 000 made-up words,
and 5 % of rows copies of an earlier caption (40 % upper-cased with punctuation, the others with one word
replaced or one appended: the near-duplicates curation must join). Each size runs in its own process,
so its peak memory (ru_maxrss) is its own. Per size:

    normalise       the floor: normalising every caption (per-caption Python work any method does)
    clusters        `metrics.duplicates.caption_clusters` (threshold 0.8, 4-grams, 16 x 4 LSH)
    curate          `studies.prompts.curate_prompts` on ids + captions (clusters, ranking, evidence)
    x floor         curate / normalise, both measured in the same process
    peak RSS        of the process, captions included (their own size is printed apart)

Recall: on the first --recall-sample captions, every pair with 4-gram Jaccard >= 0.8 is found exactly
(all-pairs with prefix filtering: a pair at Jaccard >= t shares a token among the |x| - ceil(t |x|) + 1
rarest of each set, so only pairs sharing such a token are compared; checked against brute force on 400
captions at start-up), and recall = the share of those pairs that `caption_clusters` puts in one cluster.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import resource
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np


def captions(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = ["".join(rng.choice(letters, size=int(rng.integers(3, 10)))) for _ in range(20000)]
    p = 1.0 / np.arange(1, len(vocab) + 1)
    p /= p.sum()
    lens = rng.integers(6, 16, size=n)
    words = rng.choice(len(vocab), size=int(lens.sum()), p=p)
    out, k = [], 0
    for L in lens:
        out.append(" ".join(vocab[w] for w in words[k:k + L]))
        k += L
    for j in rng.choice(n, size=int(0.05 * n), replace=False):
        src = out[int(rng.integers(0, max(1, j)))]
        w = src.split()
        r = rng.random()
        if r < 0.4:
            out[j] = src.upper() + "!"
        elif r < 0.7:
            w[int(rng.integers(len(w)))] = vocab[int(rng.integers(len(vocab)))]
            out[j] = " ".join(w)
        else:
            out[j] = src + " " + vocab[int(rng.integers(len(vocab)))]
    return out


def exact_pairs(sets: list[set], t: float) -> set[tuple[int, int]]:
    """Every pair (i, j), i < j, with Jaccard >= t, by prefix filtering (exact; see the module docstring)."""
    freq = Counter(g for s in sets for g in s)
    order = [sorted(s, key=lambda g: (freq[g], g)) for s in sets]
    postings = defaultdict(list)
    found = set()
    for i in sorted(range(len(sets)), key=lambda i: len(sets[i])):  # shorter first: |x| <= |y| below
        x = order[i]
        prefix = len(x) - math.ceil(t * len(x)) + 1
        cands = {j for g in x[:prefix] for j in postings[g]}
        for j in cands:
            if len(sets[j]) >= t * len(x) and len(sets[i] & sets[j]) >= t * len(sets[i] | sets[j]):
                found.add((min(i, j), max(i, j)))
        for g in x[:prefix]:
            postings[g].append(i)
    return found


def _self_check(t: float) -> None:
    from diffmem.metrics.duplicates import normalize_caption, shingles

    sets = [shingles(normalize_caption(c), 4) for c in captions(400, seed=7)]
    brute = {(i, j) for i, j in itertools.combinations(range(len(sets)), 2)
             if len(sets[i] & sets[j]) >= t * len(sets[i] | sets[j])}
    assert exact_pairs(sets, t) == brute and len(brute) >= 5, "prefix filtering disagrees with brute force"


def run_size(n: int, t: float, recall_sample: int) -> dict:
    from diffmem.metrics.duplicates import caption_clusters, normalize_caption, shingles
    from diffmem.studies.prompts import curate_prompts

    caps = captions(n)
    rss_captions = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    [normalize_caption(c) for c in caps]
    floor = time.perf_counter() - t0
    t0 = time.perf_counter()
    labels = caption_clusters(caps, threshold=t)
    clusters = time.perf_counter() - t0
    t0 = time.perf_counter()
    entries = curate_prompts([f"v{i}" for i in range(n)], caps, caption_threshold=t)
    curate = time.perf_counter() - t0
    out = {"n": n, "normalise_s": floor, "clusters_s": clusters, "curate_s": curate, "x_floor": curate / floor,
           "n_prompts": len(entries), "n_joined": int(n - len(np.unique(labels))),
           "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9,
           "captions_rss_gb": rss_captions / 1e9}
    if recall_sample and n >= recall_sample:
        sub = caps[:recall_sample]
        lab = caption_clusters(sub, threshold=t)
        sets = [shingles(normalize_caption(c), 4) for c in sub]
        pairs = exact_pairs(sets, t)
        out.update(recall_n=recall_sample, recall_pairs=len(pairs),
                   recall=sum(lab[i] == lab[j] for i, j in pairs) / max(1, len(pairs)))
    return out


def run_sharded(n: int, t: float, workers: int, shard_rows: int, partitions: int, check: bool) -> dict:
    """One size through `studies.caption_shards` (captions written to a parquet first, not timed)."""
    import shutil
    import tempfile

    import pandas as pd

    from diffmem.metrics.duplicates import normalize_caption, normalized_caption_clusters
    from diffmem.studies.caption_shards import dense_labels, sharded_caption_clusters

    tmp = tempfile.mkdtemp(prefix="bench_curation_")
    try:
        caps = captions(n)
        pd.DataFrame({"id": [f"v{i}" for i in range(n)], "caption": caps}).to_parquet(f"{tmp}/captions.parquet")
        if not check:
            del caps
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        r = sharded_caption_clusters([f"{tmp}/captions.parquet"], f"{tmp}/work", threshold=t, workers=workers,
                                     shard_rows=shard_rows, partitions=partitions)
        out = {"n": n, "seconds": r["seconds"], "stages": r["stages"], "n_edges": r["n_edges"],
               "n_joined": int((r["near"] != r["rows"]).sum()), "n_rows_joined": int(len(r["rows"])), "workers": workers, "shard_rows": shard_rows,
               "partitions": partitions,
               "driver_peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9,
               "driver_rss_before_gb": rss_before / 1e9,
               "worker_peak_rss_gb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 1e9,
               "work_gb": sum(f.stat().st_size for f in Path(f"{tmp}/work").rglob("*") if f.is_file()) / 1e9}
        if check:
            exact, near = normalized_caption_clusters([normalize_caption(c) for c in caps], threshold=t)
            got_exact, got_near = dense_labels(r)
            out["same_as_in_memory"] = bool(np.array_equal(exact, got_exact) and np.array_equal(near, got_near))
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="20000,100000,1000000")
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--recall-sample", type=int, default=20000)
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    ap.add_argument("--sharded", action="store_true",
                    help="time the sharded path (studies.caption_shards) instead, per stage, with its peak memory")
    ap.add_argument("--workers", type=int, default=2, help="--sharded: processes")
    ap.add_argument("--shard-rows", type=int, default=1_000_000, help="--sharded: captions per shard")
    ap.add_argument("--partitions", type=int, default=16, help="--sharded: link tasks")
    ap.add_argument("--check", action="store_true", help="--sharded: compare with the in-memory clusters too")
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # a child process: one size
    a = ap.parse_args()
    if a.one is not None:
        print(json.dumps(run_sharded(a.one, a.threshold, a.workers, a.shard_rows, a.partitions, a.check)
                         if a.sharded else run_size(a.one, a.threshold, a.recall_sample)))
        return 0
    if a.sharded:
        print(f"load {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores, {a.workers} workers, {a.shard_rows} captions "
              f"per shard, {a.partitions} partitions")
        rows = []
        for n in [int(s) for s in a.sizes.split(",")]:
            cmd = [sys.executable, __file__, "--one", str(n), "--sharded", "--threshold", str(a.threshold),
                   "--workers", str(a.workers), "--shard-rows", str(a.shard_rows), "--partitions", str(a.partitions)]
            done = subprocess.run(cmd + (["--check"] if a.check else []), capture_output=True, text=True, check=True)
            r = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(r)
            st = " ".join(f"{k} {v:.1f}s" for k, v in r["stages"].items())
            same = f", same as in memory: {r['same_as_in_memory']}" if "same_as_in_memory" in r else ""
            print(f"{n:>11} captions: {r['seconds']:.1f} s ({st}); {r['n_joined']} joined; peak RSS driver "
                  f"{r['driver_peak_rss_gb']:.2f} GB (captions generated: {r['driver_rss_before_gb']:.2f} GB), "
                  f"largest worker {r['worker_peak_rss_gb']:.2f} GB; work files {r['work_gb']:.2f} GB{same}")
        if a.out:
            with open(a.out, "w") as f:
                json.dump({"load": os.getloadavg(), "sharded": rows}, f, indent=2)
        return 0
    _self_check(a.threshold)
    rows = []
    print(f"load {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores")
    print(f"{'captions':>10} {'normalise':>10} {'clusters':>9} {'curate':>8} {'x floor':>8} {'peak RSS':>9} "
          f"{'captions':>9} {'prompts':>8} {'recall':>14}")
    for n in [int(s) for s in a.sizes.split(",")]:
        done = subprocess.run([sys.executable, __file__, "--one", str(n), "--threshold", str(a.threshold),
                               "--recall-sample", str(a.recall_sample)], capture_output=True, text=True, check=True)
        r = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(r)
        rec = f"{r['recall']:.4f} of {r['recall_pairs']}" if "recall" in r else "-"
        print(f"{n:>10} {r['normalise_s']:>9.1f}s {r['clusters_s']:>8.1f}s {r['curate_s']:>7.1f}s "
              f"{r['x_floor']:>7.1f}x {r['peak_rss_gb']:>8.2f}G {r['captions_rss_gb']:>8.2f}G {r['n_prompts']:>8} {rec:>14}")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"load": os.getloadavg(), "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
