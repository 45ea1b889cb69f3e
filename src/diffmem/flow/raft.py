"""RAFT (Teed & Deng, ECCV 2020) through torchvision, when torchvision is importable.

RAFT wants frame sizes that are multiples of 8: frames are padded (edge replication) and the
flow cropped back. With `max_side`, larger frames are shrunk for the network and the flow is
scaled back to pixels of the input frames. Weights come from a local file (a state dict for
torchvision's `raft_small` / `raft_large`, loaded with ``weights_only=True``) or, with
``weights="default"``, torchvision's own pretrained weights from its cache.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..device import resolve_device
from ..errors import BadInputError, DiffmemError
from .base import FlowEstimator, check_frames


def _build_model(size: str, weights: str | Path | None):
    try:
        from torchvision.models import optical_flow as tvflow
    except Exception as e:  # ImportError, or a torchvision built against another torch
        raise DiffmemError(f"the RAFT flow backend needs torchvision, which does not import here ({e}); "
                           "use --flow dis or --flow farneback") from e
    if size not in ("small", "large"):
        raise DiffmemError(f"RAFT size must be 'small' or 'large', not {size!r}")
    builder = tvflow.raft_small if size == "small" else tvflow.raft_large
    if weights == "default":
        enum = tvflow.Raft_Small_Weights if size == "small" else tvflow.Raft_Large_Weights
        return builder(weights=enum.DEFAULT)
    if weights is None:
        raise DiffmemError("RAFT needs weights: a local state-dict file, or 'default' for torchvision's")
    path = Path(weights)
    if not path.is_file():
        raise BadInputError(path, "RAFT weights file not found")
    model = builder(weights=None)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as e:
        raise BadInputError(path, f"not a RAFT-{size} state dict ({e})") from e
    return model


class RaftFlow(FlowEstimator):
    """RAFT optical flow. `model` may be given directly (any module called as RAFT is:
    ``model(img1, img2, num_flow_updates=n)`` -> list of (B, 2, H, W) flows, last = final)."""

    name = "raft"

    def __init__(self, weights: str | Path | None = "default", size: str = "small", device="cpu",
                 iterations: int = 12, batch_size: int = 8, max_side: int | None = None, model=None):
        self.device = resolve_device(device)
        self.model = (model if model is not None else _build_model(size, weights)).to(self.device).eval()
        self.iterations, self.batch_size, self.max_side = iterations, batch_size, max_side

    def pair(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        return self.video(np.stack([first, second]))[0]

    def video(self, frames: np.ndarray) -> np.ndarray:
        frames = check_frames(frames)
        t, h, w = frames.shape[:3]
        if t < 2:
            return np.zeros((0, h, w, 2), np.float32)
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)  # RAFT's [-1, 1]
        wh, ww = h, w
        if self.max_side and max(h, w) > self.max_side:
            s = self.max_side / max(h, w)
            wh, ww = max(8, round(h * s)), max(8, round(w * s))
            x = F.interpolate(x, size=(wh, ww), mode="bilinear", align_corners=False, antialias=True)
        ph, pw = math.ceil(wh / 8) * 8 - wh, math.ceil(ww / 8) * 8 - ww
        # Pad right/bottom only, so the top-left pixel grid (and the flow's origin) is unchanged.
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        out = []
        with torch.inference_mode():
            for i in range(0, t - 1, self.batch_size):
                j = min(i + self.batch_size, t - 1)
                a, b = x[i:j].to(self.device), x[i + 1:j + 1].to(self.device)
                flow = self.model(a, b, num_flow_updates=self.iterations)[-1][:, :, :wh, :ww].float().cpu()
                if (wh, ww) != (h, w):
                    # Flow is in pixels of the network's frames: resample the field and rescale its units.
                    flow = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False)
                    flow[:, 0] *= w / ww
                    flow[:, 1] *= h / wh
                out.append(flow)
        return torch.cat(out).permute(0, 2, 3, 1).contiguous().numpy().astype(np.float32)
