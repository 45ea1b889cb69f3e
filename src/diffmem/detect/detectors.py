"""First-step memorization detectors beyond the magnitudes: anisotropy, sharpness, cross-attention entropy.

Each is computed at the start of sampling, on the seed's pure noise x_T, like the magnitudes' cheapest
setting, and each prompt's score is the mean over its n seeds. Notation: eps_c = eps(x, t, prompt),
eps_u = eps(x, t, ""), D = eps_c - eps_u, sigma_t = sqrt(1 - abar_t), the score s = -eps / sigma_t.
Formulas as the authors' code computes them (docs/related-methods.md: files, functions, constants):

- ``anisotropy`` (Asthana & Belagiannis, ICLR 2026): A = g1 N + g2 C with
  N = ||D(x_T, t_hi)||_2 (Wen et al.'s magnitude at the first timestep t_hi) and
  C = mean over latent positions of cos_channels(eps_u(x_T, t_lo), D(x_T, t_lo)): the cosine taken along
  the latent channels at each position, then averaged over positions; t_lo is the third-to-last timestep
  of the inference schedule (41 of SD's 50 DDIM steps), evaluated on the same x_T (no denoising).
  g1 = 1, g2 = 2 (their Stable Diffusion v1.4 setting). Cost: 2 more denoiser evaluations per sample
  (cond and uncond at t_lo; the uncond one is shared by every prompt of a seed).
- ``sharpness`` (Jeon, Kim & No, ICML 2025): S = ||(H_c - H_u) s_D||_2 at t_hi, with H = grad_x s the
  Hessian of the log-density and s_D = -D / sigma; since H = -J / sigma (J = d eps / d x),
  S = ||(J_c - J_u) D||_2 / sigma^2: one forward-mode Jacobian-vector product of D(x) in the direction
  D(x). Cost: the JVP through both branches, counted as 4 evaluations (a JVP ~ 2 forward passes).
- ``attention`` (Ren et al., ECCV 2024, their mode "E"): the entropy (natural log) of the conditional
  branch's cross-attention distribution over the prompt's tokens, averaged over heads and query
  positions, in one middle-resolution cross-attention layer at the first step. Free: read during the
  conditional evaluation the magnitudes make anyway. Needs an adapter with `attention_probe` (the
  built-in models; diffusers UNets, `DiffusersAdapter.attention_probe`: Ren et al.'s layer 3).
  ``attention_entropy_norm``: the same divided by ln(tokens attended), diffmem's length-free variant.
- ``prompt_words``: the number of words, a baseline reported with every comparison (cost 0): on a
  benchmark where memorized captions are longer, entropy-like scores separate by length alone.

Motion variants (video models; new in diffmem, no published motion detector exists): the same statistic
on the frame-varying part of the vectors, P(v) = v - mean over frames of v (the split that separates the
video paper's motion magnitude from its content magnitude): ``anisotropy_motion`` = g1 ||P D(t_hi)||_2 +
g2 mean over (frame, position) of cos_channels(P eps_u(t_lo), P D(t_lo)); ``sharpness_motion`` =
||P((J_c - J_u) D)||_2 / sigma^2 (the frame-varying part of the sharpness vector). They ask whether a
prompt's text pulls the *changes between frames* towards a sharp, specific optimum, as a memorized
motion would, independently of the appearance.
"""
from __future__ import annotations

import re
from typing import Sequence

import torch
from torch.func import jvp
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..errors import DiffmemError

_WORDS = re.compile(r"\w+")

#: the first-step detectors besides the magnitudes, and the score names each adds (video / image)
DETECTORS = {
    "anisotropy": (("anisotropy", "anisotropy_cos", "anisotropy_motion"), ("anisotropy", "anisotropy_cos")),
    "sharpness": (("sharpness", "sharpness_motion"), ("sharpness",)),
    "attention": (("attention_entropy", "attention_entropy_norm"), ("attention_entropy", "attention_entropy_norm")),
}
#: denoiser evaluations per (prompt, seed) each detector adds to the magnitudes' first step (shared
#: unconditional evaluations not counted per prompt)
EXTRA_EVALS = {"anisotropy": 1, "sharpness": 4, "attention": 0}
#: Asthana & Belagiannis' weights for Stable Diffusion v1.4 (detect_eval.py of their code)
ANISOTROPY_GAMMA = (1.0, 2.0)


def detector_names(detectors: Sequence[str], video: bool) -> list[str]:
    """The score names the given extra detectors add, in a fixed order."""
    unknown = [d for d in detectors if d not in DETECTORS]
    if unknown:
        raise DiffmemError(f"unknown detector(s) {', '.join(unknown)}; known: magnitude, {', '.join(DETECTORS)}")
    return [n for d in DETECTORS if d in detectors for n in DETECTORS[d][0 if video else 1]]


def frame_varying(x: torch.Tensor, frame_axis: int | None) -> torch.Tensor:
    """P(x) = x - mean over frames of x (the motion part); `x` unchanged for images (frame_axis None)."""
    return x if frame_axis is None else x - x.mean(dim=frame_axis, keepdim=True)


def channel_cosine(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Per batch row: the cosine of `a` and `b` along the channel axis 1 at every other position, averaged
    over the positions (Asthana et al.'s alignment term; not the cosine of the flattened vectors)."""
    a, b = a.float(), b.float()
    cos = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(eps)
    return cos.flatten(1).mean(1)


def anisotropy_score(norm: torch.Tensor, cosine: torch.Tensor, gamma: tuple = ANISOTROPY_GAMMA) -> torch.Tensor:
    """A = g1 N + g2 C (higher: memorized)."""
    return gamma[0] * norm + gamma[1] * cosine


def anisotropy_terms(d_hi: torch.Tensor, eps_u_lo: torch.Tensor, d_lo: torch.Tensor, frame_axis: int | None,
                     gamma: tuple = ANISOTROPY_GAMMA) -> dict[str, torch.Tensor]:
    """Anisotropy (and its cosine term; video: its motion variant) per batch row from D at t_hi and
    eps_u, D at t_lo on the same x_T."""
    norm = d_hi.float().flatten(1).norm(dim=1)
    cos = channel_cosine(eps_u_lo, d_lo)
    out = {"anisotropy": anisotropy_score(norm, cos, gamma), "anisotropy_cos": cos}
    if frame_axis is not None:
        pm = frame_varying(d_hi.float(), frame_axis).flatten(1).norm(dim=1)
        cm = channel_cosine(frame_varying(eps_u_lo, frame_axis), frame_varying(d_lo, frame_axis))
        out["anisotropy_motion"] = anisotropy_score(pm, cm, gamma)
    return out


def sharpness_terms(jd: torch.Tensor, sigma: float, frame_axis: int | None) -> dict[str, torch.Tensor]:
    """Sharpness per batch row from jd = (J_c - J_u) D (the JVP of D in the direction D): ||jd|| / sigma^2."""
    jd = jd.float()
    out = {"sharpness": jd.flatten(1).norm(dim=1) / sigma ** 2}
    if frame_axis is not None:
        out["sharpness_motion"] = frame_varying(jd, frame_axis).flatten(1).norm(dim=1) / sigma ** 2
    return out


def attention_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of the mean attention distribution: probs (B, Q, K) over K tokens (rows sum to 1),
    averaged over the Q query positions first (Ren et al.: p averaged over heads and positions, then H(p))."""
    p = probs.float().mean(1)
    return -(p * p.clamp_min(1e-30).log()).sum(-1)


def attention_entropy_norm(probs: torch.Tensor) -> torch.Tensor:
    """The entropy divided by its largest value, ln(tokens attended): diffmem's variant, because the entropy
    grows with the prompt's length wherever padding is masked (the built-in models; Stable Diffusion's
    77 tokens are a fixed length). 0 for a one-token prompt."""
    k = (probs.float().mean(1) > 0).sum(-1).clamp_min(1)
    return torch.where(k > 1, attention_entropy(probs) / k.float().log().clamp_min(1e-12), torch.zeros_like(k, dtype=torch.float32))


def prompt_words(prompt: str) -> int:
    """Words in a prompt: the trivial baseline every detector comparison reports (cost 0). A detector that
    does not beat it on a benchmark may be reading caption length, not memorization."""
    return len(_WORDS.findall(prompt))


def difference_jvp(adapter, x: torch.Tensor, t, cond: torch.Tensor, uncond: torch.Tensor,
                   direction: torch.Tensor) -> torch.Tensor:
    """(J_c - J_u) v at x: the forward-mode derivative of D(x) = eps(x, t, cond) - eps(x, t, uncond) in the
    direction v (torch.func.jvp; scaled-dot-product attention on its math kernel, the only one with
    forward-mode derivatives, as Jeon et al. do)."""
    def diff(z):
        return adapter.predict_noise(z, t, cond) - adapter.predict_noise(z, t, uncond)

    with sdpa_kernel(SDPBackend.MATH):
        _, out = jvp(diff, (x,), (direction.to(x.dtype),))
    return out
