"""The "amg-sd-2024" preset (AMG as its authors' Stable Diffusion code runs it) against the arithmetic
re-derived from DESIGN.md's description: lambda_t, s1 and s2, the time-varying dissimilarity scale, the
y_N rule, and one whole step on a hand-built model whose similarity and gradient are known."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from diffmem.guidance.authors import AuthorsSDHook, repeated_caption, sd2024_lambda, sd2024_scales, sd2024_sim_scale


def test_lambda_rises_from_0_3_to_0_4():
    assert sd2024_lambda(1000) == pytest.approx(0.3 + 0.1 * math.exp(-5))
    assert sd2024_lambda(0) == pytest.approx(0.4)


def test_despecification_and_dedup_scales_by_hand():
    # s0 = 7.5: room 6.5. sigma 0.4: s1 = 5.2, s2 = min(1.3, 1.3 / 0.3 * 0.4) = 1.3; sigma 0.2: s1 = 2.6,
    # s2 = min(3.9, 13 * 0.2) = 2.6; sigma -0.1: no despecification, s2 = max(min(6.5, negative), 0) = 0;
    # sigma 0.6: s1 = min(6.5, 7.8) = 6.5, s2 = 0
    s1, s2 = sd2024_scales(torch.tensor([0.4, 0.2, -0.1, 0.6]), 7.5)
    assert s1.tolist() == pytest.approx([5.2, 2.6, 0.0, 6.5])
    assert s2.tolist() == pytest.approx([1.3, 2.6, 0.0, 0.0])


def test_dissimilarity_scale_grows_about_360_times_toward_t_0():
    # sqrt(1 - 0.99) * 100 * (0.5 - 0.3) * exp(1000 / 170) = 0.1 * 20 * 358.97
    assert float(sd2024_sim_scale(torch.tensor(0.5), 0, 0.99)) == pytest.approx(2 * math.exp(1000 / 170))
    ratio = float(sd2024_sim_scale(torch.tensor(0.5), 0, 0.5) / sd2024_sim_scale(torch.tensor(0.5), 1000, 0.5))
    assert ratio == pytest.approx(math.exp(1000 / 170)) and 355 < ratio < 362


def test_the_dedup_caption_is_one_repeated_by_more_than_20_items():
    many = [(f"a{i}", "a photo of X") for i in range(21)]
    frames_of_one = [("b", "a video of Y")] * 40  # one item's 40 frames count once
    assert repeated_caption(frames_of_one + many) == "a photo of X"
    assert repeated_caption(frames_of_one + many[:20]) == ""


class _LinearModel:
    """latents (B, 3, F, H, W) decode to frames (B, F, H, W, 3) unchanged; eps(x, t, e) = 0.5 x + e."""

    def __init__(self):
        self.calls = []

    def decode(self, z):
        return z.permute(0, 2, 3, 4, 1)

    def encode_prompt(self, prompts):
        return torch.stack([torch.full((1,), 0.25 if p else 0.0) for p in prompts])

    def predict_noise(self, x, t, emb):
        self.calls.append(len(x))
        return 0.5 * x + emb.view(-1, 1, 1, 1, 1)


class _MeanSimilarity:
    """sigma = mean of the frames, the same for the gradient; neighbours: 25 items captioned "dup"."""

    kind = "content"
    threshold = None

    def __call__(self, frames):
        return frames.flatten(1).mean(1), SimpleNamespace(at=[0] * len(frames), ids=["n0"] * len(frames))

    def for_gradient(self, frames):
        return frames.flatten(1).mean(1)

    def neighbour_captions(self, frames, at, k):
        return [[(f"i{j}", "dup") for j in range(25)] for _ in range(len(frames))]


def test_one_whole_step_by_hand():
    # x_t = 1 everywhere (N = 3 x 2 x 2 x 2 = 24 elements), abar = 0.64, t = 500, s0 = 7.5; eps_c = 0.5 + 0.75,
    # eps_u = 0.5 (the model's 0.5 x + e, cond e = 0.75), D = 0.75; eps_hat = 0.5 + 7.5 * 0.75 = 6.125.
    # The descriptor sees 2 x0 - 1 with x0 = (1 - 0.6 eps) / 0.8: sigma = 2 (1 - 0.6 * 6.125) / 0.8 - 1 = -7.6875
    # < 0: no despecification (s1 = 0); s2 = max(min(6.5, 6.5 / 0.3 * sigma), 0) = 0. So eps' = eps_hat, and
    # sigma' = sigma < lambda: no dissimilarity: the step returns eps_hat. Then a positive sigma (x_t = 4).
    model = _LinearModel()
    hook = AuthorsSDHook(_MeanSimilarity())

    def state(x):
        x_t = torch.full((1, 3, 2, 2, 2), x)
        eps_c, eps_u = 0.5 * x_t + 0.75, 0.5 * x_t
        return SimpleNamespace(eps_uncond=eps_u, eps_cond=eps_c, eps_guided=eps_u + 7.5 * (eps_c - eps_u),
                               x_t=x_t, alpha_bar_t=0.64, t=500, index=0, guidance_scale=7.5, adapter=model,
                               cond_embeddings=torch.full((1, 1), 0.75), sample_indices=[0], prompts=["p"], seeds=[0])

    st = state(1.0)
    out = hook(st)
    torch.testing.assert_close(out, st.eps_guided)
    rec = hook.records[0][-1]
    assert rec.sigma["content"] == pytest.approx(2 * (1 - 0.6 * 6.125) / 0.8 - 1) and rec.terms == []
    # x_t = 1.25 and abar = 0.99 (sqrt 0.995, sqrt(1 - abar) 0.1): eps_hat = 0.625 + 5.625 = 6.25,
    # x0 = (1.25 - 0.625) / 0.995 = 0.628, sigma = 2 x0 - 1 = 0.256: every term fires
    hook = AuthorsSDHook(_MeanSimilarity())
    st = state(1.25)
    st.alpha_bar_t = 0.99
    sa, s1m = math.sqrt(0.99), math.sqrt(0.01)
    x0 = (1.25 - s1m * 6.25) / sa
    sigma = 2 * x0 - 1
    s1 = min(6.5, 13 * sigma)
    left = 6.5 - s1
    s2 = max(min(left, left / 0.3 * sigma), 0.0)
    # y_N = "dup" (25 items): eps(x_t, y_N) - eps_u = 0.25
    eps1 = 6.25 - s1 * 0.75 - s2 * 0.25
    x0n = (1.25 - s1m * eps1) / sa
    sigma_n = 2 * x0n - 1
    # d sigma' / d x_t per element = 2 / (sqrt(abar) N), N = 24
    grad = 2 / (sa * 24)
    lam = 0.3 + 0.1 * math.exp(-0.005 * 500)
    scale = s1m * 100 * (sigma_n - 0.3) * math.exp(500 / 170) if sigma_n > lam else 0.0
    out = hook(st)
    assert 0 < sigma < 0.5 and s2 > 0 and sigma_n > lam  # the case exercises every term
    torch.testing.assert_close(out, torch.full_like(out, eps1 + scale * grad), rtol=1e-5, atol=1e-5)
    rec = hook.records[0][-1]
    assert rec.terms == ["spe", "dup", "sim"] and rec.y_n == "dup"
    assert rec.s1 == pytest.approx(s1, rel=1e-5) and rec.s2 == pytest.approx(s2, rel=1e-5)  # float32
    # the caption stays on for 10 steps even when the neighbours no longer repeat one
    hook.similarities[0].neighbour_captions = lambda f, a, k: [[("x", "other")]]
    for _ in range(9):
        hook(st)
    assert hook.records[0][-1].y_n == "dup"
    hook(st)
    assert hook.records[0][-1].y_n == ""


def test_the_preset_runs_through_amg_evaluate_and_generate(tmp_path):
    # the preset as a variant of the comparison, and through `diffmem generate --amg --amg-preset`, on the
    # toy memorizer; its traces record the preset
    import json
    import sys
    from pathlib import Path

    from diffmem.studies.amg import EvalConfig, evaluate_amg, generate_with_amg
    from diffmem.studies.generate import GenerateConfig

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _amg_toy import Memorizer, write_toy_training_set

    adapter = Memorizer(write_toy_training_set(tmp_path / "toy"))
    res = evaluate_amg(adapter, tmp_path / "toy" / "prompts.jsonl", tmp_path / "toy", tmp_path / "ev",
                       EvalConfig(n=1, steps=4, guidance=3.0, variants=("baseline", "amg-sd-2024")))
    assert [r["variant"] for r in res["table"]] == ["baseline", "amg-sd-2024"]
    trace = json.loads(next((tmp_path / "ev" / "variants" / "amg-sd-2024" / "samples").glob("*.amg.json")).read_text())
    assert trace["config"]["preset"] == "amg-sd-2024" and trace["config"]["dup_hold"] == 10
    generate_with_amg(adapter, tmp_path / "toy" / "prompts.jsonl", tmp_path / "gen",
                      GenerateConfig(n=1, steps=4, guidance=3.0), tmp_path / "toy", preset="amg-sd-2024")
    gen = json.loads((tmp_path / "gen" / "generation.json").read_text())
    assert gen["extra_settings"]["amg"]["settings"] == {"preset": "amg-sd-2024"}
