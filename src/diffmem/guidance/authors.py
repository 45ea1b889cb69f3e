"""AMG as its authors' code runs it: the presets "amg-sd-2024" (their Stable Diffusion code) and
"amg-iddpm-2024" (their CIFAR-10 iDDPM code, below) (DESIGN.md, "What the authors' code actually does";
Chen et al., "Towards Memorization-Free Diffusion Models", CVPR 2024).

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

"amg-iddpm-2024", for pixel-space DDPM sampling (the paper's CIFAR-10 table), per step t, with abar_t,
abar_prev the noise levels of this step and the next:

1. sigma = -nL2(x_t, Z_t): x_t against the training samples noised to the same t, Z_t = sqrt(abar_t) Z +
   sqrt(1 - abar_t) N (one Gaussian draw N per step), nL2 = l2(x_t, z_1) / (0.5 mean_{k=50 nearest} l2)
   with l2 the RMS distance (`metrics.pixel`); its gradient w.r.t. x_t with the denominator held fixed;
2. guidance starts once nL2 < 1.5 (the chain is unguided and measured until then); from then on a step
   is triggered when nL2 < lambda(t) = 1.95 - 0.45 exp(-0.025 t) (so sigma > -lambda(t), a threshold that
   rises toward t = 0), and after 3 untriggered steps in a row the sample is not measured for 10 steps;
3. a triggered step moves DDPM's posterior mean away from the nearest noised training sample:
   mu' = mu + var_t * 8e4 (lambda(t) - nL2) * grad_{x_t} nL2, var_t = beta_t (1 - abar_prev) / (1 - abar_t),
   beta_t = 1 - abar_t / abar_prev (the posterior variance of the fixed-small DDPM step; added after the
   scheduler's step: x_prev' = x_prev + that shift, which is exactly the mean's shift);
4. neighbours are a deduplicated training set (one sample per group of copies).
What the description leaves open, and what diffmem does: one noise draw N per step (seeded by the step,
shared by the batch); the shift moves toward larger nL2 (mitigation, as G_sim does); the samples are the
model's own space (pixels, or the built-in models' latents).

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
from ..metrics.pixel import nearest_rms
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


# ------------------------------------------------------------------------------------ amg-iddpm-2024

#: the constants of the authors' CIFAR-10 (iDDPM) code
IDDPM2024 = {"gain": 8e4, "lambda": (1.95, 0.45, 0.025), "start_below": 1.5, "untriggered": 3, "pause": 10,
             "k": 50, "alpha": 0.5}


def iddpm2024_lambda(t: float) -> float:
    """The nL2 threshold lambda(t) = 1.95 - 0.45 exp(-0.025 t): 1.5 at t = 0, 1.95 for large t."""
    a, b, k = IDDPM2024["lambda"]
    return a - b * math.exp(-k * float(t))


def ddpm_posterior_variance(alpha_bar_t: float, alpha_bar_prev: float) -> float:
    """var_t = beta_t (1 - abar_prev) / (1 - abar_t), beta_t = 1 - abar_t / abar_prev (DDPM's fixed-small
    posterior variance of a step from t to the previous timestep; abar_prev = 1 after the last step)."""
    if float(alpha_bar_t) >= 1.0:  # no noise left at t
        return 0.0
    beta = 1.0 - float(alpha_bar_t) / float(alpha_bar_prev)
    return beta * (1.0 - float(alpha_bar_prev)) / (1.0 - float(alpha_bar_t))


def noised_nl2(x_t: torch.Tensor, train: torch.Tensor, alpha_bar_t: float, noise: torch.Tensor, *,
               k: int = IDDPM2024["k"], alpha: float = IDDPM2024["alpha"]):
    """(nL2 (B,), grad_{x_t} nL2 (B, ...) with the denominator held fixed, nearest training row (B,)) of x_t
    against the training samples noised to the same t: sqrt(abar_t) train + sqrt(1 - abar_t) noise."""
    noised = math.sqrt(float(alpha_bar_t)) * train + math.sqrt(1.0 - float(alpha_bar_t)) * noise
    with torch.enable_grad():
        x = x_t.detach().float().requires_grad_(True)
        dk, nn = nearest_rms(x, noised, k)
        nl2 = dk[:, 0] / (alpha * dk.mean(1)).detach()
        (grad,) = torch.autograd.grad(nl2.sum(), x)
    return nl2.detach(), torch.nan_to_num(grad.detach()), nn[:, 0]


def require_ddpm(scheduler: str, where: str = "the amg-iddpm-2024 preset") -> None:
    """Refuse, before any sample is made, a sampler other than DDPM for the amg-iddpm-2024 preset (the hook
    checks again at its first step, for callers that sample directly)."""
    if scheduler != "ddpm":
        raise DiffmemError(f"{where} guides DDPM's posterior mean, as its authors' code did: sample with "
                           f"--scheduler ddpm, not {scheduler}")


class AuthorsIDDPMHook(AMGHook):
    """The "amg-iddpm-2024" sampler hook (the steps above). `train`: (N, ...) training samples in the model's
    sample space, deduplicated; `ids`: their ids. Needs the DDPM sampler (`SamplerConfig(scheduler="ddpm")`).
    Records, traces and summaries as `AMGHook`'s (channel "pixel": sigma = -nL2, lambda = -lambda(t))."""

    def __init__(self, train: torch.Tensor, ids: Sequence[str], *, noise_seed: int = 0):
        train = torch.as_tensor(train, dtype=torch.float32)
        if len(train) != len(ids) or len(ids) < 2:
            raise DiffmemError(f"amg-iddpm-2024 needs at least 2 training samples with ids, got {len(train)} and "
                               f"{len(ids)}")
        super().__init__([_PixelChannel()], AMGConfig(terms=("sim",), check_every=1))
        self.train, self.ids, self.noise_seed = train, [str(i) for i in ids], int(noise_seed)
        self._state: dict[int, dict] = {}     # sample -> {"started", "untriggered", "pause"}
        self._shift: torch.Tensor | None = None

    def describe(self) -> dict:
        return {"preset": "amg-iddpm-2024", **IDDPM2024, "n_train": len(self.ids), "noise_seed": self.noise_seed}

    def reset(self) -> None:
        super().reset()
        self._state.clear()

    def _noise(self, step: int) -> torch.Tensor:
        g = torch.Generator("cpu").manual_seed(self.noise_seed * 100_003 + int(step))
        return torch.randn(self.train.shape, generator=g, dtype=torch.float32)

    def __call__(self, state) -> None:
        if type(state.scheduler).__name__ != "DDPMScheduler":
            require_ddpm(type(state.scheduler).__name__)
        self.stats["steps"] += 1
        b = state.x_t.shape[0]
        t, ab_t = int(state.t), float(state.alpha_bar_t)
        prev = int(state.scheduler.previous_timestep(t))
        ab_prev = state.adapter.alpha_bar(prev) if prev >= 0 else 1.0
        lam = iddpm2024_lambda(t)
        sts = [self._state.setdefault(i, {"started": False, "untriggered": 0, "pause": 0}) for i in state.sample_indices]
        rows = [r for r, st in enumerate(sts) if st["pause"] == 0]
        for st in sts:
            if st["pause"] > 0:
                st["pause"] -= 1
        nl2 = torch.full((b,), float("nan"), dtype=torch.float64)
        nearest = [""] * b
        shift = torch.zeros_like(state.x_t, dtype=torch.float32)
        if rows:
            flat = state.x_t[rows].reshape(len(rows), -1)
            v, grad, nn = noised_nl2(flat, self.train.reshape(len(self.train), -1).to(flat.device), ab_t,
                                     self._noise(state.index).reshape(len(self.train), -1).to(flat.device))
            self.stats["similarity_calls"] += len(rows)
            scale = ddpm_posterior_variance(ab_t, ab_prev) * IDDPM2024["gain"]
            for j, r in enumerate(rows):
                st, value = sts[r], float(v[j])
                nl2[r], nearest[r] = value, self.ids[int(nn[j])]
                if not st["started"] and value < IDDPM2024["start_below"]:
                    st["started"] = True
                if not st["started"]:
                    continue
                if value < lam:
                    st["untriggered"] = 0
                    shift[r] = (scale * (lam - value) * grad[j]).reshape(shift[r].shape)
                    self.stats["grad_calls"] += 1
                else:
                    st["untriggered"] += 1
                    if st["untriggered"] >= IDDPM2024["untriggered"]:
                        st["untriggered"], st["pause"] = 0, IDDPM2024["pause"]
        on = shift.flatten(1).abs().sum(1) > 0
        for r, i in enumerate(state.sample_indices):
            measured = not math.isnan(float(nl2[r]))
            self.records.setdefault(i, []).append(StepRecord(
                step=int(state.index), t=t, sigma={"pixel": -float(nl2[r]) if measured else None},
                lam={"pixel": -lam}, triggered=bool(on[r]), terms=["sim"] if bool(on[r]) else [],
                neighbour=nearest[r], channel="pixel" if bool(on[r]) else "",
                g_sim_rms=float(shift[r].pow(2).mean().sqrt())))
            self.sample_keys[i] = (state.prompts[r], int(state.seeds[r]))
        self._shift = shift
        return None

    def after_step(self, state, x_prev: torch.Tensor) -> torch.Tensor:
        """x_prev + the posterior mean's shift (x_prev = mean + sqrt(var) z, so this shifts the mean)."""
        shift, self._shift = self._shift, None
        if shift is None or not bool(shift.abs().sum() > 0):
            return x_prev
        return (x_prev.float() + shift.to(x_prev.device)).to(x_prev.dtype)


class _PixelChannel:
    """The channel name and verdict threshold the records of `AuthorsIDDPMHook` carry (sigma = -nL2)."""

    kind = "pixel"
    threshold = -1.4
