"""Denoiser adapters, built-in tiny models, samplers and training.

- `DenoiserAdapter` (adapter.py): the one interface every model is used through;
- `sample` / `iter_samples` (sampler.py): our DDIM/DDPM loop with classifier-free guidance and per-step hooks;
- `load_adapter` (registry.py): "builtin:tiny-t2v", a `diffmem train` folder, a diffusers pipeline folder or
  a hub id in the local cache, or a single-file Stable Diffusion .safetensors (single_file.py), in a dtype;
- `tiny.py` / `train.py`: the built-in tiny latent video model and its CPU training;
- `diffusers_adapters.py`: StableDiffusionPipeline, TextToVideoSDPipeline, AnimateDiffPipeline;
- `cogvideox.py`: CogVideoXPipeline (DiT text-to-video).
"""
from .adapter import DenoiserAdapter, frames_to_uint8, predicted_x0
from .registry import builtin_names, load_adapter
from .sampler import BatchOutput, SampleOutput, SamplerConfig, StepState, StopSampling, iter_samples, sample

__all__ = ["DenoiserAdapter", "frames_to_uint8", "predicted_x0", "load_adapter", "builtin_names", "SamplerConfig",
           "StepState", "StopSampling", "BatchOutput", "SampleOutput", "iter_samples", "sample"]
