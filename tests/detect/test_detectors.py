"""The first-step detectors (anisotropy, sharpness, cross-attention entropy) against values worked out by
hand: their kernels on hand-made tensors, and the whole pass on a denoiser whose text difference and
Jacobian are known in closed form (`_known_denoiser.KnownAdapter`)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _known_denoiser import KnownAdapter, alternating, frame_constant

from diffmem.detect.detectors import (
    anisotropy_terms,
    attention_entropy,
    channel_cosine,
    detector_names,
    sharpness_terms,
)
from diffmem.detect.magnitude import first_step_records
from diffmem.errors import DiffmemError
from diffmem.models.sampler import SamplerConfig, initial_noise


def test_channel_cosine_is_taken_per_position_then_averaged():
    # 2 channels at 2 positions: position 0 a = (1, 0), b = (1, 1): cos 1/sqrt(2); position 1 a = (0, 1),
    # b = (1, 0): cos 0; mean 1/(2 sqrt(2)). The cosine of the flattened vectors would be 1/(sqrt(2) sqrt(3)).
    a = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # (B=1, C=2, positions=2)
    b = torch.tensor([[[1.0, 1.0], [1.0, 0.0]]])
    assert channel_cosine(a, b).item() == pytest.approx(1 / (2 * math.sqrt(2)))
    assert channel_cosine(a.flatten(1)[..., None], b.flatten(1)[..., None]).item() == pytest.approx(1 / math.sqrt(6))


def test_anisotropy_is_norm_plus_twice_the_cosine():
    # D_hi = 3 everywhere on 2 channels x 2 frames x 1 position: ||D|| = sqrt(4 * 9) = 6; eps_u and D at t_lo
    # parallel at every position: cos 1; A = 6 + 2 * 1 = 8. The motion part of a frame-constant D is 0, and
    # its cosine term 0 (zero vectors): A_motion = 0.
    d_hi = torch.full((1, 2, 2, 1, 1), 3.0)
    eps_u = torch.tensor([1.0, 2.0]).view(1, 2, 1, 1, 1).expand(1, 2, 2, 1, 1)
    terms = anisotropy_terms(d_hi, eps_u, 5 * eps_u, frame_axis=2)
    assert terms["anisotropy"].item() == pytest.approx(8.0)
    assert terms["anisotropy_cos"].item() == pytest.approx(1.0)
    assert terms["anisotropy_motion"].item() == pytest.approx(0.0)
    # anti-parallel at t_lo: A = 6 - 2
    assert anisotropy_terms(d_hi, eps_u, -eps_u, frame_axis=None)["anisotropy"].item() == pytest.approx(4.0)


def test_sharpness_divides_the_jvp_norm_by_sigma_squared():
    jd = torch.zeros(1, 1, 2, 1, 2)
    jd[0, 0, 0, 0] = torch.tensor([3.0, 4.0])  # frame 0: norm 5; frame 1: 0
    t = sharpness_terms(jd, sigma=0.5, frame_axis=2)
    assert t["sharpness"].item() == pytest.approx(5 / 0.25)
    # the frame-varying part: frame 0 (1.5, 2), frame 1 (-1.5, -2): norm sqrt(2 * 6.25) = 2.5 sqrt(2)
    assert t["sharpness_motion"].item() == pytest.approx(2.5 * math.sqrt(2) / 0.25)


def test_attention_entropy_averages_the_positions_before_the_entropy():
    # two positions attending to different tokens: the mean distribution (1/2, 1/2, 0) has entropy ln 2
    # (the mean of the per-position entropies would be 0)
    probs = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    assert attention_entropy(probs).item() == pytest.approx(math.log(2))
    uniform = torch.full((1, 4, 5), 0.2)
    assert attention_entropy(uniform).item() == pytest.approx(math.log(5))


def test_detector_names_and_unknown_detectors():
    assert detector_names(("sharpness", "anisotropy"), video=True) == [
        "anisotropy", "anisotropy_cos", "anisotropy_motion", "sharpness", "sharpness_motion"]
    assert detector_names(("anisotropy",), video=False) == ["anisotropy", "anisotropy_cos"]
    with pytest.raises(DiffmemError, match="unknown detector"):
        detector_names(("entropy",), video=True)


def _sigma2(t: int) -> float:
    # 1 - alpha-bar_t of the known denoiser's schedule (linear betas 0.00085..0.012 over 1000 steps),
    # computed here in float64 from the definition
    betas = np.linspace(0.00085, 0.012, 1000)
    return float(1 - np.prod(1 - betas[:t + 1]))


def test_anisotropy_on_a_known_denoiser():
    # eps(x, t, p) = 0.5 x + P t / 1000 ("t" mode): D(t) = P t / 1000, eps_u = 0.5 x. With 10 DDIM steps
    # the first timestep is 900 and the third-to-last 200, so N = ||P|| 0.9 and C = mean over positions of
    # cos_channels(x_T, P) (positive factors leave a cosine unchanged), computed here position by position.
    g = torch.Generator().manual_seed(1)
    pats = {f"p{k}": torch.randn(2, 4, 3, 3, generator=g) for k in range(3)}
    ad = KnownAdapter(pats, mode="t")
    cfg = SamplerConfig(num_steps=10)
    seeds = [0, 1]
    recs = first_step_records(ad, list(pats), seeds, cfg, batch_size=4, detectors=("anisotropy",))
    assert ad.rows_evaluated == 2 * (3 * 2 + 2)  # cond and the shared uncond, at t_hi and at t_lo
    noise = initial_noise(ad, seeds, cfg).numpy()
    for r in recs:
        p = pats[r["key"]].numpy()
        x = noise[seeds.index(r["seed"])]
        cos = [np.dot(x[:, f, i, j], p[:, f, i, j]) / (np.linalg.norm(x[:, f, i, j]) * np.linalg.norm(p[:, f, i, j]))
               for f in range(4) for i in range(3) for j in range(3)]
        n = 0.9 * np.linalg.norm(p)
        assert r["t"] == 900
        assert r["anisotropy_cos"] == pytest.approx(np.mean(cos), abs=1e-5)
        assert r["anisotropy"] == pytest.approx(n + 2 * np.mean(cos), rel=1e-5)
        pm, xm = p - p.mean(1, keepdims=True), x - x.mean(1, keepdims=True)
        cos_m = [np.dot(xm[:, f, i, j], pm[:, f, i, j]) / (np.linalg.norm(xm[:, f, i, j]) * np.linalg.norm(pm[:, f, i, j]))
                 for f in range(4) for i in range(3) for j in range(3)]
        assert r["anisotropy_motion"] == pytest.approx(0.9 * np.linalg.norm(pm) + 2 * np.mean(cos_m), rel=1e-5)
        assert r["wen"] == pytest.approx(n, rel=1e-5)  # the norm term is Wen et al.'s magnitude at t_hi


def test_sharpness_on_a_denoiser_with_a_known_jacobian():
    # eps(x, t, p) = 0.5 x + P |m(x)|, m = mean of the sample's latents ("x" mode): D = P |m|, and the
    # derivative of D in the direction v is P sign(m) mean(v); with v = D: (J_c - J_u) D = P m mean(P).
    # Sharpness = ||P|| |m| |mean(P)| / sigma_t^2 at t = 900; its motion variant uses the frame-varying
    # part of P. P = frame-constant (3, -4 on the two channels) + alternating (+-2): mean(P) = -1/2.
    p = frame_constant() + alternating()
    ad = KnownAdapter({"p": p}, mode="x")
    cfg = SamplerConfig(num_steps=10)
    recs = first_step_records(ad, ["p"], [0, 1, 2], cfg, detectors=("sharpness",))
    noise = initial_noise(ad, [0, 1, 2], cfg)
    s2 = _sigma2(900)
    assert float(p.mean()) == -0.5
    for r in recs:
        m = float(noise[r["seed"]].mean())
        assert r["sharpness"] == pytest.approx(float(p.norm()) * abs(m) * 0.5 / s2, rel=1e-4)
        assert r["sharpness_motion"] == pytest.approx(float(alternating().norm()) * abs(m) * 0.5 / s2, rel=1e-4)


def test_attention_needs_a_model_that_exposes_it():
    ad = KnownAdapter({"p": frame_constant()})
    with pytest.raises(DiffmemError, match="cross-attention"):
        first_step_records(ad, ["p"], [0], SamplerConfig(num_steps=10), detectors=("attention",))


def test_attention_probe_of_the_tiny_model():
    # every distribution sums to 1 over the prompt's tokens, padding gets 0, and the entropy the detector
    # reports is that of the positions' mean distribution, at most ln(number of tokens)
    from diffmem.models.tiny import TinyAdapter, TinyConfig, TinyModel, build_vocab

    torch.manual_seed(0)
    model = TinyModel(TinyConfig(size=16, frames=2, channels=(8, 16), blocks=1, text_dim=16, latent_channels=8,
                                 vocab=build_vocab(["a cat on grass", "a dog"])))
    with torch.no_grad():
        model.denoiser.xattn.attn.in_proj_bias.normal_()  # a freshly built layer attends uniformly
    ad = TinyAdapter(model)
    recs = first_step_records(ad, ["a cat on grass", "a dog"], [0, 1], SamplerConfig(num_steps=10),
                              detectors=("attention",))
    with ad.attention_probe() as probe, torch.no_grad():
        ad.predict_noise(torch.randn(2, *ad.latent_shape()), 500, ad.encode_prompt(["a cat on grass", "a dog"]))
    w = probe[-1]
    assert w.shape == (2, 2 * 2 * 2, 12)  # frames x half-resolution positions, max_tokens
    assert torch.allclose(w.sum(-1), torch.ones(2, 8))
    assert (w[0, :, 4:] == 0).all() and (w[1, :, 2:] == 0).all()  # 4 and 2 words
    assert model.denoiser.xattn.record is None  # the probe is removed after the block
    for r in recs:
        k = len(r["key"].split())
        assert 0 < r["attention_entropy"] <= math.log(k) + 1e-6
        assert r["attention_entropy_norm"] == pytest.approx(r["attention_entropy"] / math.log(k), rel=1e-5)


def test_normalised_attention_entropy_and_the_length_baseline():
    from diffmem.detect.detectors import attention_entropy_norm, prompt_words

    # uniform over 4 of 6 token slots (2 padding): H = ln 4, normalised 1; one token: 0
    probs = torch.zeros(2, 3, 6)
    probs[0, :, :4] = 0.25
    probs[1, :, 0] = 1.0
    assert attention_entropy_norm(probs).tolist() == pytest.approx([1.0, 0.0])
    assert prompt_words("a cat, museum archive") == 4 and prompt_words("") == 0
