"""amg_step against values worked out by hand from DESIGN.md's equations."""
import math

import pytest
import torch

from diffmem.errors import DiffmemError
from diffmem.guidance.schedules import ThresholdSchedule, make_schedule, schedule_value
from diffmem.guidance.terms import amg_step, dedup_scale, despecification_scale

T = torch.tensor
C = {"c1": 13.0, "c2": 13.0, "c3": 1.0}  # the constants where a test does not set its own


def _batch():
    # sample 0 is triggered (sigma 0.45 > 0.3), sample 1 is not (0.2)
    eps_c = T([[1.0, 2.0, 3.0], [2.0, 0.0, 1.0]])
    eps_u = T([[0.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    eps_dup = T([[0.5, 1.0, 0.0], [9.0, 9.0, 9.0]])
    grad = T([[1.0, -2.0, 0.5], [5.0, 5.0, 5.0]])
    return eps_c, eps_u, eps_dup, grad


def test_full_step_by_hand():
    eps_c, eps_u, eps_dup, grad = _batch()
    r = amg_step(eps_c, eps_u, T([0.45, 0.2]), 0.3, guidance_scale=7.5, alpha_bar_t=0.64,
                 eps_dup=eps_dup, grad_sigma=grad, c1=13.0, c2=13.0, c3=2.0)
    # s1 = clip(13 * 0.45, 0, 6.5) = 5.85; s2 = clip(5.85, 0, 7.5 - 5.85 - 1 = 0.65) = 0.65
    assert r.s1.tolist() == pytest.approx([5.85, 0.0])
    assert r.s2.tolist() == pytest.approx([0.65, 0.0])
    assert r.triggered.tolist() == [True, False]
    # eps_hat_0 = [0,1,1] + 7.5 [1,1,2] = [7.5, 8.5, 16]
    # G_spe = -5.85 [1,1,2]; G_dup = -0.65 [0.5,0,-1]; G_sim = 2 * sqrt(0.36) [1,-2,0.5] = [1.2,-2.4,0.6]
    expected0 = [7.5 - 5.85 - 0.325 + 1.2, 8.5 - 5.85 - 2.4, 16 - 11.7 + 0.65 + 0.6]
    assert r.eps[0].tolist() == pytest.approx(expected0)
    # untriggered sample: plain CFG, 1 + 7.5 * [1, -1, 0]
    assert r.eps[1].tolist() == pytest.approx([8.5, -6.5, 1.0])
    assert r.g_dup[0].tolist() == pytest.approx([-0.325, 0.0, 0.65])


def test_caps():
    s0 = 7.5
    # s1 <= s0 - 1
    assert despecification_scale(T([1.0]), s0, 13.0).item() == pytest.approx(6.5)
    # s1 + s2 <= s0 - 1: s1 took the whole budget
    s1 = despecification_scale(T([1.0]), s0, 13.0)
    assert dedup_scale(T([1.0]), s0, s1, 13.0).item() == 0.0
    # small sigma: no cap binds, s1 = s2 = 13 * 0.1
    s1 = despecification_scale(T([0.1]), s0, 13.0)
    assert s1.item() == pytest.approx(1.3)
    assert dedup_scale(T([0.1]), s0, s1, 13.0).item() == pytest.approx(1.3)
    # negative sigma (e.g. -nL2 of a pixel model) gives zero scales: only G_sim can act
    assert despecification_scale(T([-1.2]), s0, 13.0).item() == 0.0
    # despecification off: s2's cap is s0 - 1
    eps_c, eps_u, eps_dup, grad = _batch()
    r = amg_step(eps_c, eps_u, T([1.0, 1.0]), 0.3, guidance_scale=s0, alpha_bar_t=0.5, eps_dup=eps_dup,
                 terms=("dup",), c1=13.0, c2=13.0, c3=1.0)
    assert r.s1.tolist() == [0.0, 0.0]
    assert r.s2.tolist() == pytest.approx([6.5, 6.5])
    # with both on, the total guidance left, s0 - s1 - s2, is never below 1
    for sig in (0.05, 0.3, 0.5, 0.9, 3.0):
        r = amg_step(eps_c, eps_u, T([sig, sig]), -1.0, guidance_scale=s0, alpha_bar_t=0.5, eps_dup=eps_dup,
                     terms=("spe", "dup"), c1=13.0, c2=20.0, c3=1.0)
        assert (s0 - r.s1 - r.s2 >= 1 - 1e-6).all()
        assert (r.s1 <= s0 - 1 + 1e-6).all()


def test_full_despecification_leaves_unit_guidance():
    # s1 = s0 - 1 turns CFG into plain conditional prediction: eps_u + 1 (eps_c - eps_u) = eps_c
    eps_c, eps_u, _, _ = _batch()
    r = amg_step(eps_c, eps_u, T([1.0, 1.0]), 0.0, guidance_scale=7.5, alpha_bar_t=0.5, terms=("spe",),
                 c1=13.0, c2=13.0, c3=1.0)
    assert torch.allclose(r.eps, eps_c)


def test_switch_is_strict_and_per_sample():
    eps_c, eps_u, eps_dup, grad = _batch()
    cfg = eps_u + 7.5 * (eps_c - eps_u)
    # sigma == lambda: not triggered
    r = amg_step(eps_c, eps_u, T([0.3, 0.3]), 0.3, guidance_scale=7.5, alpha_bar_t=0.5, eps_dup=eps_dup,
                 grad_sigma=grad, **C)
    assert r.triggered.tolist() == [False, False]
    assert torch.equal(r.eps, cfg)
    # per-sample lambda
    r = amg_step(eps_c, eps_u, T([0.3, 0.3]), T([0.2, 0.4]), guidance_scale=7.5, alpha_bar_t=0.5,
                 eps_dup=eps_dup, grad_sigma=grad, **C)
    assert r.triggered.tolist() == [True, False]
    assert torch.equal(r.eps[1], cfg[1]) and not torch.equal(r.eps[0], cfg[0])
    # forced switch overrides sigma
    r = amg_step(eps_c, eps_u, T([0.0, 0.0]), 1.0, guidance_scale=7.5, alpha_bar_t=0.5, terms=("sim",),
                 grad_sigma=grad, triggered=T([True, True]), **C)  # c3 = 1
    assert torch.allclose(r.eps, cfg + math.sqrt(0.5) * grad)


def test_untriggered_nan_gradient_is_masked():
    eps_c, eps_u, _, grad = _batch()
    grad = grad.clone()
    grad[1] = float("nan")
    r = amg_step(eps_c, eps_u, T([0.9, 0.0]), 0.5, guidance_scale=3.0, alpha_bar_t=0.5, terms=("sim",),
                 grad_sigma=grad, **C)
    assert torch.isfinite(r.eps).all()


def test_g_sim_lowers_sigma():
    # sigma(x0) = <w, x0>, linear: grad_{x_t} sigma = w / sqrt(a) with eps fixed, and the step moves
    # x0_hat by -sqrt(1-a)/sqrt(a) * c3 sqrt(1-a) w / sqrt(a), so sigma drops by exactly c3 (1-a)/a |w|^2.
    torch.manual_seed(0)
    a, c3 = 0.3, 0.5
    w = torch.randn(1, 6)
    x_t = torch.randn(1, 6, requires_grad=True)
    eps = torch.randn(1, 6)

    def x0(xt, e):
        return (xt - math.sqrt(1 - a) * e) / math.sqrt(a)

    sigma = (w * x0(x_t, eps)).sum()
    (grad,) = torch.autograd.grad(sigma, x_t)
    assert torch.allclose(grad, w / math.sqrt(a))
    r = amg_step(eps, eps, sigma.detach().reshape(1), -10.0, guidance_scale=1.0, alpha_bar_t=a,
                 grad_sigma=grad, c1=13.0, c2=13.0, c3=c3, terms=("sim",), eps_guided=eps)
    new_sigma = (w * x0(x_t.detach(), r.eps)).sum()
    drop = sigma.item() - new_sigma.item()
    assert drop > 0
    assert drop == pytest.approx(c3 * (1 - a) / a * (w ** 2).sum().item(), rel=1e-5)

    # and for a non-linear similarity (cosine to a target), a small step lowers it too
    v = torch.nn.functional.normalize(torch.randn(1, 6), dim=1)
    xt = torch.randn(1, 6, requires_grad=True)
    s = (torch.nn.functional.normalize(x0(xt, eps), dim=1) * v).sum()
    (g,) = torch.autograd.grad(s, xt)
    r = amg_step(eps, eps, s.detach().reshape(1), -10.0, guidance_scale=1.0, alpha_bar_t=a, grad_sigma=g,
                 c1=13.0, c2=13.0, c3=0.05, terms=("sim",), eps_guided=eps)
    s_new = (torch.nn.functional.normalize(x0(xt.detach(), r.eps), dim=1) * v).sum()
    assert s_new.item() < s.item()


def test_missing_inputs_and_unknown_terms():
    eps_c, eps_u, _, _ = _batch()
    with pytest.raises(DiffmemError, match="eps_dup"):
        amg_step(eps_c, eps_u, T([1.0, 1.0]), 0.0, guidance_scale=2.0, alpha_bar_t=0.5, terms=("dup",), **C)
    with pytest.raises(DiffmemError, match="grad"):
        amg_step(eps_c, eps_u, T([1.0, 1.0]), 0.0, guidance_scale=2.0, alpha_bar_t=0.5, terms=("sim",), **C)
    with pytest.raises(DiffmemError, match="unknown AMG terms"):
        amg_step(eps_c, eps_u, T([1.0, 1.0]), 0.0, guidance_scale=2.0, alpha_bar_t=0.5, terms=("spe", "nope"), **C)


def test_a_term_subset_takes_its_constants_and_needs_only_its_inputs():
    eps_c, eps_u, eps_dup, grad = _batch()
    # spe and sim on, in any order: no eps_dup needed; c2 plays no part
    r = amg_step(eps_c, eps_u, T([0.5, 0.5]), 0.0, guidance_scale=7.5, alpha_bar_t=0.75, grad_sigma=grad,
                 terms=("sim", "spe"), c1=2.0, c2=99.0, c3=3.0)
    # s1 = 2 * 0.5 = 1; G_sim = 3 * 0.5 * grad
    cfg = eps_u + 7.5 * (eps_c - eps_u)
    assert torch.allclose(r.eps, cfg - 1.0 * (eps_c - eps_u) + 1.5 * grad)
    assert r.s2.tolist() == [0.0, 0.0] and torch.equal(r.g_dup, torch.zeros_like(eps_c))


def test_schedules_by_hand():
    exp = make_schedule("exponential")
    # the authors' lambda(t) = 0.3 + 0.1 exp(-0.005 t) over 1000 steps
    for t in (0, 1, 250, 999):
        assert exp(t, 1000) == pytest.approx(0.3 + 0.1 * math.exp(-0.005 * t))
    par = make_schedule("parabolic")
    assert par(0, 1000) == pytest.approx(0.4)
    assert par(500, 1000) == pytest.approx(0.3 + 0.1 * 0.25)
    assert par(1000, 1000) == pytest.approx(0.3)
    # rises as t -> 0
    assert par(100, 1000) > par(600, 1000) and exp(100, 1000) > exp(600, 1000)
    assert make_schedule("constant", value=0.7)(123, 1000) == 0.7
    # same shape for another T
    assert par(50, 100) == pytest.approx(par(500, 1000))
    # scaled to other units, e.g. a descriptor whose tau_c is 0.8 instead of 0.5
    s = ThresholdSchedule("parabolic").scaled(1.6)
    assert s(0, 1000) == pytest.approx(0.64)
    assert schedule_value("parabolic", 1.0, 0.3, 0.4) == pytest.approx(0.3)
    with pytest.raises(DiffmemError, match="unknown threshold schedule"):
        make_schedule("cosine")
