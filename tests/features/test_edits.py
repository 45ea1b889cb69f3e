import numpy as np
import pytest

from diffmem.features.edits import EDITS, apply_edit


@pytest.fixture(scope="module")
def frame():
    import skimage.data

    return np.ascontiguousarray(skimage.data.astronaut()[::8, ::8])  # 64 x 64 x 3


@pytest.mark.parametrize("name", sorted(EDITS))
def test_shape_dtype_determinism_and_change(frame, name):
    a = apply_edit(name, frame, seed=3)
    assert a.shape == frame.shape and a.dtype == np.uint8
    assert np.array_equal(a, apply_edit(name, frame, seed=3))
    assert np.abs(a.astype(int) - frame).mean() > 0.5


def test_specific_effects(frame):
    f = frame.astype(float)
    assert abs(apply_edit("brightness", frame, seed=0).mean() - f.mean()) > 10
    assert apply_edit("blur", frame).astype(float).var() < f.var()
    noisy = apply_edit("noise", frame, seed=0).astype(float)
    assert 8 < (noisy - f).std() < 14


def test_clip_edits_are_consistent_but_noise_is_fresh(frame):
    clip = np.stack([frame, frame])
    shifted = apply_edit("shift", clip, seed=1)
    assert np.array_equal(shifted[0], shifted[1])
    noisy = apply_edit("noise", clip, seed=1)
    assert not np.array_equal(noisy[0], noisy[1])
