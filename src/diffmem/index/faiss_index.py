"""A nearest-neighbour index of fixed-dimension float32 vectors with one metadata row per vector.

Generic: frame descriptors (content), flow-window vectors (motion) or raw pixels (nL2) all use it; what
makes the vectors is named by a *policy* dict whose fingerprint is stored, and an index refuses vectors
or queries made under another policy (`PolicyMismatchError`).

Folder layout (everything written atomically; the folder is the index):

    index.json                 format, dim, metric, factory, search params, policy + fingerprint, shard
                               list with counts, skipped items, build configuration, package versions
    shards/NNNNNN.npy          float32 (n, dim): the exact vectors, memory-mapped when read
    shards/NNNNNN.parquet      metadata, one row per vector (an `item_id` column is required)
    faiss.index                the trained FAISS index, for compressed factories only (Flat is rebuilt
                               from the shards when opened, so the vectors are not stored twice)

Writing goes through a buffer that is committed as one shard every `shard_size` vectors and on `flush()`;
`index.json` lists only committed shards, so a build killed at any moment resumes from the last commit
without duplicating items (`has_item`). Extending an index = adding items to it; a trained index
(IVF/PQ) keeps its training and gets the new vectors added.

Search is exact (`IndexFlatIP` / `IndexFlatL2`) by default. Any FAISS factory string may be given for
large sets ("IVF4096,Flat", "IVF1024,PQ32", "HNSW32,Flat", "OPQ32,IVF4096,PQ32", ...); their candidates
are re-ranked with the exact vectors, so reported similarities (and every threshold) are exact.
`search_exact` streams an exact search over the shards whatever the factory (ground truth at any size);
`rows` reads the metadata of given ids without loading every shard's table. A compressed index too
large to build in one process is built shard by shard, on Ray workers too, by `sharded.build_compressed`
into this same folder layout.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import faiss
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from ..device import configure_faiss
from ..errors import DiffmemError, PolicyMismatchError
from ..features.policy import policy_fingerprint
from ..io.atomic import atomic_output
from ..io.results import environment, read_json, write_json

configure_faiss(faiss)  # the CLI's --threads, set before the command imported FAISS

FORMAT = "diffmem-index/1"
METRICS = ("ip", "l2")
_EXACT = ("flat", "idmap,flat")


def _fingerprint(policy: Mapping[str, Any]) -> str:
    return policy_fingerprint(policy)


def _policy_dict(policy) -> dict:
    return policy.as_dict() if hasattr(policy, "as_dict") else dict(policy)


def is_exact(factory: str) -> bool:
    return factory.replace(" ", "").lower() in _EXACT


def default_search_params(factory: str) -> str:
    """Reasonable recall for the common families (FAISS defaults, nprobe=1, are too low)."""
    f = factory.upper()
    if "HNSW" in f:
        return "efSearch=128"
    if "IVF" in f:
        return "nprobe=32"
    return ""


class VectorIndex:
    """See the module docstring. Create with `create`, open with `open`, either with `open_or_create`."""

    # The buffer is also committed when it is this old, so a killed build loses at most the last few
    # seconds of work (with shard_size alone, up to 65,536 vectors: the whole of a small build).
    COMMIT_SECONDS = 10.0

    def __init__(self, folder: Path, meta: dict):
        self.folder = Path(folder)
        self.meta = meta
        self._buf_vecs: list[np.ndarray] = []
        self._buf_rows: list[dict] = []
        self._buf_n = 0
        self._faiss = None
        self._faiss_n = 0
        self._shard_arrays: list[np.ndarray] | None = None
        self._metadata = None
        self._committed: set[str] | None = None
        self._buffered: set[str] = set()
        self._last_commit = time.monotonic()

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(cls, folder, *, dim: int, policy, factory: str = "Flat", metric: str = "ip",
               search_params: str | None = None, config: Mapping | None = None, shard_size: int = 65536) -> "VectorIndex":
        folder = Path(folder)
        if (folder / "index.json").exists():
            raise DiffmemError(f"{folder}: an index already exists here; open it (or extend it) instead")
        if folder.exists() and folder.is_dir() and any(p for p in folder.iterdir() if not p.name.startswith(".")):
            raise DiffmemError(f"{folder}: folder is not empty and holds no index; choose an empty or new folder")
        if metric not in METRICS:
            raise DiffmemError(f"unknown metric {metric!r}; use one of {METRICS}")
        dim = int(dim)
        if dim < 1:
            raise DiffmemError(f"dimension must be positive, got {dim}")
        cls._check_factory(factory, dim, metric)
        pol = _policy_dict(policy)
        meta = {
            "format": FORMAT, "dim": dim, "metric": metric, "factory": factory,
            "search_params": default_search_params(factory) if search_params is None else search_params,
            "policy": pol, "fingerprint": _fingerprint(pol), "shard_size": int(shard_size),
            "shards": [], "n_vectors": 0, "n_items": 0, "skipped": [], "faiss": None,
            "config": dict(config or {}), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "environment": environment(),
        }
        (folder / "shards").mkdir(parents=True, exist_ok=True)
        idx = cls(folder, meta)
        idx._write_meta()
        return idx

    @classmethod
    def open(cls, folder, *, policy=None) -> "VectorIndex":
        folder = Path(folder)
        path = folder / "index.json"
        if not path.is_file():
            raise DiffmemError(f"{folder}: not an index folder (no index.json)")
        try:
            meta = read_json(path)
        except (OSError, ValueError) as e:
            raise DiffmemError(f"{path}: unreadable index metadata ({e})") from e
        if meta.get("format") != FORMAT:
            raise DiffmemError(f"{path}: unknown index format {meta.get('format')!r} (expected {FORMAT})")
        idx = cls(folder, meta)
        if policy is not None:
            idx.check_policy(policy)
        return idx

    @classmethod
    def open_or_create(cls, folder, *, dim: int, policy, factory: str = "Flat", metric: str = "ip",
                       search_params: str | None = None, config: Mapping | None = None,
                       shard_size: int = 65536) -> "VectorIndex":
        """Open an index to resume or extend it (same policy, dim, metric required), or create it."""
        folder = Path(folder)
        if not (folder / "index.json").exists():
            return cls.create(folder, dim=dim, policy=policy, factory=factory, metric=metric,
                              search_params=search_params, config=config, shard_size=shard_size)
        idx = cls.open(folder, policy=policy)
        if idx.dim != int(dim) or idx.metric != metric:
            raise DiffmemError(f"{folder}: index has dim {idx.dim}, metric {idx.metric}; "
                               f"asked for dim {dim}, metric {metric}")
        if factory != idx.factory:
            raise DiffmemError(f"{folder}: index was built with factory {idx.factory!r}, not {factory!r}; "
                               "build a new index to change it")
        return idx

    @staticmethod
    def _check_factory(factory: str, dim: int, metric: str) -> None:
        try:
            faiss.index_factory(dim, factory, _faiss_metric(metric))
        except RuntimeError as e:
            msg = str(e).strip().splitlines()[-1] if str(e).strip() else repr(e)
            raise DiffmemError(f"invalid FAISS factory string {factory!r} for dimension {dim}: {msg}") from e

    # ------------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    @property
    def metric(self) -> str:
        return self.meta["metric"]

    @property
    def factory(self) -> str:
        return self.meta["factory"]

    @property
    def policy(self) -> dict:
        return self.meta["policy"]

    @property
    def fingerprint(self) -> str:
        return self.meta["fingerprint"]

    @property
    def config(self) -> dict:
        return self.meta.get("config", {})

    @property
    def skipped(self) -> list[dict]:
        return list(self.meta.get("skipped", []))

    def __len__(self) -> int:
        return int(self.meta["n_vectors"]) + self._buf_n

    def check_policy(self, policy) -> None:
        got = _fingerprint(_policy_dict(policy))
        if got != self.fingerprint:
            name = self.policy.get("name", "?")
            gname = _policy_dict(policy).get("name", "?")
            raise PolicyMismatchError(
                f"{self.folder}: policy mismatch: the index was made with policy {name!r} (fingerprint {self.fingerprint}) "
                f"but {gname!r} (fingerprint {got}) was given; use the same descriptor and policy, "
                "or build a new index")

    # ------------------------------------------------------------------ writing
    def _committed_ids(self) -> set[str]:
        if self._committed is None:  # item ids live in the shards' metadata, not in index.json (size)
            ids: set[str] = set()
            for sh in self.meta["shards"]:
                p = self.folder / "shards" / f"{sh['name']}.parquet"
                try:
                    ids.update(pq.read_table(p, columns=["item_id"]).column(0).to_pylist())
                except (OSError, ValueError) as e:
                    raise DiffmemError(f"{p}: unreadable index metadata ({e})") from e
            self._committed = ids
        return self._committed

    @property
    def item_ids(self) -> set[str]:
        """Ids of the items whose vectors are committed or buffered."""
        return self._committed_ids() | self._buffered

    def has_item(self, item_id: str) -> bool:
        item_id = str(item_id)
        return item_id in self._buffered or item_id in self._committed_ids()

    def add(self, vectors: np.ndarray, rows: Iterable[Mapping[str, Any]]) -> None:
        """Add one item's (or several items') vectors with one metadata row each (`item_id` required).
        Buffered; committed as a shard every `shard_size` vectors, every COMMIT_SECONDS, and on `flush()`."""
        v = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
        if v.ndim != 2 or v.shape[1] != self.dim:
            raise DiffmemError(f"{self.folder}: vectors must be (n, {self.dim}), got {v.shape}")
        if not np.isfinite(v).all():
            raise DiffmemError(f"{self.folder}: vectors contain NaN or inf")
        rows = [dict(r) for r in rows]
        if len(rows) != len(v):
            raise DiffmemError(f"{self.folder}: {len(v)} vectors but {len(rows)} metadata rows")
        for r in rows:
            if "item_id" not in r:
                raise DiffmemError(f"{self.folder}: every metadata row needs an 'item_id'")
            r["item_id"] = str(r["item_id"])
        dup = sorted({r["item_id"] for r in rows} & self._committed_ids())
        if dup:
            raise DiffmemError(f"{self.folder}: item(s) already in the index: {', '.join(dup[:5])}"
                               + (" ..." if len(dup) > 5 else ""))
        if not len(v):
            return
        self._buf_vecs.append(v)
        self._buf_rows.extend(rows)
        self._buf_n += len(v)
        self._buffered.update(r["item_id"] for r in rows)
        if (self._buf_n >= int(self.meta.get("shard_size", 65536))
                or time.monotonic() - self._last_commit >= self.COMMIT_SECONDS):
            self.flush()

    def add_skipped(self, record: Mapping[str, Any]) -> None:
        """Record a file that could not be added (id, path, reason); kept in index.json, one record per file
        (two files of one id are two records; the same file skipped again replaces its record)."""
        rec = dict(record)
        key = (rec.get("id"), rec.get("path"))
        self.meta["skipped"] = [s for s in self.meta.get("skipped", []) if (s.get("id"), s.get("path")) != key] + [rec]

    def flush(self) -> None:
        """Commit the buffer as one shard (atomic), then index.json (atomic)."""
        if self._buf_n:
            name = f"{len(self.meta['shards']):06d}"
            vecs = np.concatenate(self._buf_vecs)
            shard_dir = self.folder / "shards"
            shard_dir.mkdir(parents=True, exist_ok=True)
            _atomic_save_npy(shard_dir / f"{name}.npy", vecs)
            df = pd.DataFrame(self._buf_rows)
            _atomic_parquet(shard_dir / f"{name}.parquet", df)
            items = list(dict.fromkeys(r["item_id"] for r in self._buf_rows))
            self._committed_ids()  # load the committed ids before the new shard is listed
            self.meta["shards"].append({"name": name, "n": int(len(vecs)), "n_items": len(items)})
            self.meta["n_vectors"] = int(self.meta["n_vectors"]) + int(len(vecs))
            self.meta["n_items"] = int(self.meta.get("n_items", 0)) + len(items)
            self._committed_ids().update(items)
            self._buffered = set()
            self._buf_vecs, self._buf_rows, self._buf_n = [], [], 0
            self._shard_arrays = None
            self._metadata = None
        self._last_commit = time.monotonic()
        self._write_meta()

    def close(self) -> None:
        """Flush, and bring the saved FAISS index up to date (compressed factories)."""
        self.flush()
        self._ensure_faiss(save=True)

    def _write_meta(self) -> None:
        self.meta["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        write_json(self.folder / "index.json", self.meta)

    # ------------------------------------------------------------------ reading
    def _arrays(self) -> list[np.ndarray]:
        if self._shard_arrays is None:
            arrs = []
            for sh in self.meta["shards"]:
                p = self.folder / "shards" / f"{sh['name']}.npy"
                try:
                    a = np.load(p, mmap_mode="r")
                except (OSError, ValueError) as e:
                    raise DiffmemError(f"{p}: unreadable index shard ({e})") from e
                if a.shape != (sh["n"], self.dim):
                    raise DiffmemError(f"{p}: shard has shape {a.shape}, index.json says ({sh['n']}, {self.dim})")
                arrs.append(a)
            self._shard_arrays = arrs
        return self._shard_arrays

    def _require_flushed(self) -> None:
        if self._buf_n:
            self.flush()

    def vectors(self, ids: np.ndarray | None = None) -> np.ndarray:
        """The exact vectors (all, or rows `ids` in index order) as float32."""
        self._require_flushed()
        arrs = self._arrays()
        if ids is None:
            return np.concatenate(arrs) if arrs else np.zeros((0, self.dim), np.float32)
        ids = np.asarray(ids, dtype=np.int64)
        starts = np.cumsum([0] + [len(a) for a in arrs])
        out = np.empty((ids.size, self.dim), np.float32)
        flat = ids.ravel()
        if flat.size and (flat.min() < 0 or flat.max() >= starts[-1]):
            raise IndexError("vector id out of range")
        shard = np.searchsorted(starts, flat, side="right") - 1
        for s in np.unique(shard):
            m = shard == s
            out[m] = arrs[s][flat[m] - starts[s]]
        return out.reshape(ids.shape + (self.dim,))

    @property
    def metadata(self):
        """pandas DataFrame, row i describes vector i."""
        self._require_flushed()
        if self._metadata is None:
            frames = []
            for sh in self.meta["shards"]:
                p = self.folder / "shards" / f"{sh['name']}.parquet"
                try:
                    frames.append(pd.read_parquet(p))
                except (OSError, ValueError) as e:
                    raise DiffmemError(f"{p}: unreadable index metadata ({e})") from e
            self._metadata = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"item_id": []})
        return self._metadata

    def row(self, vector_id: int) -> dict:
        return self.rows([vector_id]).iloc[0].drop("vector_id").to_dict()

    def shard_spans(self) -> list[tuple[str, int, int]]:
        """(name, first vector id, count) of every committed shard, in index order."""
        out, off = [], 0
        for sh in self.meta["shards"]:
            out.append((sh["name"], off, int(sh["n"])))
            off += int(sh["n"])
        return out

    def rows(self, ids, columns: Sequence[str] | None = None):
        """Metadata rows of vector ids (any order; -1 gives a row of NaN), first column `vector_id`.

        Reads only the shards (and columns) the ids fall in: `metadata` concatenates every shard's
        table, which at tens of millions of frames is gigabytes of pandas.
        """
        self._require_flushed()
        ids = np.asarray(ids, dtype=np.int64).ravel()
        spans = self.shard_spans()
        starts = np.array([s[1] for s in spans] + [sum(s[2] for s in spans)], np.int64)
        ok = ids >= 0
        if ok.any() and ids[ok].max() >= starts[-1]:
            raise DiffmemError(f"vector id {int(ids[ok].max())} out of range ({int(starts[-1])} vectors)")
        which = np.searchsorted(starts, ids, side="right") - 1
        parts = []
        for s in np.unique(which[ok]):
            sel = np.flatnonzero(ok & (which == s))
            p = self.folder / "shards" / f"{spans[s][0]}.parquet"
            try:
                df = pd.read_parquet(p, columns=list(columns) if columns else None)
            except (OSError, ValueError) as e:
                raise DiffmemError(f"{p}: unreadable index metadata ({e})") from e
            part = df.iloc[ids[sel] - starts[s]].copy()
            part.index = sel
            parts.append(part)
        out = pd.concat(parts).reindex(np.arange(len(ids))) if parts else pd.DataFrame(index=np.arange(len(ids)))
        out.insert(0, "vector_id", ids)
        return out.reset_index(drop=True)

    def _ensure_faiss(self, save: bool = False):
        self._require_flushed()
        n = int(self.meta["n_vectors"])
        if self._faiss is not None and self._faiss_n == n:
            return self._faiss
        arrs = self._arrays()
        starts = np.cumsum([0] + [len(a) for a in arrs])
        if is_exact(self.factory):
            if self._faiss is None:
                self._faiss = faiss.IndexFlatIP(self.dim) if self.metric == "ip" else faiss.IndexFlatL2(self.dim)
                self._faiss_n = 0
            for s, a in enumerate(arrs):  # only the shards added since the last call
                lo = max(self._faiss_n - starts[s], 0)
                if lo < len(a):
                    self._faiss.add(np.ascontiguousarray(a[lo:], dtype=np.float32))
            self._faiss_n = n
            return self._faiss
        # compressed: load the saved one and add what is missing, or train a new one
        path = self.folder / "faiss.index"
        info = self.meta.get("faiss") or {}
        index, have = None, 0
        if self._faiss is not None:
            index, have = self._faiss, self._faiss_n
        elif path.exists() and info.get("n_vectors") is not None:
            index = faiss.read_index(str(path))
            have = int(info["n_vectors"])
            if index.ntotal != have:
                index, have = None, 0  # inconsistent (killed between writes): rebuild
        if index is None:
            if n == 0:
                return None
            index = faiss.index_factory(self.dim, self.factory, _faiss_metric(self.metric))
            if not index.is_trained:
                index.train(self._training_sample(arrs, index))
            have = 0
        for s, a in enumerate(arrs):
            lo = max(have - starts[s], 0)
            if lo < len(a):
                index.add(np.ascontiguousarray(a[lo:], dtype=np.float32))
        if self.meta.get("search_params"):
            faiss.ParameterSpace().set_index_parameters(index, self.meta["search_params"])
        self._faiss, self._faiss_n = index, n
        if save and (info.get("n_vectors") != n or not path.exists()):
            _atomic_write_faiss(index, path)
            self.meta["faiss"] = {"file": "faiss.index", "n_vectors": n}
            self._write_meta()
        return index

    def _training_sample(self, arrs, index) -> np.ndarray:
        n = sum(len(a) for a in arrs)
        want = min(n, max(50_000, 64 * _n_centroids(index)))
        if n < _n_centroids(index):
            raise DiffmemError(f"{self.folder}: factory {self.factory!r} needs at least {_n_centroids(index)} "
                               f"training vectors, the index has {n}; use 'Flat' for a set this small")
        rng = np.random.default_rng(0)
        pick = np.sort(rng.choice(n, want, replace=False)) if want < n else np.arange(n)
        return self.vectors(pick)

    def search(self, queries: np.ndarray, k: int = 1, *, rerank: int = 10,
               params: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """k nearest vectors of each query: (scores (Q,k) float32, ids (Q,k) int64, -1 where fewer exist).

        metric "ip": scores are inner products, highest first; "l2": squared distances, lowest first.
        Compressed factories, and the L2 metric, fetch k * rerank candidates and re-rank them with the exact
        vectors (FAISS computes L2 by BLAS, `device.BLAS_THRESHOLD`, which is inexact for small distances)."""
        q = np.ascontiguousarray(np.asarray(queries, dtype=np.float32))
        if q.ndim == 1:
            q = q[None]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise DiffmemError(f"{self.folder}: queries must be (n, {self.dim}), got {q.shape}")
        index = self._ensure_faiss()
        nq = len(q)
        fill = -np.inf if self.metric == "ip" else np.inf
        if index is None or index.ntotal == 0 or nq == 0:
            return np.full((nq, k), fill, np.float32), np.full((nq, k), -1, np.int64)
        if params:
            faiss.ParameterSpace().set_index_parameters(index, params)
        if is_exact(self.factory) and self.metric == "ip":
            d, i = index.search(q, min(k, index.ntotal))
        else:  # compressed, or L2 (BLAS's |q|^2 + |x|^2 - 2 q.x loses near-duplicates' small distances)
            kk = min(index.ntotal, max(k * max(int(rerank), 1), k))
            _, cand = index.search(q, kk)
            d, i = self._rerank(q, cand, k)
        if d.shape[1] < k:
            pad = k - d.shape[1]
            d = np.concatenate([d, np.full((nq, pad), fill, np.float32)], 1)
            i = np.concatenate([i, np.full((nq, pad), -1, np.int64)], 1)
        if self.metric == "ip":
            d = np.where(i < 0, -np.inf, d)
        return d.astype(np.float32, copy=False), i.astype(np.int64, copy=False)

    def _rerank(self, q: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        valid = cand >= 0
        vec = self.vectors(np.where(valid, cand, 0))  # (Q, kk, D)
        if self.metric == "ip":
            s = np.einsum("qd,qkd->qk", q, vec)
            s = np.where(valid, s, -np.inf)
            order = np.argsort(-s, axis=1, kind="stable")[:, :k]
        else:
            s = ((vec - q[:, None, :]) ** 2).sum(-1)
            s = np.where(valid, s, np.inf)
            order = np.argsort(s, axis=1, kind="stable")[:, :k]
        d = np.take_along_axis(s, order, 1)
        i = np.where(np.take_along_axis(valid, order, 1), np.take_along_axis(cand, order, 1), -1)
        return d, i

    def search_exact(self, queries: np.ndarray, k: int = 1, *, block: int = 262_144) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k over the stored vectors whatever the factory, `block` rows of the memory-mapped
        shards at a time: RAM ~ block * d * 4 bytes however large the index. The ground truth for a
        compressed index too large for an exact in-RAM one. Same return convention as `search`; ties
        go to the lower id."""
        q = np.ascontiguousarray(np.asarray(queries, dtype=np.float32))
        if q.ndim == 1:
            q = q[None]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise DiffmemError(f"{self.folder}: queries must be (n, {self.dim}), got {q.shape}")
        self._require_flushed()
        k, ip = int(k), self.metric == "ip"
        # keys are sorted ascending: -score for "ip", the squared distance for "l2"
        best_key = np.full((len(q), k), np.inf, np.float32)
        best_i = np.full((len(q), k), -1, np.int64)
        qq = (q * q).sum(1, keepdims=True)
        off = 0
        for a in self._arrays():
            for lo in range(0, len(a), block):
                x = np.asarray(a[lo:lo + block], dtype=np.float32)
                key = -(q @ x.T) if ip else qq - 2 * (q @ x.T) + (x * x).sum(1)[None]
                kk = min(k, x.shape[0])
                part = np.argpartition(key, kk - 1, axis=1)[:, :kk]
                s = np.concatenate([best_key, np.take_along_axis(key, part, 1)], 1)
                i = np.concatenate([best_i, off + lo + part], 1)
                order = np.lexsort((np.where(i < 0, np.iinfo(np.int64).max, i), s), axis=1)[:, :k]
                best_key, best_i = np.take_along_axis(s, order, 1), np.take_along_axis(i, order, 1)
            off += len(a)
        d = -best_key if ip else np.maximum(best_key, 0)
        d = np.where(best_i < 0, -np.inf if ip else np.inf, d)
        return d.astype(np.float32), best_i

    def memory_bytes(self) -> int:
        """Bytes the FAISS structure holds in memory (codes + quantizers), not counting the shards."""
        index = self._ensure_faiss()
        if index is None:
            return 0
        if is_exact(self.factory):
            return int(index.ntotal) * self.dim * 4
        fd, tmp = tempfile.mkstemp(suffix=".faiss")
        os.close(fd)
        try:
            faiss.write_index(index, tmp)
            return os.path.getsize(tmp)
        finally:
            os.unlink(tmp)

    def describe(self) -> dict:
        return {"folder": str(self.folder), "n_vectors": len(self), "n_items": self.meta.get("n_items", 0),
                "dim": self.dim, "metric": self.metric, "factory": self.factory,
                "search_params": self.meta.get("search_params", ""), "policy": self.policy.get("name"),
                "fingerprint": self.fingerprint, "n_skipped": len(self.skipped), "config": self.config}


def _faiss_metric(metric: str):
    return faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2


def _n_centroids(index) -> int:
    try:
        ivf = faiss.extract_index_ivf(index)
        return int(ivf.nlist)
    except (RuntimeError, AttributeError):
        pass
    return 256  # PQ codebooks need about 256 points per sub-quantizer


def _atomic_write_faiss(index, path: Path) -> None:
    with atomic_output(path) as tmp:
        faiss.write_index(index, tmp)


def _atomic_save_npy(path: Path, arr: np.ndarray) -> None:
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        np.save(f, arr, allow_pickle=False)


def _atomic_parquet(path: Path, df) -> None:
    with atomic_output(path) as tmp:
        df.to_parquet(tmp, index=False)
