"""The sampling loop against a denoiser whose outputs are known, and DDIM worked out by hand."""
from __future__ import annotations

import math

import pytest
import torch

from diffmem.errors import DiffmemError
from diffmem.models.sampler import SamplerConfig, StopSampling, initial_noise, iter_samples, sample

from _models_toy import ToyAdapter

CFG = SamplerConfig(num_steps=4, guidance_scale=3.0, scheduler="ddim")


def _ddim_step(x, eps, a_t, a_prev):
    # DDIM, eta = 0 (Song et al. 2021, eq. 12)
    x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
    return math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * eps


def test_guidance_and_ddim_steps_by_hand():
    ad = ToyAdapter()
    seen = []
    out = sample(ad, ["a cat"], [7], CFG, hooks=[lambda s: seen.append(s)], decode=False, progress=False)
    P = ad.pattern("a cat")
    x = torch.randn(ad.shape, generator=torch.Generator().manual_seed(7))[None]
    ts = [int(s.t) for s in seen]
    assert ts == [751, 501, 251, 1]  # DDIM "leading" spacing with steps_offset 1 over 1000 steps
    abar = ad.alphas_cumprod
    for i, s in enumerate(seen):
        torch.testing.assert_close(s.x_t, x)
        torch.testing.assert_close(s.eps_uncond, 0.5 * x)
        torch.testing.assert_close(s.eps_cond, 0.5 * x + P)
        torch.testing.assert_close(s.eps_guided, 0.5 * x + 3.0 * P)
        assert s.alpha_bar_t == pytest.approx(float(abar[s.t]))
        a_prev = float(abar[ts[i + 1]]) if i + 1 < len(ts) else float(abar[0])  # set_alpha_to_one=False
        x = _ddim_step(x, s.eps_guided, s.alpha_bar_t, a_prev)
    torch.testing.assert_close(out.latents, x, atol=1e-5, rtol=1e-5)
    assert out.steps_run == [4] and out.stopped == [False]


def test_hook_replaces_guided_noise_and_hooks_chain():
    ad = ToyAdapter()
    base = sample(ad, ["a cat"], [1], CFG, decode=False, progress=False).latents
    # eps := 0.5 x (the unconditional prediction) is the same as sampling the empty prompt unguided
    uncond = sample(ad, [""], [1], CFG, decode=False, progress=False).latents
    got = sample(ad, ["a cat"], [1], CFG, hooks=[lambda s: s.eps_uncond], decode=False, progress=False).latents
    torch.testing.assert_close(got, uncond)
    assert not torch.allclose(got, base)
    # the second hook sees what the first returned
    seen = []
    sample(ad, ["a cat"], [1], CFG, hooks=[lambda s: s.eps_guided * 0 + 1.0, lambda s: seen.append(s.eps_guided.clone())],
           decode=False, progress=False)
    assert all(torch.equal(e, torch.ones_like(e)) for e in seen)


def test_bad_hook_shape_is_an_error():
    with pytest.raises(DiffmemError, match="shape"):
        sample(ToyAdapter(), ["a"], [0], CFG, hooks=[lambda s: torch.zeros(3)], decode=False, progress=False)


def test_stop_sampling_and_max_steps_give_x_t():
    ad = ToyAdapter()
    xs = []

    def hook(s):
        xs.append(s.x_t.clone())
        if s.index == 1:
            raise StopSampling

    out = sample(ad, ["a", "b", "c"], [0, 1, 2], CFG, hooks=[hook], batch_size=2, decode=False, progress=False)
    assert out.steps_run == [1, 1, 1] and out.stopped == [True] * 3
    torch.testing.assert_close(out.latents[2:], xs[-1])  # the batch stopped at x_t of step 1
    calls = ad.calls
    capped = sample(ad, ["a", "b", "c"], [0, 1, 2], CFG, max_steps=1, decode=False, progress=False)
    assert ad.calls - calls == 2 * 3  # one guided step = cond + uncond rows
    torch.testing.assert_close(capped.latents, out.latents)
    assert capped.stopped == [False] * 3


@pytest.mark.parametrize("scheduler", ["ddim", "ddpm"])
def test_seed_gives_same_sample_in_any_batch(scheduler):
    ad = ToyAdapter()
    cfg = SamplerConfig(num_steps=3, guidance_scale=2.0, scheduler=scheduler)
    alone = sample(ad, ["b"], [11], cfg, decode=False, progress=False).latents
    mixed = sample(ad, ["a", "b", "c"], [5, 11, 11], cfg, batch_size=2, decode=False, progress=False).latents
    torch.testing.assert_close(mixed[1:2], alone)
    torch.testing.assert_close(mixed[2:3], sample(ad, ["c"], [11], cfg, decode=False, progress=False).latents)
    assert not torch.allclose(mixed[0], sample(ad, ["a"], [6], cfg, decode=False, progress=False).latents[0])


def test_ddpm_adds_noise_ddim_does_not():
    ad = ToyAdapter()
    noise = initial_noise(ad, [3])
    cfg = SamplerConfig(num_steps=2, guidance_scale=1.0, scheduler="ddpm")
    # two DDPM runs from the same start but different seeds (so different step noise) differ
    a = sample(ad, [""], [3], cfg, latents=noise, decode=False, progress=False).latents
    b = sample(ad, [""], [4], cfg, latents=noise, decode=False, progress=False).latents
    assert not torch.allclose(a, b)
    cfg = SamplerConfig(num_steps=2, guidance_scale=1.0, scheduler="ddim")
    a = sample(ad, [""], [3], cfg, latents=noise, decode=False, progress=False).latents
    b = sample(ad, [""], [4], cfg, latents=noise, decode=False, progress=False).latents
    torch.testing.assert_close(a, b)


def test_guidance_one_without_hooks_skips_the_unconditional_pass():
    ad = ToyAdapter()
    sample(ad, ["a", "b"], [0, 1], SamplerConfig(num_steps=3, guidance_scale=1.0), decode=False, progress=False)
    assert ad.calls == 2 * 3


def test_decode_and_images():
    ad = ToyAdapter(kind="image", shape=(3, 4, 4))
    out = sample(ad, ["x"], [0], CFG, progress=False)
    assert out.frames.shape == (1, 1, 4, 4, 3)
    assert 0 <= float(out.frames.min()) and float(out.frames.max()) <= 1


def test_input_errors():
    with pytest.raises(DiffmemError, match="seeds"):
        sample(ToyAdapter(), ["a", "b"], [0], CFG)
    with pytest.raises(DiffmemError, match="scheduler"):
        sample(ToyAdapter(), ["a"], [0], SamplerConfig(scheduler="euler"))
    assert list(iter_samples(ToyAdapter(), [], [], CFG)) == []
