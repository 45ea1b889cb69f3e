import numpy as np
import pytest
import torch

from diffmem.errors import DiffmemError, PolicyMismatchError
from diffmem.features.policy import (IMAGENET_MEAN, IMAGENET_STD, SSCD_POLICIES, DescriptorPolicy, apply_policy,
                                     check_same, fingerprint_of, frames_to_tensor, policy_fingerprint, sscd_policy)


def test_fingerprint_ignores_name_and_threshold_but_not_preprocessing():
    p = SSCD_POLICIES["sscd-official"]
    assert p.with_(name="other", threshold=0.3, threshold_source="x", source="/a").fingerprint == p.fingerprint
    for change in ({"size": 300}, {"resize": "square"}, {"crop": 224}, {"mean": (0.5, 0.5, 0.5)},
                   {"dim": 256}, {"model_sha256": "ab" * 32}, {"version": "2"}):
        assert p.with_(**change).fingerprint != p.fingerprint, change


def test_named_policies_are_distinct_and_round_trip():
    fps = {p.fingerprint for p in SSCD_POLICIES.values()}
    assert len(fps) == 4
    for p in SSCD_POLICIES.values():
        d = p.as_dict()
        assert d["fingerprint"] == p.fingerprint
        assert DescriptorPolicy.from_dict(d) == p
        assert policy_fingerprint(d) == p.fingerprint
    with pytest.raises(DiffmemError, match="unknown SSCD policy"):
        sscd_policy("sscd-nope")


def test_fingerprint_of_is_order_independent_and_16_hex():
    a = fingerprint_of({"x": 1, "y": [1, 2]})
    assert a == fingerprint_of({"y": [1, 2], "x": 1})
    assert len(a) == 16 and int(a, 16) >= 0
    assert a != fingerprint_of({"x": 2, "y": [1, 2]})


def test_check_same_refuses_mixing():
    a, b = SSCD_POLICIES["sscd-official"], SSCD_POLICIES["legacy-amg"]
    check_same(a, a.with_(threshold=0.1))
    with pytest.raises(PolicyMismatchError, match="legacy-amg"):
        check_same(a, b)
    with pytest.raises(PolicyMismatchError):
        check_same(a.as_dict(), b.as_dict())


def test_frames_to_tensor_shapes():
    assert frames_to_tensor(np.zeros((5, 6), np.uint8)).shape == (1, 3, 5, 6)
    assert frames_to_tensor(np.zeros((5, 6, 3), np.uint8)).shape == (1, 3, 5, 6)
    assert frames_to_tensor(np.zeros((2, 5, 6), np.uint8)).shape == (2, 3, 5, 6)
    x = frames_to_tensor(np.full((2, 5, 6, 4), 255, np.uint8))
    assert x.shape == (2, 3, 5, 6) and float(x.max()) == 1.0
    with pytest.raises(DiffmemError, match="uint8"):
        frames_to_tensor(np.zeros((1, 4, 4, 3), np.float32))


def _const(h, w, value=0.5):
    return torch.full((1, 3, h, w), value)


def test_sscd_official_short_side_288_imagenet_normalisation():
    y = apply_policy(_const(60, 120), SSCD_POLICIES["sscd-official"])
    assert tuple(y.shape) == (1, 3, 288, 576)
    want = [(0.5 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]
    assert np.allclose(y[0, :, 10, 10].numpy(), want, atol=1e-5)


def test_skew320_and_legacy_amg_are_square_and_amg_is_not_normalised():
    assert tuple(apply_policy(_const(60, 120), SSCD_POLICIES["sscd-skew320"]).shape) == (1, 3, 320, 320)
    y = apply_policy(_const(60, 120, 0.25), SSCD_POLICIES["legacy-amg"])
    assert tuple(y.shape) == (1, 3, 224, 224)
    assert torch.allclose(y, torch.full_like(y, 0.25), atol=1e-6)


def test_legacy_dcr_resize_256_centre_crop_224_half_normalisation():
    # left half black, right half white, 100 x 400: resized to 256 x 1024, the centre 224 columns
    # straddle the middle, so the crop is half -1 (black) and half +1 (white).
    x = torch.zeros(1, 3, 100, 400)
    x[..., 200:] = 1.0
    y = apply_policy(x, SSCD_POLICIES["legacy-dcr"])
    assert tuple(y.shape) == (1, 3, 224, 224)
    assert torch.allclose(y[..., :, :100], torch.full_like(y[..., :, :100], -1.0), atol=1e-4)
    assert torch.allclose(y[..., :, 124:], torch.full_like(y[..., :, 124:], 1.0), atol=1e-4)


def test_preprocessing_is_differentiable():
    x = torch.rand(1, 3, 40, 50, requires_grad=True)
    apply_policy(x, SSCD_POLICIES["legacy-dcr"]).sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
