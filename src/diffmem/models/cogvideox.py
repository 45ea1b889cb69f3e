"""CogVideoX (diffusers `CogVideoXPipeline`) seen as a `DenoiserAdapter`.

CogVideoX is a DiT text-to-video model: a T5 text encoder, a `CogVideoXTransformer3DModel` working on
(B, F, C, h, w) latents with (optionally) 3-D rotary position embeddings made by the pipeline, and a 3-D
VAE (`AutoencoderKLCogVideoX`) that compresses time as well as space: `latent frames = (frames - 1) //
temporal_compression_ratio + 1`, and only some frame counts come back out of it (`decoded_frames`: 49 for
the real model's 13 latent frames; `latent_shape` refuses the others).

What the adapter computes is what `CogVideoXPipeline.__call__` computes (same T5 embeddings from the
pipeline's own `encode_prompt` at `max_sequence_length = transformer.config.max_text_seq_length`, the
pipeline's 226 for the real model; same transformer call
with the pipeline's rotary embeddings; same `decode_latents` and [-1, 1] -> [0, 1] postprocessing);
tests/models/test_cogvideox.py checks it on tiny random components.

diffmem's latents stay (B, C, F, h, w) (`frame_axis == 2`); the adapter permutes in and out of the
transformer. The real model is v-predicting; `predict_noise` returns epsilon (DESIGN.md's formulas).

The noise schedule is the pipeline scheduler's own: CogVideoXDDIMScheduler shifts the scaled-linear
alpha-bar by `snr_shift_scale` s (abar' = abar / (s + (1 - s) abar)) and then rescales it to zero
terminal SNR (Lin et al. 2024), which diffmem's generic schedule code (and DDIMScheduler) does not
know, so `alphas_cumprod` is `pipe.scheduler.alphas_cumprod` and `make_scheduler` installs it into the
scheduler it builds.

Not carried over: `use_dynamic_cfg`, LoRA scales / attention_kwargs, CogVideoXDPMScheduler as sampler
(its `step` has another signature: "default" then means CogVideoXDDIMScheduler over the same schedule),
CogVideoX 1.5's padding of latent frames to a multiple of `patch_size_t` (frame counts that would need it
are refused), image-to-video / video-to-video pipelines, VAE tiling or slicing.

No diffusers/transformers import at module level (diffusers comes in through
`DenoiserAdapter.make_scheduler`), so diffusers_adapters imports this module at its top.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..errors import BadInputError, DiffmemError
from .adapter import DenoiserAdapter, check_prediction_type, noise_from_output, timestep_tensor

#: alpha-bar at the last training timestep, which zero-terminal-SNR rescaling makes exactly 0 (so that
#: x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar) would divide by 0). diffusers' DPMSolverMultistepScheduler
#: clamps it to the same value for the same reason when rescale_betas_zero_snr is set.
ZERO_SNR_CLAMP = 2.0 ** -24


class CogVideoXAdapter(DenoiserAdapter):
    """A `diffusers.CogVideoXPipeline` (text-to-video) as a `DenoiserAdapter`.

    Build it from a pipeline object (`CogVideoXAdapter(pipe)`) or a saved folder (`load_diffusers(path)`).
    """

    kind = "video"
    space = "latent"
    pipeline_class = "CogVideoXPipeline"

    def __init__(self, pipe, name: str = ""):
        cls = type(pipe).__name__
        if cls != "CogVideoXPipeline":
            raise DiffmemError(f"{cls} is not a CogVideoXPipeline")
        self.pipe = pipe
        self.name = name or cls
        self.transformer = pipe.transformer
        self.vae = pipe.vae
        self.text_encoder = pipe.text_encoder
        self.vae_scale_factor = int(pipe.vae_scale_factor_spatial)
        self.temporal_ratio = int(pipe.vae_scale_factor_temporal)
        cfg = self.transformer.config
        # the length the transformer was built for (its sin-cos position table covers exactly this many text
        # tokens); the real model's 226 is also the pipeline's default max_sequence_length
        self.max_sequence_length = int(cfg.max_text_seq_length)
        self._rotary = bool(cfg.use_rotary_positional_embeddings)
        self._rotary_cache: dict = {}
        self._prediction_type = check_prediction_type(self.name, pipe.scheduler.config.get("prediction_type", "epsilon"))

    # ---- interface ---------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.transformer.device

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.dtype

    @property
    def default_scheduler(self) -> str:
        name = type(self.pipe.scheduler).__name__
        # CogVideoXDPMScheduler.step takes (eps, old_x0, t, t_back, x): not a one-step scheduler diffmem's loop
        # can drive; its DDIM sibling runs the same schedule
        return "CogVideoXDDIMScheduler" if name == "CogVideoXDPMScheduler" else name

    def scheduler_config(self) -> dict:
        return dict(self.pipe.scheduler.config)

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """The pipeline scheduler's alpha-bar (SNR-shifted, then zero-SNR rescaled), float64 on the CPU, with
        the last value (exactly 0 under zero terminal SNR) clamped to 2**-24 (see ZERO_SNR_CLAMP)."""
        cached = getattr(self, "_alphas_cumprod_cache", None)
        if cached is None:
            cached = self.pipe.scheduler.alphas_cumprod.detach().to("cpu", torch.float64).clone()
            cached[-1] = cached[-1].clamp(min=ZERO_SNR_CLAMP)
            self._alphas_cumprod_cache = cached
        return cached

    def make_scheduler(self, name: str = "ddim"):
        """A fresh scheduler ("ddim" DDIMScheduler, "ddpm" DDPMScheduler, "default" the pipeline's own class)
        over exactly `self.alphas_cumprod`: the generic classes know zero-SNR rescaling but not CogVideoX's
        SNR shift, so the adapter's schedule is written into the scheduler after it is built."""
        sched = super().make_scheduler(name)
        abar = self.alphas_cumprod.clone()  # float64, as CogVideoXDDIMScheduler keeps its own
        prev = torch.cat([abar.new_ones(1), abar[:-1]])
        sched.alphas_cumprod = abar
        sched.alphas = abar / prev
        sched.betas = 1.0 - sched.alphas
        if hasattr(sched, "final_alpha_cumprod") and not sched.config.get("set_alpha_to_one", True):
            sched.final_alpha_cumprod = abar[0]  # DDIM's alpha-bar "before" the first step, from the new schedule
        return sched

    def encode_prompt(self, prompts: Sequence[str]) -> torch.Tensor:
        # The pipeline's own T5 path (padding to max_sequence_length, last hidden state), so that "" gives
        # exactly the negative/unconditional embedding the pipeline uses for guidance.
        emb, _ = self.pipe.encode_prompt(list(prompts), do_classifier_free_guidance=False, num_videos_per_prompt=1,
                                         max_sequence_length=self.max_sequence_length, device=self.device,
                                         dtype=self.dtype)
        return emb

    def rotary_embeddings(self, height: int, width: int, latent_frames: int):
        """The pipeline's image_rotary_emb for pixel size (height, width) and `latent_frames` (cached), or None
        when the transformer uses sin-cos position embeddings instead."""
        if not self._rotary:
            return None
        key = (int(height), int(width), int(latent_frames), str(self.device))
        if key not in self._rotary_cache:
            self._rotary_cache[key] = self.pipe._prepare_rotary_positional_embeddings(
                int(height), int(width), int(latent_frames), self.device)
        return self._rotary_cache[key]

    def predict_noise(self, latents: torch.Tensor, t: int | torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        b, _, f, h, w = latents.shape
        if embeddings.shape[0] == 1 and b > 1:
            embeddings = embeddings.expand(b, *embeddings.shape[1:])
        rotary = self.rotary_embeddings(h * self.vae_scale_factor, w * self.vae_scale_factor, f)
        x = latents.permute(0, 2, 1, 3, 4)  # (B, C, F, h, w) -> the transformer's (B, F, C, h, w)
        out = self.transformer(hidden_states=x, encoder_hidden_states=embeddings,
                               timestep=timestep_tensor(t, b, latents.device), image_rotary_emb=rotary,
                               return_dict=False)[0]
        out = out.permute(0, 2, 1, 3, 4)
        # v -> eps with the clamped abar at t = T-1
        return noise_from_output(out, latents, t, self.alphas_cumprod, self._prediction_type)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        # the pipeline's decode_latents (its latents are (B, F, C, h, w); ours already are the VAE's (B, C, F, h, w))
        z = latents / self.vae.config.scaling_factor
        video = self.vae.decode(z.to(self.vae.dtype), return_dict=False)[0].float()  # (B, 3, F, H, W) in [-1, 1]
        video = (video / 2 + 0.5).clamp(0, 1)  # VideoProcessor.postprocess_video
        return video.permute(0, 2, 3, 4, 1)

    def decoded_frames(self, latent_frames: int) -> int:
        """How many frames the VAE decodes from `latent_frames`, following AutoencoderKLCogVideoX._decode: the
        latent frames go through the decoder in chunks of `num_latent_frames_batch_size` (2; the first chunk takes
        the odd one out), and each of its log2(temporal_compression_ratio) time-upsamplings turns n > 1 frames
        of a chunk into 2n - 1 (n odd) or 2n (n even). So L latent frames give 1 + r (L - 1) frames for odd L
        (the real model's 13 -> 49) and r L for even L."""
        levels = round(math.log2(self.temporal_ratio))
        size = int(getattr(self.vae, "num_latent_frames_batch_size", 2))
        total = 0
        for i in range(max(latent_frames // size, 1)):
            rest = latent_frames % size
            start, end = size * i + (0 if i == 0 else rest), min(size * (i + 1) + rest, latent_frames)
            n = end - start
            for _ in range(levels):
                n = 2 * n - 1 if n > 1 and n % 2 else (2 * n if n > 1 else 1)
            total += n
        return total

    def latent_shape(self, num_frames: int | None = None, height: int | None = None,
                     width: int | None = None) -> tuple[int, ...]:
        cfg = self.transformer.config
        r, s = self.temporal_ratio, self.vae_scale_factor
        frames = int(num_frames or cfg.sample_frames)  # the pipeline's default (49 for the real model)
        latent_frames = (frames - 1) // r + 1 if frames >= 1 else 0
        if frames < 1 or self.decoded_frames(latent_frames) != frames:
            ok = [n for n in range(1, max(frames, 1) + 4 * r + 2) if self.decoded_frames((n - 1) // r + 1) == n]
            near = sorted(sorted(ok, key=lambda n: (abs(n - frames), n))[:2])
            made = ", ".join(map(str, ok[:5]))
            raise BadInputError(self.name, f"its VAE makes {made}, ... frames (1 + {r}(L - 1) from an odd number L "
                                           f"of latent frames, {r}L from an even one); asked for {frames}: "
                                           f"pass --frames {' or '.join(map(str, near))}")
        p_t = cfg.get("patch_size_t", None)
        if p_t and latent_frames % int(p_t):
            raise BadInputError(self.name, f"its transformer wants a multiple of {p_t} latent frames (the pipeline's "
                                           f"padding of them is not carried over); asked for {frames} frames = "
                                           f"{latent_frames} latent frames")
        p = int(cfg.patch_size)
        hh = int(height or cfg.sample_height * s)
        ww = int(width or cfg.sample_width * s)
        if hh % (s * p) or ww % (s * p):
            raise BadInputError(self.name, f"height and width must be multiples of {s * p}; asked for {hh}x{ww}")
        return (int(cfg.in_channels), latent_frames, hh // s, ww // s)
