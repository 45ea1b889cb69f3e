"""The one flow interface: two uint8 RGB frames -> (H, W, 2) float32 flow in pixels.

Convention (OpenCV's, forward flow): ``flow[y, x] = (dx, dy)`` such that the content at
``(x, y)`` in the first frame is at ``(x + dx, y + dy)`` in the second; x to the right, y down.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from ..errors import DiffmemError


@dataclass(frozen=True)
class FlowPolicy:
    """Everything that changes a flow field, so motion descriptors made under two policies are never mixed.

    backend: ``dis`` (default), ``farneback`` or ``raft``.
    short_side: frames are resized so their short side has this many pixels before flow is
        estimated (``None``: native size). Flow is in pixels *at this resolution*, so magnitude
        thresholds mean the same for every input size. 128 by default: the embedded world's
        64x64 clips are upscaled 2x, which gives DIS's 8-px patches enough pixels per object.
    """

    backend: str = "dis"
    short_side: int | None = 128

    def as_dict(self) -> dict:
        return asdict(self)


class FlowEstimator(ABC):
    """Estimates dense optical flow. Subclasses implement `pair`; `video` may batch."""

    name: str = "base"

    @abstractmethod
    def pair(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) RGB, uint8 (H, W, 3) RGB -> float32 (H, W, 2) flow in pixels."""

    def video(self, frames: np.ndarray) -> np.ndarray:
        """uint8 (T, H, W, 3) -> float32 (T-1, H, W, 2): flow between each pair of consecutive frames."""
        frames = check_frames(frames)
        t, h, w = frames.shape[:3]
        out = np.empty((max(t - 1, 0), h, w, 2), np.float32)
        for i in range(t - 1):
            out[i] = self.pair(frames[i], frames[i + 1])
        return out


def check_frames(frames: np.ndarray) -> np.ndarray:
    """Accept (T, H, W, 3) or (T, H, W) uint8; grey frames are repeated to RGB."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise DiffmemError(f"optical flow needs uint8 frames, got {frames.dtype}")
    if frames.ndim == 3:
        frames = np.repeat(frames[..., None], 3, axis=-1)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise DiffmemError(f"optical flow needs frames shaped (T, H, W, 3), got {frames.shape}")
    return frames


def common_size(height: int, width: int, short_side: int | None) -> tuple[int, int]:
    """(H, W) after scaling so the short side is `short_side` (aspect kept, rounded)."""
    if short_side is None:
        return height, width
    s = short_side / min(height, width)
    return max(1, round(height * s)), max(1, round(width * s))


def to_common_resolution(frames: np.ndarray, short_side: int | None) -> np.ndarray:
    """Resize uint8 (T, H, W, 3) frames to the policy's common resolution."""
    frames = check_frames(frames)
    t, h, w = frames.shape[:3]
    nh, nw = common_size(h, w, short_side)
    if (nh, nw) == (h, w):
        return frames
    # Area averaging when shrinking (no aliasing), bilinear when enlarging (no blocky edges for DIS).
    interp = cv2.INTER_AREA if nh < h else cv2.INTER_LINEAR
    return np.stack([cv2.resize(f, (nw, nh), interpolation=interp) for f in frames])
