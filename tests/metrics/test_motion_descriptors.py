"""phi, Phi_k, OFS-k: checked against direct constructions and slow second implementations."""
import math

import numpy as np
import pytest

from diffmem.flow import FlowPolicy
from diffmem.features.motion import (MotionPolicy, VideoMotion, describe_motion, peak_motion, phi, pool_flow,
                                     window_descriptors, window_motion)
from diffmem.metrics.motion import OFSk, ofs_k, ofs_k_windows


def slow_pool(flow, g):
    """Exact area average by supersampling: repeat every pixel g times per axis, then g x g equal blocks."""
    h, w = flow.shape[:2]
    big = np.repeat(np.repeat(flow, g, axis=0), g, axis=1)
    return big.reshape(g, h, g, w, 2).mean(axis=(1, 3))


@pytest.mark.parametrize("shape", [(64, 64), (30, 45), (5, 7)])
def test_pool_flow_is_the_area_average(shape):
    rng = np.random.default_rng(0)
    flow = rng.normal(size=shape + (2,)).astype(np.float32)
    np.testing.assert_allclose(pool_flow(flow, 8), slow_pool(flow, 8), atol=1e-5)
    batch = np.stack([flow, 2 * flow])
    np.testing.assert_allclose(pool_flow(batch, 4)[1], 2 * slow_pool(flow, 4), atol=1e-5)


def test_pool_flow_divisible_is_block_mean():
    flow = np.arange(16 * 16 * 2, dtype=np.float32).reshape(16, 16, 2)
    np.testing.assert_allclose(pool_flow(flow, 4), flow.reshape(4, 4, 4, 4, 2).mean(axis=(1, 3)), rtol=1e-6)


def test_phi_unit_length_and_zero_stays_zero():
    pooled = np.zeros((3, 2, 2, 2), np.float32)
    pooled[0, 0, 0] = (3.0, 4.0)
    pooled[1] = 1.0
    p = phi(pooled)
    assert p.shape == (3, 8)
    np.testing.assert_allclose(p[0], [0.6, 0.8, 0, 0, 0, 0, 0, 0], atol=1e-7)
    np.testing.assert_allclose(np.linalg.norm(p[1]), 1.0, rtol=1e-6)
    assert not p[2].any()


def test_window_descriptor_is_scaled_concatenation():
    phis = np.eye(5, 3, dtype=np.float32)[:, :]  # rows e0, e1, e2, 0, 0
    w = window_descriptors(phis, k=2)
    assert w.shape == (4, 6)
    np.testing.assert_allclose(w[0], np.r_[1, 0, 0, 0, 1, 0] / math.sqrt(2))
    np.testing.assert_allclose(w[2], np.r_[0, 0, 1, 0, 0, 0] / math.sqrt(2))
    assert window_descriptors(phis, k=6).shape == (0, 18)


def test_peak_and_window_motion_by_hand():
    pooled = np.zeros((4, 2, 2, 2), np.float32)
    pooled[0, 1, 1] = (3, 4)      # 5
    pooled[1, 0, 0] = (0, 1)      # 1
    pooled[1, 0, 1] = (0, -2)     # 2 <- peak
    pooled[3] = (0.6, 0.8)        # 1 everywhere
    np.testing.assert_allclose(peak_motion(pooled), [5, 2, 0, 1], rtol=1e-6)
    np.testing.assert_allclose(window_motion(np.array([5, 2, 0, 1.0]), k=2), [3.5, 1.0, 0.5], rtol=1e-6)
    assert window_motion(np.array([1.0]), k=2).shape == (0,)


def _random_flows(rng, n, h=32, w=32):
    # smooth random fields: a few random pooled cells upsampled
    coarse = rng.normal(size=(n, 4, 4, 2)).astype(np.float32)
    return np.repeat(np.repeat(coarse, h // 4, axis=1), w // 4, axis=2)


def test_ofs_k_equals_brute_force_definition():
    rng = np.random.default_rng(1)
    a, b = _random_flows(rng, 7), _random_flows(rng, 9)
    k, g = 3, 4
    m = ofs_k(a, b, k=k, grid=g)

    def big_phi(u):  # written out from the definition, without the library's helpers
        v = u.reshape(g, 32 // g, g, 32 // g, 2).mean(axis=(1, 3)).ravel()
        return v / np.linalg.norm(v)

    best = (-2.0, None, None)
    for j in range(7 - k + 1):
        for jp in range(9 - k + 1):
            s = sum(float(big_phi(a[j + i]) @ big_phi(b[jp + i])) for i in range(k)) / k
            if s > best[0]:
                best = (s, j, jp)
    assert m.score == pytest.approx(best[0], abs=1e-5)
    assert (m.gen_start, m.train_start) == best[1:]


def test_ofs_k_finds_a_copied_segment_at_its_offset_and_ignores_speed():
    rng = np.random.default_rng(2)
    train = _random_flows(rng, 12)
    gen = np.concatenate([_random_flows(rng, 2), 3.0 * train[5:10]])  # copied at 3x speed, after 2 new steps
    m = ofs_k(gen, train, k=4, grid=8)
    assert m.score == pytest.approx(1.0, abs=1e-5)
    assert m.gen_start in (2, 3) and m.train_start - m.gen_start == 3
    other = ofs_k(_random_flows(rng, 6), train, k=4, grid=8)
    assert other.score < 0.8


def test_ofs_k_too_short_is_none():
    rng = np.random.default_rng(3)
    assert ofs_k(_random_flows(rng, 3), _random_flows(rng, 8), k=4) is None
    assert ofs_k_windows(np.zeros((0, 8)), np.ones((2, 8))) is None


def test_metric_object_matches_functional():
    rng = np.random.default_rng(4)
    pairs = [(_random_flows(rng, 6), _random_flows(rng, 6)) for _ in range(3)] + [(_random_flows(rng, 2),
                                                                                  _random_flows(rng, 6))]
    metric = OFSk(k=4, grid=8)
    for a, b in pairs:
        metric.update(a, b)
    out = metric.compute()
    scores = [ofs_k(a, b).score for a, b in pairs[:3]]
    assert out["n"] == 4 and out["n_too_short"] == 1
    assert out["mean"] == pytest.approx(np.mean(scores)) and out["max"] == pytest.approx(max(scores))


def test_describe_motion_on_a_real_flow():
    from diffmem.world.synthetic import camera_video

    frames, gt = camera_video("translate", (1.0, 0.5), n_frames=7, size=(64, 64))
    vm = describe_motion(frames, MotionPolicy(flow=FlowPolicy("dis", 128), grid=8, k=4))
    assert vm.n_flows == 6 and vm.windows.shape == (3, 8 * 8 * 2 * 4)
    np.testing.assert_allclose(np.linalg.norm(vm.windows, axis=1), 1.0, rtol=1e-5)
    # a uniform pan: every pooled cell moves (2, 1) px at 128 px, so the peak motion is sqrt(5)
    np.testing.assert_allclose(vm.motion, math.sqrt(5), rtol=0.05)
    gt_windows = VideoMotion.from_flows(gt, 8, 4).windows
    assert ofs_k_windows(vm.windows, gt_windows).score > 0.999  # direction only: the 2x scale does not matter


def test_policy_fingerprint_names_every_field():
    p = MotionPolicy()
    assert p.fingerprint == MotionPolicy().fingerprint
    assert MotionPolicy.from_dict(p.as_dict()) == p
    variants = [MotionPolicy(k=3), MotionPolicy(grid=4), MotionPolicy(fps=None),
                MotionPolicy(flow=FlowPolicy("farneback")), MotionPolicy(flow=FlowPolicy(short_side=64))]
    assert len({v.fingerprint for v in variants} | {p.fingerprint}) == 6
    assert p.name == "ofs-dis-128-g8-k4"
