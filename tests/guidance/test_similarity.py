"""sigma_t: content (descriptor + neighbours), pixel (-nL2), motion proxy."""

import numpy as np
import pytest
import torch

from diffmem.errors import DiffmemError
from diffmem.guidance.similarity import (ContentSimilarity, MemoryNeighbours, MotionProxyPolicy, MotionSimilarity,
                                         PixelSimilarity, motion_proxy, pick_caption, proxy_training_windows,
                                         proxy_windows)

from _amg_toy import RandomDescriptor, frames_of, smooth_pattern


def _content_setup():
    desc = RandomDescriptor()
    pats = [smooth_pattern(s) for s in (1, 2, 3)]
    vecs, ids, caps, frames = [], [], [], []
    for n, p in enumerate(pats):
        v = desc.encode(frames_of(p))
        for f in range(len(v)):
            vecs.append(v[f]); ids.append(f"item{n}"); caps.append(f"caption {n}"); frames.append(f)
    return desc, pats, MemoryNeighbours(np.stack(vecs), ids, caps, frames)


def test_content_sigma_is_max_over_frames_of_nearest_dot():
    desc, pats, nb = _content_setup()
    # a generated clip: frames of item 1, slightly perturbed, and a novel frame first
    x = ((pats[1] + 1) / 2).permute(1, 2, 3, 0).clone()
    x[0] = torch.rand(x.shape[1:], generator=torch.Generator().manual_seed(9))
    x = x + 0.01 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    x = x[None].requires_grad_(True)
    sim = ContentSimilarity(desc, nb, caption_mode="neighbour")
    sigma, info = sim(x)
    # independent: every generated frame against every stored vector
    q = desc.embed(x[0].permute(0, 3, 1, 2)).detach().numpy()
    allv = nb.vectors(np.arange(len(nb)))
    s = q @ allv.T
    assert sigma.item() == pytest.approx(s.max(), abs=1e-5)
    assert info.ids == ["item1"] and info.captions == ["caption 1"]
    assert info.at[0] == int(np.unravel_index(s.argmax(), s.shape)[0]) and info.at[0] != 0
    # gradient exists and matches a finite difference along a random direction
    (g,) = torch.autograd.grad(sigma.sum(), x)
    d = torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
    h = 1e-3
    with torch.no_grad():
        sp = sim(x + h * d)[0].item()
        sm = sim(x - h * d)[0].item()
    assert (g * d).sum().item() == pytest.approx((sp - sm) / (2 * h), rel=2e-2, abs=1e-4)



def test_content_gradient_quantity_is_the_mean_over_frames_and_reaches_every_frame():
    desc, pats, nb = _content_setup()
    x = ((pats[2] + 1) / 2).permute(1, 2, 3, 0).clone()
    x = (x + 0.02 * torch.randn(x.shape, generator=torch.Generator().manual_seed(4)))[None].requires_grad_(True)
    sim = ContentSimilarity(desc, nb)
    q = desc.embed(x[0].permute(0, 3, 1, 2)).detach().numpy()
    best = (q @ nb.vectors(np.arange(len(nb))).T).max(1)  # each frame's nearest stored vector, by brute force
    g_mean = sim.for_gradient(x)
    assert g_mean.item() == pytest.approx(best.mean(), abs=1e-5)
    (grad_mean,) = torch.autograd.grad(g_mean.sum(), x)
    (grad_max,) = torch.autograd.grad(sim(x)[0].sum(), x)
    per_frame = lambda g: g[0].abs().flatten(1).sum(1)  # noqa: E731
    assert (per_frame(grad_mean) > 0).all()            # every frame is pushed
    assert int((per_frame(grad_max) > 0).sum()) == 1   # the max reaches one frame only

def test_pick_caption():
    top = [("a", "cat"), ("b", "dog"), ("c", "dog"), ("b", "dog")]
    assert pick_caption(top, "neighbour") == "cat"
    assert pick_caption(top, "frequent") == "dog"  # two distinct items share "dog"
    assert pick_caption([("a", "cat"), ("b", "dog"), ("b", "dog")], "frequent") == "cat"  # one item counts once
    assert pick_caption([], "frequent") == ""
    with pytest.raises(DiffmemError):
        pick_caption(top, "most")


def test_pixel_similarity_is_minus_nl2_by_hand():
    # training samples: 4-value vectors; generated x = 0
    train = np.array([[0.1, 0.1, 0.1, 0.1], [0.2, 0.2, 0.2, 0.2], [0.0, 0.0, 0.0, 0.8]], np.float32)
    sim = PixelSimilarity(train, ["a", "b", "c"], ["ca", "cb", "cc"], k=2, alpha=0.5)
    x = torch.zeros(1, 1, 1, 4, 1, requires_grad=True)  # any shape with 4 values per sample
    sigma, info = sim(x)
    # RMS distances: a 0.1, b 0.2, c 0.4; S_2 = {a, b}: nL2 = 0.1 / (0.5 * 0.15) = 4/3
    assert sigma.item() == pytest.approx(-4 / 3, rel=1e-5)
    assert info.ids == ["a"]
    (g,) = torch.autograd.grad(sigma.sum(), x)
    assert torch.isfinite(g).all()
    with pytest.raises(DiffmemError, match="resolution"):
        sim(torch.zeros(1, 5))


def _shifted_texture(dx: int, dy: int, n=6, size=64, seed=0):
    rng = np.random.default_rng(seed)
    import cv2

    big = cv2.GaussianBlur(rng.random((size * 2, size * 2, 3)).astype(np.float32), (0, 0), 1.5)
    frames = [big[size // 2 - i * dy: size // 2 - i * dy + size, size // 2 - i * dx: size // 2 - i * dx + size]
              for i in range(n)]
    return torch.as_tensor(np.stack(frames))[None]


def test_motion_proxy_recovers_a_translation():
    pol = MotionProxyPolicy()
    # content moves +2 px in x and -1 px in y per frame at 64 px -> at ref_side 128: (4, -2)
    pooled = motion_proxy(_shifted_texture(2, -1), pol)
    assert pooled.shape == (1, 5, pol.grid, pol.grid, 2)
    mean = pooled[0, :, 1:-1, 1:-1].reshape(-1, 2).mean(0)  # inner cells (borders see replicate padding)
    assert mean[0].item() == pytest.approx(4.0, abs=0.5)
    assert mean[1].item() == pytest.approx(-2.0, abs=0.5)
    # still frames: no motion
    still = motion_proxy(_shifted_texture(0, 0), pol)
    assert still.norm(dim=-1).max().item() < pol.static_px  # below the "static" line


def test_proxy_windows_follow_the_motion_definition():
    from diffmem.features.motion import phi, window_descriptors

    pooled = torch.randn(1, 7, 8, 8, 2, generator=torch.Generator().manual_seed(0))
    win, motion = proxy_windows(pooled, k=4)
    ref = window_descriptors(phi(pooled[0].numpy()), k=4)
    assert np.allclose(win[0].numpy(), ref, atol=1e-5)
    peaks = pooled[0].norm(dim=-1).reshape(7, -1).max(1).values
    assert motion[0, 0].item() == pytest.approx(peaks[:4].mean().item(), rel=1e-5)


def test_motion_similarity_finds_the_copied_trajectory():
    pol = MotionProxyPolicy()
    right, down = _shifted_texture(2, 0, seed=1), _shifted_texture(0, 2, seed=2)
    clips = [(x[0].numpy() * 255).astype(np.uint8) for x in (right, down)]
    wins, meta = proxy_training_windows(clips, ["r", "d"], ["goes right", "goes down"], pol)
    assert {m[0] for m in meta} == {"r", "d"}
    sim = MotionSimilarity(wins, meta, policy=pol, caption_mode="neighbour")
    # the same motion in another appearance
    gen = _shifted_texture(2, 0, seed=7).requires_grad_(True)
    sigma, info = sim(gen)
    assert info.ids == ["r"] and info.captions == ["goes right"]
    assert sigma.item() > 0.8
    (g,) = torch.autograd.grad(sigma.sum(), gen)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    # a still clip never triggers
    s_still, _ = sim(_shifted_texture(0, 0, seed=7))
    assert s_still.item() == -1.0
