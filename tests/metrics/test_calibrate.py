import numpy as np
import pytest

from diffmem.metrics.calibrate import calibrate_threshold


def _unit(s):
    """Vectors whose dot product with e1 is exactly s: s e1 + sqrt(1 - s^2) e2."""
    s = np.asarray(s, dtype=np.float64)
    v = np.zeros((len(s), 4))
    v[:, 0], v[:, 1] = s, np.sqrt(1 - s ** 2)
    return v.astype(np.float32)


def test_threshold_is_the_quantile_of_nearest_reference_similarity():
    ref = np.array([[1, 0, 0, 0], [0, 0, 1, 0]], np.float32)
    s = np.arange(100) / 100  # 0.00 .. 0.99; similarity to e3 is 0, so the max is s
    cal = calibrate_threshold(ref, _unit(s), fpr=0.01)
    # numpy's linear quantile of 0..0.99 at 0.99: position 98.01 -> 0.98 + 0.01 * 0.01
    assert cal.threshold == pytest.approx(0.9801, abs=1e-5)
    assert cal.n_reference == 2 and cal.n_novel == 100
    # pairs above tau: only s = 0.99 with e1, out of 200 pairs
    assert cal.pair_fpr == pytest.approx(1 / 200)
    with pytest.raises(ValueError):
        calibrate_threshold(ref, _unit(s), fpr=0)
