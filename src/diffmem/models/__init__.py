"""Denoiser adapters, built-in tiny models, samplers and training."""
