"""Jeon, Kim & No (ICML 2025), SAIL: choose the initial noise so that the prompt's text-conditional
difference is small and flat around it, then sample from that noise as usual.

As their code runs it (mitigate_mem.py defaults, the "MITIGATION CODE" block of their pipeline;
docs/related-methods.md, 2b): at the first timestep t, B = 8 candidate noises z ~ N(0, I) from one seed,
each with the loss

    u(z) = D(z) / ||D(z)||_2,   D(z) = eps(z, t, prompt) - eps(z, t, "")     (the gradient flows through u)
    L(z) = ||D(z + u(z))||_2 + alpha ||z||_2                                 (alpha = 0.05, SD v1.4)

Adam (lr 0.05) on the sum of the B losses, at most 10 iterations; before each update (iteration 0 is the
untouched noise) every candidate not yet accepted this round whose L(z) <= l_thres (8.2) is copied out as
accepted; done once n noises are accepted. A round that ends short is run again from the same seed
(so the same start points: their accepted list keeps what it has, and a candidate accepted again is
accepted twice); every 3rd failed round raises l_thres by 0.1 and draws a new seed.

The constants are on Stable Diffusion's scale (||z|| ~ 128 for 4 x 64 x 64 latents, so the D term must
reach about 1.8). `SAILConfig.for_target(adapter, eps_target)` keeps alpha and sets l_thres = alpha
sqrt(N) + eps_target for a model with N latent values, eps_target e.g. the `wen` threshold of a detection
calibration (the largest ||D|| a novel prompt shows at 1 % false positives). Deliberate differences
in diffmem's default (`repeat_start=False`): a failed round starts from fresh noise (new seed) instead
of the same start points, so no noise is accepted twice, and `max_rounds` bounds the search (their
loop has no bound).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from ..errors import DiffmemError
from ..models.sampler import SamplerConfig
from .embedding import EmbeddingOverride


@dataclass(frozen=True)
class SAILConfig:
    """The search's settings (defaults: Jeon et al.'s for Stable Diffusion v1.4)."""

    budget: int = 8               # candidates optimised in parallel
    lr: float = 0.05
    max_steps: int = 10           # Adam updates per round
    alpha: float = 0.05           # weight of ||z||
    threshold: float = 8.2        # l_thres
    threshold_step: float = 0.1   # added every `raise_every` failed rounds, with a new seed
    raise_every: int = 3
    repeat_start: bool = True     # a failed round restarts from the same seed (their code)
    max_rounds: int = 30          # diffmem's bound on the search (theirs has none)

    def __post_init__(self):
        if self.budget < 1 or self.max_steps < 0 or self.lr <= 0 or self.max_rounds < 1 or self.raise_every < 1:
            raise DiffmemError(f"SAIL needs budget >= 1, max_steps >= 0, lr > 0, max_rounds >= 1 and "
                               f"raise_every >= 1, got {self.budget}, {self.max_steps}, {self.lr}, "
                               f"{self.max_rounds}, {self.raise_every}")

    @classmethod
    def for_target(cls, adapter, eps_target: float, config: SamplerConfig = SamplerConfig(), **kw) -> "SAILConfig":
        """diffmem's setting for another model: l_thres = alpha sqrt(N) + eps_target (N latent values),
        fresh noise on every failed round."""
        n = math.prod(adapter.latent_shape(config.num_frames, config.height, config.width))
        alpha = kw.pop("alpha", cls.alpha)
        return cls(alpha=alpha, threshold=alpha * math.sqrt(n) + float(eps_target), repeat_start=False, **kw)


def sail_loss(adapter, z: torch.Tensor, t, cond: torch.Tensor, uncond: torch.Tensor, alpha: float) -> torch.Tensor:
    """(B,) L(z) = ||D(z + u(z))||_2 + alpha ||z||_2 with u(z) = D(z) / ||D(z)||_2 (module docstring)."""
    b = z.shape[0]
    c, u = cond.expand(b, *cond.shape[1:]), uncond.expand(b, *uncond.shape[1:])

    def diff(x):
        eps = adapter.predict_noise(torch.cat([x, x]), t, torch.cat([u, c]))
        return eps[b:] - eps[:b]

    d = diff(z)
    unit = d / d.flatten(1).norm(dim=1).clamp_min(1e-12).reshape(-1, *[1] * (d.ndim - 1))
    return diff(z + unit).flatten(1).norm(dim=1) + alpha * z.flatten(1).norm(dim=1)


def optimize_noise(adapter, prompt: str, n: int, seed: int, config: SamplerConfig = SamplerConfig(),
                   sail: SAILConfig = SAILConfig()) -> tuple[torch.Tensor, dict]:
    """(n accepted initial noises (n, ...), what the search did: rounds, final threshold, the accepted
    losses, denoiser evaluations). Raises DiffmemError when `max_rounds` rounds accept fewer than n."""
    t = adapter.first_timestep(config.scheduler, config.num_steps)
    if t is None:
        raise DiffmemError(f"SAIL is defined at the first step of DDIM/DDPM sampling; scheduler "
                           f"{config.scheduler!r} scales its input")
    shape = adapter.latent_shape(config.num_frames, config.height, config.width)
    with torch.no_grad():
        cond = adapter.encode_prompt([prompt]).detach()
        uncond = adapter.encode_prompt([""]).detach()
    accepted: list[torch.Tensor] = []
    losses: list[float] = []
    thr, round_seed, evals, failed = float(sail.threshold), int(seed), 0, 0
    for rounds in range(1, sail.max_rounds + 1):
        g = torch.Generator().manual_seed(round_seed)
        z = torch.randn((sail.budget, *shape), generator=g).to(adapter.device, adapter.dtype).requires_grad_(True)
        opt = torch.optim.Adam([z], lr=sail.lr)
        taken = torch.zeros(sail.budget, dtype=torch.bool)
        with torch.enable_grad():
            for it in range(sail.max_steps + 1):
                loss = sail_loss(adapter, z, t, cond, uncond, sail.alpha)
                evals += 4 * sail.budget
                ok = (loss.detach().cpu() <= thr) & ~taken
                for i in ok.nonzero().flatten().tolist():
                    if len(accepted) < n:
                        accepted.append(z[i].detach().clone())
                        losses.append(float(loss[i].detach()))
                taken |= ok
                if len(accepted) >= n or it == sail.max_steps:
                    break
                opt.zero_grad(set_to_none=True)
                loss.sum().backward()
                evals += 8 * sail.budget  # the backward through both predictions of both points, ~2 forwards each
                opt.step()
        if len(accepted) >= n:
            return torch.stack(accepted[:n]), {"rounds": rounds, "threshold": thr, "losses": losses[:n],
                                               "denoiser_evals": evals}
        failed += 1
        if failed % sail.raise_every == 0:
            thr += sail.threshold_step
            round_seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=g))
        elif not sail.repeat_start:
            round_seed += 1_000_003  # fresh start points: a noise is never accepted twice
    raise DiffmemError(f"SAIL accepted {len(accepted)} of {n} noises for {prompt!r} in {sail.max_rounds} rounds "
                       f"(threshold {thr:.3g}); raise the threshold or max_rounds")


class NoiseOverride(EmbeddingOverride):
    """An adapter whose samples start from the given initial noises for some (prompt, seed) pairs (e.g.
    chosen by `optimize_noise`) and from the seeds' own noise otherwise; everything else is the wrapped
    adapter's (the sampler asks `override_noise`)."""

    def __init__(self, adapter, noises: Mapping[tuple[str, int], torch.Tensor], label: str = "noise"):
        super().__init__(adapter, {}, label)
        self._noises = {(str(p), int(s)): v for (p, s), v in noises.items()}

    def override_noise(self, prompts: Sequence[str], seeds: Sequence[int], x: torch.Tensor) -> torch.Tensor:
        rows = [self._noises[(p, int(s))].to(x.device, x.dtype) if (p, int(s)) in self._noises else x[i]
                for i, (p, s) in enumerate(zip(prompts, seeds))]
        return torch.stack(rows)

    def describe(self) -> dict:
        return {**self._adapter.describe(), "initial_noise": f"{self.label} ({len(self._noises)} samples)"}
