"""A toy memorizing text-to-video denoiser and a tiny random differentiable descriptor, for AMG's tests.

Pixel video latents (3, F, H, W) in [-1, 1]; decode(x) = (x + 1) / 2 as (B, F, H, W, 3).
Each prompt p has a pattern m_p (embeddings are the flattened pattern; "" and unknown prompts -> 0).
The denoiser predicts x0(x_t, p) = (1 - k) m_p + k x_t / sqrt(abar), k = abar^2: at high noise it
returns its memorized pattern, near t = 0 it trusts the current sample -- so a deviation put in early
persists, as it does in a trained model. eps follows from x0: (x_t - sqrt(abar) x0) / sqrt(1 - abar).
"""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from diffmem.features.base import Descriptor
from diffmem.features.policy import DescriptorPolicy
from diffmem.io.video import write_video
from diffmem.models.adapter import DenoiserAdapter

SHAPE = (3, 4, 16, 16)


def smooth_pattern(seed: int, shape=SHAPE, moving: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """A smooth random image in [-0.8, 0.8]; frame i is shifted by i * moving (dy, dx) pixels."""
    g = torch.Generator().manual_seed(seed)
    c, f, h, w = shape
    base = F.interpolate(torch.randn(1, c, h // 4 + 2, w // 4 + 2, generator=g), size=(h + 8, w + 8),
                         mode="bilinear", align_corners=False)[0]
    base = 0.8 * torch.tanh(base)
    frames = [torch.roll(base, shifts=(i * moving[0], i * moving[1]), dims=(1, 2))[:, 4:4 + h, 4:4 + w]
              for i in range(f)]
    return torch.stack(frames, 1)


class Memorizer(DenoiserAdapter):
    kind = "video"
    space = "pixel"
    name = "test:memorizer"

    def __init__(self, patterns: dict[str, torch.Tensor]):
        self.patterns = {k: v.reshape(SHAPE).float() for k, v in patterns.items()}
        self.calls = 0

    @property
    def device(self):
        return torch.device("cpu")

    def encode_prompt(self, prompts):
        zero = torch.zeros(SHAPE)
        return torch.stack([self.patterns.get(p, zero) if p else zero for p in prompts]).flatten(1)

    def predict_noise(self, latents, t, embeddings):
        self.calls += latents.shape[0]
        m = embeddings.reshape(-1, *SHAPE).expand(latents.shape[0], *SHAPE)
        a = self.alpha_bar(t)
        k = a ** 2
        x0 = (1 - k) * m + k * latents / a ** 0.5
        return (latents - a ** 0.5 * x0) / (1 - a) ** 0.5

    def decode(self, latents):
        return ((latents + 1) / 2).permute(0, 2, 3, 4, 1)

    # what `guidance.reference.sample_space_training` reads the training set with (as the built-in models)
    cfg = SimpleNamespace(kind="video", size=SHAPE[2], frames=SHAPE[1], fps=8.0)

    def encode_frames(self, frames):
        """uint8 (B, F, H, W, 3) -> pixel latents (B, 3, F, H, W) in [-1, 1]: the inverse of decode."""
        return (torch.as_tensor(frames).float() / 255 * 2 - 1).permute(0, 4, 1, 2, 3)

    def latent_shape(self, num_frames=None, height=None, width=None):
        return SHAPE

    def scheduler_config(self):
        return {"num_train_timesteps": 1000, "beta_schedule": "linear", "beta_start": 0.00085, "beta_end": 0.012,
                "clip_sample": False, "set_alpha_to_one": False}


class RandomDescriptor(Descriptor):
    """Unit-normalised fixed random projection of the 8 x 8 average-pooled, mean-removed frame."""

    def __init__(self, dim: int = 32, seed: int = 0, threshold: float = 0.5):
        super().__init__()
        self.policy = DescriptorPolicy(name="test-random", descriptor="test", dim=dim, threshold=threshold)
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("w", torch.randn(dim, 3 * 64, generator=g) / 8)

    def features(self, x):
        p = F.adaptive_avg_pool2d(x, 8).flatten(1)
        p = p - p.mean(1, keepdim=True)
        return p @ self.w.T


def frames_of(pattern: torch.Tensor) -> np.ndarray:
    """uint8 (F, H, W, 3) of a pattern, as decode would show it."""
    x = ((pattern + 1) / 2).permute(1, 2, 3, 0).clamp(0, 1)
    return np.rint(x.numpy() * 255).astype(np.uint8)


DUP, OTHER, NOVEL = "a cat on grass", "a dog on sand", "a cup on wood"


def write_toy_training_set(root) -> dict[str, torch.Tensor]:
    """A training set in `root`: the cat clip three times (byte-identical copies v0-v2), the dog clip once
    (v3), as mp4 files with train.parquet; prompts.jsonl holds the cat (duplicated_video) and the novel
    cup. Returns the patterns of all three prompts (for `Memorizer`)."""
    pats = {DUP: smooth_pattern(1), OTHER: smooth_pattern(2), NOVEL: smooth_pattern(5)}
    rows = []
    for cap, copies in ((DUP, 3), (OTHER, 1)):
        for _ in range(copies):
            vid = f"v{len(rows)}"
            write_video(root / f"{vid}.mp4", frames_of(pats[cap]), fps=8.0)
            rows.append({"id": vid, "path": f"{vid}.mp4", "caption": cap, "kind": "video"})
    pd.DataFrame(rows).to_parquet(root / "train.parquet")
    with open(root / "prompts.jsonl", "w") as f:
        f.write(json.dumps({"prompt": DUP, "group": "duplicated_video"}) + "\n")
        f.write(json.dumps({"prompt": NOVEL, "group": "novel"}) + "\n")
    return pats
