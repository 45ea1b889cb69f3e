"""Compressed indexes for tens of millions of frames: built shard by shard, searched as one.

A `VectorIndex` (faiss_index.py) already stores its exact vectors in shards (`shards/NNNNNN.npy`,
memory-mapped) and re-ranks the candidates of a compressed FAISS index with them, so every score a
threshold sees is exact. What changes at scale is how the compressed index is *built*: `VectorIndex`
trains it and adds every vector in one process, all at the end. `build_compressed` does the same work
shard by shard, so that it can run on many workers and resume after a kill:

    codes/trained.faiss           the empty index, trained on the same sample `VectorIndex` would use
    codes/encoder.faiss           what encodes a shard: the trained index itself, or for fast-scan
                                  IVF-PQ its plain IVF-PQ twin (see `_encoder_of`)
    codes/NNNNNN.faiss            the encoder with one shard added (ids = global row numbers)
    faiss.index                   every shard's inverted lists merged in shard order: the same index,
                                  list for list, as adding the vectors one shard after the other

`faiss.index` and `index.json`'s "faiss" entry are what `VectorIndex` itself writes, so the result
is an ordinary `VectorIndex`: `VectorIndex.open(folder).search(...)` uses it, extending it later works.
Only inverted-file factories (IVF...) can be split by shard; others fall back to one process.
This module only builds: searching, exact re-ranking, the streamed exact search used as ground truth
(`VectorIndex.search_exact`) and metadata lookups by id (`VectorIndex.rows`) are `VectorIndex`'s.

Memory for N descriptors of dimension d (`memory_estimate`), RAM: N * (code + 8) bytes for the codes
and their 64-bit ids + the coarse centroids (nlist * d * 4) + the PQ tables; disk: N * d * 4 bytes of
exact vectors (only the re-ranked candidates are read: candidates * d * 4 bytes per query). The
default factory (`default_factory`) and its search parameters were chosen by
`benchmarks/bench_scale.py`; the README's scale section has the numbers.
"""
from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import faiss
import numpy as np
from tqdm.auto import tqdm

from ..errors import DiffmemError
from ..io.results import write_json
from .faiss_index import _atomic_write_faiss, _faiss_metric, is_exact

__all__ = ["default_factory", "memory_estimate", "supports_sharded_build", "build_compressed",
           "encode_shard", "EXACT_BELOW"]

_CODES_FORMAT = 3  # codes/ layout version: 2 = encoder.faiss beside trained.faiss, 3 = HNSW efSearch
EXACT_BELOW = 200_000  # below this many vectors exact search is fast enough and needs < 0.4 GB at d=384
_IVF_RE = re.compile(r"IVF(\d+)")
_PQ_RE = re.compile(r"PQ(\d+)(?:x(\d+))?(fs)?")


def default_factory(n: int, dim: int) -> str:
    """FAISS factory string for about n vectors of dimension dim.

    Below EXACT_BELOW: "Flat" (exact). Above: IVF with nlist = the power of two nearest sqrt(n)
    (256 to 65536 lists) and 4-bit fast-scan PQ with d/4 sub-quantizers, i.e. d/8 bytes per vector
    (48 for the 384-d built-in descriptor, 64 for SSCD's 512-d). Why (benchmarks/bench_scale.py):
    on planted copies it finds the same top-1 as 8-bit PQ of the same size, trains ~3x faster and
    scans lists faster; since list scanning is cheap, nlist stays at sqrt(n) rather than FAISS's
    usual 4-16 sqrt(n), which keeps the coarse assignment (n * nlist * d flops, the bulk of a CPU
    build) small. With a GPU or at a billion vectors, pass a larger nlist (see the README).
    """
    if n < EXACT_BELOW:
        return "Flat"
    nlist = int(min(65536, max(256, 2 ** round(math.log2(math.sqrt(n))))))
    return f"IVF{nlist},PQ{_pq_subquantizers(dim)}x4fs"


def _pq_subquantizers(dim: int) -> int:
    m = max(1, dim // 4)
    while dim % m or m % 2:  # PQ needs m | d; 4-bit fast-scan needs an even m
        m -= 1
        if m < 2:
            return 2
    return m


def memory_estimate(n: int, dim: int, factory: str | None = None) -> dict:
    """Bytes for n vectors of dimension dim under `factory` (default: default_factory(n, dim)).

    ram_index: what search holds in RAM (codes + 8-byte ids + coarse centroids + PQ tables);
    disk_vectors: the exact float32 vectors (shards, memory-mapped);
    ram_exact: an exact in-RAM index of the same vectors, for comparison.
    """
    factory = factory or default_factory(n, dim)
    exact = int(n) * dim * 4
    out = {"n": int(n), "dim": int(dim), "factory": factory, "ram_exact": exact, "disk_vectors": exact}
    f = factory.replace(" ", "")
    if f.lower() in ("flat", "idmap,flat"):
        out.update(ram_index=exact, bytes_per_vector=dim * 4)
        return out
    ivf = _IVF_RE.search(f)
    nlist = int(ivf.group(1)) if ivf else 0
    coarse = nlist * dim * 4
    last = f.split(",")[-1]
    pq = _PQ_RE.fullmatch(last)
    if pq:
        m, nbits = int(pq.group(1)), int(pq.group(2) or 8)
        code, tables = math.ceil(m * nbits / 8), (2 ** nbits) * dim * 4
    elif last == "SQ8":
        code, tables = dim, 2 * dim * 4
    elif last == "Flat" and ivf:
        code, tables = dim * 4, 0
    else:
        raise DiffmemError(f"memory_estimate: cannot size factory {factory!r}")
    per = code + 8
    out.update(ram_index=int(n) * per + coarse + tables, bytes_per_vector=per)
    return out


def supports_sharded_build(factory: str, dim: int) -> bool:
    """True for inverted-file factories whose shards can be encoded apart and merged: IVF with PQ,
    SQ or Flat codes (optionally after a pre-transform such as OPQ), and 4-bit fast-scan IVF-PQ
    without a pre-transform (encoded as plain 4-bit IVF-PQ, converted after the merge; see
    `_encoder_of`)."""
    try:
        index = faiss.index_factory(int(dim), factory)
        ivf = faiss.extract_index_ivf(index)
    except (RuntimeError, AttributeError):
        return False
    if isinstance(faiss.downcast_index(ivf), faiss.IndexIVFFastScan):
        return isinstance(faiss.downcast_index(index), faiss.IndexIVFPQFastScan)
    return True


def _encoder_of(trained):
    """The index that encodes shards, given the trained one.

    FAISS (1.15) corrupts memory when merging fast-scan inverted lists (BlockInvertedLists::
    add_entries appends whole blocks when the list length is a multiple of the block size in
    bytes), so a fast-scan IVF-PQ is encoded by its plain IVF-PQ twin -- same coarse quantizer, same
    4-bit product quantizer, so the same codes -- merged as ordinary inverted lists, and converted
    to fast-scan once at the end (`IndexIVFPQFastScan(IndexIVFPQ)`, which packs each list once).
    """
    fs = faiss.downcast_index(trained)
    if not isinstance(fs, faiss.IndexIVFPQFastScan):
        enc = faiss.clone_index(trained)
        _exact_enough_assignment(faiss.extract_index_ivf(enc))
        return enc
    quantizer = faiss.clone_index(fs.quantizer)
    twin = faiss.IndexIVFPQ(quantizer, fs.d, fs.nlist, fs.pq.M, fs.pq.nbits, fs.metric_type)
    twin.own_fields = True
    quantizer.this.disown()  # the twin frees it
    twin.pq = fs.pq
    twin.by_residual = fs.by_residual
    twin.is_trained = True
    _exact_enough_assignment(twin)
    return twin


ENCODE_EF_SEARCH = 128


def _exact_enough_assignment(ivf) -> None:
    """An HNSW coarse quantizer assigns vectors approximately. With FAISS's default efSearch (16),
    13 % of 10 M simulated vectors went to a list other than their nearest centroid's, and recall@1
    of planted copies stalled at 0.92-0.97 whatever nprobe (benchmarks/bench_scale.py); encoding
    with efSearch >= ENCODE_EF_SEARCH keeps the assignment (nearly) exact. Flat quantizers are exact."""
    q = faiss.downcast_index(ivf.quantizer)
    if hasattr(q, "hnsw"):
        q.hnsw.efSearch = max(int(q.hnsw.efSearch), ENCODE_EF_SEARCH)


# ------------------------------------------------------------------------------------------ build

def encode_shard(folder: str | Path, name: str, offset: int) -> str:
    """Add shard `name` (global rows offset..) to a copy of codes/encoder.faiss -> codes/NAME.faiss.

    A plain function of files, so any worker that sees the folder can run it; kept if already done.
    """
    folder = Path(folder)
    out = folder / "codes" / f"{name}.faiss"
    if out.exists():
        return str(out)
    index = faiss.read_index(str(folder / "codes" / "encoder.faiss"))
    v = np.ascontiguousarray(np.load(folder / "shards" / f"{name}.npy", mmap_mode="r"), dtype=np.float32)
    index.add_with_ids(v, np.arange(offset, offset + len(v), dtype=np.int64))
    _atomic_write_faiss(index, out)
    return str(out)


def build_compressed(index, *, map_fn: Callable[[Callable, Sequence[tuple]], Iterable] | None = None,
                     progress: bool = False) -> dict:
    """Build `index`'s compressed FAISS index shard by shard (see the module docstring). Resumable.

    index: a flushed `VectorIndex` with a compressed factory. map_fn(fn, list of argument tuples) runs
    `encode_shard` over the shards, e.g. on Ray workers (`ray_engine.ray_map`); default: one by one.
    Returns {"n_vectors", "shards", "encoded_now", "file", "train_s", "encode_s", "merge_s"} and the
    CPU seconds of this process for each step ("train_cpu_s", ...).
    """
    index.flush()
    folder = Path(index.folder)
    if is_exact(index.factory):
        return {"n_vectors": len(index), "shards": len(index.meta["shards"]), "encoded_now": 0, "file": None}
    shards = index.shard_spans()
    n = sum(s[2] for s in shards)
    if n == 0:
        raise DiffmemError(f"{folder}: the index holds no vectors to compress")
    if not supports_sharded_build(index.factory, index.dim):
        index.close()  # not an inverted file: one process, VectorIndex's own way
        return {"n_vectors": n, "shards": len(shards), "encoded_now": len(shards), "file": "faiss.index"}

    # wall seconds, and CPU seconds of this process (all its threads; not Ray workers): on a shared
    # machine the CPU time is the cost, the wall time also counts waiting for the CPU
    times = {"train_s": 0.0, "encode_s": 0.0, "merge_s": 0.0, "train_cpu_s": 0.0, "encode_cpu_s": 0.0,
             "merge_cpu_s": 0.0}
    trained_p, trained_j = folder / "codes" / "trained.faiss", folder / "codes" / "trained.json"
    encoder_p = folder / "codes" / "encoder.faiss"
    spec = {"factory": index.factory, "metric": index.metric, "fingerprint": index.fingerprint,
            "codes": _CODES_FORMAT}
    if trained_p.exists() and trained_j.exists() and json.loads(trained_j.read_text()).get("spec") == spec:
        # trained by an earlier run: keep it (resume / extend), so old codes stay valid
        if not encoder_p.exists():
            _atomic_write_faiss(_encoder_of(faiss.read_index(str(trained_p))), encoder_p)
    else:
        for p in (folder / "codes").glob("*.faiss") if (folder / "codes").is_dir() else []:
            p.unlink()
        t0, c0 = time.perf_counter(), time.process_time()
        fresh = faiss.index_factory(index.dim, index.factory, _faiss_metric(index.metric))
        # the very sample VectorIndex would train on, so both builds give the same index
        sample = index._training_sample(index._arrays(), fresh)
        fresh.train(sample)
        n_train = len(sample)
        del sample
        _atomic_write_faiss(fresh, trained_p)
        _atomic_write_faiss(_encoder_of(fresh), encoder_p)
        times["train_s"], times["train_cpu_s"] = time.perf_counter() - t0, time.process_time() - c0
        write_json(trained_j, {"spec": spec, "n_vectors_at_training": n, "n_train": n_train,
                               "seconds": round(times["train_s"], 3), "cpu_seconds": round(times["train_cpu_s"], 3)})

    todo = [(str(folder), name, off) for name, off, _ in shards if not (folder / "codes" / f"{name}.faiss").exists()]
    t0, c0 = time.perf_counter(), time.process_time()
    if todo:
        if map_fn is None:
            it = todo
            if progress:
                it = tqdm(todo, desc="encoding shards", unit="shard", leave=False)
            for args in it:
                encode_shard(*args)
        else:
            list(map_fn(encode_shard, todo))

    times["encode_s"], times["encode_cpu_s"] = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    merged = faiss.read_index(str(encoder_p))
    ivf = faiss.extract_index_ivf(merged)
    for name, _, cnt in shards:
        part = faiss.read_index(str(folder / "codes" / f"{name}.faiss"))
        if part.ntotal != cnt:
            raise DiffmemError(f"{folder / 'codes' / (name + '.faiss')}: holds {part.ntotal} vectors, "
                               f"the shard has {cnt}; delete it and build again")
        ivf.merge_from(faiss.extract_index_ivf(part), 0)  # appends lists in shard order, keeps ids
        del part
    merged.ntotal = ivf.ntotal  # a pre-transform wrapper (OPQ...) keeps its own count
    final = merged
    if isinstance(faiss.downcast_index(faiss.read_index(str(trained_p))),  # small: no vectors
                  faiss.IndexIVFPQFastScan):
        final = faiss.IndexIVFPQFastScan(faiss.downcast_index(merged))  # packs every list once
    if index.meta.get("search_params"):
        faiss.ParameterSpace().set_index_parameters(final, index.meta["search_params"])
    _atomic_write_faiss(final, folder / "faiss.index")
    del final, merged, ivf  # the fast-scan copy points at the twin's quantizer: reload it whole
    loaded = faiss.read_index(str(folder / "faiss.index"))
    if index.meta.get("search_params"):
        faiss.ParameterSpace().set_index_parameters(loaded, index.meta["search_params"])
    index.meta["faiss"] = {"file": "faiss.index", "n_vectors": n, "built": "sharded"}
    index._write_meta()
    index._faiss, index._faiss_n = loaded, n
    times["merge_s"], times["merge_cpu_s"] = time.perf_counter() - t0, time.process_time() - c0
    return {"n_vectors": n, "shards": len(shards), "encoded_now": len(todo), "file": "faiss.index", **times}
