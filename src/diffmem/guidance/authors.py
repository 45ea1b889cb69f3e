"""AMG as its authors' Stable Diffusion code runs it: the preset "amg-sd-2024" (DESIGN.md, "What the
authors' code actually does"; Chen et al., "Towards Memorization-Free Diffusion Models", CVPR 2024).

Per DDIM step, with s0 the CFG scale (7.5 in their runs), eps_hat = eps_u + s0 D, D = eps_c - eps_u:

1. sigma = similarity of x0_hat(eps_hat) to its nearest training item (their SSCD sees the decoder's
   output in [-1, 1]);
2. despecification at EVERY step where sigma > 0 (no lambda gate): s1 = max(min(s0 - 1, 13 sigma), 0);
3. caption deduplication: y_N = a caption repeated more than 20 times among the 1000 nearest neighbours;
   once found it stays on for 10 steps; s2 = max(min(s0 - 1 - s1, (s0 - 1 - s1) / 0.3 * sigma), 0);
   eps' = eps_hat - s1 D - s2 (eps(x_t, y_N) - eps_u);
4. sigma' and its gradient are measured again on x0_hat(eps'), and dissimilarity is added when
   sigma' > lambda_t = 0.3 + 0.1 exp(-0.005 t), with the time-varying scale
   sqrt(1 - abar_t) * 100 (sigma' - 0.3) exp((1000 - t) / 170)   (about 360x larger at t = 0 than at 1000):
   eps'' = eps' + that scale * grad_{x_t} sigma'.

diffmem's own default (`AMGConfig`, `AMGHook`) is the paper's equations with one switch for all terms,
thresholds relative to the descriptor's tau_c and a constant c3 (README, "AMG": the differences, one
sentence each). Here y_N's count is over distinct training items among the neighbours (a video's frames
count once), as LAION's entries are one image each.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

import torch

from ..errors import DiffmemError
from ..models.adapter import predicted_x0
from .config import AMGConfig
from .hook import AMGHook, StepRecord

#: the constants of the authors' Stable Diffusion code
SD2024 = {"c1": 13.0, "dup_ratio": 0.3, "sim_gain": 100.0, "sim_offset": 0.3, "sim_tau": 170.0,
          "lambda": (0.3, 0.1, 0.005), "neighbours": 1000, "min_repeats": 21, "dup_hold": 10}


def sd2024_lambda(t: float) -> float:
    """lambda_t = 0.3 + 0.1 exp(-0.005 t): 0.3007 at t = 1000, 0.4 at t = 0."""
    a, b, k = SD2024["lambda"]
    return a + b * math.exp(-k * float(t))


def sd2024_scales(sigma: torch.Tensor, guidance_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(s1, s2) per sample: s1 = max(min(s0 - 1, 13 sigma), 0) (0 unless sigma > 0),
    s2 = max(min(s0 - 1 - s1, (s0 - 1 - s1) / 0.3 * sigma), 0)."""
    room = guidance_scale - 1.0
    s1 = torch.where(sigma > 0, torch.clamp(SD2024["c1"] * sigma, min=0.0, max=room), torch.zeros_like(sigma))
    left = room - s1
    s2 = torch.clamp(torch.minimum(left, left / SD2024["dup_ratio"] * sigma), min=0.0)
    return s1, s2


def sd2024_sim_scale(sigma_new: torch.Tensor, t: float, alpha_bar_t: float) -> torch.Tensor:
    """sqrt(1 - abar_t) * 100 (sigma' - 0.3) exp((1000 - t) / 170)."""
    return (math.sqrt(1.0 - float(alpha_bar_t)) * SD2024["sim_gain"] * (sigma_new - SD2024["sim_offset"])
            * math.exp((1000.0 - float(t)) / SD2024["sim_tau"]))


def repeated_caption(neighbours: Sequence[tuple[str, str]], min_repeats: int = SD2024["min_repeats"]) -> str:
    """The caption of at least `min_repeats` distinct items among (item id, caption) neighbours (the most
    frequent such; ties: the one met first), else ""."""
    per_item: dict[str, str] = {}
    for item, cap in neighbours:
        per_item.setdefault(item, cap)
    counts = Counter(c for c in per_item.values() if c)
    order = {c: i for i, c in reversed(list(enumerate(per_item.values())))}
    best = sorted(counts.items(), key=lambda kv: (-kv[1], order[kv[0]]))
    return best[0][0] if best and best[0][1] >= min_repeats else ""


class AuthorsSDHook(AMGHook):
    """The "amg-sd-2024" sampler hook: the step above, on one content similarity (`ContentSimilarity`;
    its descriptor sees frames mapped to [-1, 1], as their SSCD did). Records, traces and summaries as
    `AMGHook`'s."""

    def __init__(self, similarity, *, input_range: str = "minus_one_to_one"):
        if getattr(similarity, "kind", None) != "content":
            raise DiffmemError("the amg-sd-2024 preset guides by content similarity only")
        super().__init__([similarity], AMGConfig(content_lambda=(0.3, 0.4), c1=SD2024["c1"], check_every=1))
        self.input_range = input_range
        self._dup: dict[int, tuple[str, int]] = {}  # sample -> (y_N, steps left)

    def describe(self) -> dict:
        return {"preset": "amg-sd-2024", **SD2024, "input_range": self.input_range}

    def _frames(self, x_t, eps, alpha_bar_t, adapter):
        frames = adapter.decode(predicted_x0(x_t, eps, alpha_bar_t)).float()
        return frames * 2 - 1 if self.input_range == "minus_one_to_one" else frames

    def __call__(self, state) -> torch.Tensor | None:
        if state.eps_uncond is None:
            raise DiffmemError("AMG needs eps(x_t, \"\"): install it as a hook so the sampler computes it")
        adapter, sim, dt = state.adapter, self.similarities[0], torch.float32
        self.stats["steps"] += 1
        eps_hat = state.eps_guided.to(dt)
        eps_c, eps_u = state.eps_cond.to(dt), state.eps_uncond.to(dt)
        with torch.no_grad():
            frames = self._frames(state.x_t, state.eps_guided, state.alpha_bar_t, adapter)
            sigma, info = sim(frames)
            self.stats["similarity_calls"] += frames.shape[0]
            sigma = sigma.detach().to(dt).cpu()
            found = [repeated_caption(n) for n in sim.neighbour_captions(frames, info.at, SD2024["neighbours"])]
        y_n = []
        for row, i in enumerate(state.sample_indices):
            cap, left = self._dup.get(i, ("", 0))
            if left <= 0 and found[row]:
                cap, left = found[row], SD2024["dup_hold"]
            y_n.append(cap if left > 0 else "")
            self._dup[i] = (cap, left - 1)
        s1, s2 = sd2024_scales(sigma, state.guidance_scale)
        has_dup = torch.tensor([bool(c) for c in y_n])
        s2 = torch.where(has_dup, s2, torch.zeros_like(s2))
        shape = (-1,) + (1,) * (eps_hat.ndim - 1)
        eps1 = eps_hat - s1.to(eps_hat.device).view(shape) * (eps_c - eps_u)
        rows = has_dup.nonzero().flatten().tolist()
        if rows:
            with torch.no_grad():
                emb = adapter.encode_prompt([y_n[r] for r in rows]).to(state.cond_embeddings)
                eps_dup = adapter.predict_noise(state.x_t[rows], state.t, emb).to(dt)
            self.stats["dup_calls"] += len(rows)
            eps1[rows] = eps1[rows] - s2[rows].to(eps1.device).view(shape) * (eps_dup - eps_u[rows])
        # sigma and its gradient again, on x0_hat of the despecified, deduplicated noise (held fixed)
        with torch.enable_grad():
            x = state.x_t.detach().float().requires_grad_(True)
            fr = self._frames(x, eps1.detach(), state.alpha_bar_t, adapter)
            sig_new = sim.for_gradient(fr) if hasattr(sim, "for_gradient") else sim(fr)[0]
            (grad,) = torch.autograd.grad(sig_new.sum(), x)
        self.stats["grad_calls"] += x.shape[0]
        sig_new = sig_new.detach().to(dt).cpu()
        lam = sd2024_lambda(state.t)
        on = sig_new > lam
        scale = torch.where(on, sd2024_sim_scale(sig_new, state.t, state.alpha_bar_t), torch.zeros_like(sig_new))
        eps2 = eps1 + scale.to(eps1.device).view(shape) * torch.nan_to_num(grad.detach()).to(dt)
        for row, i in enumerate(state.sample_indices):
            terms = (["spe"] if float(s1[row]) > 0 else []) + (["dup"] if float(s2[row]) > 0 else []) + \
                (["sim"] if bool(on[row]) else [])
            self.records.setdefault(i, []).append(StepRecord(
                step=int(state.index), t=int(state.t), sigma={"content": float(sigma[row])},
                lam={"content": lam}, triggered=bool(terms), terms=terms, s1=float(s1[row]), s2=float(s2[row]),
                y_n=y_n[row], neighbour=info.ids[row], channel="content",
                g_sim_rms=float((scale[row] * grad[row]).pow(2).mean().sqrt())))
            self.sample_keys[i] = (state.prompts[row], int(state.seeds[row]))
        return eps2.to(state.eps_guided.dtype)
