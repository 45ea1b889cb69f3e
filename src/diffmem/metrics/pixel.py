"""Pixel-level memorization for pixel-space models (Carlini et al. 2023, used by AMG on CIFAR-10):

    nL2(x, n0) = l2(x, n0) / (alpha * mean_{z in S_k(x)} l2(x, z))

S_k(x) the k nearest training samples of x (n0, the nearest, among them), l2 the RMS distance
(root of the mean squared difference over all values), k = 50, alpha = 0.5. Memorized iff nL2 < 1.4
(also reported: < 1.6). A sample closer to one training sample than to its other neighbours gets a
small nL2; an ordinary sample among many similar training samples does not.

Inputs are float tensors or arrays (B, ...) in any fixed range (the same for x and training samples).
The training set is an (N, ...) tensor/array or a `VectorIndex` built with metric "l2" over flattened
samples. `nl2` is differentiable with respect to x (AMG's sigma_t = -nL2 for pixel models): the k
neighbours are found without gradients, their distances recomputed exactly with them.

`nearest_rms` (the k nearest training samples and their exact RMS distances) is the one pixel-distance
kernel: `nl2`, AMG's `guidance.similarity.PixelSimilarity` and the whole-clip copy check of
`models.evaluate` all call it. float64 inputs are computed in float64, everything else in float32.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..errors import DiffmemError

THRESHOLDS = (1.4, 1.6)


def _flat(x) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    t = t.reshape(t.shape[0], -1)
    return t if t.dtype == torch.float64 else t.float()


def _knn(xf: torch.Tensor, train, k: int, chunk: int = 16384) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Indices (B,k) of the k nearest training samples (squared L2), and the training rows (B,k,D)
    when they come from an index (else None: gather from the tensor)."""
    with torch.no_grad():
        if hasattr(train, "search"):
            if getattr(train, "metric", "l2") != "l2":
                raise DiffmemError("nL2 needs an index built with metric 'l2'")
            _, ids = train.search(xf.detach().cpu().numpy(), k)
            ids = torch.as_tensor(ids)
            if (ids < 0).any():
                raise DiffmemError(f"the index holds fewer than k={k} samples")
            vec = torch.as_tensor(train.vectors(ids.numpy())).to(xf)
            return ids, vec
        tf = _flat(train).to(xf)
        if tf.shape[1] != xf.shape[1]:
            raise DiffmemError(f"samples have {xf.shape[1]} values, training samples {tf.shape[1]}")
        x2 = (xf.detach() ** 2).sum(1, keepdim=True)
        best_d = best_i = None
        for lo in range(0, len(tf), chunk):
            z = tf[lo:lo + chunk]
            d = x2 + (z ** 2).sum(1)[None] - 2 * xf.detach() @ z.T
            kk = min(k, d.shape[1])
            v, i = torch.topk(d, kk, dim=1, largest=False)
            i = i + lo
            if best_d is None:
                best_d, best_i = v, i
            else:
                cat_d, cat_i = torch.cat([best_d, v], 1), torch.cat([best_i, i], 1)
                v2, j = torch.topk(cat_d, min(k, cat_d.shape[1]), dim=1, largest=False)
                best_d, best_i = v2, torch.gather(cat_i, 1, j)
        return best_i, None


def nearest_rms(x, train, k: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    """The k nearest training samples of every sample of x by RMS distance l2: (distances (B, k),
    ascending; training indices (B, k)). k is capped at the training size.

    The search runs without gradients (squared L2 by chunks, or the index's search); the k distances
    are then recomputed exactly from the differences, so they are differentiable w.r.t. x.
    """
    if k < 1:
        raise DiffmemError(f"need k >= 1, got k={k}")
    xf = _flat(x)
    n_train = len(train)
    if n_train == 0:
        raise DiffmemError("the training set is empty")
    k = min(int(k), n_train)
    ids, vec = _knn(xf, train, k)
    if vec is None:
        vec = _flat(train).to(xf)[ids]  # (B,k,D)
    d = ((xf[:, None, :] - vec) ** 2).mean(-1).clamp_min(0).add(1e-20).sqrt()  # exact RMS, differentiable
    d, order = torch.sort(d, dim=1, stable=True)  # exact order among the candidates
    return d, torch.gather(ids.to(order.device), 1, order)


def nl2_of(distances: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """nL2 from `nearest_rms`'s distances (B, k): d_1 / (alpha * mean of the k); 0 where all k are 0."""
    num = distances[:, 0]
    den = alpha * distances.mean(1)
    return torch.where(den > 1e-12, num / den.clamp_min(1e-12), torch.zeros_like(num))


def nl2(x, train, k: int = 50, alpha: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """(nL2 values (B,), index of the nearest training sample n0 (B,)). k is capped at the training size."""
    if alpha <= 0 or k < 1:
        raise DiffmemError(f"need alpha > 0 and k >= 1, got alpha={alpha}, k={k}")
    d, ids = nearest_rms(x, train, k)
    return nl2_of(d, alpha), ids[:, 0]


class PixelMemorization:
    """Metric object: `update(x)` with batches of generated samples, `compute()` -> values and rates."""

    def __init__(self, train, k: int = 50, alpha: float = 0.5, thresholds: Sequence[float] = THRESHOLDS):
        self.train, self.k, self.alpha, self.thresholds = train, k, alpha, tuple(thresholds)
        self.values: list[np.ndarray] = []
        self.nearest: list[np.ndarray] = []

    def update(self, x) -> None:
        with torch.no_grad():
            v, i = nl2(x, self.train, self.k, self.alpha)
        self.values.append(v.cpu().numpy())
        self.nearest.append(i.cpu().numpy())

    def compute(self) -> dict:
        v = np.concatenate(self.values) if self.values else np.zeros(0)
        i = np.concatenate(self.nearest) if self.nearest else np.zeros(0, np.int64)
        return pixel_summary(v, i, self.thresholds, self.k, self.alpha)

    def reset(self) -> None:
        self.values, self.nearest = [], []


def pixel_memorization(x, train, k: int = 50, alpha: float = 0.5, thresholds: Sequence[float] = THRESHOLDS) -> dict:
    """Functional twin of `PixelMemorization`."""
    with torch.no_grad():
        v, i = nl2(x, train, k, alpha)
    return pixel_summary(v.cpu().numpy(), i.cpu().numpy(), thresholds, k, alpha)


def pixel_summary(values: np.ndarray, nearest: np.ndarray, thresholds=THRESHOLDS, k: int = 50,
                  alpha: float = 0.5) -> dict:
    out = {"n": int(values.size), "k": k, "alpha": alpha,
           "min": float(values.min()) if values.size else None,
           "median": float(np.median(values)) if values.size else None}
    for t in thresholds:
        out[f"pct_below_{t:g}"] = float(100.0 * (values < t).mean()) if values.size else None
    out["values"] = values.tolist()
    out["nearest"] = [int(i) for i in nearest]
    return out
