"""Wen et al. (ICLR 2024), inference-time mitigation: optimise the prompt's conditional embedding so that
the text-conditional difference at the first step is small, then sample with it.

As their code runs it (local_sd_pipeline.py `aug_prompt`; docs/related-methods.md): the seeds' initial
noises x_T (the same the generation then starts from), the first timestep t; one embedding e shared by
the n samples; loss(e) = || eps(x_T, t, e) - eps(x_T, t, "") ||_2, ONE norm over the whole batch of n
predictions (not a per-sample mean); AdamW (lr 0.05, weight decay 0.01, betas 0.9/0.999), at most 10
iterations, stopping as soon as loss <= 3 (checked before each update, so 0 updates is possible); the
gradient of the first token (CLIP's beginning-of-text) is zeroed.

One deliberate difference: where a model marks padding by all-zero embedding rows (the built-in tiny
models: the denoiser masks them), those rows stay zero, or the optimisation would unmask them; Stable
Diffusion's padding rows are real CLIP outputs and are optimised, as in their code. The target loss 3 is
on Stable Diffusion's scale (4 samples of 4 x 64 x 64 latents); on another model choose it from that
model's novel prompts (`diffmem detect`'s `wen` magnitude times sqrt(n) is the same quantity).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from ..errors import DiffmemError
from ..models.adapter import DenoiserAdapter
from ..models.sampler import SamplerConfig, initial_noise


@dataclass(frozen=True)
class WenConfig:
    """The optimisation's settings (defaults: Wen et al.'s)."""

    lr: float = 0.05
    iters: int = 10
    target_loss: float | None = 3.0   # stop once the batch loss is at most this (None: always `iters` updates)
    weight_decay: float = 0.01
    freeze_first_token: bool | None = None  # None: when the model's first token is a beginning-of-text token

    def __post_init__(self):
        if self.iters < 0 or self.lr <= 0:
            raise DiffmemError(f"Wen et al.'s optimisation needs iters >= 0 and lr > 0, got {self.iters}, {self.lr}")


def optimize_embedding(adapter, prompt: str, seeds: Sequence[int], config: SamplerConfig = SamplerConfig(),
                       wen: WenConfig = WenConfig()) -> tuple[torch.Tensor, list[float]]:
    """(optimised embedding (1, ...), the loss before each update and at the end), for `prompt` sampled
    from `seeds` with `config`. The denoiser's weights are not changed."""
    t = adapter.first_timestep(config.scheduler, config.num_steps)
    if t is None:
        raise DiffmemError(f"Wen et al.'s optimisation is defined at the first step of DDIM/DDPM sampling; "
                           f"scheduler {config.scheduler!r} scales its input")
    freeze_first = wen.freeze_first_token
    if freeze_first is None:
        freeze_first = bool(getattr(adapter, "first_token_is_bos", True))
    x = initial_noise(adapter, list(seeds), config)
    n = x.shape[0]
    with torch.no_grad():
        e0 = adapter.encode_prompt([prompt]).detach()
        u = adapter.encode_prompt([""])
        eps_u = adapter.predict_noise(x, t, u.expand(n, *u.shape[1:]))
    keep = torch.ones_like(e0)
    if e0.ndim == 3:  # (1, tokens, dim): rows that are all zero are masked padding; they stay zero
        keep = keep * (e0.abs().sum(-1, keepdim=True) != 0)
    if freeze_first:
        keep.select(1, 0).zero_()
    e = e0.clone().requires_grad_(True)
    opt = torch.optim.AdamW([e], lr=wen.lr, weight_decay=wen.weight_decay)
    trace: list[float] = []
    with torch.enable_grad():
        for _ in range(wen.iters + 1):
            loss = (adapter.predict_noise(x, t, e.expand(n, *e.shape[1:])) - eps_u).norm()
            trace.append(float(loss.detach()))
            if len(trace) > wen.iters or (wen.target_loss is not None and trace[-1] <= wen.target_loss):
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            e.grad.mul_(keep)
            opt.step()
    # masked padding rows stay exactly zero: their gradient is zeroed and AdamW's decay keeps 0 at 0
    return e.detach(), trace


class EmbeddingOverride(DenoiserAdapter):
    """An adapter whose `encode_prompt` returns the given embeddings for some prompts (e.g. optimised by
    `optimize_embedding`) and the model's own for the rest; everything else is the wrapped adapter's."""

    def __init__(self, adapter: DenoiserAdapter, embeddings: Mapping[str, torch.Tensor], label: str = "override"):
        self._adapter = adapter
        self.kind, self.space, self.name = adapter.kind, adapter.space, adapter.name
        self.label = label
        self._embeddings = {p: e if e.ndim > 1 and e.shape[0] == 1 else e[None] for p, e in embeddings.items()}

    def __getattr__(self, name):  # fps, recommended, cfg, model, ...: the wrapped adapter's
        if name.startswith("__") or name == "_adapter":
            raise AttributeError(name)
        return getattr(self._adapter, name)

    @property
    def device(self):
        return self._adapter.device

    @property
    def dtype(self):
        return self._adapter.dtype

    @property
    def frame_axis(self):
        return self._adapter.frame_axis

    @property
    def default_scheduler(self) -> str:
        return self._adapter.default_scheduler

    def encode_prompt(self, prompts: Sequence[str]) -> torch.Tensor:
        own = self._adapter.encode_prompt(list(prompts))
        rows = [self._embeddings[p].to(own.device, own.dtype)[0] if p in self._embeddings else own[i]
                for i, p in enumerate(prompts)]
        return torch.stack(rows)

    def predict_noise(self, latents, t, embeddings):
        return self._adapter.predict_noise(latents, t, embeddings)

    def decode(self, latents):
        return self._adapter.decode(latents)

    def latent_shape(self, num_frames=None, height=None, width=None):
        return self._adapter.latent_shape(num_frames, height, width)

    def scheduler_config(self) -> dict:
        return self._adapter.scheduler_config()

    def make_scheduler(self, name: str = "ddim"):
        return self._adapter.make_scheduler(name)

    def first_timestep(self, name: str, num_steps: int):
        return self._adapter.first_timestep(name, num_steps)

    def describe(self) -> dict:
        return {**self._adapter.describe(), "embeddings": f"{self.label} ({len(self._embeddings)} prompts)"}
