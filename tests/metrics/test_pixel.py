import numpy as np
import pytest
import torch

from diffmem.errors import DiffmemError
from diffmem.index import VectorIndex
from diffmem.metrics.pixel import PixelMemorization, nl2, pixel_memorization


def _reference_nl2(x, train, k, alpha):
    """A second, plain numpy implementation of the definition (RMS distances, sort, take k)."""
    d = np.sqrt(((x[:, None, :] - train[None]) ** 2).mean(-1))
    order = np.argsort(d, axis=1)[:, :k]
    dk = np.take_along_axis(d, order, 1)
    return dk[:, 0] / (alpha * dk.mean(1)), order[:, 0]


def test_by_hand_in_one_dimension():
    # x = 0; training 0.1, 1, 1, 3: k = 3 neighbours 0.1, 1, 1 -> 0.1 / (0.5 * 0.7)
    v, i = nl2(torch.zeros(1, 1), torch.tensor([[1.0], [0.1], [3.0], [1.0]]), k=3, alpha=0.5)
    assert float(v[0]) == pytest.approx(0.1 / 0.35, rel=1e-5) and int(i[0]) == 1


def test_rms_distance_over_all_values():
    # x = 0 (4 values); n0 differs by 1 in one value: RMS 0.5; two others by 1 in all: RMS 1 -> k = 3: mean 2.5/3
    train = torch.tensor([[1.0, 0, 0, 0], [1, 1, 1, 1], [-1, -1, -1, -1]]).view(3, 1, 2, 2)
    v, _ = nl2(torch.zeros(1, 1, 2, 2), train, k=3, alpha=0.5)
    assert float(v[0]) == pytest.approx(0.5 / (0.5 * 2.5 / 3), rel=1e-5)


def test_matches_the_numpy_definition_on_random_data():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(300, 12)).astype(np.float32)
    x = np.concatenate([train[:5] + 0.01 * rng.normal(size=(5, 12)), rng.normal(size=(10, 12))]).astype(np.float32)
    v, i = nl2(x, train, k=50)
    rv, ri = _reference_nl2(x.astype(np.float64), train.astype(np.float64), 50, 0.5)
    assert np.allclose(v.numpy(), rv, rtol=1e-4) and np.array_equal(i.numpy(), ri)
    assert (v[:5] < 0.1).all() and (v[5:] > 1.0).all()  # copies far below 1.4; fresh samples near 2 d1 / mean(d)


def test_index_backed_search_gives_the_same_values(tmp_path):
    rng = np.random.default_rng(1)
    train = rng.normal(size=(200, 6)).astype(np.float32)
    x = train[:4] + 0.05
    idx = VectorIndex.create(tmp_path / "px", dim=6, policy={"name": "pixels"}, metric="l2")
    idx.add(train, [{"item_id": str(j)} for j in range(200)])
    a, ia = nl2(x, train, k=20)
    b, ib = nl2(x, idx, k=20)
    assert np.allclose(a.numpy(), b.numpy(), rtol=1e-5) and np.array_equal(ia.numpy(), ib.numpy())


def test_exact_copy_is_zero_differentiable_and_k_is_capped():
    train = torch.rand(5, 3, 4, 4)
    v, _ = nl2(train[:1].clone(), train, k=50)
    assert float(v[0]) == pytest.approx(0.0, abs=1e-6)
    x = (train[:1] + 0.1).requires_grad_(True)
    nl2(x, train)[0].sum().backward()
    assert torch.isfinite(x.grad).all() and float(x.grad.abs().sum()) > 0
    with pytest.raises(DiffmemError):
        nl2(x, train[:0])


def test_metric_object_equals_functional_twin_and_counts_thresholds():
    rng = np.random.default_rng(2)
    train = rng.normal(size=(100, 8)).astype(np.float32)
    x = np.concatenate([train[:3] + 0.001, rng.normal(size=(7, 8))]).astype(np.float32)
    m = PixelMemorization(train, k=10)
    m.update(x[:4])
    m.update(x[4:])
    a, b = m.compute(), pixel_memorization(x, train, k=10)
    assert a == b and a["n"] == 10
    rv, _ = _reference_nl2(x.astype(np.float64), train.astype(np.float64), 10, 0.5)
    assert a["pct_below_1.4"] == pytest.approx(100 * np.mean(rv < 1.4))
    assert a["pct_below_1.6"] == pytest.approx(100 * np.mean(rv < 1.6))
