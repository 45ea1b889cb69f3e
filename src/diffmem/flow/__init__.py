"""Optical flow backends behind one interface.

    est = get_estimator("dis")                      # or "farneback", "raft"
    flow = est.pair(frame_a, frame_b)               # uint8 (H, W, 3) x2 -> float32 (H, W, 2), pixels
    flows = video_flow(frames, FlowPolicy())        # (T, H, W, 3) -> (T-1, H', W', 2) at the common resolution

Flow is forward flow in OpenCV's convention: ``flow[y, x] = (dx, dy)``, x right, y down.
"""
from __future__ import annotations

import numpy as np

from ..errors import DiffmemError
from .base import FlowEstimator, FlowPolicy, check_frames, common_size, to_common_resolution
from .opencv import DISFlow, FarnebackFlow
from .raft import RaftFlow

BACKENDS = ("dis", "farneback", "raft")


def get_estimator(backend: str = "dis", **options) -> FlowEstimator:
    """A flow estimator by name; `options` go to its constructor (e.g. ``weights=`` for RAFT)."""
    if backend == "dis":
        return DISFlow(**options)
    if backend == "farneback":
        return FarnebackFlow(**options)
    if backend == "raft":
        return RaftFlow(**options)
    raise DiffmemError(f"unknown flow backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def video_flow(frames: np.ndarray, policy: FlowPolicy | None = None, estimator: FlowEstimator | None = None
               ) -> np.ndarray:
    """uint8 (T, H, W, 3) -> float32 (T-1, H', W', 2): consecutive-frame flow at the policy's resolution.

    Pass `estimator` to reuse one (e.g. a loaded RAFT) across videos; it must match the policy's backend.
    """
    policy = policy or FlowPolicy()
    if estimator is None:
        estimator = get_estimator(policy.backend)
    elif estimator.name != policy.backend:
        raise DiffmemError(f"flow estimator {estimator.name!r} does not match the policy's backend {policy.backend!r}")
    return estimator.video(to_common_resolution(frames, policy.short_side))


__all__ = ["BACKENDS", "FlowEstimator", "FlowPolicy", "get_estimator", "video_flow", "to_common_resolution",
           "common_size", "check_frames"]
