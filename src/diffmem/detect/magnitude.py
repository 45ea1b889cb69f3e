"""Content and motion magnitude (DESIGN.md, "Inference-time detection").

For a text-conditional denoiser at step t with latent x_t (video: F frames on `frame_axis`):

    D   = eps(x_t, prompt) - eps(x_t, "")
    M_c = RMS( mean over frames of D )          content magnitude
    M_m = RMS( D - mean over frames of D )      motion magnitude
    M   = RMS( D )                              total magnitude (the image models' one)
    W   = || D ||_2 = M sqrt(N)                 Wen et al.'s magnitude (ICLR 2024), as their code computes it

The split is orthogonal, so M_c**2 + M_m**2 == M**2 for every sample. A prompt's score is the mean of
the per-sample, per-step magnitudes over n seeds and the first s steps of the guided sampling path; for
W that is exactly Wen et al.'s score (the L2 norm per generation and step, averaged over the generations
and the first s steps; their cheapest setting s = 1). The RMS magnitudes are the video paper's, in
latent units per element, comparable across resolutions; W's thresholds are comparable with Wen et
al.'s published ones on the same latent size (Stable Diffusion v1.4: N = 4 x 64 x 64).

Two ways to use them:

- functional: `content_magnitude(eps_cond, eps_uncond)` etc. -> one value per batch row;
- `MagnitudeDetector`: accumulates over seeds and steps (`update`/`compute`), and is a sampler hook,
  so `iter_samples(..., hooks=[detector])` fills it and stops the batch after its s steps.
"""
from __future__ import annotations

from collections import defaultdict
from contextlib import nullcontext
from typing import Mapping, Sequence

import torch

from ..errors import DiffmemError
from ..models.adapter import inference_timesteps
from ..models.sampler import StopSampling, initial_noise
from .detectors import (
    anisotropy_terms,
    attention_entropy,
    attention_entropy_norm,
    detector_names,
    difference_jvp,
    sharpness_terms,
)

#: magnitudes reported for a video model / an image model
VIDEO_MAGNITUDES = ("content", "motion", "total", "wen")
IMAGE_MAGNITUDES = ("total", "wen")


def magnitude_names(frame_axis: int | None) -> tuple[str, ...]:
    """Which magnitudes a model has: content/motion/total for video latents, total for images."""
    return VIDEO_MAGNITUDES if frame_axis is not None else IMAGE_MAGNITUDES


def text_difference(eps_cond: torch.Tensor, eps_uncond: torch.Tensor) -> torch.Tensor:
    """D = eps(x_t, prompt) - eps(x_t, ""), in float32 (half-precision RMS would lose the small values)."""
    if eps_cond.shape != eps_uncond.shape:
        raise DiffmemError(f"eps_cond {tuple(eps_cond.shape)} and eps_uncond {tuple(eps_uncond.shape)} differ in shape")
    return eps_cond.float() - eps_uncond.float()


def _rms(x: torch.Tensor) -> torch.Tensor:
    # One value per batch row: root of the mean square over every other axis.
    return x.flatten(1).pow(2).mean(dim=1).sqrt()


def _check_frame_axis(d: torch.Tensor, frame_axis: int) -> int:
    if d.ndim < 3:
        raise DiffmemError(f"video magnitudes need batched latents with a frame axis, got shape {tuple(d.shape)}")
    axis = frame_axis % d.ndim
    if axis == 0:
        raise DiffmemError("frame_axis cannot be the batch axis 0")
    return axis


def content_magnitude(eps_cond: torch.Tensor, eps_uncond: torch.Tensor, frame_axis: int = 2) -> torch.Tensor:
    """M_c = RMS of the frame-mean of D, one value per batch row (shape (B,))."""
    d = text_difference(eps_cond, eps_uncond)
    return _rms(d.mean(dim=_check_frame_axis(d, frame_axis)))


def motion_magnitude(eps_cond: torch.Tensor, eps_uncond: torch.Tensor, frame_axis: int = 2) -> torch.Tensor:
    """M_m = RMS of D minus its frame-mean, one value per batch row (shape (B,))."""
    d = text_difference(eps_cond, eps_uncond)
    axis = _check_frame_axis(d, frame_axis)
    return _rms(d - d.mean(dim=axis, keepdim=True))


def wen_magnitude(eps_cond: torch.Tensor, eps_uncond: torch.Tensor) -> torch.Tensor:
    """W = ||D||_2 over all latent elements, one value per batch row (Wen et al., ICLR 2024)."""
    return text_difference(eps_cond, eps_uncond).flatten(1).norm(dim=1)


def total_magnitude(eps_cond: torch.Tensor, eps_uncond: torch.Tensor) -> torch.Tensor:
    """M = RMS(D), one value per batch row: the image models' magnitude (Wen et al.'s divided by sqrt(N))."""
    return _rms(text_difference(eps_cond, eps_uncond))


def magnitudes(eps_cond: torch.Tensor, eps_uncond: torch.Tensor, frame_axis: int | None = 2) -> dict[str, torch.Tensor]:
    """Every magnitude the model has, each (B,): content/motion/total for video, total for images."""
    d = text_difference(eps_cond, eps_uncond)
    out = {}
    if frame_axis is not None:
        axis = _check_frame_axis(d, frame_axis)
        mean = d.mean(dim=axis, keepdim=True)
        out["content"] = _rms(mean.squeeze(axis))
        out["motion"] = _rms(d - mean)
    out["total"] = _rms(d)
    out["wen"] = d.flatten(1).norm(dim=1)
    return out


def _resolve_axis(frame_axis, eps: torch.Tensor) -> int | None:
    if frame_axis != "auto":
        return frame_axis
    # The adapters' convention: (B, C, F, h, w) video, (B, C, h, w) image.
    if eps.ndim == 5:
        return 2
    if eps.ndim == 4:
        return None
    raise DiffmemError(f"cannot tell video from image latents of shape {tuple(eps.shape)}; pass frame_axis")


class MagnitudeDetector:
    """Per-prompt magnitudes, averaged over seeds and the first `steps` denoising steps.

    `update(eps_cond, eps_uncond, keys, step=...)` adds one batch (one row per sample, `keys[i]` the
    prompt (or prompt id) of row i); `compute()` returns {key: {magnitude: mean}}. `records` keeps every
    per-sample, per-step value so callers can re-aggregate over fewer seeds or steps.

    As a sampler hook (`iter_samples(..., hooks=[detector])`) it reads eps_cond/eps_uncond at steps
    0..steps-1 and, with `stop=True`, raises `StopSampling` after the last of them: no full generation.
    `keys` (one per sampler input, indexed by `state.sample_indices`) names the samples; default: the
    prompt text. `frame_axis="auto"` takes the adapter's (hook) or the latent rank (update).
    """

    def __init__(self, steps: int = 1, *, frame_axis: int | None | str = "auto", keys: Sequence[str] | None = None,
                 stop: bool = True):
        if steps < 1:
            raise DiffmemError(f"steps must be >= 1, got {steps}")
        self.steps = int(steps)
        self.frame_axis = frame_axis
        self.keys = None if keys is None else list(keys)
        self.stop = stop
        self.reset()

    def reset(self) -> None:
        self._sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self._counts: dict[str, int] = defaultdict(int)
        self.records: list[dict] = []
        self.names: tuple[str, ...] | None = None

    def update(self, eps_cond: torch.Tensor, eps_uncond: torch.Tensor, keys: Sequence[str], *, step: int = 0,
               t: int | None = None, seeds: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
        """Add one batch; returns this batch's per-row magnitudes."""
        return self._update(eps_cond, eps_uncond, keys, _resolve_axis(self.frame_axis, eps_cond), step, t, seeds)

    def _update(self, eps_cond, eps_uncond, keys, axis, step, t, seeds) -> dict[str, torch.Tensor]:
        if eps_uncond is None:
            raise DiffmemError("magnitudes need the unconditional prediction eps(x_t, \"\") as well")
        if len(keys) != eps_cond.shape[0]:
            raise DiffmemError(f"{len(keys)} keys for a batch of {eps_cond.shape[0]}")
        mags = magnitudes(eps_cond, eps_uncond, axis)
        names = tuple(mags)
        if self.names is None:
            self.names = names
        elif self.names != names:
            raise DiffmemError(f"mixed video and image batches in one detector ({self.names} vs {names})")
        values = {k: v.detach().cpu().double().tolist() for k, v in mags.items()}
        for i, key in enumerate(keys):
            for name in names:
                self._sums[key][name] += values[name][i]
            self._counts[key] += 1
            rec = {"key": key, "step": int(step), "t": None if t is None else int(t),
                   "seed": None if seeds is None else int(seeds[i])}
            rec.update({name: values[name][i] for name in names})
            self.records.append(rec)
        return mags

    def compute(self) -> dict[str, dict[str, float]]:
        """{key: {magnitude: mean over every (seed, step) seen for that key}} (plus "count")."""
        out = {}
        for key, count in self._counts.items():
            row = {name: self._sums[key][name] / count for name in self.names}
            row["count"] = count
            out[key] = row
        return out

    def __call__(self, state) -> None:
        if state.index < self.steps:
            axis = state.adapter.frame_axis if self.frame_axis == "auto" else self.frame_axis
            keys = state.prompts if self.keys is None else [self.keys[i] for i in state.sample_indices]
            self._update(state.eps_cond, state.eps_uncond, keys, axis, state.index, state.t, state.seeds)
        if self.stop and state.index + 1 >= self.steps:
            raise StopSampling
        return None


_RECORD_FIELDS = ("key", "step", "t", "seed")


def aggregate_records(records: Sequence[Mapping], *, seeds: int | None = None, steps: int | None = None,
                      names: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """Re-aggregate `MagnitudeDetector.records` over the first `seeds` seeds (in seed order) and steps.

    Lets one run at n seeds and s steps give the scores for every smaller n and s (the first n seeds
    and first s steps are exactly what a smaller run would have computed).
    """
    by_key: dict[str, list[Mapping]] = defaultdict(list)
    for r in records:
        by_key[r["key"]].append(r)
    out = {}
    for key, recs in by_key.items():
        if names is None:
            names = [n for n in recs[0] if n not in _RECORD_FIELDS]
        seed_order = sorted({r["seed"] for r in recs}, key=lambda s: (s is None, s))
        keep_seeds = set(seed_order if seeds is None else seed_order[:seeds])
        sel = [r for r in recs if r["seed"] in keep_seeds and (steps is None or r["step"] < steps)]
        if not sel:
            continue
        # the first-step detectors are in the step-0 records only: each score is the mean where it was measured
        row = {n: sum(v) / len(v) for n in names if (v := [r[n] for r in sel if r.get(n) is not None])}
        row["count"] = len(sel)
        out[key] = row
    return out


def first_step_records(adapter, prompts: Sequence[str], seeds: Sequence[int], config, *,
                       batch_size: int = 8, detectors: Sequence[str] = ()) -> list[dict]:
    """Step-0 magnitudes of every (distinct prompt, seed) pair, eps(x_T, "") computed once per seed,
    and the scores of the other first-step `detectors` (`detect.detectors`: anisotropy, sharpness,
    attention) from the same pass.

    At the first step x_T is the seed's initial noise whatever the prompt, so the unconditional
    prediction is shared: P prompts x n seeds cost P n + n denoiser evaluations instead of 2 P n.
    Same records (keyed by prompt text; the same numbers up to float rounding) as
    `MagnitudeDetector(steps=1)` on the sampler with `config`, whose first timestep, noise scaling and
    seeding this follows.
    """
    if config.negative_prompt:
        raise DiffmemError("magnitudes are defined against the empty prompt; config has a negative prompt")
    extra = detector_names(detectors, adapter.frame_axis is not None)
    if "attention" in detectors and not hasattr(adapter, "attention_probe"):
        raise DiffmemError(f"the attention detector reads cross-attention, which {adapter.name or 'this model'} "
                           "does not expose (the built-in tiny models and diffusers UNets do)")
    distinct = list(dict.fromkeys(prompts))
    device = adapter.device
    t = adapter.first_timestep(config.scheduler, config.num_steps)
    if t is None:  # a scheduler that may scale the noise or the input: diffusers' own
        sched = adapter.make_scheduler(config.scheduler)
        sched.set_timesteps(config.num_steps, device=device)
        t, t_lo = sched.timesteps[0], sched.timesteps[-3 if len(sched.timesteps) >= 3 else -1]
        start = lambda x: sched.scale_model_input(x * sched.init_noise_sigma, t)  # noqa: E731
    else:  # DDIM / DDPM: x_T is the noise itself
        steps = inference_timesteps(adapter.scheduler_config(), config.num_steps)
        t, t_lo = torch.tensor(t, device=device), torch.tensor(int(steps[-3 if len(steps) >= 3 else -1]), device=device)
        start = lambda x: x  # noqa: E731
    sigma = float((1 - adapter.alphas_cumprod[int(t)]).sqrt())
    seeds = [int(s) for s in seeds]
    names = magnitude_names(adapter.frame_axis)
    axis = adapter.frame_axis
    out = []
    with torch.no_grad():
        cond_all = adapter.encode_prompt(distinct)
        uncond = adapter.encode_prompt([""])
        for s0 in range(0, len(seeds), batch_size):
            sd = seeds[s0:s0 + batch_size]
            x = start(initial_noise(adapter, sd, config))
            u = uncond.expand(len(sd), *uncond.shape[1:])
            eps_u = adapter.predict_noise(x, t, u)
            eps_u_lo = adapter.predict_noise(x, t_lo, u) if "anisotropy" in detectors else None
            # every (prompt, seed) pair of this seed block, batch_size rows at a time
            pairs = [(pi, si) for pi in range(len(distinct)) for si in range(len(sd))]
            for b0 in range(0, len(pairs), batch_size):
                chunk = pairs[b0:b0 + batch_size]
                pi = [p for p, _ in chunk]
                si = [s for _, s in chunk]
                with adapter.attention_probe() if "attention" in detectors else nullcontext() as probe:
                    eps_c = adapter.predict_noise(x[si], t, cond_all[pi])
                mags = magnitudes(eps_c, eps_u[si], axis)
                if "anisotropy" in detectors:
                    eps_c_lo = adapter.predict_noise(x[si], t_lo, cond_all[pi])
                    mags.update(anisotropy_terms(eps_c - eps_u[si], eps_u_lo[si], eps_c_lo - eps_u_lo[si], axis))
                if "sharpness" in detectors:
                    d = eps_c - eps_u[si]
                    jd = difference_jvp(adapter, x[si], t, cond_all[pi], uncond.expand(len(chunk), *uncond.shape[1:]), d)
                    mags.update(sharpness_terms(jd, sigma, axis))
                if "attention" in detectors:
                    mags["attention_entropy"] = attention_entropy(probe[-1])
                    mags["attention_entropy_norm"] = attention_entropy_norm(probe[-1])
                vals = {k: v.detach().cpu().double().tolist() for k, v in mags.items()}
                for r, (p, sidx) in enumerate(chunk):
                    rec = {"key": distinct[p], "step": 0, "t": int(t), "seed": sd[sidx]}
                    rec.update({n: vals[n][r] for n in (*names, *extra)})
                    out.append(rec)
    return out
