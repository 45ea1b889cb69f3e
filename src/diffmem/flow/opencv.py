"""OpenCV flow: DIS (the default: fast, accurate on small frames) and Farneback (the classic baseline)."""
from __future__ import annotations

import threading

import cv2
import numpy as np

from ..errors import DiffmemError
from .base import FlowEstimator

_DIS_PRESETS = {"ultrafast": "DISOPTICAL_FLOW_PRESET_ULTRAFAST", "fast": "DISOPTICAL_FLOW_PRESET_FAST",
                "medium": "DISOPTICAL_FLOW_PRESET_MEDIUM"}


def _grey(frame: np.ndarray) -> np.ndarray:
    frame = np.ascontiguousarray(frame)
    return frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


class DISFlow(FlowEstimator):
    """Dense Inverse Search (Kroeger et al., ECCV 2016) as implemented in OpenCV.

    preset: ``medium`` by default. finest_scale: 0 estimates at full resolution; OpenCV's presets
    stop one or two pyramid levels above it (a speed trade-off meant for large frames), which
    costs accuracy on 64-256 px frames -- see the flow tests for the endpoint errors.
    """

    name = "dis"

    def __init__(self, preset: str = "medium", finest_scale: int = 0):
        if preset not in _DIS_PRESETS:
            raise DiffmemError(f"unknown DIS preset {preset!r}; choose one of {sorted(_DIS_PRESETS)}")
        self.preset, self.finest_scale = preset, finest_scale
        self._local = threading.local()  # one OpenCV object per thread: the audit computes flow in several
        self._dis  # made now for this thread, so a bad preset fails here

    @property
    def _dis(self):
        dis = getattr(self._local, "dis", None)
        if dis is None:
            dis = self._local.dis = cv2.DISOpticalFlow_create(getattr(cv2, _DIS_PRESETS[self.preset]))
            dis.setFinestScale(int(self.finest_scale))
        return dis

    def pair(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        flow = self._dis.calc(_grey(first), _grey(second), None)
        return np.asarray(flow, np.float32)


class FarnebackFlow(FlowEstimator):
    """Farneback's polynomial-expansion flow (SCIA 2003), OpenCV's parameters for small frames."""

    name = "farneback"

    def __init__(self, pyr_scale: float = 0.5, levels: int = 3, winsize: int = 15, iterations: int = 3,
                 poly_n: int = 5, poly_sigma: float = 1.1):
        self.params = (pyr_scale, levels, winsize, iterations, poly_n, poly_sigma)

    def pair(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        flow = cv2.calcOpticalFlowFarneback(_grey(first), _grey(second), None, *self.params, 0)
        return np.asarray(flow, np.float32)
