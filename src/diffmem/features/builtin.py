"""A copy-detection descriptor that needs no downloaded weights (policy `builtin`).

Every frame is resized to 64 x 64 (skewing), turned into luminance (colour casts drop out) and lightly
blurred (noise, JPEG blocks drop out). Then three blocks, each L2-normalised, are concatenated:

- layout: an 8 x 8 thumbnail, blurred and standardised (mean 0, std 1), so brightness and contrast
  changes do not matter; weight 0.6;
- edges at 64 px and at 32 px: gradient responses in 8 directions (half-wave rectified projections,
  a soft HOG), divided by the local edge energy (local contrast normalisation: a textured background
  and a flat one weigh alike), L^8-pooled over overlapping Gaussian windows into 6 x 6 and 4 x 4
  cells, square-rooted and made zero-mean over directions in each cell.

L^8 pooling is close to a max over each window, so an edge that moves a few pixels inside its window
(small shifts and crops) keeps its value, while the cell layout keeps where things are. Every step is
smooth (no hard binning, no argmax), so gradients flow to the pixels for AMG.

Dimension 480 = 64 + 8 x 36 + 8 x 16. tau_c and how it was calibrated: `CALIBRATION`, and
`diffmem.metrics.calibrate` (which reproduces it).
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from .base import Descriptor
from .policy import DescriptorPolicy

# Measured by `python -m diffmem.world.calibrate` (see its docstring for the procedure);
# filled in from that run and checked by tests/features/test_builtin.py.
CALIBRATION = {
    "threshold": 0.817,
    "fpr_target": 0.01,
    "procedure": ("99th percentile of the nearest-reference similarity of 452 known-novel 64 px frames "
                  "(bundled scikit-image windows, LFW faces, synthetic-world frames of other sources) "
                  "against 490 reference frames; `python -m diffmem.world.calibrate`"),
    # measured by that run (seed 0): novel-frame quantiles and the pair-level false-positive rate at tau_c
    "novel_median": 0.576, "novel_p95": 0.766, "novel_max": 0.857, "pair_fpr": 2.7e-5,
}

_SIZE = 64


def _gauss1d(sigma: float) -> torch.Tensor:
    r = max(1, math.ceil(3 * sigma))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float32) / sigma) ** 2)
    return k / k.sum()


@functools.lru_cache(maxsize=64)
def _blur_matrix(n: int, sigma: float) -> torch.Tensor:
    """(n, n) matrix of a 1-D Gaussian blur with reflected borders: blurring a (.., n, n) map is
    M @ x @ M.T, one matmul instead of a long convolution (small maps, many channels)."""
    k = _gauss1d(sigma)
    r = (len(k) - 1) // 2
    eye = torch.eye(n)[:, None, :]
    y = F.conv1d(F.pad(eye, (r, r), mode="reflect" if n > r else "replicate"), k.view(1, 1, -1))
    return y[:, 0, :].T.contiguous()


@functools.lru_cache(maxsize=64)
def _pool_matrix(n: int, grid: int, sigma: float) -> torch.Tensor:
    """(grid, n): Gaussian blur then average pooling into `grid` cells, as one matrix."""
    pool = F.adaptive_avg_pool1d(torch.eye(n)[:, None, :], grid)[:, 0, :].T  # (grid, n)
    return (pool @ _blur_matrix(n, sigma)).contiguous()


def _sep(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Apply a separable linear map (same matrix on both axes) to the last two dims."""
    m = m.to(x)
    return m @ x @ m.T


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with reflect padding over the last two (square) dims."""
    return _sep(x, _blur_matrix(x.shape[-1], float(sigma)))


def _standardise(v: torch.Tensor, dim: int = 1, eps: float = 1e-3) -> torch.Tensor:
    v = v - v.mean(dim=dim, keepdim=True)
    return v / (v.pow(2).mean(dim=dim, keepdim=True) + eps ** 2).sqrt()


class BuiltinDescriptor(Descriptor):
    """Weight-free, differentiable copy descriptor for small frames (see the module docstring)."""

    # Changing any of these changes the vectors: bump VERSION (it is in the policy fingerprint) and
    # re-run `python -m diffmem.world.calibrate`.
    VERSION = "1"
    THUMB, THUMB_SIGMA, THUMB_WEIGHT = 8, 1.0, 0.6
    GRIDS = ((6, 0), (4, 1))  # (cells per side, pyramid level: 0 = 64 px, 1 = 32 px)
    DIRS = 8
    P = 8.0                    # L^p pooling exponent
    POOL_SIGMA = 0.6           # pooling window std, in cells
    LCN_SIGMA = 4.0            # local contrast normalisation window std, in 64-px pixels
    LUMA_SIGMA = 0.7

    def __init__(self, threshold: float | None = None):
        super().__init__()
        dim = self.THUMB ** 2 + sum(self.DIRS * g * g for g, _ in self.GRIDS)
        self.policy = DescriptorPolicy(
            name="builtin", descriptor="builtin", resize="square", size=_SIZE, dim=dim, version=self.VERSION,
            threshold=CALIBRATION["threshold"] if threshold is None else float(threshold),
            threshold_source=CALIBRATION["procedure"] if threshold is None else "given by the user",
        )
        ang = torch.arange(self.DIRS, dtype=torch.float32) * (2 * math.pi / self.DIRS)
        self.register_buffer("_dirs", torch.stack([ang.cos(), ang.sin()], 1), persistent=False)
        self.register_buffer("_luma", torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1), persistent=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        y = (x * self._luma.to(x)).sum(1, keepdim=True)  # (B,1,64,64)
        y = _blur(y, self.LUMA_SIGMA)

        t = F.adaptive_avg_pool2d(y, self.THUMB)
        t = _standardise(_blur(t, self.THUMB_SIGMA).flatten(1))
        blocks = [self.THUMB_WEIGHT * F.normalize(t, dim=1, eps=1e-4)]

        for grid, level in self.GRIDS:
            yl = F.avg_pool2d(y, 2 ** level) if level else y
            gx = (yl[..., :, 2:] - yl[..., :, :-2])[..., 1:-1, :] / 2
            gy = (yl[..., 2:, :] - yl[..., :-2, :])[..., :, 1:-1] / 2
            r = F.relu(torch.einsum("bchw,kc->bkhw", torch.cat([gx, gy], 1), self._dirs.to(x)))
            energy = (_blur(r.pow(2).sum(1, keepdim=True), self.LCN_SIGMA / 2 ** level) + 1e-8).sqrt()
            r = r / (energy + 0.5 * energy.flatten(1).mean(1).view(b, 1, 1, 1) + 1e-3)
            n = r.shape[-1]
            q = _sep(r.pow(self.P), _pool_matrix(n, grid, self.POOL_SIGMA * n / grid))
            q = (q + 1e-6).pow(1 / self.P)
            q = (q + 1e-4).sqrt()
            q = q - q.mean(1, keepdim=True)  # zero-mean over directions: "there are edges" is not similarity
            blocks.append(F.normalize(q.flatten(1), dim=1, eps=1e-4) / math.sqrt(len(self.GRIDS)))
        return torch.cat(blocks, 1)
