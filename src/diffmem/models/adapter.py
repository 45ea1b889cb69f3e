"""The denoiser adapter: the one interface every model (built-in or diffusers) is used through.

Detection, AMG, the sampler and `diffmem generate` only ever talk to a `DenoiserAdapter`. An adapter
wraps one text-conditional diffusion model and answers five questions:

- `encode_prompt(prompts)`: text -> embeddings, a tensor whose first dimension is the batch
  (e.g. (B, 77, 768) for Stable Diffusion). The empty prompt `""` is the unconditional embedding.
- `predict_noise(latents, t, embeddings)`: the model's epsilon prediction for a batch of latents at
  timestep `t` (always epsilon: v-prediction models are converted, so DESIGN.md's formulas hold).
- `decode(latents)`: latents -> frames, float in [0, 1], shape (B, F, H, W, 3), differentiable
  (AMG's dissimilarity gradient flows through it). Images come back as one-frame videos (F = 1).
- `alphas_cumprod`: alpha-bar per training timestep (a 1-D float tensor of length T).
- `make_scheduler(name)`: a fresh diffusers scheduler ("ddim", "ddpm", or "default" = the model's own).

Tensor layouts (the diffusers ones, so the adapters do not copy anything):

- video latents: (B, C, F, h, w) -- frames on axis 2 (`frame_axis == 2`);
- image latents: (B, C, h, w) (`frame_axis is None`).

`space` says whether the denoiser works on VAE latents ("latent") or pixels ("pixel").
"""
from __future__ import annotations

import abc
import inspect
import math
from typing import Mapping, Sequence

import numpy as np
import torch

from ..errors import DiffmemError

KINDS = ("video", "image")
SPACES = ("latent", "pixel")
SCHEDULERS = ("ddim", "ddpm", "default")


class DenoiserAdapter(abc.ABC):
    """One text-conditional denoiser, seen the same way whatever its family.

    Subclasses set `kind`, `space`, `name`, and implement the abstract methods. Everything is on
    `self.device` in `self.dtype`; inputs are moved there by the caller (the sampler does it).
    """

    #: "video" or "image"
    kind: str = "video"
    #: "latent" (denoiser runs on VAE latents) or "pixel"
    space: str = "latent"
    #: a short human-readable name stored in results (e.g. "builtin:tiny-t2v" or a folder path)
    name: str = ""

    # ---- what every adapter implements -------------------------------------------------------
    @property
    @abc.abstractmethod
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    @abc.abstractmethod
    def encode_prompt(self, prompts: Sequence[str]) -> torch.Tensor:
        """Embeddings for `prompts` (batch first). `""` gives the unconditional embedding."""

    @abc.abstractmethod
    def predict_noise(self, latents: torch.Tensor, t: int | torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        """Epsilon prediction, same shape as `latents`.

        `t` is a training timestep (int, 0-d tensor, or one per batch row). `embeddings` has the same
        batch size as `latents` (or 1, broadcast). `latents` are the scheduler-scaled model input
        (identity for DDIM/DDPM).
        """

    @abc.abstractmethod
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Frames (B, F, H, W, 3) float in [0, 1], differentiable w.r.t. `latents`."""

    @abc.abstractmethod
    def latent_shape(self, num_frames: int | None = None, height: int | None = None,
                     width: int | None = None) -> tuple[int, ...]:
        """Shape of ONE sample's latents (no batch dim) for the given output size (None = model default)."""

    @abc.abstractmethod
    def scheduler_config(self) -> dict:
        """The training noise schedule as a diffusers scheduler config (num_train_timesteps, betas...)."""

    # ---- derived, shared by all adapters -------------------------------------------------------
    @property
    def frame_axis(self) -> int | None:
        """Axis of the frames in a batch of latents: 2 for video (B, C, F, h, w), None for images."""
        return 2 if self.kind == "video" else None

    @property
    def default_scheduler(self) -> str:
        """Scheduler class used for name="default" (diffusers class name)."""
        return "DDIMScheduler"

    def make_scheduler(self, name: str = "ddim"):
        """A fresh diffusers scheduler over this model's training noise schedule.

        "ddim" -> DDIMScheduler, "ddpm" -> DDPMScheduler, "default" -> the model's own class
        (for a diffusers pipeline: the scheduler it was saved with). Always epsilon-prediction,
        because `predict_noise` always returns epsilon.
        """
        import diffusers

        cls = getattr(diffusers, self.scheduler_class(name))
        config = dict(self.scheduler_config())
        config["prediction_type"] = "epsilon"
        # the class's own arguments, not `from_config`: that imports every "compatible" scheduler module
        # (and scipy with them), 0.9 s of a short command's start-up; the resulting config is the same
        accepted = inspect.signature(cls.__init__).parameters
        return cls(**{k: v for k, v in config.items() if k in accepted})

    def scheduler_class(self, name: str = "ddim") -> str:
        """The diffusers class name `make_scheduler(name)` builds."""
        if name not in SCHEDULERS:
            raise DiffmemError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")
        return {"ddim": "DDIMScheduler", "ddpm": "DDPMScheduler"}.get(name, self.default_scheduler)

    def first_timestep(self, name: str, num_steps: int) -> int | None:
        """The first timestep of `num_steps` inference steps of scheduler `name`, computed without importing
        diffusers (1.5-2.5 s of a short command's start-up) for DDIM and DDPM, which need neither noise
        scaling nor input scaling (`inference_timesteps`); None for other schedulers (build one then)."""
        if self.scheduler_class(name) not in ("DDIMScheduler", "DDPMScheduler"):
            return None
        return int(inference_timesteps(self.scheduler_config(), num_steps)[0])

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """alpha-bar per training timestep, float64 on the CPU (length num_train_timesteps)."""
        cached = getattr(self, "_alphas_cumprod_cache", None)
        if cached is None:
            cached = alphas_cumprod_of(self.scheduler_config())
            self._alphas_cumprod_cache = cached
        return cached

    @property
    def num_train_timesteps(self) -> int:
        return int(self.alphas_cumprod.shape[0])

    def alpha_bar(self, t: int | torch.Tensor) -> float:
        """alpha-bar at one timestep, as a float."""
        return float(self.alphas_cumprod[int(t)])

    def describe(self) -> dict:
        """What a result must store to say which model made it."""
        return {"name": self.name, "kind": self.kind, "space": self.space, "class": type(self).__name__,
                "latent_shape": list(self.latent_shape()), "num_train_timesteps": self.num_train_timesteps}


PREDICTION_TYPES = ("epsilon", "v_prediction")


def check_prediction_type(name: str, prediction_type: str) -> str:
    """The model's prediction type, or a DiffmemError naming the model when it is one diffmem cannot convert."""
    if prediction_type not in PREDICTION_TYPES:
        raise DiffmemError(f"{name}: prediction type {prediction_type!r} is not supported")
    return prediction_type


def noise_from_output(out: torch.Tensor, x_t: torch.Tensor, t: int | torch.Tensor, alphas_cumprod: torch.Tensor,
                      prediction_type: str) -> torch.Tensor:
    """A denoiser's output as the noise eps that DESIGN.md's formulas use: itself for an epsilon model; for
    a v model, eps = sqrt(abar_t) v + sqrt(1 - abar_t) x_t (Salimans & Ho 2022). t: one timestep or one per
    batch row (indices into alphas_cumprod)."""
    if prediction_type == "epsilon":
        return out
    a = alphas_cumprod.to(x_t.device)[torch.as_tensor(t, device=x_t.device).long()]
    a = a.to(x_t.dtype).reshape(-1, *([1] * (x_t.ndim - 1)))
    return a.sqrt() * out + (1 - a).sqrt() * x_t


def predicted_x0(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar_t: float | torch.Tensor) -> torch.Tensor:
    """x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)  (DESIGN.md, AMG section)."""
    a = torch.as_tensor(alpha_bar_t, dtype=x_t.dtype, device=x_t.device)
    return (x_t - torch.sqrt(1 - a) * eps) / torch.sqrt(a)


def frames_to_uint8(frames: torch.Tensor | np.ndarray) -> np.ndarray:
    """Float frames in [0, 1] (any shape ending in 3) -> uint8 numpy, rounded and clipped."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().float().cpu().numpy()
    return np.clip(np.rint(np.asarray(frames, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def timestep_tensor(t: int | torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    """`t` as a (batch,) long tensor on `device` (helper for adapters whose networks want one per row)."""
    t = torch.as_tensor(t, device=device)
    if t.ndim == 0:
        t = t.expand(batch)
    return t.to(device=device, dtype=torch.long)


_DDPM_DEFAULTS = {"num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear"}


def inference_timesteps(config: Mapping, num_steps: int) -> np.ndarray:
    """The descending timesteps of `num_steps` DDIM / DDPM inference steps over a scheduler config's
    num_train_timesteps T, by its `timestep_spacing` (Lin et al. 2024, Table 2; diffusers' defaults:
    "leading", steps_offset 0), as those schedulers' set_timesteps make them:

        linspace   round(linspace(0, T - 1, n)), reversed
        leading    round(arange(n) * (T // n)), reversed, + steps_offset
        trailing   round(arange(T, 0, -T / n)) - 1
    """
    T = int(config.get("num_train_timesteps") or 1000)
    spacing = config.get("timestep_spacing") or "leading"
    if not 0 < num_steps <= T:
        raise DiffmemError(f"the number of steps must be between 1 and {T} (the training timesteps), got {num_steps}")
    if spacing == "linspace":
        return np.linspace(0, T - 1, num_steps).round()[::-1].astype(np.int64)
    if spacing == "leading":
        return (np.arange(num_steps) * (T // num_steps)).round()[::-1].astype(np.int64) + int(config.get("steps_offset") or 0)
    if spacing == "trailing":
        return np.round(np.arange(T, 0, -T / num_steps)).astype(np.int64) - 1
    raise DiffmemError(f"unknown timestep_spacing {spacing!r} in the scheduler config")


def alphas_cumprod_of(config: Mapping) -> torch.Tensor:
    """alpha-bar per training timestep (float64) of a diffusers scheduler config, computed as diffusers'
    DDPMScheduler does (float32 betas and cumulative product; missing keys take its defaults) without
    loading the scheduler classes. Schedules (Ho et al. 2020; Nichol & Dhariwal 2021 for the cosine one):

        linear              beta_i = linspace(beta_start, beta_end, T)
        scaled_linear       beta_i = linspace(sqrt(beta_start), sqrt(beta_end), T) ** 2
        squaredcos_cap_v2   beta_i = min(1 - f((i + 1) / T) / f(i / T), 0.999),  f(t) = cos((t + 0.008) / 1.008 * pi / 2) ** 2
        alpha-bar_t = prod_{i <= t} (1 - beta_i)

    Anything else (trained betas, zero-SNR rescaling, other schedules) is left to diffusers itself."""
    cfg = {**_DDPM_DEFAULTS, **{k: v for k, v in dict(config).items() if v is not None}}
    n, lo, hi, kind = int(cfg["num_train_timesteps"]), float(cfg["beta_start"]), float(cfg["beta_end"]), cfg["beta_schedule"]
    if cfg.get("trained_betas") is not None or cfg.get("rescale_betas_zero_snr") or kind not in (
            "linear", "scaled_linear", "squaredcos_cap_v2"):
        import diffusers

        return diffusers.DDPMScheduler.from_config(dict(config)).alphas_cumprod.double()
    if kind == "linear":
        betas = torch.linspace(lo, hi, n, dtype=torch.float32)
    elif kind == "scaled_linear":
        betas = torch.linspace(lo ** 0.5, hi ** 0.5, n, dtype=torch.float32) ** 2
    else:
        def f(t):
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

        betas = torch.tensor([min(1 - f((i + 1) / n) / f(i / n), 0.999) for i in range(n)], dtype=torch.float32)
    return torch.cumprod(1.0 - betas, dim=0).double()
