"""The one interface every copy-detection descriptor has.

    embed(x)       float (B,3,H,W) in [0, 1]  -> (B,D) L2-normalised torch tensor, differentiable
    encode(frames) uint8 (T,H,W,3) numpy      -> (T,D) L2-normalised float32 numpy, no gradients

Similarity is the dot product of two descriptors; `threshold` is tau_c for that policy.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .policy import DescriptorPolicy, apply_policy, frames_to_tensor


class Descriptor(torch.nn.Module):
    """Subclasses set `self.policy` and implement `features(x)` on the policy-preprocessed input."""

    policy: DescriptorPolicy

    def features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        return apply_policy(x, self.policy)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """float (B,3,H,W) in [0, 1] -> (B,D) unit vectors. Gradients flow back to x."""
        return F.normalize(self.features(self.preprocess(x)).flatten(1).float(), dim=1, eps=1e-8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(x)

    @torch.no_grad()
    def encode(self, frames, batch_size: int = 64) -> np.ndarray:
        """uint8 frames (T,H,W,3) (or one (H,W,3) image) -> float32 (T,D) unit vectors."""
        dev = self.device
        arr = np.asarray(frames) if not isinstance(frames, torch.Tensor) else frames
        if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (3, 4)):
            arr = arr[None]  # one image, (H,W) or (H,W,3)
        # convert batch by batch: a long full-HD video as float32 at once would not fit in memory
        out = [self.embed(frames_to_tensor(arr[i:i + batch_size], dev)).cpu() for i in range(0, len(arr), batch_size)]
        return torch.cat(out).numpy().astype(np.float32, copy=False) if out else np.zeros((0, self.dim), np.float32)

    @property
    def device(self) -> torch.device:
        for t in list(self.parameters()) + list(self.buffers()):
            return t.device
        return torch.device("cpu")

    @property
    def dim(self) -> int:
        return int(self.policy.dim)

    @property
    def threshold(self) -> float | None:
        return self.policy.threshold

    @property
    def fingerprint(self) -> str:
        return self.policy.fingerprint

    def extra_repr(self) -> str:
        return f"policy={self.policy.name}, dim={self.policy.dim}, fingerprint={self.fingerprint}"
