"""Compressed indexes built shard by shard (`diffmem.index.sharded`) against VectorIndex's own build,
and the large-index reading paths of VectorIndex (streamed exact search, metadata rows by id)."""
from __future__ import annotations

import faiss
import numpy as np
import pytest

from diffmem.errors import DiffmemError
from diffmem.index.faiss_index import VectorIndex
from diffmem.index.sharded import build_compressed, default_factory, memory_estimate, supports_sharded_build

D = 32
POLICY = {"name": "test-vectors", "descriptor": "none", "dim": D}
FACTORY = "IVF8,PQ8x4"  # 16-centroid sub-quantizers: trains on a couple of thousand vectors


def unit(x):
    x = np.asarray(x, np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    centers = unit(rng.standard_normal((12, D)))
    # 12 clusters, cosine ~0.2 inside a cluster: some structure for the coarse quantizer to find
    return unit(0.5 * centers[rng.integers(0, 12, 3000)] + rng.standard_normal((3000, D)) / np.sqrt(D))


def fill(folder, x, factory=FACTORY, shard_size=500, start=0, item=250):
    idx = VectorIndex.open_or_create(folder, dim=D, policy=POLICY, factory=factory, shard_size=shard_size)
    for i in range(0, len(x), item):  # items of `item` vectors, as a build adds one item after another
        idx.add(x[i:i + item], [{"item_id": f"v{start + j}", "n": start + j} for j in range(i, min(i + item, len(x)))])
    idx.flush()
    return idx


def planted(x, rows, cos, seed=1):
    """Queries with <q, x[row]> = cos exactly (a random direction orthogonal to x[row] fills the rest)."""
    rng = np.random.default_rng(seed)
    r = unit(rng.standard_normal((len(rows), D)))
    r = unit(r - np.sum(r * x[rows], 1, keepdims=True) * x[rows])
    return unit(cos * x[rows] + np.sqrt(1 - cos ** 2) * r)


def test_default_factory_and_memory_formula():
    assert default_factory(100_000, 384) == "Flat"
    # sqrt(1e6) = 1000 -> 1024 lists; 384 / 4 = 96 four-bit sub-quantizers = 48 bytes
    assert default_factory(1_000_000, 384) == "IVF1024,PQ96x4fs"
    assert default_factory(10_000_000, 512) == "IVF4096,PQ128x4fs"
    assert default_factory(10 ** 12, 384).startswith("IVF65536,")
    m = memory_estimate(10_000_000, 384, "IVF1024,PQ96x4fs")
    # 48 bytes of codes + 8 of id per vector, 1024 float32 centroids, 16-entry tables: by hand
    assert m["ram_index"] == 10_000_000 * (48 + 8) + 1024 * 384 * 4 + 16 * 384 * 4
    assert m["ram_exact"] == m["disk_vectors"] == 10_000_000 * 384 * 4
    assert memory_estimate(10, 384, "IVF16,PQ48")["bytes_per_vector"] == 48 + 8
    assert memory_estimate(10, 8, "Flat")["ram_index"] == 10 * 8 * 4
    assert supports_sharded_build("IVF8,PQ8x4fs", D) and not supports_sharded_build("PQ8x4", D)


@pytest.mark.parametrize("factory", [FACTORY, "IVF8,PQ8x4fs"])
def test_sharded_build_equals_one_process_build(tmp_path, data, factory):
    a = fill(tmp_path / "a", data, factory)
    a.close()  # VectorIndex's own build: train, add everything, in one process
    b = fill(tmp_path / "b", data, factory)
    info = build_compressed(b)
    assert info["shards"] == 6 and info["encoded_now"] == 6 and info["n_vectors"] == 3000
    fa, fb = faiss.read_index(str(tmp_path / "a" / "faiss.index")), faiss.read_index(str(tmp_path / "b" / "faiss.index"))
    assert fa.ntotal == fb.ntotal == 3000
    q = planted(data, np.arange(0, 3000, 37), 0.9)
    for index in (fa, fb):
        faiss.ParameterSpace().set_index_parameter(index, "nprobe", 3)
    (da, ia), (db, ib) = fa.search(q, 10), fb.search(q, 10)
    assert (ia == ib).all() and np.array_equal(da, db)  # the same lists, codes and ids
    # the folder is an ordinary VectorIndex: reopened, it searches with the merged index and re-ranks
    b2 = VectorIndex.open(tmp_path / "b")
    s, i = b2.search(q, 1, rerank=50, params="nprobe=8")
    assert (i[:, 0] == np.arange(0, 3000, 37)).all()
    np.testing.assert_allclose(s[:, 0], 0.9, atol=1e-5)  # exact scores after re-ranking


def test_fast_scan_lists_that_fill_whole_blocks_merge_correctly(tmp_path, data):
    # One inverted list, shards of 128 vectors: after the first merge the list holds 128 entries, a
    # multiple of the 128-byte block of PQ8x4fs, the case FAISS's fast-scan list merge gets wrong.
    a = fill(tmp_path / "a", data[:1280], "IVF1,PQ8x4fs", shard_size=128, item=128)
    a.close()
    b = fill(tmp_path / "b", data[:1280], "IVF1,PQ8x4fs", shard_size=128, item=128)
    assert build_compressed(b)["shards"] == 10
    fa, fb = faiss.read_index(str(tmp_path / "a" / "faiss.index")), faiss.read_index(str(tmp_path / "b" / "faiss.index"))
    assert isinstance(faiss.downcast_index(fb), faiss.IndexIVFPQFastScan)
    q = data[::50]
    (da, ia), (db, ib) = fa.search(q, 20), fb.search(q, 20)
    assert (ia == ib).all() and np.array_equal(da, db)


def test_killed_encoding_resumes_from_finished_shards(tmp_path, data):
    idx = fill(tmp_path / "ix", data)
    calls = []

    def dies_after_two(fn, args):
        for a in args[:2]:
            calls.append(a[1])
            fn(*a)
        raise KeyboardInterrupt  # the build is killed while shards are being encoded

    with pytest.raises(KeyboardInterrupt):
        build_compressed(idx, map_fn=dies_after_two)
    trained = (tmp_path / "ix" / "codes" / "trained.faiss").stat().st_mtime_ns
    assert not (tmp_path / "ix" / "faiss.index").exists()
    resumed = []
    info = build_compressed(VectorIndex.open(tmp_path / "ix"),
                            map_fn=lambda fn, args: [resumed.append(a[1]) or fn(*a) for a in args])
    assert info["encoded_now"] == 4 and not set(resumed) & set(calls) and len(set(resumed) | set(calls)) == 6
    assert (tmp_path / "ix" / "codes" / "trained.faiss").stat().st_mtime_ns == trained  # not retrained
    ref = fill(tmp_path / "ref", data)
    ref.close()
    q = planted(data, np.arange(5, 3000, 101), 0.6)
    fa, fb = faiss.read_index(str(tmp_path / "ref" / "faiss.index")), faiss.read_index(str(tmp_path / "ix" / "faiss.index"))
    assert np.array_equal(fa.search(q, 5)[1], fb.search(q, 5)[1])


def test_extend_encodes_only_new_shards(tmp_path, data):
    a = fill(tmp_path / "a", data[:2000])
    build_compressed(a)
    a = fill(tmp_path / "a", data[2000:], start=2000)  # extend with new items
    info = build_compressed(a)
    assert info["encoded_now"] == 2 and info["shards"] == 6
    # VectorIndex's own extension (adds the new vectors to the saved index) gives the same index
    b = fill(tmp_path / "b", data[:2000])
    build_compressed(b)
    b = fill(tmp_path / "b", data[2000:], start=2000)
    b.close()
    q = planted(data, np.arange(1, 3000, 53), 0.9)
    ra, rb = VectorIndex.open(tmp_path / "a").search(q, 3, rerank=30), VectorIndex.open(tmp_path / "b").search(q, 3, rerank=30)
    assert (ra[1] == rb[1]).all()
    assert (ra[1][:, 0] == np.arange(1, 3000, 53)).all()


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_streamed_exact_search_is_brute_force(tmp_path, data, metric):
    idx = VectorIndex.create(tmp_path / "ix", dim=D, policy=POLICY, factory=FACTORY, metric=metric, shard_size=500)
    idx.add(data, [{"item_id": f"v{j}"} for j in range(len(data))])
    idx.flush()
    q = unit(np.random.default_rng(3).standard_normal((9, D)))
    s, i = idx.search_exact(q, 4, block=333)  # blocks cut across shards; no FAISS index needed
    full = q @ data.T if metric == "ip" else ((q[:, None, :] - data[None]) ** 2).sum(-1)
    order = np.argsort(-full if metric == "ip" else full, axis=1, kind="stable")[:, :4]
    assert (i == order).all()
    np.testing.assert_allclose(s, np.take_along_axis(full, order, 1), atol=1e-5)
    s, i = idx.search_exact(q[:2], 5000)  # more than it holds: padded as `search` pads
    assert (i[:, 3000:] == -1).all() and np.isinf(s[:, 3000:]).all() and (np.sort(i[:, :3000], 1) == np.arange(3000)).all()


def test_rows_reads_rows_of_the_right_shards(tmp_path, data):
    idx = fill(tmp_path / "ix", data, factory="Flat")
    ids = np.array([2999, 0, -1, 1234, 500, 499])
    df = idx.rows(ids)
    assert df["vector_id"].tolist() == ids.tolist()
    assert df["item_id"].tolist()[:2] == ["v2999", "v0"] and df["n"].tolist()[3:] == [1234, 500, 499]
    assert df.iloc[2].isna()["item_id"]
    assert idx.rows([7], columns=["n"]).columns.tolist() == ["vector_id", "n"]
    assert idx.row(1234) == idx.metadata.iloc[1234].to_dict() == {"item_id": "v1234", "n": 1234}
    with pytest.raises(DiffmemError, match="out of range"):
        idx.rows([3000])


def test_non_ivf_factories_and_empty_index(tmp_path, data):
    flat_pq = fill(tmp_path / "pq", data, factory="PQ8x4")
    info = build_compressed(flat_pq)  # not an inverted file: VectorIndex's one-process build
    assert info["n_vectors"] == 3000 and (tmp_path / "pq" / "faiss.index").exists()
    assert not (tmp_path / "pq" / "codes").exists()
    assert build_compressed(fill(tmp_path / "flat", data[:10], factory="Flat"))["file"] is None
    empty = VectorIndex.create(tmp_path / "empty", dim=D, policy=POLICY, factory=FACTORY)
    with pytest.raises(DiffmemError, match="no vectors"):
        build_compressed(empty)
