"""A hand-built denoiser whose text difference D = eps(x, prompt) - eps(x, "") is known exactly.

Each prompt maps to a pattern P (the shape of one sample's latents); the empty prompt to zeros.
    eps(x, t, prompt) = 0.5 x + P * g(x, t)
with g = 1 ("const"), t / 1000 ("t"), or |mean(x)| per sample ("x"); so D = P * g.
"""
from __future__ import annotations

import torch

from diffmem.models.adapter import DenoiserAdapter


class KnownAdapter(DenoiserAdapter):
    space = "latent"

    def __init__(self, patterns: dict[str, torch.Tensor], shape=(2, 4, 3, 3), kind="video", mode="const",
                 name="test:known"):
        self.kind = kind
        self.name = name
        self.shape = tuple(shape)
        self.mode = mode
        self.patterns = {k: v.reshape(self.shape).float() for k, v in patterns.items()}
        self.rows_evaluated = 0

    @property
    def device(self):
        return torch.device("cpu")

    def encode_prompt(self, prompts):
        zero = torch.zeros(self.shape)
        return torch.stack([self.patterns.get(p, zero) if p else zero for p in prompts]).flatten(1)

    def predict_noise(self, latents, t, embeddings):
        self.rows_evaluated += latents.shape[0]
        p = embeddings.reshape(-1, *self.shape).expand(latents.shape[0], *self.shape)
        if self.mode == "t":
            g = torch.as_tensor(t, dtype=torch.float32) / 1000.0
        elif self.mode == "x":
            g = latents.flatten(1).mean(1).abs().view(-1, *([1] * len(self.shape)))
        else:
            g = 1.0
        return 0.5 * latents + p * g

    def decode(self, latents):
        f = self.shape[1] if self.kind == "video" else 1
        return torch.full((latents.shape[0], f, self.shape[-2], self.shape[-1], 3), 0.5)

    def latent_shape(self, num_frames=None, height=None, width=None):
        return self.shape

    def scheduler_config(self):
        return {"num_train_timesteps": 1000, "beta_schedule": "linear", "beta_start": 0.00085, "beta_end": 0.012,
                "clip_sample": False}


def frame_constant(c=2, f=4, h=3, w=3):
    """Channel 0 is 3 everywhere, channel 1 is -4: the same on every frame. RMS = sqrt((9 + 16) / 2)."""
    p = torch.zeros(c, f, h, w)
    p[0] = 3.0
    p[1] = -4.0
    return p


def alternating(c=2, f=4, h=3, w=3, a=2.0):
    """+a on even frames, -a on odd frames: zero mean over frames, RMS a."""
    p = torch.zeros(c, f, h, w)
    p[:, 0::2] = a
    p[:, 1::2] = -a
    return p

