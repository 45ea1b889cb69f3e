"""RAFT wrapper: padding to multiples of 8, cropping back, rescaling, batching -- with a stand-in network,
since torchvision (and RAFT weights) are not available here."""
import importlib.util

import numpy as np
import pytest
import torch

from diffmem.errors import DiffmemError
from diffmem.flow.raft import RaftFlow


class CoordNet(torch.nn.Module):
    """Returns, as 'flow', each pixel's own (x, y) in the padded input; records what it was given."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, a, b, num_flow_updates=12):
        self.calls.append((tuple(a.shape), float(a.min()), float(a.max()), num_flow_updates))
        n, _, h, w = a.shape
        ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                                indexing="ij")
        return [torch.zeros(n, 2, h, w), torch.stack([xs, ys])[None].repeat(n, 1, 1, 1)]


class ConstNet(torch.nn.Module):
    def forward(self, a, b, num_flow_updates=12):
        n, _, h, w = a.shape
        f = torch.zeros(n, 2, h, w)
        f[:, 0], f[:, 1] = 1.0, 0.5
        return [f]


def test_pads_to_multiple_of_8_and_crops_top_left():
    net = CoordNet()
    frames = np.full((10, 30, 45, 3), 255, np.uint8)
    frames[0, 0, 0] = 0
    flow = RaftFlow(model=net, batch_size=4, iterations=7).video(frames)
    assert flow.shape == (9, 30, 45, 2)
    assert [c[0] for c in net.calls] == [(4, 3, 32, 48), (4, 3, 32, 48), (1, 3, 32, 48)]
    assert net.calls[0][1] == -1.0 and net.calls[0][2] == 1.0  # RAFT's input range
    assert all(c[3] == 7 for c in net.calls)
    # The crop keeps the original pixels: x runs 0..44, y 0..29 -- the padding was added right/bottom.
    np.testing.assert_array_equal(flow[3, 0, :, 0], np.arange(45))
    np.testing.assert_array_equal(flow[3, :, 0, 1], np.arange(30))


def test_shrunk_frames_give_flow_in_input_pixels():
    frames = np.zeros((3, 40, 80, 3), np.uint8)
    flow = RaftFlow(model=ConstNet(), max_side=40).video(frames)  # the network sees 20 x 40
    assert flow.shape == (2, 40, 80, 2)
    np.testing.assert_allclose(flow[..., 0], 2.0, atol=1e-5)  # 1 px at half width = 2 px
    np.testing.assert_allclose(flow[..., 1], 1.0, atol=1e-5)


def test_pair_and_too_short():
    est = RaftFlow(model=ConstNet())
    assert est.pair(np.zeros((16, 16, 3), np.uint8), np.zeros((16, 16, 3), np.uint8)).shape == (16, 16, 2)
    assert est.video(np.zeros((1, 16, 16, 3), np.uint8)).shape == (0, 16, 16, 2)


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="torchvision is installed")
def test_without_torchvision_the_error_says_what_to_do():
    with pytest.raises(DiffmemError, match="torchvision.*--flow dis"):
        RaftFlow(weights="default")
