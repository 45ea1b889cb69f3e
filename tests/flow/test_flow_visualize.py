"""Flow colour coding: checked against the standard library's colorsys (a second HSV implementation)."""
import colorsys

import numpy as np
import pytest

from diffmem.flow.visualize import colour_wheel, flow_to_rgb, hsv_to_rgb


def test_hsv_to_rgb_matches_colorsys():
    rng = np.random.default_rng(0)
    h, s, v = rng.random(500), rng.random(500), rng.random(500)
    ours = hsv_to_rgb(h, s, v)
    ref = np.array([colorsys.hsv_to_rgb(*x) for x in zip(h, s, v)])
    np.testing.assert_allclose(ours, ref, atol=1e-12)


@pytest.mark.parametrize("flow, hue", [((1, 0), 0.0), ((0, 1), 0.25), ((-1, 0), 0.5), ((0, -1), 0.75),
                                      ((1, 1), 0.125)])
def test_direction_sets_hue(flow, hue):
    f = np.array(flow, float).reshape(1, 1, 2)
    rgb = flow_to_rgb(f, max_magnitude=np.hypot(*flow))[0, 0]
    ref = np.round(np.array(colorsys.hsv_to_rgb(hue, 1.0, 1.0)) * 255)
    np.testing.assert_array_equal(rgb, ref)


def test_magnitude_sets_saturation_and_zero_is_white():
    f = np.array([[[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [8.0, 0.0]]])
    rgb = flow_to_rgb(f, max_magnitude=4.0)[0]
    np.testing.assert_array_equal(rgb[0], [255, 255, 255])
    for px, sat in zip(rgb[1:], (0.25, 0.5, 1.0)):  # 8 px is above the saturating magnitude: clipped
        np.testing.assert_array_equal(px, np.round(np.array(colorsys.hsv_to_rgb(0.0, sat, 1.0)) * 255))


def test_default_saturation_is_shared_by_all_frames():
    flows = np.zeros((2, 1, 200, 2))
    flows[0, ..., 0] = 1.0
    flows[1, ..., 0] = 4.0  # the second frame moves faster: it must look more saturated than the first
    rgb = flow_to_rgb(flows)
    assert rgb.shape == (2, 1, 200, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0, 0, 1] > rgb[1, 0, 0, 1]  # less green/blue removed in frame 0 = paler red
    np.testing.assert_array_equal(rgb[1, 0, 0], [255, 0, 0])
    assert (flow_to_rgb(np.zeros((4, 4, 2))) == 255).all()  # no motion at all: white, no division by zero


def test_colour_wheel_legend():
    w = colour_wheel(65)
    np.testing.assert_array_equal(w[32, 32], [255, 255, 255])        # centre: no motion
    np.testing.assert_array_equal(w[32, 64], [255, 0, 0])            # right edge: rightward, saturated
    np.testing.assert_array_equal(w[0, 0], [255, 255, 255])          # outside the disc: background
