"""The other mitigations' rules against values worked out by hand: Jain et al.'s delayed / opposite
guidance, Wen et al.'s prompt-embedding optimisation, Jeon et al.'s SAIL."""
from __future__ import annotations

import math
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from diffmem.errors import DiffmemError
from diffmem.mitigate import (
    JAIN_PRESETS,
    DynamicTransition,
    EmbeddingOverride,
    NoiseOverride,
    SAILConfig,
    StaticTransition,
    WenConfig,
    optimize_embedding,
    optimize_noise,
    sail_loss,
)
from diffmem.models.sampler import SamplerConfig, sample

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "detect"))
from _known_denoiser import KnownAdapter, frame_constant  # noqa: E402


def _recorder(log):
    def hook(state):
        log.append((state.t, state.eps_uncond.clone(), state.eps_cond.clone(), state.eps_guided.clone()))
    return hook


def test_static_transition_guides_with_w_before_above_tau_and_cfg_below():
    # 10 DDIM steps: t = 900, 800, ..., 0; opposite guidance (tau 650, w -2): steps at 900, 800, 700 get
    # eps_u - 2 D, the rest eps_u + 7.5 D
    ad = KnownAdapter({"p": frame_constant()})
    log = []
    sample(ad, ["p"], [0], SamplerConfig(num_steps=10, guidance_scale=7.5),
           hooks=[JAIN_PRESETS["jain-opposite-2025"], _recorder(log)], decode=False, progress=False)
    assert [t for t, *_ in log] == list(range(900, -1, -100))
    for t, u, c, g in log:
        w = -2.0 if t > 650 else 7.5
        torch.testing.assert_close(g, u + w * (c - u))
    assert JAIN_PRESETS["jain-none-2025"] == StaticTransition(tau=500, w_before=0.0)


def test_dynamic_transition_switches_after_the_first_local_minimum():
    # ||D|| per step 5, 4, 3, 3.5, 2: the first k with d[k-1] < d[k-2] and d[k] > d[k-1] is k = 3; before
    # it the guided noise is eps_c (w = 1), from it on the run's own
    hook = DynamicTransition()
    out = []
    for k, d in enumerate([5.0, 4.0, 3.0, 3.5, 2.0]):
        u = torch.zeros(1, 4)
        c = torch.tensor([[d, 0.0, 0.0, 0.0]])
        g = u + 7.5 * (c - u)
        st = SimpleNamespace(eps_uncond=u, eps_cond=c, eps_guided=g, index=k, sample_indices=[0])
        r = hook(st)
        out.append(None if r is None else r[0, 0].item())
    assert hook.switched[0] == 3
    assert out[:3] == [5.0, 4.0, 3.0] and out[3] is None and out[4] is None


def test_wen_first_update_is_adamw_sign_step():
    # KnownAdapter "const": eps(x, e) - eps(x, "") = P, the embedding itself; with n = 2 seeds the loss is
    # one norm over both rows: sqrt(2) ||P||, its gradient sqrt(2) P / ||P||. AdamW's first step: decay
    # e (1 - lr wd), then lr g / (|g| + 1e-8) = lr sign(P); with the first token frozen, element 0 only decays.
    p = frame_constant() * 0.1
    p[0, 0, 0, 0] = 0.0  # a zero element: zero gradient, no update
    ad = KnownAdapter({"p": p})
    wen = WenConfig(iters=1, target_loss=None, freeze_first_token=False)
    e, trace = optimize_embedding(ad, "p", [0, 1], SamplerConfig(num_steps=10), wen)
    flat = p.flatten()
    want = flat * (1 - 0.05 * 0.01) - 0.05 * torch.sign(flat)
    torch.testing.assert_close(e.flatten(), want, atol=1e-6, rtol=0)
    assert trace[0] == pytest.approx(math.sqrt(2) * float(p.norm()), rel=1e-6)
    assert trace[1] == pytest.approx(math.sqrt(2) * float(want.norm()), rel=1e-5)
    q = frame_constant() * 0.1
    e2, _ = optimize_embedding(KnownAdapter({"p": q}), "p", [0, 1], SamplerConfig(num_steps=10),
                               WenConfig(iters=1, target_loss=None))  # the known adapter: first token is BOS
    assert e2.flatten()[0].item() == pytest.approx(q.flatten()[0].item() * (1 - 0.05 * 0.01))


def test_wen_stops_at_the_target_before_updating():
    p = frame_constant()
    ad = KnownAdapter({"p": p})
    loss0 = math.sqrt(2) * float(p.norm())
    e, trace = optimize_embedding(ad, "p", [0, 1], SamplerConfig(num_steps=10), WenConfig(target_loss=loss0 + 1))
    assert trace == [pytest.approx(loss0)] and torch.equal(e.flatten(), p.flatten())
    _, trace = optimize_embedding(ad, "p", [0, 1], SamplerConfig(num_steps=10), WenConfig(target_loss=None, iters=10))
    assert len(trace) == 11 and trace[-1] < trace[0]


def test_embedding_override_samples_with_the_given_embedding():
    ad = KnownAdapter({"p": frame_constant(), "q": frame_constant() * 2})
    over = EmbeddingOverride(ad, {"p": frame_constant().flatten() * 3})
    emb = over.encode_prompt(["q", "p", ""])
    torch.testing.assert_close(emb[0], ad.encode_prompt(["q"])[0])
    torch.testing.assert_close(emb[1], frame_constant().flatten() * 3)
    assert over.name == ad.name and over.latent_shape() == ad.latent_shape()


def test_wen_keeps_masked_padding_of_the_tiny_model_at_zero():
    from diffmem.models.tiny import TinyAdapter, TinyConfig, TinyModel, build_vocab

    torch.manual_seed(0)
    model = TinyModel(TinyConfig(size=16, frames=2, channels=(8, 16), blocks=1, text_dim=16, latent_channels=8,
                                 vocab=build_vocab(["a cat on grass"])))
    with torch.no_grad():
        model.denoiser.out.weight.normal_(0, 0.1)  # a fresh model's output layer is zero: no gradient
    ad = TinyAdapter(model)
    e0 = ad.encode_prompt(["a cat"])
    e, trace = optimize_embedding(ad, "a cat", [0, 1], SamplerConfig(num_steps=10),
                                  WenConfig(iters=3, target_loss=None))
    assert (e[0, 2:] == 0).all() and (e0[0, 2:] == 0).all()  # 2 words, the rest padding
    assert not torch.equal(e[0, :2], e0[0, :2]) and trace[-1] < trace[0]


# ---- SAIL (Jeon et al.): on the known denoiser D(x) = P g(x), with g = |mean(x)| ("x") or 1 ("const")


def test_sail_loss_by_hand():
    pat = frame_constant()
    ad = KnownAdapter({"mem": pat}, mode="x")
    z = torch.randn(3, *ad.shape, generator=torch.Generator().manual_seed(4))
    cond, unc = ad.encode_prompt(["mem"]), ad.encode_prompt([""])
    got = sail_loss(ad, z, 981, cond, unc, alpha=0.05)
    # D(z) = P |m(z)|, so u(z) = P / ||P|| and D(z + u) = P |m(z) + mean(P) / ||P|||
    norm_p = pat.norm().item()
    for i in range(3):
        m = z[i].mean().item()
        want = norm_p * abs(m + pat.mean().item() / norm_p) + 0.05 * z[i].norm().item()
        assert got[i].item() == pytest.approx(want, rel=1e-5)


def _candidates(seed, budget, shape):
    return torch.randn((budget, *shape), generator=torch.Generator().manual_seed(seed))


def test_sail_accepts_untouched_noise_below_the_threshold_in_candidate_order():
    pat = frame_constant()
    ad = KnownAdapter({"mem": pat}, mode="const")  # L(z) = ||P|| + alpha ||z||: only the noise's norm matters
    z0 = _candidates(7, 8, ad.shape)
    loss0 = [pat.norm().item() + 0.05 * z0[i].norm().item() for i in range(8)]
    thr = sorted(loss0)[3] + 1e-4  # exactly 4 candidates pass before any update
    cfg = SamplerConfig(num_steps=10)
    got, info = optimize_noise(ad, "mem", 2, 7, cfg, SAILConfig(threshold=thr, max_steps=3))
    first_two = [i for i in range(8) if loss0[i] <= thr][:2]
    assert torch.allclose(got, z0[first_two])
    assert info["rounds"] == 1 and info["losses"] == pytest.approx([loss0[i] for i in first_two], rel=1e-5)


def test_sail_retry_rules_faithful_and_diffmem():
    pat = frame_constant()
    ad = KnownAdapter({"mem": pat}, mode="const")
    z0 = _candidates(7, 8, ad.shape)
    loss0 = sorted(pat.norm().item() + 0.05 * z0[i].norm().item() for i in range(8))
    thr = loss0[0] + 1e-6  # one candidate passes; no updates (max_steps 0), so a round accepts exactly one
    cfg = SamplerConfig(num_steps=10)
    # their code: the failed round restarts from the same seed, and the same noise is accepted again
    got, info = optimize_noise(ad, "mem", 2, 7, cfg, SAILConfig(threshold=thr, max_steps=0))
    assert info["rounds"] == 2 and torch.equal(got[0], got[1])
    # diffmem's: fresh start points, two different noises
    got, info = optimize_noise(ad, "mem", 2, 7, cfg, SAILConfig(threshold=thr, max_steps=0, repeat_start=False,
                                                                 max_rounds=50))
    assert not torch.equal(got[0], got[1])
    # every 3rd failed round raises the threshold by 0.1 (and draws a new seed); the search is bounded
    start = loss0[0] - 0.25
    with pytest.raises(DiffmemError, match="accepted 0 of 1"):
        optimize_noise(ad, "mem", 1, 7, cfg, SAILConfig(threshold=start, max_steps=0, max_rounds=2))
    got, info = optimize_noise(ad, "mem", 1, 7, cfg, SAILConfig(threshold=start, max_steps=0, max_rounds=200))
    assert info["rounds"] > 3
    assert info["threshold"] == pytest.approx(start + 0.1 * ((info["rounds"] - 1) // 3))


def test_sail_for_target_and_the_noise_override():
    ad = KnownAdapter({"mem": frame_constant()})
    n = math.prod(ad.shape)
    c = SAILConfig.for_target(ad, 1.5)
    assert c.threshold == pytest.approx(0.05 * math.sqrt(n) + 1.5) and c.repeat_start is False
    noise = torch.full(ad.shape, 0.25)
    over = NoiseOverride(ad, {("mem", 3): noise})
    out = sample(over, ["mem", "mem"], [3, 4], SamplerConfig(num_steps=10), max_steps=0, decode=False, progress=False)
    assert torch.equal(out.latents[0], noise)                       # the chosen noise
    plain = sample(ad, ["mem"], [4], SamplerConfig(num_steps=10), max_steps=0, decode=False, progress=False)
    assert torch.equal(out.latents[1], plain.latents[0])            # seed 4's own noise
