"""AMG's three guidance terms and one guided step, exactly as DESIGN.md writes them.

    eps_hat <- eps_hat + 1{sigma_t > lambda_t} (G_spe + G_dup + G_sim)
    s1    = clip(c1 sigma_t, 0, s0 - 1)
    G_spe = -s1 (eps_c - eps_u)                               despecification
    s2    = clip(c2 sigma_t, 0, s0 - s1 - 1)
    G_dup = -s2 (eps(x_t, y_N) - eps_u)                       caption deduplication
    G_sim = c3 sqrt(1 - abar_t) grad_{x_t} sigma_t            dissimilarity

Everything is per sample: `sigma` is (B,), the noise tensors are (B, ...). The caps keep the total
guidance non-negative: s0 - s1 - s2 >= 1, so the result never points away from the prompt.
When a term is switched off (ablation) its scale is 0, so s2's cap becomes s0 - 1.

`amg_step` is the one implementation of the terms: `guidance.hook.AMGHook` calls it at every step
(after computing eps(x_t, y_N) only when "dup" is on, and the gradient only when "sim" is on). The
constants c1, c2, c3 have no defaults here: they come from `guidance.config.AMGConfig`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..errors import DiffmemError

TERM_NAMES = ("spe", "dup", "sim")


def _per_sample(v: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """(B,) or scalar -> (B, 1, 1, ...) broadcastable against `like`."""
    v = torch.as_tensor(v, dtype=like.dtype, device=like.device)
    if v.ndim == 0:
        v = v.expand(like.shape[0])
    return v.reshape(-1, *([1] * (like.ndim - 1)))


def despecification_scale(sigma: torch.Tensor, guidance_scale: float, c1: float) -> torch.Tensor:
    """s1 = clip(c1 sigma, 0, s0 - 1) per sample."""
    return torch.clamp(c1 * sigma, min=0.0, max=max(guidance_scale - 1.0, 0.0))


def dedup_scale(sigma: torch.Tensor, guidance_scale: float, s1: torch.Tensor, c2: float) -> torch.Tensor:
    """s2 = clip(c2 sigma, 0, s0 - s1 - 1) per sample (s1 = 0 when despecification is off)."""
    cap = torch.clamp(guidance_scale - s1 - 1.0, min=0.0)
    return torch.minimum(torch.clamp(c2 * sigma, min=0.0), cap)


@dataclass
class AMGStepResult:
    """The guided noise and what each term did, per sample (zeros where not triggered or off)."""

    eps: torch.Tensor
    triggered: torch.Tensor  # bool (B,)
    s1: torch.Tensor         # (B,)
    s2: torch.Tensor         # (B,)
    g_spe: torch.Tensor
    g_dup: torch.Tensor
    g_sim: torch.Tensor


def amg_step(
    eps_cond: torch.Tensor,
    eps_uncond: torch.Tensor,
    sigma: torch.Tensor | float,
    lambda_t: torch.Tensor | float,
    *,
    guidance_scale: float,
    alpha_bar_t: float | torch.Tensor,
    eps_dup: torch.Tensor | None = None,
    grad_sigma: torch.Tensor | None = None,
    eps_guided: torch.Tensor | None = None,
    c1: float,
    c2: float,
    c3: float,
    terms: Sequence[str] = TERM_NAMES,
    triggered: torch.Tensor | None = None,
) -> AMGStepResult:
    """One AMG step: eps_hat + 1{sigma > lambda} (G_spe + G_dup + G_sim).

    eps_guided defaults to CFG, eps_u + s0 (eps_c - eps_u). eps_dup = eps(x_t, y_N) is needed when
    "dup" is in `terms`, grad_sigma = grad_{x_t} sigma_t when "sim" is (rows of untriggered samples
    may hold anything, e.g. zeros: they are masked). `triggered` overrides the switch (bool (B,)),
    e.g. for an always-on ablation or when a cheaper pre-switch already decided.
    """
    unknown = set(terms) - set(TERM_NAMES)
    if unknown:
        raise DiffmemError(f"unknown AMG terms {sorted(unknown)}; choose from {', '.join(TERM_NAMES)}")
    ref = eps_cond
    b = ref.shape[0]
    sigma = torch.as_tensor(sigma, dtype=ref.dtype, device=ref.device).reshape(-1)
    if sigma.numel() == 1:
        sigma = sigma.expand(b)
    if sigma.shape[0] != b:
        raise DiffmemError(f"sigma has {sigma.shape[0]} values for a batch of {b}")
    if eps_guided is None:
        eps_guided = eps_uncond + guidance_scale * (eps_cond - eps_uncond)
    if triggered is None:
        lam = torch.as_tensor(lambda_t, dtype=ref.dtype, device=ref.device)
        triggered = sigma > lam
    triggered = triggered.to(device=ref.device, dtype=torch.bool).reshape(-1)
    on = triggered.to(ref.dtype)
    zero = torch.zeros_like(sigma)

    s1 = despecification_scale(sigma, guidance_scale, c1) * on if "spe" in terms else zero
    g_spe = -_per_sample(s1, ref) * (eps_cond - eps_uncond)

    if "dup" in terms:
        if eps_dup is None:
            raise DiffmemError("AMG caption deduplication needs eps(x_t, y_N) (eps_dup)")
        s2 = dedup_scale(sigma, guidance_scale, s1, c2) * on
        g_dup = -_per_sample(s2, ref) * (eps_dup - eps_uncond)
    else:
        s2 = zero
        g_dup = torch.zeros_like(ref)

    if "sim" in terms:
        if grad_sigma is None:
            raise DiffmemError("AMG dissimilarity needs grad_{x_t} sigma_t (grad_sigma)")
        a = torch.as_tensor(alpha_bar_t, dtype=ref.dtype, device=ref.device)
        g_sim = c3 * torch.sqrt(1 - a) * grad_sigma.to(ref.dtype)
        # where(), not a product with the mask: untriggered rows of grad_sigma may be anything (NaN).
        g_sim = torch.where(_per_sample(triggered, ref).bool(), g_sim, torch.zeros_like(g_sim))
    else:
        g_sim = torch.zeros_like(ref)

    return AMGStepResult(eps=eps_guided + g_spe + g_dup + g_sim, triggered=triggered, s1=s1, s2=s2,
                         g_spe=g_spe, g_dup=g_dup, g_sim=g_sim)
