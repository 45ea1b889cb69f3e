import json

import numpy as np
import pytest

from diffmem.errors import DiffmemError, PolicyMismatchError
from diffmem.index import VectorIndex

POLICY = {"name": "unit-test", "kind": "random", "dim": 16}
OTHER = {"name": "unit-test", "kind": "random", "dim": 16, "version": 2}


def _unit(n, d=16, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _fill(idx, x, per_item=4, first=0):
    for i in range(0, len(x), per_item):
        idx.add(x[i:i + per_item], [{"item_id": f"it{first + i // per_item}", "frame": j}
                                    for j in range(min(per_item, len(x) - i))])


def test_exact_search_equals_brute_force_and_rows_line_up(tmp_path):
    x = _unit(400)
    idx = VectorIndex.create(tmp_path / "i", dim=16, policy=POLICY, shard_size=64)
    _fill(idx, x)
    idx.close()
    idx = VectorIndex.open(tmp_path / "i", policy=POLICY)
    assert len(idx) == 400 and idx.meta["n_items"] == 100 and len(idx.meta["shards"]) > 1
    q = _unit(30, seed=1)
    s, i = idx.search(q, 5)
    full = q @ x.T
    order = np.argsort(-full, axis=1)[:, :5]
    assert np.array_equal(i, order)
    assert np.allclose(s, np.take_along_axis(full, order, 1), atol=1e-5)
    meta = idx.metadata
    assert list(meta.loc[[0, 5, 399], "item_id"]) == ["it0", "it1", "it99"]
    assert list(meta.loc[[0, 5, 399], "frame"]) == [0, 1, 3]
    assert np.array_equal(idx.vectors(np.array([[3, 399], [0, 64]])), x[[[3, 399], [0, 64]]])


def test_l2_metric_returns_squared_distances(tmp_path):
    x = np.random.default_rng(2).normal(size=(50, 16)).astype(np.float32)
    idx = VectorIndex.create(tmp_path / "i", dim=16, policy=POLICY, metric="l2")
    _fill(idx, x)
    q = x[:3] + 0.01
    d, i = idx.search(q, 2)
    full = ((q[:, None] - x[None]) ** 2).sum(-1)
    assert np.array_equal(i, np.argsort(full, 1)[:, :2])
    assert np.allclose(d, np.sort(full, 1)[:, :2], rtol=1e-4)


def test_resume_after_a_kill_keeps_committed_items_only_and_never_duplicates(tmp_path):
    x = _unit(40)
    idx = VectorIndex.create(tmp_path / "i", dim=16, policy=POLICY, shard_size=8)
    _fill(idx, x[:28])          # 7 items: 3 shards of 8 committed (items 0-5), item 6 still buffered
    del idx                     # "killed": the buffer is lost
    idx = VectorIndex.open_or_create(tmp_path / "i", dim=16, policy=POLICY, shard_size=8)
    assert len(idx) == 24 and idx.has_item("it5") and not idx.has_item("it6")
    with pytest.raises(DiffmemError, match="already in the index"):
        idx.add(x[:4], [{"item_id": "it0"}] * 4)
    for i in range(24, 40, 4):  # resume: add what is missing
        if not idx.has_item(f"it{i // 4}"):
            idx.add(x[i:i + 4], [{"item_id": f"it{i // 4}", "frame": j} for j in range(4)])
    idx.close()
    idx = VectorIndex.open(tmp_path / "i")
    assert len(idx) == 40 and idx.metadata["item_id"].value_counts().max() == 4
    assert np.array_equal(idx.vectors(), x)


def test_orphan_shard_from_a_kill_is_ignored_and_overwritten(tmp_path):
    x = _unit(16)
    idx = VectorIndex.create(tmp_path / "i", dim=16, policy=POLICY, shard_size=4)
    _fill(idx, x[:8])
    idx.flush()
    np.save(tmp_path / "i" / "shards" / "000002.npy", np.ones((3, 16), np.float32))  # written, never listed
    idx = VectorIndex.open(tmp_path / "i")
    assert len(idx) == 8
    _fill(idx, x[8:], first=2)
    idx.close()
    assert np.array_equal(VectorIndex.open(tmp_path / "i").vectors(), x)


def test_mixing_policies_or_settings_is_refused(tmp_path):
    idx = VectorIndex.create(tmp_path / "i", dim=16, policy=POLICY)
    _fill(idx, _unit(8))
    idx.close()
    with pytest.raises(PolicyMismatchError, match="fingerprint"):
        VectorIndex.open(tmp_path / "i", policy=OTHER)
    with pytest.raises(PolicyMismatchError):
        VectorIndex.open_or_create(tmp_path / "i", dim=16, policy=OTHER)
    with pytest.raises(DiffmemError, match="factory"):
        VectorIndex.open_or_create(tmp_path / "i", dim=16, policy=POLICY, factory="HNSW8,Flat")
    with pytest.raises(DiffmemError, match="already exists"):
        VectorIndex.create(tmp_path / "i", dim=16, policy=POLICY)
    with pytest.raises(DiffmemError, match=r"\(n, 16\)"):
        VectorIndex.open(tmp_path / "i").add(np.zeros((2, 8), np.float32), [{"item_id": "a"}] * 2)
    with pytest.raises(DiffmemError, match="item_id"):
        VectorIndex.open(tmp_path / "i").add(np.zeros((1, 16), np.float32), [{"frame": 0}])
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.txt").write_text("x")
    with pytest.raises(DiffmemError, match="not empty"):
        VectorIndex.create(tmp_path / "junk", dim=16, policy=POLICY)
    with pytest.raises(DiffmemError, match="not an index"):
        VectorIndex.open(tmp_path / "junk")
    with pytest.raises(DiffmemError, match="invalid FAISS factory"):
        VectorIndex.create(tmp_path / "new", dim=16, policy=POLICY, factory="Nonsense99")


@pytest.mark.parametrize("factory", ["IVF16,Flat", "IVF16,PQ4x4", "HNSW8,Flat", "PQ4x4"])
def test_compressed_indexes_find_planted_copies_with_exact_scores(tmp_path, factory):
    base = _unit(3000, seed=3)
    rng = np.random.default_rng(4)
    planted = rng.choice(3000, 50, replace=False)
    q = base[planted] + 0.1 * _unit(50, seed=5)  # cosine about 0.995 with its source
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    idx = VectorIndex.create(tmp_path / "i", dim=16, policy=POLICY, factory=factory, shard_size=1000)
    _fill(idx, base[:2000], per_item=10)
    idx.close()  # trains and saves faiss.index
    assert (tmp_path / "i" / "faiss.index").exists()
    trained_at = json.loads((tmp_path / "i" / "index.json").read_text())["faiss"]["n_vectors"]
    assert trained_at == 2000
    idx = VectorIndex.open(tmp_path / "i")  # extend: the trained index gets the new vectors added
    for i in range(2000, 3000, 10):
        idx.add(base[i:i + 10], [{"item_id": f"it{i // 10}", "frame": j} for j in range(10)])
    idx.close()
    idx = VectorIndex.open(tmp_path / "i")
    s, i = idx.search(q, 3)
    assert (i[:, 0] == planted).mean() >= 0.96
    exact = np.einsum("qd,qkd->qk", q, base[i])
    assert np.allclose(s, exact, atol=1e-5)  # re-ranked with the exact vectors
    assert np.all(np.diff(s, axis=1) <= 1e-7)


def test_empty_index_and_k_beyond_size(tmp_path):
    idx = VectorIndex.create(tmp_path / "i", dim=16, policy=POLICY)
    s, i = idx.search(_unit(2), 3)
    assert np.all(i == -1) and np.all(np.isneginf(s))
    _fill(idx, _unit(2), per_item=2)
    s, i = idx.search(_unit(1, seed=9), 4)
    assert list(i[0, 2:]) == [-1, -1] and set(i[0, :2]) == {0, 1}
