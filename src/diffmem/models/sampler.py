"""Our own sampling loop over a `DenoiserAdapter`: classifier-free guidance, a hook per step, seeds per sample.

Why our own loop and not the pipelines' `__call__`: detection needs eps(x_t, prompt) and eps(x_t, "")
separately at the first steps, and AMG needs to change the guided noise before the scheduler step.
The loop is the one every diffusers text-to-image/video pipeline runs (scale_model_input -> one
batched denoiser call on [uncond, cond] -> eps_u + s (eps_c - eps_u) -> scheduler.step), with
hooks in between:

    def my_hook(state: StepState) -> torch.Tensor | None:
        ...                       # read state.eps_cond, state.eps_uncond, state.x_t, state.alpha_bar_t
        return new_eps_guided     # or None to leave it; `raise StopSampling` to end this batch now

Hooks run in order, each seeing the eps_guided the previous one returned. A hook with an
`after_step(state, x_prev) -> x_prev` method also sees the scheduler's result and may move it (a shift of
DDPM's posterior mean: `guidance.authors.AuthorsIDDPMHook`). The loop runs under
`torch.no_grad()`; a hook that needs a gradient (AMG's dissimilarity term) opens
`torch.enable_grad()` itself and differentiates through `state.x0_hat()` / `adapter.decode`.

Seeds: every sample has its own seed; its initial noise (and DDPM's per-step noise) come from a
CPU `torch.Generator` seeded with it, so a sample is the same whatever batch it lands in and
whatever the device (up to float arithmetic).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import torch
from tqdm.auto import tqdm

from ..errors import DiffmemError
from .adapter import DenoiserAdapter, predicted_x0


class StopSampling(Exception):
    """Raise from a hook to end the current batch after this step's predictions (detection's early stop)."""


@dataclass
class StepState:
    """Everything a hook may read at one denoising step of one batch.

    Tensors have the batch first; `eps_uncond` is None only when guidance is off (scale 1) and no hook
    is installed (then no hook sees it). `t` is the training timestep; `index` counts steps from 0.
    """

    index: int
    num_steps: int
    t: int
    x_t: torch.Tensor
    eps_cond: torch.Tensor
    eps_uncond: torch.Tensor | None
    eps_guided: torch.Tensor
    alpha_bar_t: float
    cond_embeddings: torch.Tensor
    uncond_embeddings: torch.Tensor
    guidance_scale: float
    adapter: DenoiserAdapter
    prompts: list[str]
    seeds: list[int]
    sample_indices: list[int]
    scheduler: object = field(repr=False, default=None)

    def x0_hat(self, eps: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted clean latents from `eps` (default: the current guided noise)."""
        return predicted_x0(self.x_t, self.eps_guided if eps is None else eps, self.alpha_bar_t)


Hook = Callable[[StepState], "torch.Tensor | None"]


@dataclass
class BatchOutput:
    """One finished batch: `indices` into the inputs, latents and (if decoded) frames on the CPU."""

    indices: list[int]
    latents: torch.Tensor
    frames: torch.Tensor | None
    steps_run: int
    stopped: bool


@dataclass
class SampleOutput:
    """All samples, in input order. `frames`: (N, F, H, W, 3) float in [0, 1] or None."""

    latents: torch.Tensor
    frames: torch.Tensor | None
    steps_run: list[int]
    stopped: list[bool]


@dataclass(frozen=True)
class SamplerConfig:
    """The settings that change a sample (stored with every generation)."""

    num_steps: int = 25
    guidance_scale: float = 7.5
    scheduler: str = "ddim"
    eta: float = 0.0
    negative_prompt: str = ""
    num_frames: int | None = None
    height: int | None = None
    width: int | None = None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _generators(seeds: Sequence[int]) -> list[torch.Generator]:
    return [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]


def initial_noise(adapter: DenoiserAdapter, seeds: Sequence[int], config: SamplerConfig = SamplerConfig(),
                  generators: list[torch.Generator] | None = None) -> torch.Tensor:
    """The starting latents for `seeds` (one CPU generator per seed; moved to the adapter's device)."""
    shape = adapter.latent_shape(config.num_frames, config.height, config.width)
    gens = generators if generators is not None else _generators(seeds)
    noise = torch.stack([torch.randn(shape, generator=g, dtype=torch.float32) for g in gens])
    return noise.to(adapter.device, adapter.dtype)


def iter_samples(
    adapter: DenoiserAdapter,
    prompts: Sequence[str],
    seeds: Sequence[int],
    config: SamplerConfig = SamplerConfig(),
    *,
    batch_size: int = 8,
    hooks: Sequence[Hook] = (),
    max_steps: int | None = None,
    decode: bool = True,
    latents: torch.Tensor | None = None,
    progress: bool = True,
) -> Iterator[BatchOutput]:
    """Sample one batch at a time and yield it as soon as it is done (so callers can write per item).

    `prompts[i]` is sampled with `seeds[i]`. `latents` (optional, (N, ...)) replaces the seeded initial
    noise. `max_steps` stops after that many steps (the latents returned are then x_t, still noisy).
    """
    if len(prompts) != len(seeds):
        raise DiffmemError(f"{len(prompts)} prompts but {len(seeds)} seeds: give one seed per sample")
    if config.num_steps < 1:
        raise DiffmemError(f"num_steps must be >= 1, got {config.num_steps}")
    if batch_size < 1:
        raise DiffmemError(f"batch_size must be >= 1, got {batch_size}")
    n = len(prompts)
    if n == 0:
        return
    hooks = list(hooks)
    need_uncond = config.guidance_scale != 1.0 or bool(hooks)
    device = adapter.device

    # Encode each distinct prompt once (detection samples one prompt with many seeds).
    distinct = list(dict.fromkeys(list(prompts)))
    with torch.no_grad():
        table = adapter.encode_prompt(distinct)
        uncond_one = adapter.encode_prompt([config.negative_prompt])
    row = {p: i for i, p in enumerate(distinct)}

    probe = adapter.make_scheduler(config.scheduler)
    probe.set_timesteps(config.num_steps)
    total_steps = len(probe.timesteps) if max_steps is None else min(max_steps, len(probe.timesteps))
    n_batches = (n + batch_size - 1) // batch_size

    bar = tqdm(total=n_batches * total_steps, desc=f"sampling {adapter.name or 'model'}", unit="step",
               disable=not progress, leave=False)
    try:
        for b0 in range(0, n, batch_size):
            idx = list(range(b0, min(n, b0 + batch_size)))
            b_prompts = [prompts[i] for i in idx]
            b_seeds = [int(seeds[i]) for i in idx]
            gens = _generators(b_seeds)
            sched = adapter.make_scheduler(config.scheduler)
            sched.set_timesteps(config.num_steps, device=device)
            if latents is not None:
                x = latents[idx[0]: idx[-1] + 1].to(device, adapter.dtype)
            else:
                x = initial_noise(adapter, b_seeds, config, gens)
                if hasattr(adapter, "override_noise"):  # a mitigation that chose the starting noise (mitigate.noise)
                    x = adapter.override_noise(b_prompts, b_seeds, x)
            x = x * sched.init_noise_sigma
            cond = table[[row[p] for p in b_prompts]]
            uncond = uncond_one.expand(len(idx), *uncond_one.shape[1:])
            both = torch.cat([uncond, cond]) if need_uncond else None
            step_kwargs = _step_kwargs(sched, config.eta, gens)
            steps_run, stopped = 0, False
            with torch.no_grad():
                for i, t in enumerate(sched.timesteps):
                    if max_steps is not None and i >= max_steps:
                        break
                    x_in = sched.scale_model_input(x, t)
                    if need_uncond:
                        eps = adapter.predict_noise(torch.cat([x_in, x_in]), t, both)
                        eps_u, eps_c = eps.chunk(2)
                        eps_g = eps_u + config.guidance_scale * (eps_c - eps_u)
                    else:
                        eps_u, eps_c = None, adapter.predict_noise(x_in, t, cond)
                        eps_g = eps_c
                    if hooks:
                        state = StepState(
                            index=i, num_steps=len(sched.timesteps), t=int(t), x_t=x, eps_cond=eps_c,
                            eps_uncond=eps_u, eps_guided=eps_g, alpha_bar_t=adapter.alpha_bar(t),
                            cond_embeddings=cond, uncond_embeddings=uncond,
                            guidance_scale=config.guidance_scale, adapter=adapter, prompts=b_prompts,
                            seeds=b_seeds, sample_indices=idx, scheduler=sched)
                        try:
                            for hook in hooks:
                                new = hook(state)
                                if new is not None:
                                    if new.shape != eps_g.shape:
                                        raise DiffmemError(
                                            f"hook {hook!r} returned eps of shape {tuple(new.shape)}, "
                                            f"expected {tuple(eps_g.shape)}")
                                    state.eps_guided = new
                        except StopSampling:
                            stopped = True
                            bar.update(1)
                            break
                        eps_g = state.eps_guided
                    x = sched.step(eps_g, t, x, **step_kwargs).prev_sample
                    for hook in hooks or ():  # a hook that moves the step's result (the posterior mean)
                        if hasattr(hook, "after_step"):
                            x = hook.after_step(state, x)
                    steps_run = i + 1
                    bar.update(1)
            if stopped:
                bar.update(total_steps - steps_run - 1)
            frames = None
            if decode:
                with torch.no_grad():
                    frames = adapter.decode(x).float().clamp(0, 1).cpu()
            yield BatchOutput(indices=idx, latents=x.detach().float().cpu(), frames=frames,
                              steps_run=steps_run, stopped=stopped)
    finally:
        bar.close()


def sample(adapter: DenoiserAdapter, prompts: Sequence[str], seeds: Sequence[int],
           config: SamplerConfig = SamplerConfig(), **kwargs) -> SampleOutput:
    """Sample every prompt with its seed; all outputs in input order. See `iter_samples` for arguments."""
    outs = list(iter_samples(adapter, prompts, seeds, config, **kwargs))
    if not outs:
        raise DiffmemError("nothing to sample: no prompts given")
    frames = None if outs[0].frames is None else torch.cat([o.frames for o in outs])
    return SampleOutput(
        latents=torch.cat([o.latents for o in outs]), frames=frames,
        steps_run=[o.steps_run for o in outs for _ in o.indices],
        stopped=[o.stopped for o in outs for _ in o.indices])


def _step_kwargs(sched, eta: float, gens: list[torch.Generator]) -> dict:
    # Only pass what this scheduler's step accepts (as the diffusers pipelines do).
    params = set(inspect.signature(sched.step).parameters)
    kw = {}
    if "eta" in params:
        kw["eta"] = eta
    if "generator" in params:
        kw["generator"] = gens if len(gens) > 1 else gens[0]
    return kw
