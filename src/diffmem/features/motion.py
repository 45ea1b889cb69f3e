"""The motion descriptor of a video: pooled optical flow phi, windows Phi_k, window motion, its policy.

Definitions (DESIGN.md, "Motion memorization and natural motion filtering"):

    phi(u)       = flow field u average-pooled to a g x g grid, flattened, L2-normalised
    Phi_k(j)     = concat(phi(u_j), ..., phi(u_{j+k-1})) / sqrt(k)          (unit length)

A window's *motion* is the peak pooled-cell flow magnitude averaged over its k flows (px/frame at the
policy's common resolution): a small object moving over a still background covers a few grid cells;
the whole-frame mean flow would call it static, the pooled cell where it moves does not.
The `MotionPolicy` names everything that changes these vectors and is fingerprinted like a
`DescriptorPolicy`. OFS-k and natural motion filtering, which compare them, are in `diffmem.metrics.motion`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from ..flow import FlowEstimator, FlowPolicy, video_flow
from ..io.video import read_frames
from .policy import fingerprint_of

# ----------------------------------------------------------------------------- policy


@dataclass(frozen=True)
class MotionPolicy:
    """Everything that changes a motion descriptor; stored in every motion index and result.

    fps: frames are sampled at this rate before flow, so videos of different frame rates compare
    step for step (None: every decoded frame). grid: g of the g x g pooling. k: flows per window.
    max_frames: cap on sampled frames per video (None: all).
    """

    flow: FlowPolicy = field(default_factory=FlowPolicy)
    grid: int = 8
    k: int = 4
    fps: float | None = 8.0
    max_frames: int | None = None

    def as_dict(self) -> dict:
        return {"kind": "motion", "version": 1, **asdict(self)}

    @property
    def name(self) -> str:
        side = self.flow.short_side if self.flow.short_side else "native"
        return f"ofs-{self.flow.backend}-{side}-g{self.grid}-k{self.k}"

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.as_dict())

    @classmethod
    def from_dict(cls, d: Mapping) -> "MotionPolicy":
        d = {k: v for k, v in d.items() if k not in ("kind", "version")}
        d["flow"] = FlowPolicy(**d.get("flow", {}))
        return cls(**d)


# ----------------------------------------------------------------------------- descriptors


def _area_weights(n: int, g: int) -> np.ndarray:
    """(g, n) matrix averaging n pixels into g equal cells with exact fractional overlaps."""
    edges = np.linspace(0.0, n, g + 1)
    lo = np.maximum(edges[:-1, None], np.arange(n)[None, :])
    hi = np.minimum(edges[1:, None], np.arange(n)[None, :] + 1)
    w = np.clip(hi - lo, 0.0, None)
    return w / w.sum(axis=1, keepdims=True)


def pool_flow(flows: np.ndarray, grid: int = 8) -> np.ndarray:
    """float (N, H, W, 2) or (H, W, 2) -> (N, g, g, 2) (or (g, g, 2)): area-average pooled flow, px/frame."""
    flows = np.asarray(flows, np.float32)
    single = flows.ndim == 3
    f = flows[None] if single else flows
    wy, wx = _area_weights(f.shape[1], grid), _area_weights(f.shape[2], grid)
    pooled = np.einsum("gh,nhwc,kw->ngkc", wy, f, wx, optimize=True).astype(np.float32)
    return pooled[0] if single else pooled


def phi(pooled: np.ndarray) -> np.ndarray:
    """(N, g, g, 2) pooled flow -> (N, 2 g^2) unit vectors; an all-zero field stays zero (matches nothing)."""
    v = np.asarray(pooled, np.float32).reshape(len(pooled), -1)
    n = np.linalg.norm(v, axis=1, keepdims=True)
    return np.where(n > 1e-12, v / np.maximum(n, 1e-12), 0.0).astype(np.float32)


def window_descriptors(phis: np.ndarray, k: int = 4) -> np.ndarray:
    """(N, D) -> (N-k+1, k D): Phi_k(j) = concat(phi_j .. phi_{j+k-1}) / sqrt(k); empty if N < k."""
    phis = np.asarray(phis, np.float32)
    m = len(phis) - k + 1
    if m <= 0:
        return np.zeros((0, k * phis.shape[1]), np.float32)
    idx = np.arange(m)[:, None] + np.arange(k)[None, :]
    return (phis[idx].reshape(m, -1) / math.sqrt(k)).astype(np.float32)


def peak_motion(pooled: np.ndarray) -> np.ndarray:
    """(N, g, g, 2) -> (N,): the largest pooled-cell flow magnitude of each field (px/frame)."""
    p = np.asarray(pooled, np.float32)
    return np.hypot(p[..., 0], p[..., 1]).reshape(len(p), -1).max(axis=1)


def window_motion(peaks: np.ndarray, k: int = 4) -> np.ndarray:
    """(N,) per-flow peak motion -> (N-k+1,) its mean over each window of k flows."""
    peaks = np.asarray(peaks, np.float64)
    m = len(peaks) - k + 1
    if m <= 0:
        return np.zeros(0, np.float32)
    c = np.concatenate([[0.0], np.cumsum(peaks)])
    return ((c[k:] - c[:-k]) / k).astype(np.float32)


@dataclass
class VideoMotion:
    """The motion descriptors of one video: per flow `pooled` (N, g, g, 2) and `peaks` (N,);
    per window `windows` (M, 2 g^2 k) and `motion` (M,), M = N - k + 1 (0 if too short)."""

    pooled: np.ndarray
    peaks: np.ndarray
    windows: np.ndarray
    motion: np.ndarray
    k: int

    @property
    def n_flows(self) -> int:
        return len(self.pooled)

    @classmethod
    def from_flows(cls, flows: np.ndarray, grid: int = 8, k: int = 4) -> "VideoMotion":
        pooled = pool_flow(flows, grid) if len(flows) else np.zeros((0, grid, grid, 2), np.float32)
        peaks = peak_motion(pooled) if len(pooled) else np.zeros(0, np.float32)
        return cls(pooled, peaks, window_descriptors(phi(pooled), k) if len(pooled) else
                   np.zeros((0, 2 * grid * grid * k), np.float32), window_motion(peaks, k), k)


def describe_motion(frames: np.ndarray, policy: MotionPolicy | None = None,
                    estimator: FlowEstimator | None = None) -> VideoMotion:
    """uint8 (T, H, W, 3) frames (already sampled at the policy's fps) -> VideoMotion."""
    policy = policy or MotionPolicy()
    frames = frames if policy.max_frames is None else frames[: policy.max_frames]
    flows = video_flow(frames, policy.flow, estimator) if len(frames) >= 2 else np.zeros((0, 1, 1, 2), np.float32)
    return VideoMotion.from_flows(flows, policy.grid, policy.k)


def read_motion_frames(path: str | Path, policy: MotionPolicy, *, with_indices: bool = False):
    """Frames of a video sampled the way `policy` says (fps, max_frames). Raises BadInputError.
    with_indices: (frames, the source frame number of each) instead of the frames alone."""
    fr = read_frames(path, fps=policy.fps)
    n = len(fr) if policy.max_frames is None else min(len(fr), policy.max_frames)
    return (fr.array[:n], np.asarray(fr.indices[:n], np.int64)) if with_indices else fr.array[:n]


def repeated_pairs(indices) -> int:
    """Consecutive sampled frames that are the same source frame: sampling a video above its own frame rate
    gives them, and the optical flow between a frame and itself is zero (so a window of them cannot match
    any training motion)."""
    idx = np.asarray(indices)
    return int(np.count_nonzero(idx[1:] == idx[:-1])) if idx.size > 1 else 0
