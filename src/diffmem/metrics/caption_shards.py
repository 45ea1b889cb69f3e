"""The per-shard and per-partition steps of sharded caption clustering (`studies.caption_shards` runs them as
tasks): `sign_shard` (normalise, text hash, MinHash signatures, band keys grouped by partition) and
`link_partition` (exact and near-duplicate edges of one partition of the hash space), with the same
kernels as the in-memory `metrics.duplicates.normalized_caption_clusters`, so the clusters are the same.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow.parquet as pq

from ..io.atomic import atomic_output
from ..io.results import write_json
from .duplicates import (
    agreement_needed,
    band_keys,
    bucket_candidates,
    caption_signatures,
    ngram_jaccard_at_least,
    normalize_caption,
)

__all__ = ["sign_shard", "link_partition"]


def _text_hashes(norms: Sequence[str]) -> np.ndarray:
    return np.fromiter((int.from_bytes(hashlib.blake2b(t.encode("utf-8"), digest_size=8).digest(), "little")
                        for t in norms), np.uint64, count=len(norms))


def _partition(h: np.ndarray, partitions: int) -> np.ndarray:
    return ((h >> np.uint64(32)) % np.uint64(partitions)).astype(np.int64)


def _save(path: Path, array: np.ndarray) -> None:
    with atomic_output(path, suffix=".tmp.npy") as tmp:
        np.save(tmp, array)


# ------------------------------------------------------------------------------------------ 2. sign

def _by_partition(values: np.ndarray, partitions: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows ordered by the partition of their value, stable; offsets (partitions + 1) of each partition's run)."""
    part = _partition(values, partitions)
    order = np.argsort(part, kind="stable").astype(np.int32)  # a shard's rows (shard_rows < 2^31)
    return order, np.searchsorted(part[order], np.arange(partitions + 1))


def sign_shard(shard: str, out: str, ngram: int, bands: int, rows: int, partitions: int) -> int:
    """Stage 2 for one shard: WORK/shards/NNNNN/*.npy, then n.json (its marker). Returns the number of captions.

    hash, sig, text + offsets: per row (the text hash, the signature, the normalised text as UTF-8). For the
    link tasks, rows grouped by partition, so that a task reads its own part only: hash_rows + hash_off (rows
    by the partition of their hash), keys + key_rows + key_off (per band: the band keys and their rows by
    partition)."""
    out = Path(out)
    marker = out / "n.json"
    if marker.is_file():
        return int(json.loads(marker.read_text())["n"])
    out.mkdir(parents=True, exist_ok=True)
    caps = pq.read_table(shard, columns=["caption"]).column("caption").to_pylist()
    norms = [normalize_caption(c) for c in caps]
    sig = caption_signatures(norms, ngram, bands * rows)
    encoded = [t.encode("utf-8") for t in norms]
    offsets = np.zeros(len(encoded) + 1, np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    hashes = _text_hashes(norms)
    hash_rows, hash_off = _by_partition(hashes, partitions)
    keys = np.zeros((bands, len(sig)), np.uint64)
    key_rows = np.zeros((bands, len(sig)), np.int32)
    key_off = np.zeros((bands, partitions + 1), np.int64)
    for b in range(bands):
        k = band_keys(sig, b, rows)
        key_rows[b], key_off[b] = _by_partition(k, partitions)
        keys[b] = k[key_rows[b]]
    for name, array in (("hash", hashes), ("sig", sig), ("text", np.frombuffer(b"".join(encoded), np.uint8)),
                        ("offsets", offsets), ("hash_rows", hash_rows), ("hash_off", hash_off), ("keys", keys),
                        ("key_rows", key_rows), ("key_off", key_off)):
        _save(out / f"{name}.npy", array)
    write_json(marker, {"n": len(norms)})
    return len(norms)


# ------------------------------------------------------------------------------------------ 3. link

class _Shards:
    """Read access to the signed shards by global row number (memory-mapped)."""

    def __init__(self, folders: Sequence[Path], starts: np.ndarray):
        self.folders, self.starts = list(folders), np.asarray(starts, np.int64)
        self._cache: dict = {}

    def array(self, s: int, name: str) -> np.ndarray:
        key = (s, name)
        if key not in self._cache:
            self._cache[key] = np.load(self.folders[s] / f"{name}.npy", mmap_mode="r")
        return self._cache[key]

    def locate(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = np.searchsorted(self.starts, rows, side="right") - 1
        return s, rows - self.starts[s]

    def signatures(self, rows: np.ndarray) -> np.ndarray:
        s, local = self.locate(rows)
        out = np.empty((len(rows), self.array(0, "sig").shape[1]), np.uint32)
        for k in np.unique(s):
            m = s == k
            out[m] = self.array(int(k), "sig")[local[m]]
        return out

    def text(self, row: int) -> str:
        s, local = self.locate(np.array([row]))
        s, local = int(s[0]), int(local[0])
        off = self.array(s, "offsets")
        return bytes(self.array(s, "text")[off[local]:off[local + 1]]).decode("utf-8")


def _small_union_find():
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(x, x) != root:
            parent[x], x = root, parent[x]
        return root

    def union(a: int, b: int) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    return find, union


def link_partition(p: int, partitions: int, folders: Sequence[str], starts: Sequence[int], out: str,
                   threshold: float, ngram: int, bands: int, rows: int) -> int:
    """Stage 3 for partition p: WORK/links/PPPP.npz with `exact` and `near` edges (2, E) of global rows.
    Returns the number of edges."""
    out = Path(out)
    if out.is_file():
        with np.load(out) as z:
            return int(z["exact"].shape[1] + z["near"].shape[1])
    shards = _Shards([Path(f) for f in folders], np.asarray(starts))
    find, union = _small_union_find()

    def gather(band: int | None):
        """(values, global rows, text hashes) of every shard's rows whose value (the text hash, or the band's
        key) lies in partition p: read from the shards' per-partition runs."""
        vals, glob, hashes = [], [], []
        for s in range(len(shards.folders)):
            h = shards.array(s, "hash")
            if band is None:
                lo, hi = shards.array(s, "hash_off")[p:p + 2]
                local = np.asarray(shards.array(s, "hash_rows")[lo:hi])
                v = np.asarray(h[local])
            else:
                lo, hi = shards.array(s, "key_off")[band, p:p + 2]
                local = np.asarray(shards.array(s, "key_rows")[band, lo:hi])
                v = np.asarray(shards.array(s, "keys")[band, lo:hi])
            vals.append(v)
            glob.append(local.astype(np.int64) + shards.starts[s])
            hashes.append(np.asarray(h[np.sort(local)])[np.argsort(np.argsort(local))] if len(local) else v[:0])
        return np.concatenate(vals), np.concatenate(glob), np.concatenate(hashes)

    # exact duplicates: equal hashes, texts compared (a 64-bit collision is not a duplicate)
    eu, ev = [], []
    h, g, _ = gather(None)
    order = np.lexsort((g, h))
    h, g = h[order], g[order]
    cut = np.flatnonzero(h[1:] != h[:-1]) + 1
    for a, b in zip(np.concatenate([[0], cut]).tolist(), np.concatenate([cut, [len(h)]]).tolist()):
        if b - a < 2:
            continue
        first: dict[str, int] = {}
        for r in g[a:b].tolist():
            j = first.setdefault(shards.text(r), r)
            if j != r:
                eu.append(j)
                ev.append(r)
                union(j, r)
    # near duplicates, band by band: one caption per distinct text (its first row), as in memory
    nu, nv = [], []
    num_perm = bands * rows
    need = agreement_needed(threshold, num_perm)
    for band in range(bands):
        keys, g, th = gather(band)
        order = np.lexsort((g, th, keys))  # by key, then text, then row: the first row of each text first
        keys, g, th = keys[order], g[order], th[order]
        firsts = np.ones(len(keys), bool)
        firsts[1:] = (keys[1:] != keys[:-1]) | (th[1:] != th[:-1])
        keys, g = keys[firsts], g[firsts]
        resort = np.argsort(g, kind="stable")  # rows in caption order, as `bucket_candidates` expects
        keys, g = keys[resort], g[resort]
        u, v = bucket_candidates(keys)
        if not len(u):
            continue
        u, v = g[u], g[v]
        keep = (shards.signatures(u) == shards.signatures(v)).sum(1) >= need
        for a, b in zip(u[keep].tolist(), v[keep].tolist()):
            if find(a) != find(b) and ngram_jaccard_at_least(shards.text(a), shards.text(b), ngram, threshold):
                union(a, b)
                nu.append(a)
                nv.append(b)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(out, suffix=".tmp.npz") as tmp:
        np.savez(tmp, exact=np.array([eu, ev], np.int64).reshape(2, -1), near=np.array([nu, nv], np.int64).reshape(2, -1))
    return len(eu) + len(nu)
