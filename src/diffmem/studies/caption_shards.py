"""Prompt curation at WebVid / LAION scale: caption clustering in shards, on a process pool or on Ray.

`metrics.duplicates.normalized_caption_clusters` holds every caption, its signature and its band keys in
one process (1 M captions: 1.9 GB, 42 s on one core). Here the same clusters are computed in stages whose
tasks each hold one shard or one partition, so a task's memory does not grow with the number of captions;
the last step, a union-find on the driver, holds only the captions that have a duplicate.

1. **split** (driver, streaming): every caption table (`data.manifest.iter_captions`: CSV / TSV / JSONL /
   Parquet, any `ColumnMap`) is cut into shards of `shard_rows` (id, caption) rows, WORK/input/NNNNN.parquet.
2. **sign** (one task per shard): normalise, a 64-bit hash of the normalised text, MinHash signatures and
   LSH band keys (`caption_signatures`, `band_keys`), written to WORK/shards/NNNNN/.
3. **link** (one task per partition of the 64-bit hash space, `partitions` of them): exact duplicates
   (equal text hashes, texts compared) and, band by band, the candidate pairs of the buckets whose key falls
   in the partition (one caption per distinct text, as in memory: `bucket_candidates`), kept if their
   signatures agree in `agreement_needed` places and their n-gram Jaccard is at least the threshold
   (`ngram_jaccard_at_least`). Written to WORK/links/PPPP.npz as exact and near edges (global row numbers).
4. **join** (driver): union-find over the edges (the rows they touch only): exact and near labels, equal to
   the in-memory clusters of all captions (the buckets, their order and so the candidate pairs are the same; tested). The items of the
   clusters of `min_count` or more are curated by `studies.prompts.curate_prompts` with those labels.

A bucket lies in one partition (its key decides), and so does a group of exact duplicates (their hash
does), so partitions are independent. Every file is written atomically and each task's output is its done
marker: a killed run resumes with the tasks it had not finished; WORK records the parameters, and another
run into it with other ones is refused.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from ..data.manifest import iter_captions
from ..data.prompts import write_prompts
from ..errors import BadInputError, DiffmemError
from ..index.ray_engine import ray_map, ray_session
from ..io.atomic import atomic_output
from ..io.lock import writes_folder
from ..io.results import environment, write_json
from ..metrics.caption_shards import link_partition, sign_shard
from ..metrics.duplicates import UnionFind
from .prompts import curate_prompts, summary_path

#: (id, caption) rows per shard: a sign task holds one shard's captions and signatures (about 0.5 GB)
SHARD_ROWS = 1_000_000
#: partitions of the hash space for the link stage (each holds ~1/partitions of every band's keys)
PARTITIONS = 16


# ----------------------------------------------------------------------------------------- 1. split

def split_captions(sources: Sequence[str | Path], work: Path, *, columns=None, shard_rows: int = SHARD_ROWS,
                   progress: bool = False) -> list[Path]:
    """WORK/input/NNNNN.parquet shards of (id, caption) from every source table, streamed; a finished split
    (WORK/input/done.json) is reused. A source without a single caption is an error naming it."""
    folder = work / "input"
    done = folder / "done.json"
    if done.is_file():
        return [folder / n for n in json.loads(done.read_text())["shards"]]
    folder.mkdir(parents=True, exist_ok=True)
    names, k = [], 0
    bar = tqdm(desc="reading captions", unit="caption", disable=not progress, unit_scale=True)
    for src in sources:
        n_src = 0
        for batch in iter_captions(src, columns=columns, batch=shard_rows):
            ids, caps = zip(*batch)
            if len(sources) > 1 and ids[0].startswith("p") and ids[0][1:].isdigit():
                ids = [f"{Path(src).stem}:{i}" for i in ids]  # row numbers repeat from file to file
            name = f"{k:05d}.parquet"
            with atomic_output(folder / name, suffix=".tmp.parquet") as tmp:
                pq.write_table(pa.table({"id": list(ids), "caption": list(caps)}), tmp)
            names.append(name)
            k, n_src = k + 1, n_src + len(batch)
            bar.update(len(batch))
        if not n_src:
            raise BadInputError(src, "no captioned row (name the caption column with --caption-column or --preset)")
    bar.close()
    write_json(done, {"shards": names})
    return [folder / n for n in names]


# ------------------------------------------------------------------------------------------ running

def _run_tasks(fn, args: list[tuple], *, engine: str, workers: int, address: str | None, desc: str,
               progress: bool) -> list:
    if engine == "ray":
        with ray_session(address):
            return ray_map(fn, args, progress=progress)
    if workers <= 1 or len(args) <= 1:
        return [fn(*a) for a in tqdm(args, desc=desc, disable=not progress, leave=False)]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(fn, *a) for a in args]
        return [f.result() for f in tqdm(futures, desc=desc, disable=not progress, leave=False)]


def sharded_caption_clusters(sources: Sequence[str | Path], work: str | Path, *, columns=None,
                             threshold: float = 0.8, ngram: int = 4, bands: int = 16, rows: int = 4,
                             shard_rows: int = SHARD_ROWS, partitions: int = PARTITIONS, engine: str = "local",
                             workers: int | None = None, address: str | None = None,
                             progress: bool = False) -> dict:
    """Stages 1-4 of the module docstring. Returns {"n", "rows", "exact", "near", "shards", "seconds", "stages"}:
    the global rows (captions in shard order) that have a duplicate, their exact and near labels (int64, the
    first row of each cluster; every other row is its own cluster: `dense_labels`), and the shard files
    holding the ids and captions. engine: "local" (a spawn process pool of `workers`, default the
    CPU count up to 8) or "ray" (tasks on a Ray cluster at `address`, or a local one)."""
    if engine not in ("local", "ray"):
        raise DiffmemError(f"engine must be 'local' or 'ray', not {engine!r}")
    if not 0 < threshold <= 1:
        raise DiffmemError(f"the caption threshold must be in (0, 1], got {threshold}")
    if not 0 < shard_rows < 2 ** 31 or partitions < 1:
        raise DiffmemError("shard_rows must be in [1, 2^31) and partitions positive")
    work = Path(work)
    params = {"sources": [str(Path(s).resolve()) for s in sources], "columns": repr(columns), "threshold": threshold,
              "ngram": ngram, "bands": bands, "rows": rows, "shard_rows": shard_rows, "partitions": partitions}
    work.mkdir(parents=True, exist_ok=True)
    pfile = work / "params.json"
    if pfile.is_file() and json.loads(pfile.read_text()) != params:
        raise DiffmemError(f"{work}: holds a sharded curation with other settings ({pfile}); use another --work "
                           "folder or delete it")
    write_json(pfile, params)
    workers = workers or min(os.cpu_count() or 1, 8)
    t0 = time.perf_counter()
    stages = {}
    inputs = split_captions(sources, work, columns=columns, shard_rows=shard_rows, progress=progress)
    folders = [work / "shards" / p.stem for p in inputs]
    stages["split"] = time.perf_counter() - t0
    counts = _run_tasks(sign_shard, [(str(i), str(f), ngram, bands, rows, partitions)
                                     for i, f in zip(inputs, folders)],
                        engine=engine, workers=workers, address=address, desc="signing shards", progress=progress)
    stages["sign"] = time.perf_counter() - t0 - sum(stages.values())
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    n = int(sum(counts))
    links = _run_tasks(link_partition, [(p, partitions, [str(f) for f in folders], starts.tolist(),
                                         str(work / "links" / f"{p:04d}.npz"), threshold, ngram, bands, rows)
                                        for p in range(partitions)],
                       engine=engine, workers=workers, address=address, desc="linking", progress=progress)
    stages["link"] = time.perf_counter() - t0 - sum(stages.values())
    # only rows with an edge can be in a cluster of two or more: the union-find holds those alone, so the
    # driver's memory follows the number of duplicates, not of captions
    edges = {"exact": [], "near": []}
    for p in range(partitions):
        with np.load(work / "links" / f"{p:04d}.npz") as z:
            edges["exact"].append(z["exact"])
            edges["near"].append(z["near"])
    exact_e, near_e = (np.concatenate(v, axis=1) if v else np.zeros((2, 0), np.int64) for v in edges.values())
    rows = np.unique(np.concatenate([exact_e.ravel(), near_e.ravel()]))
    exact_uf, near_uf = UnionFind(len(rows)), UnionFind(len(rows))
    for a, b in np.searchsorted(rows, exact_e).T.tolist():
        exact_uf.union(a, b)
        near_uf.union(a, b)
    for a, b in np.searchsorted(rows, near_e).T.tolist():
        near_uf.union(a, b)
    # rows are sorted, so a local root (the smallest member) is the smallest global row too
    exact, near = rows[exact_uf.labels()], rows[near_uf.labels()]
    stages["join"] = time.perf_counter() - t0 - sum(stages.values())
    return {"n": n, "rows": rows, "exact": exact, "near": near, "shards": inputs, "n_edges": int(sum(links)),
            "seconds": time.perf_counter() - t0, "stages": stages}


def dense_labels(result: dict) -> tuple[np.ndarray, np.ndarray]:
    """(exact, near) labels of every caption from `sharded_caption_clusters`' sparse result (a row without an
    edge is its own cluster): what `metrics.duplicates.normalized_caption_clusters` returns."""
    exact, near = np.arange(result["n"]), np.arange(result["n"])
    exact[result["rows"]], near[result["rows"]] = result["exact"], result["near"]
    return exact, near


@writes_folder("prompts --sharded", arg="work")
def run_sharded_prompts(sources: Sequence[str | Path], out: str | Path, work: str | Path, *, columns=None,
                        caption_threshold: float = 0.8, ngram: int = 4, min_count: int = 2, top: int | None = None,
                        shard_rows: int = SHARD_ROWS, partitions: int = PARTITIONS, engine: str = "local",
                        workers: int | None = None, address: str | None = None, progress: bool = True) -> dict:
    """`diffmem prompts --work WORK`: curate prompts from the captions of `sources` (caption tables) at any
    scale, caption clusters only (no media is read). Writes `out` (JSONL) and `<out stem>.summary.json`;
    returns the summary. The prompts are those `run_prompts(..., content=False)` gives on the same captions."""
    t0 = time.perf_counter()
    r = sharded_caption_clusters(sources, work, columns=columns, threshold=caption_threshold, ngram=ngram,
                                 shard_rows=shard_rows, partitions=partitions, engine=engine, workers=workers,
                                 address=address, progress=progress)
    labels, size = np.unique(r["near"], return_counts=True)
    big = (size[np.searchsorted(labels, r["near"])] >= max(min_count, 2)) if len(labels) else np.zeros(0, bool)
    keep = r["rows"][big]  # the items of the clusters curation proposes, in row order
    ids, caps, pos = [], [], 0
    for shard in r["shards"]:
        t = pq.read_table(shard)
        m = len(t)
        local = keep[(keep >= pos) & (keep < pos + m)] - pos
        if len(local):
            sub = t.take(pa.array(local))
            ids += sub.column("id").to_pylist()
            caps += sub.column("caption").to_pylist()
        pos += m
    # labels in the subset's positions: a cluster's label is its first row, which the subset keeps
    exact_sub = np.searchsorted(keep, r["exact"][big])
    near_sub = np.searchsorted(keep, r["near"][big])
    entries = curate_prompts(ids, caps, caption_threshold=caption_threshold, ngram=ngram, min_count=min_count,
                             top=top, caption_labels=(exact_sub, near_sub))
    write_prompts(out, entries)
    summary = {
        "command": "prompts --sharded", "train": [str(s) for s in sources], "out": str(out), "work": str(work),
        "n_items": r["n"], "n_clustered": int(len(keep)), "n_prompts": len(entries), "n_edges": r["n_edges"],
        "ranking": "(n_both, n_content, n_caption)",
        "config": {"content": False, "caption_threshold": caption_threshold, "ngram": ngram, "min_count": min_count,
                   "top": top, "shard_rows": shard_rows, "partitions": partitions, "engine": engine},
        "seconds_clusters": round(r["seconds"], 2), "seconds": round(time.perf_counter() - t0, 2),
        "environment": environment(),
    }
    write_json(summary_path(out), summary)
    return summary
