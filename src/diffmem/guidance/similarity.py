"""sigma_t, AMG's similarity between the predicted clean sample and its nearest training sample.

Every similarity takes decoded frames, float (B, F, H, W, 3) in [0, 1] (images: F = 1), possibly
requiring grad, and returns `(sigma, info)`: sigma (B,) differentiable w.r.t. the frames (neighbours
are found without gradients and then held fixed, as the authors' code does), and `info` saying which
training item is the neighbour n0 and which caption y_N goes to caption deduplication.

- `ContentSimilarity`: descriptor dot product f(g_i) . f(n0), maximised over generated frames
  (DESIGN.md's content_score); neighbours from a `NeighbourSource` (`IndexNeighbours` over the
  content index, or `MemoryNeighbours`).
- `PixelSimilarity`: -nL2(x0_hat, n0) for pixel models (Carlini et al.'s normalised L2; the kernel is
  `metrics.pixel`'s).
- `MotionSimilarity`: OFS-k of a differentiable motion proxy (`motion_proxy`) against training
  motion windows, static windows left out (they have no motion to copy).

y_N (`caption_mode`): "neighbour" = the nearest item's caption; "frequent" (default) = the most
frequent caption among the top `caption_top` distinct neighbour items when it occurs at least twice
(a duplicated caption is what memorization follows), otherwise the nearest item's caption.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DiffmemError
from ..metrics.pixel import nearest_rms, nl2_of

CAPTION_MODES = ("neighbour", "frequent")


@dataclass
class SimilarityInfo:
    """Per sample: the neighbour's item id, frame (or window start), caption y_N, and the generated
    frame (or window) where sigma is reached."""

    kind: str
    ids: list[str] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)
    at: list[int] = field(default_factory=list)


class NeighbourSource(Protocol):
    """What sigma_t needs from an index of training descriptors (vectors are unit length)."""

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """float32 (N, D) -> scores (N, k) best first, rows (N, k) (-1 where fewer than k)."""

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """Stored vectors of these rows, (n, D)."""

    def meta(self, row: int) -> tuple[str, int, str]:
        """(item id, frame, caption) of a row."""


class MemoryNeighbours:
    """A `NeighbourSource` over vectors held in memory (exact search by matrix product).

    For small sets (tests, a few thousand frames); `IndexNeighbours` wraps the content index instead.
    """

    def __init__(self, vectors: np.ndarray, ids: Sequence[str], captions: Sequence[str],
                 frames: Sequence[int] | None = None):
        self._v = np.ascontiguousarray(np.asarray(vectors, np.float32))
        if self._v.ndim != 2 or len(self._v) != len(ids) or len(ids) != len(captions):
            raise DiffmemError(f"neighbours: {self._v.shape} vectors, {len(ids)} ids, {len(captions)} captions")
        self._ids, self._caps = list(map(str, ids)), list(map(str, captions))
        self._frames = list(frames) if frames is not None else [0] * len(ids)

    def __len__(self) -> int:
        return len(self._v)

    def scores(self, queries) -> np.ndarray:
        """Every query against every stored vector, (N, len(self)): one pass over the vectors (the search
        is bound by reading them, ~20 MB for the large world's frames)."""
        return np.asarray(queries, np.float32) @ self._v.T

    def search(self, queries, k):
        return top_k(self.scores(queries), k)

    def vectors(self, rows):
        return self._v[np.asarray(rows, np.int64)]

    def meta(self, row):
        return self._ids[row], int(self._frames[row]), self._caps[row]


def top_k(sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, columns) of the k largest values of each row of `sims`, best first."""
    k = min(k, sims.shape[1])
    if k == 1:  # argmax is ~10x cheaper than a partition
        rows = sims.argmax(axis=1)[:, None]
    elif k < sims.shape[1]:  # top k by partition, then only those k sorted (AMG searches at every step)
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, part, 1), axis=1, kind="stable")
        rows = np.take_along_axis(part, order, 1)
    else:
        rows = np.argsort(-sims, axis=1, kind="stable")
    return np.take_along_axis(sims, rows, 1), rows


class IndexNeighbours:
    """A `NeighbourSource` over a content index (`index.VectorIndex`, metadata item_id / frame / caption)."""

    def __init__(self, index):
        self.index = index
        meta = index.metadata
        missing = [c for c in ("item_id", "caption") if c not in meta.columns]
        if missing:
            raise DiffmemError(f"{index.folder}: content index metadata lacks {missing}; AMG needs item ids and captions")
        self._ids = meta["item_id"].astype(str).to_numpy()
        self._caps = meta["caption"].fillna("").astype(str).to_numpy()
        self._frames = meta["frame"].astype(int).to_numpy() if "frame" in meta.columns else np.zeros(len(meta), int)

    def __len__(self) -> int:
        return len(self._ids)

    def search(self, queries, k):
        return self.index.search(np.asarray(queries, np.float32), k)

    def vectors(self, rows):
        return self.index.vectors(np.asarray(rows, np.int64))

    def meta(self, row):
        row = int(row)
        return str(self._ids[row]), int(self._frames[row]), str(self._caps[row])


def pick_caption(neighbour_captions: Sequence[tuple[str, str]], mode: str = "frequent") -> str:
    """y_N from the (item id, caption) of the top neighbours, nearest first (see module docstring).

    Each distinct item counts once, so one long video does not outvote the rest with its frames.
    """
    if mode not in CAPTION_MODES:
        raise DiffmemError(f"unknown caption mode {mode!r}; choose one of {', '.join(CAPTION_MODES)}")
    if not neighbour_captions:
        return ""
    nearest = neighbour_captions[0][1]
    if mode == "neighbour":
        return nearest
    per_item = dict()
    for item, cap in neighbour_captions:
        per_item.setdefault(item, cap)
    counts = Counter(c for c in per_item.values() if c)
    if not counts:
        return nearest
    cap, n = max(counts.items(), key=lambda kv: (kv[1], kv[0] == nearest))
    return cap if n >= 2 else nearest


def _flat_frames(frames: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """(B, F, H, W, 3) -> (B*F, 3, H, W), B, F."""
    if frames.ndim == 4:  # (B, H, W, 3): images
        frames = frames[:, None]
    if frames.ndim != 5 or frames.shape[-1] != 3:
        raise DiffmemError(f"similarity needs frames (B, F, H, W, 3), got {tuple(frames.shape)}")
    b, f = frames.shape[:2]
    return frames.reshape(b * f, *frames.shape[2:]).permute(0, 3, 1, 2), b, f


class ContentSimilarity:
    """sigma = max_i f(g_i) . f(n0(g_i)), f a differentiable descriptor (`features.Descriptor`).

    `for_gradient(frames)` is what G_sim differentiates: the mean over frames of each frame's similarity
    to its own nearest training frame. For an image (one frame) it is sigma itself. For a video, the
    max would send the whole gradient to one frame per step: on the tiny model, a c3 large enough to
    remove the copies then blew that frame out (frame-to-frame change 18 vs 6 at c3 = 300), while the
    mean moves every frame away together (README, "AMG": defaults).
    """

    kind = "content"

    def __init__(self, descriptor, neighbours: NeighbourSource, *, caption_mode: str = "frequent",
                 caption_top: int = 10):
        if caption_mode not in CAPTION_MODES:
            raise DiffmemError(f"unknown caption mode {caption_mode!r}; choose one of {', '.join(CAPTION_MODES)}")
        self.descriptor, self.neighbours = descriptor, neighbours
        self.caption_mode, self.caption_top = caption_mode, int(caption_top)

    @property
    def threshold(self) -> float | None:
        return getattr(self.descriptor, "threshold", None)

    def __call__(self, frames: torch.Tensor) -> tuple[torch.Tensor, SimilarityInfo]:
        x, b, f = _flat_frames(frames)
        desc = self.descriptor.embed(x.to(self.descriptor.device))  # (B*F, D), unit
        k = max(1, self.caption_top if self.caption_mode == "frequent" else 1)
        q = desc.detach().float().cpu().numpy()
        # each frame's nearest training frame, then the caption's k neighbours for the best frame only
        # (the same result as k neighbours for every frame, at a fraction of the search's cost)
        if hasattr(self.neighbours, "scores"):  # in memory: one pass over the vectors serves both
            sims = self.neighbours.scores(q)
            best_frame = sims.max(axis=1).reshape(b, f).argmax(axis=1)
            _, rows = top_k(sims.reshape(b, f, -1)[np.arange(b), best_frame], k)
        else:
            scores, _ = self.neighbours.search(q, 1)
            best_frame = scores.reshape(b, f).argmax(axis=1)
            _, rows = self.neighbours.search(q.reshape(b, f, -1)[np.arange(b), best_frame], k)
        info = SimilarityInfo(self.kind)
        targets = self.neighbours.vectors(rows[:, 0])
        targets = torch.as_tensor(np.asarray(targets), dtype=desc.dtype, device=desc.device)
        desc = desc.reshape(b, f, -1)[torch.arange(b), torch.as_tensor(best_frame)]
        sigma = (desc * targets).sum(1)
        for i in range(b):
            r = rows[i]
            metas = [self.neighbours.meta(int(j)) for j in r if j >= 0]
            item, frame, _ = metas[0]
            info.ids.append(item)
            info.frames.append(frame)
            info.captions.append(pick_caption([(m[0], m[2]) for m in metas], self.caption_mode))
            info.at.append(int(best_frame[i]))
        return sigma, info

    def neighbour_captions(self, frames: torch.Tensor, at: Sequence[int], k: int) -> list[list[tuple[str, str]]]:
        """Per sample: (item id, caption) of the k training frames nearest to frame `at[i]`, nearest first."""
        x, b, f = _flat_frames(frames)
        best = x.reshape(b, f, *x.shape[1:])[torch.arange(b), torch.as_tensor(list(at))]
        desc = self.descriptor.embed(best.to(self.descriptor.device))
        _, rows = self.neighbours.search(desc.detach().float().cpu().numpy(), min(int(k), len(self.neighbours)))
        out = []
        for r in rows:
            metas = [self.neighbours.meta(int(j)) for j in r if j >= 0]
            out.append([(m[0], m[2]) for m in metas])
        return out

    def for_gradient(self, frames: torch.Tensor) -> torch.Tensor:
        """(B,) mean over frames of f(g_i) . f(n0(g_i)), differentiable w.r.t. the frames."""
        x, b, f = _flat_frames(frames)
        desc = self.descriptor.embed(x.to(self.descriptor.device))
        _, rows = self.neighbours.search(desc.detach().float().cpu().numpy(), 1)
        targets = torch.as_tensor(np.asarray(self.neighbours.vectors(rows[:, 0])), dtype=desc.dtype,
                                  device=desc.device)
        return (desc * targets).sum(1).reshape(b, f).mean(1)


class PixelSimilarity:
    """sigma = -nL2(x, n0) = -l2(x, n0) / (alpha * mean_{z in S_k(x)} l2(x, z)), l2 the RMS distance
    (`metrics.pixel.nearest_rms` finds S_k and the distances; `nl2_of` divides).

    `train`: float (N, ...) in [0, 1], each training sample at the generated resolution (a video is
    one sample, all frames). Exact search (small sets: CIFAR-sized pixel models and the tiny world).
    """

    kind = "pixel"

    def __init__(self, train: np.ndarray | torch.Tensor, ids: Sequence[str], captions: Sequence[str], *,
                 k: int = 50, alpha: float = 0.5, caption_mode: str = "frequent", caption_top: int = 10):
        t = torch.as_tensor(np.asarray(train), dtype=torch.float32)
        self.train = t.reshape(len(t), -1)
        if len(self.train) != len(ids) or len(ids) != len(captions):
            raise DiffmemError(f"pixel neighbours: {len(self.train)} samples, {len(ids)} ids, {len(captions)} captions")
        self.ids, self.captions = list(map(str, ids)), list(map(str, captions))
        self.k, self.alpha = int(k), float(alpha)
        self.caption_mode, self.caption_top = caption_mode, int(caption_top)

    threshold = -1.4  # memorized if nL2 < 1.4 (Carlini et al.), i.e. sigma > -1.4

    def __call__(self, frames: torch.Tensor) -> tuple[torch.Tensor, SimilarityInfo]:
        x = frames.reshape(frames.shape[0], -1).float()
        if x.shape[1] != self.train.shape[1]:
            raise DiffmemError(f"pixel similarity: generated samples have {x.shape[1]} values, "
                               f"training samples {self.train.shape[1]}: generate at the training resolution")
        # neighbours found without gradients, distances to them recomputed with grad
        dk, nn = nearest_rms(x, self.train, self.k)  # (B, k), nearest first
        sigma = -nl2_of(dk, self.alpha)
        info = SimilarityInfo(self.kind)
        for i in range(len(x)):
            j = nn[i].tolist()
            info.ids.append(self.ids[j[0]])
            info.frames.append(0)
            info.at.append(0)
            info.captions.append(pick_caption([(self.ids[r], self.captions[r]) for r in j[: self.caption_top]],
                                              self.caption_mode))
        return sigma, info


# ------------------------------------------------------------------------------ motion proxy

@dataclass(frozen=True)
class MotionProxyPolicy:
    """The differentiable motion proxy's settings (stored with results).

    work_size: frames are resized to this square size before matching (flow comes out in pixels of
    it, then is rescaled to the motion policy's common resolution, short side `ref_side`, so
    magnitudes read like DIS's there).
    radius: search radius of the block matching, as a fraction of work_size. temperature: softness of
    the soft-argmax, relative to each cell's mean matching cost (plus `floor`). grid, k: as the motion policy's phi
    and Phi_k. static_px: windows slower than this (px/frame at ref_side, peak cell) are left out.
    """

    # Chosen on world clips of every motion, against DIS OFS-k: see README, "Motion proxy".
    # work_size None: the frames' short side, capped at 64 (32 px clips: 12x cheaper than 64, same agreement).
    work_size: int | None = None
    radius: float = 0.1
    temperature: float = 0.02
    blur: float = 1.0
    floor: float = 1e-6
    grid: int = 8
    k: int = 4
    ref_side: int = 128
    # The proxy reads up to ~0.8 px/frame on still high-frequency noise textures (8 measured; DIS ~0),
    # so its "static" line sits at 1.0 rather than NMF's 0.25 (`metrics.motion.NMFConfig.static_px`).
    static_px: float = 1.0

    def as_dict(self) -> dict:
        return dict(self.__dict__, name="soft-block-matching")


def _gauss_blur(y: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma <= 0:
        return y
    r = max(1, math.ceil(2.5 * sigma))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=y.dtype, device=y.device) / sigma) ** 2)
    k = k / k.sum()
    y = F.pad(y, (r, r, r, r), mode="replicate")
    y = F.conv2d(y, k.view(1, 1, 1, -1))
    return F.conv2d(y, k.view(1, 1, -1, 1))


def motion_proxy(frames: torch.Tensor, policy: MotionProxyPolicy = MotionProxyPolicy()) -> torch.Tensor:
    """Differentiable pooled flow: float (B, F, H, W, 3) in [0, 1] -> (B, F-1, g, g, 2) in px/frame.

    Soft-argmax block matching: for every displacement d within the radius, the squared difference
    between frame i and frame i+1 shifted by -d is averaged over each grid cell; a softmax over d of
    -cost / (temperature * mean cost of the cell) weighs the displacements, and the cell's flow is the
    weighted mean displacement. A textureless cell has a flat cost, hence ~zero flow, as DIS gives.
    """
    if frames.ndim != 5 or frames.shape[-1] != 3:
        raise DiffmemError(f"motion proxy needs frames (B, F, H, W, 3), got {tuple(frames.shape)}")
    b, f = frames.shape[:2]
    if f < 2:
        return frames.new_zeros(b, 0, policy.grid, policy.grid, 2)
    luma = torch.tensor([0.299, 0.587, 0.114], dtype=frames.dtype, device=frames.device)
    h0, w0 = frames.shape[2:4]
    y = (frames * luma).sum(-1).reshape(b * f, 1, h0, w0)
    s = int(policy.work_size or min(64, h0, w0))
    if tuple(y.shape[-2:]) != (s, s):
        y = F.interpolate(y, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
    y = _gauss_blur(y, policy.blur).reshape(b, f, s, s)
    a, nxt = y[:, :-1], y[:, 1:]
    r = max(1, int(round(policy.radius * s)))
    padded = F.pad(nxt.reshape(-1, 1, s, s), (r, r, r, r), mode="replicate").reshape(b, f - 1, s + 2 * r, s + 2 * r)
    shifts = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)]
    g = policy.grid
    costs = []
    for dy, dx in shifts:
        # content at p in frame i is at p + d in frame i+1: compare a(p) with nxt(p + d); pooled to
        # the grid at once, so memory is (shifts x g x g), not (shifts x s x s)
        cand = padded[:, :, r + dy: r + dy + s, r + dx: r + dx + s]
        costs.append(F.adaptive_avg_pool2d((a - cand).pow(2), g))
    cost = torch.stack(costs, 2)  # (B, F-1, D, g, g)
    scale = cost.mean(2, keepdim=True) * policy.temperature + policy.floor
    w = torch.softmax(-cost / scale, dim=2)
    d = torch.tensor(shifts, dtype=frames.dtype, device=frames.device)  # (D, 2) as (dy, dx)
    fy = (w * d[:, 0].view(1, 1, -1, 1, 1)).sum(2)
    fx = (w * d[:, 1].view(1, 1, -1, 1, 1)).sum(2)
    # pixels of the s x s working frame -> pixels at the motion policy's common resolution (short side ref_side)
    k = policy.ref_side / min(h0, w0)
    return torch.stack([fx * (w0 * k / s), fy * (h0 * k / s)], -1)


def proxy_windows(pooled: torch.Tensor, k: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, N, g, g, 2) pooled flow -> Phi_k windows (B, N-k+1, 2 g^2 k) and their motion (B, N-k+1).

    phi and Phi_k exactly as `metrics.motion` defines them (unit phi per flow, concat / sqrt(k)); the
    motion of a window is the mean over its flows of the peak pooled-cell magnitude.
    """
    b, n = pooled.shape[:2]
    m = n - k + 1
    if m <= 0:
        return pooled.new_zeros(b, 0, pooled[0, 0].numel() * k), pooled.new_zeros(b, 0)
    v = pooled.reshape(b, n, -1)
    phi = v / (v.norm(dim=-1, keepdim=True) + 1e-8)
    idx = torch.arange(m, device=pooled.device)[:, None] + torch.arange(k, device=pooled.device)[None, :]
    windows = phi[:, idx].reshape(b, m, -1) / math.sqrt(k)
    peaks = pooled.norm(dim=-1).reshape(b, n, -1).amax(-1)
    motion = peaks[:, idx].mean(-1)
    return windows, motion


class MotionSimilarity:
    """sigma = max over generated windows (not static) and training windows of <Phi_k^proxy, Phi_k^X>.

    `windows` (N, 2 g^2 k) are the training windows (from `proxy_training_windows`, or the motion
    index's DIS windows: the proxy is built to match them), `meta` gives (item id, start, caption) per
    window. Static training windows should be left out by the caller. A sample with no moving window
    gets sigma = -1 (never triggers).
    """

    kind = "motion"

    def __init__(self, windows: np.ndarray, meta: Sequence[tuple[str, int, str]], *,
                 policy: MotionProxyPolicy = MotionProxyPolicy(), threshold: float = 0.8,
                 caption_mode: str = "frequent", caption_top: int = 10):
        self.windows = torch.as_tensor(np.asarray(windows, np.float32))
        if self.windows.ndim != 2 or len(self.windows) != len(meta):
            raise DiffmemError(f"motion neighbours: {tuple(self.windows.shape)} windows, {len(meta)} meta rows")
        self.meta = [(str(a), int(s), str(c)) for a, s, c in meta]
        self.policy, self.threshold = policy, float(threshold)
        self.caption_mode, self.caption_top = caption_mode, int(caption_top)

    def __call__(self, frames: torch.Tensor) -> tuple[torch.Tensor, SimilarityInfo]:
        pooled = motion_proxy(frames.float(), self.policy)
        win, motion = proxy_windows(pooled, self.policy.k)
        b = frames.shape[0]
        info = SimilarityInfo(self.kind)
        if win.shape[1] == 0 or len(self.windows) == 0:
            info.ids, info.frames, info.captions, info.at = [""] * b, [-1] * b, [""] * b, [-1] * b
            return frames.new_full((b,), -1.0) + 0 * frames.sum(), info
        if win.shape[-1] != self.windows.shape[1]:
            raise DiffmemError(f"motion proxy windows have {win.shape[-1]} values but the training windows "
                               f"{self.windows.shape[1]}: use the same grid and k")
        sims = win @ self.windows.to(win.device, win.dtype).T  # (B, M, N)
        moving = (motion > self.policy.static_px)[..., None]
        sims = torch.where(moving, sims, torch.full_like(sims, -1.0))
        flat = sims.reshape(b, -1)
        sigma, arg = flat.max(1)
        n = sims.shape[2]
        for i in range(b):
            j, col = divmod(int(arg[i]), n)
            top = torch.topk(sims[i, j].detach(), min(self.caption_top * 4, n)).indices.tolist()
            metas = [self.meta[c] for c in top]
            info.ids.append(self.meta[col][0])
            info.frames.append(self.meta[col][1])
            info.at.append(j)
            info.captions.append(pick_caption([(m[0], m[2]) for m in metas], self.caption_mode))
        return sigma, info


@torch.no_grad()
def proxy_training_windows(clips: Sequence[np.ndarray], ids: Sequence[str], captions: Sequence[str],
                           policy: MotionProxyPolicy = MotionProxyPolicy(), *, keep_static: bool = False
                           ) -> tuple[np.ndarray, list[tuple[str, int, str]]]:
    """Proxy Phi_k windows of training clips (uint8 (T, H, W, 3) each) for `MotionSimilarity`."""
    out, meta = [], []
    for clip, item, cap in zip(clips, ids, captions):
        x = torch.as_tensor(np.asarray(clip)).float().div(255.0)[None]
        win, motion = proxy_windows(motion_proxy(x, policy), policy.k)
        for j in range(win.shape[1]):
            if keep_static or float(motion[0, j]) > policy.static_px:
                out.append(win[0, j].numpy())
                meta.append((str(item), j, str(cap)))
    dim = 2 * policy.grid ** 2 * policy.k
    return (np.stack(out).astype(np.float32) if out else np.zeros((0, dim), np.float32)), meta
