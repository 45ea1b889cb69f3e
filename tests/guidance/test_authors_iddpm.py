"""The "amg-iddpm-2024" preset (AMG as its authors' CIFAR-10 iDDPM code runs it) against arithmetic
re-derived from DESIGN.md's description: lambda(t), the posterior variance, nL2 of x_t against noised
training samples and its gradient with the denominator held fixed, the start / trigger / pause rules, and
the posterior mean's shift."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from diffmem.errors import DiffmemError
from diffmem.guidance import authors
from diffmem.guidance.authors import AuthorsIDDPMHook, ddpm_posterior_variance, iddpm2024_lambda, noised_nl2


def test_lambda_falls_from_1_95_to_1_5_toward_t_0():
    assert iddpm2024_lambda(0) == pytest.approx(1.5)
    assert iddpm2024_lambda(1000) == pytest.approx(1.95 - 0.45 * math.exp(-25))
    assert iddpm2024_lambda(40) == pytest.approx(1.95 - 0.45 * math.exp(-1))


def test_posterior_variance_by_hand():
    # abar_t 0.5, abar_prev 0.8: beta = 1 - 0.625 = 0.375; var = 0.375 * 0.2 / 0.5 = 0.15
    assert ddpm_posterior_variance(0.5, 0.8) == pytest.approx(0.15)
    assert ddpm_posterior_variance(0.9, 1.0) == 0.0  # the last step adds no noise, and no shift


def test_nl2_against_noised_training_samples_and_its_gradient_by_hand():
    train = torch.tensor([[1.0, 1, 1, 1], [2, 2, 2, 2], [10, 10, 10, 10]])
    x = torch.zeros(1, 4)
    # abar 1, no noise: RMS distances 1, 2, 10; k = 2: denominator 0.5 * (1 + 2) / 2 = 0.75, nL2 = 4/3;
    # d l2(x, z1) / dx = (x - z1) / (4 * l2) = -1/4 per value, over the fixed denominator: -1/3
    nl2, grad, nn = noised_nl2(x, train, 1.0, torch.zeros_like(train), k=2)
    assert float(nl2[0]) == pytest.approx(4 / 3) and int(nn[0]) == 0
    assert grad[0].tolist() == pytest.approx([-1 / 3] * 4)
    # abar 0.25, noise 1: noised = 0.5 z + sqrt(0.75): distances 0.5 + .866, 1 + .866, 5 + .866
    nl2, _, _ = noised_nl2(x, train, 0.25, torch.ones_like(train), k=2)
    c = math.sqrt(0.75)
    assert float(nl2[0]) == pytest.approx((0.5 + c) / (0.5 * ((0.5 + c) + (1 + c)) / 2))


class DDPMScheduler:  # the class name the preset checks; previous timestep 100 earlier
    def previous_timestep(self, t):
        return t - 100


def _state(index, t, x, sched=None):
    adapter = SimpleNamespace(alpha_bar=lambda tt: math.exp(-tt / 1000))
    return SimpleNamespace(index=index, t=t, x_t=x, alpha_bar_t=math.exp(-t / 1000), adapter=adapter,
                           scheduler=sched or DDPMScheduler(), sample_indices=[0], prompts=[""], seeds=[0])


def test_start_trigger_pause_and_the_mean_shift(monkeypatch):
    """One sample over 20 steps (t = 1900 ... 0) with scripted nL2 values and gradient g = 1 everywhere:
    unguided until nL2 < 1.5, guided while nL2 < lambda(t), 10 steps unmeasured after 3 untriggered ones."""
    script = {0: 1.60, 1: 1.45, 2: 1.99, 3: 1.99, 4: 1.99, 15: 1.70, 16: 1.20}  # else 1.99
    now = {"step": None}

    def fake(x_t, train, alpha_bar_t, noise, **kw):
        return (torch.tensor([script.get(now["step"], 1.99)], dtype=torch.float64), torch.ones_like(x_t),
                torch.tensor([1]))

    monkeypatch.setattr(authors, "noised_nl2", fake)
    hook = AuthorsIDDPMHook(torch.zeros(3, 2), ["a", "b", "c"])
    x = torch.zeros(1, 2)
    shifts = []
    for i in range(20):
        t = 1900 - 100 * i
        now["step"] = i
        st = _state(i, t, x)
        assert hook(st) is None  # the noise prediction is not changed
        shifts.append(hook.after_step(st, torch.zeros(1, 2)))
    recs = hook.records[0]
    measured = [r.step for r in recs if r.sigma["pixel"] is not None]
    # steps 0-4 measured; 3 untriggered (2, 3, 4) -> steps 5-14 paused; 15 onward measured again
    assert measured == [0, 1, 2, 3, 4] + list(range(15, 20))
    # step 0: 1.6 < lambda but not started yet; 15 (t 400): 1.70 < lambda(400) = 1.95 - 0.45 e^-10; 16: 1.20;
    # 17-19: 1.99 >= lambda (at most 1.95)
    assert [r.step for r in recs if r.triggered] == [1, 15, 16]
    assert [r.neighbour for r in recs][:2] == ["b", "b"] and recs[5].neighbour == ""
    # step 1: t = 1800, abar = e^-1.8, prev 1700: shift = var * 8e4 * (lambda - 1.45) * 1
    ab, ab_prev = math.exp(-1.8), math.exp(-1.7)
    var = (1 - ab / ab_prev) * (1 - ab_prev) / (1 - ab)
    want = var * 8e4 * (iddpm2024_lambda(1800) - 1.45)
    assert shifts[1][0].tolist() == pytest.approx([want, want], rel=1e-6)
    assert shifts[0].abs().sum() == 0 and shifts[2].abs().sum() == 0
    ab, ab_prev = math.exp(-0.3), math.exp(-0.2)
    var = (1 - ab / ab_prev) * (1 - ab_prev) / (1 - ab)
    assert float(shifts[16][0, 0]) == pytest.approx(var * 8e4 * (iddpm2024_lambda(300) - 1.20), rel=1e-6)
    assert recs[1].sigma["pixel"] == pytest.approx(-1.45) and recs[1].lam["pixel"] == pytest.approx(-iddpm2024_lambda(1800))


def test_ddim_sampling_is_refused_with_the_option_to_use():
    hook = AuthorsIDDPMHook(torch.zeros(3, 2), ["a", "b", "c"])

    class DDIMScheduler:
        pass

    with pytest.raises(DiffmemError, match="--scheduler ddpm"):
        hook(_state(0, 500, torch.zeros(1, 2), DDIMScheduler()))


def test_the_preset_runs_through_generate_on_the_toy_memorizer(tmp_path):
    """`diffmem generate --amg --amg-preset amg-iddpm-2024 --scheduler ddpm` on the toy memorizer (pixel
    space): its neighbours are the deduplicated training set (the cat clip's three copies count once), the
    chain is guided once it comes near the memorized clip, and DDIM sampling is refused before any work."""
    import json
    import sys
    from pathlib import Path

    from diffmem.guidance.reference import sample_space_training
    from diffmem.studies.amg import generate_with_amg
    from diffmem.studies.generate import GenerateConfig

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _amg_toy import DUP, Memorizer, smooth_pattern, write_toy_training_set

    adapter = Memorizer(write_toy_training_set(tmp_path / "toy"))
    lat, ids = sample_space_training(tmp_path / "toy", adapter, {"v1": "v0", "v2": "v0"})
    assert ids == ["v0", "v3"] and tuple(lat.shape) == (2, 3, 4, 16, 16)
    rms = [float((lat[0] - smooth_pattern(k)).pow(2).mean().sqrt()) for k in (1, 2)]  # cat, dog patterns
    assert rms[0] < 0.15 and rms[1] > 0.5  # the cat clip, through mp4 (lossy: 0.10 RMS at 16 px) and back
    with pytest.raises(DiffmemError, match="--scheduler ddpm"):
        generate_with_amg(adapter, tmp_path / "toy" / "prompts.jsonl", tmp_path / "ddim",
                          GenerateConfig(n=1, steps=10, guidance=3.0), tmp_path / "toy", preset="amg-iddpm-2024")
    assert not (tmp_path / "ddim" / "generation.json").exists()
    generate_with_amg(adapter, [DUP], tmp_path / "gen", GenerateConfig(n=1, steps=10, guidance=3.0, scheduler="ddpm"),
                      tmp_path / "toy", preset="amg-iddpm-2024")
    trace = json.loads(next((tmp_path / "gen" / "samples").glob("*.amg.json")).read_text())
    assert trace["config"]["preset"] == "amg-iddpm-2024" and trace["config"]["n_train"] == 2
    sigma = trace["trace"]["sigma"]["pixel"]
    assert len(sigma) == 10 and all(s is None or s < 0 for s in sigma)


def test_the_preset_is_a_variant_of_amg_evaluate_with_ddpm_sampling(tmp_path):
    """`diffmem amg evaluate --scheduler ddpm --ablations baseline amg-iddpm-2024` compares it with plain DDPM
    sampling on the same seeds; with DDIM the variant is refused before any sample is made."""
    import json
    import sys
    from pathlib import Path

    from diffmem.studies.amg import EvalConfig, evaluate_amg

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _amg_toy import Memorizer, write_toy_training_set

    adapter = Memorizer(write_toy_training_set(tmp_path / "toy"))
    with pytest.raises(DiffmemError, match="--scheduler ddpm"):
        evaluate_amg(adapter, tmp_path / "toy" / "prompts.jsonl", tmp_path / "toy", tmp_path / "ddim",
                     EvalConfig(n=1, steps=4, guidance=3.0, variants=("baseline", "amg-iddpm-2024")))
    assert not (tmp_path / "ddim" / "variants").exists() and not (tmp_path / "ddim" / "cache").exists()
    res = evaluate_amg(adapter, tmp_path / "toy" / "prompts.jsonl", tmp_path / "toy", tmp_path / "ev",
                       EvalConfig(n=1, steps=4, guidance=3.0, scheduler="ddpm", variants=("baseline", "amg-iddpm-2024")))
    assert [r["variant"] for r in res["table"]] == ["baseline", "amg-iddpm-2024"]
    gen = json.loads((tmp_path / "ev" / "variants" / "amg-iddpm-2024" / "generation.json").read_text())
    assert gen["settings"]["scheduler"] == "ddpm" and gen["extra_settings"]["amg"]["config"]["preset"] == "amg-iddpm-2024"
