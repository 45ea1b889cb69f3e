"""A denoiser whose every output is known by construction: eps(x, t, prompt) = 0.5 x + P(prompt).

P("") = 0, so the guided noise is 0.5 x + s P. Patterns come from a hash of the prompt.
"""
from __future__ import annotations

import zlib

import torch

from diffmem.models.adapter import DenoiserAdapter


class ToyAdapter(DenoiserAdapter):
    space = "latent"

    def __init__(self, kind="video", shape=(2, 3, 4, 4), name="test:toy"):
        self.kind, self.name, self.shape = kind, name, tuple(shape)
        self.calls = 0

    @property
    def device(self):
        return torch.device("cpu")

    def pattern(self, prompt):
        if not prompt:
            return torch.zeros(self.shape)
        g = torch.Generator().manual_seed(zlib.crc32(prompt.encode()))
        return torch.randn(self.shape, generator=g)

    def encode_prompt(self, prompts):
        return torch.stack([self.pattern(p) for p in prompts])

    def predict_noise(self, latents, t, embeddings):
        self.calls += latents.shape[0]
        return 0.5 * latents + embeddings.expand_as(latents)

    def decode(self, latents):
        x = latents if latents.ndim == 5 else latents[:, :, None]
        f = x.shape[2]
        return torch.sigmoid(x[:, :3].permute(0, 2, 3, 4, 1)).reshape(x.shape[0], f, x.shape[3], x.shape[4], 3)

    def latent_shape(self, num_frames=None, height=None, width=None):
        return self.shape

    def scheduler_config(self):
        return {"num_train_timesteps": 1000, "beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02,
                "clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1}
