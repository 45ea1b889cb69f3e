import numpy as np
import pandas as pd
import pytest
import torch

from diffmem.errors import DiffmemError
from diffmem.index import VectorIndex
from diffmem.metrics.content import (ContentMemorization, CopyTable, content_memorization, content_scores, copy_table,
                                     nearest_similarity, nearest_training_frames, score_item)


def _unit(n, d=8, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _with_sims(target, sims, seed=1):
    """Unit vectors whose dot product with the unit vector `target` is exactly each of `sims`."""
    out = []
    rng = np.random.default_rng(seed)
    for s in sims:
        r = rng.normal(size=target.shape)
        r -= (r @ target) * target
        r /= np.linalg.norm(r)
        out.append(s * target + np.sqrt(1 - s * s) * r)
    return np.array(out, np.float32)


def test_content_scores_by_hand():
    score, cov, best = content_scores([0.2, 0.9, 0.6], threshold=0.5)
    assert (score, cov, best) == (pytest.approx(0.9), pytest.approx(2 / 3), 1)
    assert content_scores([0.5], 0.5)[1] == 0.0  # "above" is strict
    with pytest.raises(DiffmemError):
        content_scores([], 0.5)


def test_nearest_frames_array_and_index_agree_with_brute_force(tmp_path):
    ref, q = _unit(300), _unit(20, seed=2)
    s, i = nearest_training_frames(q, ref, chunk=64)
    full = q @ ref.T
    assert np.array_equal(i, full.argmax(1)) and np.allclose(s, full.max(1), atol=1e-6)
    idx = VectorIndex.create(tmp_path / "i", dim=8, policy={"name": "t"})
    idx.add(ref, [{"item_id": f"x{j // 3}", "frame": j % 3} for j in range(300)])
    s2, i2 = nearest_training_frames(q, idx)
    assert np.array_equal(i2, i) and np.allclose(s2, s, atol=1e-6)


def test_score_item_reports_the_best_match_and_every_frame():
    ref = _unit(6, seed=3)
    meta = pd.DataFrame({"item_id": ["a", "a", "b", "b", "c", "c"], "frame": [0, 1, 0, 1, 0, 1],
                         "timestamp": [0, .5, 0, .5, 0, .5], "path": list("aabbcc"), "caption": list("AABBCC")})
    # generated frame 0 is near ref row 3 (b, frame 1) at 0.95; frame 1 near row 0 at 0.6; frame 2 unrelated
    gen = np.stack([_with_sims(ref[3], [0.95])[0], _with_sims(ref[0], [0.6])[0], _unit(1, seed=9)[0]])
    r = score_item("g", gen, ref, threshold=0.5, metadata=meta)
    full = gen @ ref.T
    assert r.content_score == pytest.approx(full.max())
    assert r.best_frame == 0 and r.match["train_id"] == "b" and r.match["frame"] == 1
    assert r.match["timestamp"] == 0.5 and r.match["caption"] == "B" and r.memorized
    assert [f.train_id for f in r.frames[:2]] == ["b", "a"]
    assert r.coverage == pytest.approx(np.mean(full.max(1) > 0.5))
    with pytest.raises(DiffmemError, match="threshold"):
        score_item("g", gen, ref, threshold=None)


def test_metric_object_equals_functional_twin():
    ref = _unit(50, seed=4)
    items = {f"g{k}": _unit(5, seed=10 + k) for k in range(4)}
    items["copy"] = _with_sims(ref[7], [0.3, 0.97, 0.99], seed=5)
    m = ContentMemorization(ref, threshold=0.9)
    for k, v in items.items():
        m.update(k, v)
    a, b = m.compute(), content_memorization(items, ref, 0.9)
    assert a == b
    assert a["n_memorized"] == 1 and a["items"][-1]["memorized"] and a["items"][-1]["match"]["vector_id"] == 7
    assert a["items"][-1]["content_score"] == pytest.approx(0.99, abs=1e-5)


def test_copy_table_by_hand():
    t = copy_table([0.0, 0.25, 0.5, 0.75, 1.0], extra_thresholds=(0.8,))
    # 95th percentile, linear: position 0.95 * 4 = 3.8 -> 0.75 + 0.8 * 0.25
    assert t["top5_pct"] == pytest.approx(0.95) and t["top1"] == 1.0
    assert t["pct_above_0.5"] == 40.0 and t["pct_above_0.4"] == 60.0 and t["pct_above_0.8"] == 20.0
    ct = CopyTable(extra_thresholds=(0.8,))
    ct.update([0.0, 0.25])
    ct.update(np.array([0.5, 0.75, 1.0]))
    assert ct.compute() == t
    assert copy_table([])["top1"] is None


def test_nearest_similarity_gradient_is_the_matched_row():
    ref = torch.tensor(_unit(5, seed=6))
    q = torch.tensor(_unit(2, seed=7), requires_grad=True)
    s, i = nearest_similarity(q, ref)
    s.sum().backward()
    assert torch.allclose(q.grad, ref[i])  # d/dq max_x <q, x> = the argmax x
