"""A text-to-video denoiser that memorized a world by construction, for the end-to-end tests.

For each memorized prompt p it holds a clip m_p (pixel space, (3, F, H, W) in [-1, 1]):

- every duplicated source's caption -> that source's training clip (content memorization);
- every motion_memorization prompt with role "memorized" ("B does M") -> the signature source's exact
  trajectory rendered in appearance B (motion memorization: same motion, another appearance).

Everything else (novel prompts, caption-only duplicates, controls, "") is unknown. The denoiser predicts
x0(x_t, p) = m_p for a memorized prompt and x0 = x_t / sqrt(abar) (pure noise, eps = 0) otherwise, so
without guidance (scale 1) a memorized prompt ends exactly on m_p and the others on noise, and
D = eps(x_t, p) - eps(x_t, "") is zero for unmemorized prompts: detection separates them perfectly.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from diffmem.models.adapter import DenoiserAdapter


def _clip(frames_u8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames_u8.astype(np.float32) / 127.5 - 1.0).permute(3, 0, 1, 2)  # (3, F, H, W)


def world_patterns(world: Path, n_frames: int, size: int | None = None, first: bool = False) -> dict[str, torch.Tensor]:
    """first: a model of the clips' first n_frames at their own rate (the large world's model), else
    n_frames spread over each clip; size: frames resized to this side (default: the world's)."""
    import cv2

    from diffmem.io.video import read_frames
    from diffmem.world import item_specs, render_clip

    def frames_of(fr):
        idx = np.arange(n_frames) if first and len(fr) >= n_frames else \
            np.linspace(0, len(fr) - 1, n_frames).round().astype(int)  # an image: its frame, repeated
        fr = fr[idx]
        if size is not None and fr.shape[1] != size:
            fr = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in fr])
        return _clip(fr)

    world = Path(world)
    gt = json.loads((world / "ground_truth.json").read_text())
    paths = {it["id"]: world / it["path"] for it in gt["items"]}
    out = {}
    for g in gt["duplicate_groups"]:
        out[g["caption"]] = frames_of(read_frames(paths[g["ids"][0]]).array)
    specs = item_specs(world)
    for line in (world / "prompts.jsonl").read_text().splitlines():
        p = json.loads(line)
        if p["group"] == "motion_memorization" and p.get("role") == "memorized":
            sig = specs[p["signature_source_ids"][0]]
            spec = dataclasses.replace(sig, sprite=p["sprite"], background=p["background"], sprite_instance=0)
            out[p["prompt"]] = frames_of(render_clip(spec)) if first else _clip(render_clip(spec)[:n_frames])
    return out


class WorldMemorizer(DenoiserAdapter):
    kind = "video"
    space = "pixel"
    name = "test:world-memorizer"

    def __init__(self, world: Path, n_frames: int = 8, size: int = 32, fps: float = 8.0, first: bool = False):
        self.shape = (3, n_frames, size, size)
        self.fps = fps
        self.patterns = world_patterns(world, n_frames, size if first else None, first)
        self.calls = 0

    @property
    def device(self):
        return torch.device("cpu")

    def encode_prompt(self, prompts):
        # one extra channel says "memorized": unknown prompts are not confused with an all-zero clip
        flat = torch.zeros(len(prompts), 1 + int(np.prod(self.shape)))
        for i, p in enumerate(prompts):
            if p in self.patterns:
                flat[i, 0] = 1.0
                flat[i, 1:] = self.patterns[p].flatten()
        return flat

    def predict_noise(self, latents, t, embeddings):
        self.calls += latents.shape[0]
        emb = embeddings.expand(latents.shape[0], -1)
        known = emb[:, 0].view(-1, 1, 1, 1, 1) > 0.5
        m = emb[:, 1:].reshape(-1, *self.shape)
        a = self.alpha_bar(t)
        x0 = torch.where(known, m, latents / a ** 0.5)
        return (latents - a ** 0.5 * x0) / (1 - a) ** 0.5

    def decode(self, latents):
        return ((latents + 1) / 2).clamp(0, 1).permute(0, 2, 3, 4, 1)

    def latent_shape(self, num_frames=None, height=None, width=None):
        return self.shape

    def scheduler_config(self):
        return {"num_train_timesteps": 1000, "beta_schedule": "linear", "beta_start": 0.00085, "beta_end": 0.012,
                "clip_sample": False, "set_alpha_to_one": False}
