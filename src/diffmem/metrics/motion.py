"""Motion memorization: OFS-k with the best offset, and natural motion filtering (NMF).

The descriptors phi and Phi_k are computed in `diffmem.features.motion`; the index of training windows
and its search in `diffmem.index.motion`.

Definitions (DESIGN.md, "Motion memorization and natural motion filtering"):

    phi(u)       = flow field u average-pooled to a g x g grid, flattened, L2-normalised
    Phi_k(j)     = concat(phi(u_j), ..., phi(u_{j+k-1})) / sqrt(k)          (unit length)
    OFS-k(G, X)  = max over j, j' of <Phi_k^G(j), Phi_k^X(j')>

NMF (natural motion filtering) discounts a generated window when
- it is static: its motion, the peak pooled-cell flow magnitude averaged over the window's k
  flows (px/frame at the policy's common resolution), is below `static_px`; or
- its motion is shared: training windows of at least `natural_groups` distinct training
  duplicate groups match it above `tau_m` (near-duplicate training items count once).
A generated item is motion-memorized iff a window that NMF keeps matches a training window
above `tau_m`. Static training windows never count as matches (a still shot has no motion to copy).

Why the *peak cell* for "static": a small object moving over a still background covers a few
grid cells; the whole-frame mean flow would call it static, the pooled cell where it moves does not,
while estimator noise on a still frame averages out within each cell.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..features.motion import VideoMotion
from ..index.motion import Neighbour
from .duplicates import content_clusters

# ----------------------------------------------------------------------------- OFS-k


@dataclass(frozen=True)
class OFSMatch:
    """OFS-k of a pair of videos and where it is reached (window starts, in flow steps)."""

    score: float
    gen_start: int
    train_start: int

    def as_dict(self) -> dict:
        return asdict(self)


def ofs_k_windows(gen_windows: np.ndarray, train_windows: np.ndarray) -> OFSMatch | None:
    """OFS-k from two sets of Phi_k windows; None when either video is shorter than k flows."""
    if len(gen_windows) == 0 or len(train_windows) == 0:
        return None
    sims = np.asarray(gen_windows, np.float64) @ np.asarray(train_windows, np.float64).T
    j, jp = np.unravel_index(int(np.argmax(sims)), sims.shape)
    return OFSMatch(float(sims[j, jp]), int(j), int(jp))


def ofs_k(gen_flows: np.ndarray, train_flows: np.ndarray, k: int = 4, grid: int = 8) -> OFSMatch | None:
    """OFS-k between two videos given as flow fields (N, H, W, 2), best temporal offset included.

    The two flows may have different sizes: pooling to g x g makes them comparable.
    """
    a = VideoMotion.from_flows(gen_flows, grid, k)
    b = VideoMotion.from_flows(train_flows, grid, k)
    return ofs_k_windows(a.windows, b.windows)


class OFSk:
    """Metric object twin of `ofs_k`: `update(gen_flows, train_flows)` per pair, `compute()` summarises."""

    def __init__(self, k: int = 4, grid: int = 8):
        self.k, self.grid = k, grid
        self.scores: list[float] = []

    def update(self, gen_flows: np.ndarray, train_flows: np.ndarray) -> None:
        m = ofs_k(gen_flows, train_flows, self.k, self.grid)
        self.scores.append(float("nan") if m is None else m.score)

    def compute(self) -> dict:
        s = np.asarray(self.scores, np.float64)
        ok = s[np.isfinite(s)]
        return {"n": int(len(s)), "n_too_short": int(len(s) - len(ok)),
                "mean": float(ok.mean()) if len(ok) else float("nan"),
                "max": float(ok.max()) if len(ok) else float("nan")}

    def reset(self) -> None:
        self.scores.clear()


# ----------------------------------------------------------------------------- NMF


@dataclass(frozen=True)
class NMFConfig:
    """Thresholds of the motion verdict and natural motion filtering (how they were chosen: README, "Motion").

    tau_m: OFS-k above which a window match counts. static_px: window motion (peak pooled-cell
    flow, px/frame at the common resolution) below which a window is static. natural_groups:
    a window matched above tau_m by this many distinct training duplicate groups is natural.
    """

    tau_m: float = 0.9
    static_px: float = 0.25
    natural_groups: int = 5

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class WindowReport:
    """One generated window: its best (non-static) training match, how many distinct training
    groups match it above tau_m, and NMF's decision (`kept`, or the `reason` it was filtered)."""

    gen_start: int
    motion_px: float
    similarity: float | None
    train_id: str | None
    train_start: int | None
    n_groups: int
    kept: bool
    reason: str | None

    def as_dict(self) -> dict:
        return asdict(self)


def assess_window(gen_start: int, motion_px: float, neighbours: Iterable[Neighbour], config: NMFConfig,
                  groups: Mapping[str, str] | None = None) -> WindowReport:
    """NMF for one generated window.

    neighbours: training windows, best first, that include every one with similarity > tau_m
    (or at least enough of them to reach `natural_groups` groups). groups: train_id -> duplicate
    group id (ids missing from it are their own group).
    """
    groups = groups or {}
    best = None
    seen: set[str] = set()
    for nb in neighbours:
        if nb.train_motion < config.static_px:
            continue  # a still training shot: nothing to copy
        if best is None or nb.similarity > best.similarity:
            best = nb
        if nb.similarity > config.tau_m:
            seen.add(groups.get(nb.train_id, nb.train_id))
    n_groups = len(seen)
    if motion_px < config.static_px:
        kept, reason = False, f"static: motion {motion_px:.2f} px/frame < {config.static_px:g}"
    elif n_groups >= config.natural_groups:
        kept, reason = False, (f"shared: matches {n_groups} distinct training groups above "
                               f"tau_m={config.tau_m:g} (>= {config.natural_groups})")
    else:
        kept, reason = True, None
    return WindowReport(int(gen_start), float(motion_px), None if best is None else float(best.similarity),
                        None if best is None else best.train_id, None if best is None else int(best.train_start),
                        n_groups, kept, reason)


@dataclass(frozen=True)
class MotionMatch:
    """Where a generated item's motion matches a training item.

    train_start / gen_start / similarity: the best pair of windows (window starts in flow steps,
    = frame indices of the sampled frames). offset: the alignment of the two clips (generated
    frame i shows the motion of training frame i + offset), the diagonal of the window-similarity
    matrix with the most similarity above tau_m -- steadier than one pair of windows when the
    motion is locally uniform and neighbouring windows tie.
    """

    train_id: str
    train_start: int
    gen_start: int
    similarity: float
    offset: int

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class MotionResult:
    """The motion part of an item's audit.

    motion_score: best similarity over the windows NMF keeps (None if it keeps none);
    motion_match: that window's match; raw_score / raw_match: the same before NMF (plain OFS-k
    against the nearest training item); natural_motion: whether NMF filtered the window that
    carries the raw score, with the reason; motion_memorized: motion_score > tau_m.
    """

    item_id: str
    motion_score: float | None
    motion_match: MotionMatch | None
    raw_score: float | None
    raw_match: MotionMatch | None
    natural_motion: dict
    motion_memorized: bool
    windows: list[WindowReport]
    n_flows: int
    error: str | None = None

    def as_dict(self) -> dict:
        return {"item_id": self.item_id, "motion_score": self.motion_score,
                "motion_match": None if self.motion_match is None else self.motion_match.as_dict(),
                "raw_score": self.raw_score, "raw_match": None if self.raw_match is None else self.raw_match.as_dict(),
                "natural_motion": dict(self.natural_motion), "motion_memorized": self.motion_memorized,
                "windows": [w.as_dict() for w in self.windows], "n_flows": self.n_flows, "error": self.error}


def _match(w: WindowReport, reports: Sequence[WindowReport], neighbours: Sequence[Sequence[Neighbour]] | None,
           tau: float) -> MotionMatch:
    offset = w.train_start - w.gen_start
    if neighbours is not None:
        votes: dict[int, float] = {}
        for rep, nbs in zip(reports, neighbours):
            for nb in nbs:
                if nb.train_id == w.train_id and nb.similarity > tau:
                    d = nb.train_start - rep.gen_start
                    votes[d] = votes.get(d, 0.0) + nb.similarity
        if votes:
            offset = max(votes, key=lambda d: (votes[d], -abs(d - offset)))
    return MotionMatch(w.train_id, w.train_start, w.gen_start, w.similarity, int(offset))


def summarize(item_id: str, windows: Sequence[WindowReport], config: NMFConfig, n_flows: int,
              neighbours: Sequence[Sequence[Neighbour]] | None = None) -> MotionResult:
    """Item-level motion result from its window reports (and their neighbour lists, for the offset)."""
    if not windows:
        return MotionResult(item_id, None, None, None, None,
                            {"natural": False, "reason": f"too short: {n_flows} flows < k"}, False, [], n_flows)
    nbs = list(neighbours) if neighbours is not None else None
    scored = [w for w in windows if w.similarity is not None]
    raw = max(scored, key=lambda w: w.similarity, default=None)
    kept_idx = [i for i, w in enumerate(windows) if w.kept and w.similarity is not None]
    best = max((windows[i] for i in kept_idx), key=lambda w: w.similarity, default=None)
    if raw is not None:
        natural = {"natural": not raw.kept, "reason": raw.reason}
    else:  # no training window to compare with: say why the item's own windows were filtered, if they were
        reasons = Counter(w.reason for w in windows if not w.kept)
        natural = {"natural": not any(w.kept for w in windows),
                   "reason": reasons.most_common(1)[0][0] if reasons else None}
    kept_reports = [windows[i] for i in kept_idx]
    kept_nbs = [nbs[i] for i in kept_idx] if nbs is not None else None
    return MotionResult(
        item_id,
        motion_score=None if best is None else best.similarity,
        motion_match=None if best is None else _match(best, kept_reports, kept_nbs, config.tau_m),
        raw_score=None if raw is None else raw.similarity,
        raw_match=None if raw is None else _match(raw, windows, nbs, config.tau_m),
        natural_motion=natural,
        motion_memorized=best is not None and best.similarity > config.tau_m,
        windows=list(windows), n_flows=n_flows)


def search_windows_bruteforce(queries: np.ndarray, train_windows: np.ndarray, train_meta: Sequence[tuple[str, int, float]],
                              tau: float, min_keep: int = 1) -> list[list[Neighbour]]:
    """Exact neighbours for small sets (tests, one-off comparisons): for each query every training window
    above `tau`, best first, and at least the `min_keep` best. train_meta: (train_id, start, motion) per row."""
    sims = np.asarray(queries, np.float64) @ np.asarray(train_windows, np.float64).T
    out = []
    for row in sims:
        order = np.argsort(-row, kind="stable")
        n = max(int((row > tau).sum()), min(min_keep, len(order)))
        out.append([Neighbour(float(row[i]), *train_meta[i][:2], float(train_meta[i][2])) for i in order[:n]])
    return out


def duplicate_groups(ids: Sequence[str], descriptors: np.ndarray, threshold: float) -> dict[str, str]:
    """Group near-duplicate items: connected components of "cosine similarity > threshold".

    descriptors: (N, D) L2-normalised content descriptors, one per item. Returns
    train_id -> group id, the group id being the group's first id in `ids` order.
    """
    labels = content_clusters(descriptors, threshold)
    return {ids[i]: ids[int(labels[i])] for i in range(len(ids))}


__all__ = ["OFSMatch", "ofs_k", "ofs_k_windows", "OFSk", "NMFConfig", "WindowReport",
           "assess_window", "MotionMatch", "MotionResult", "summarize", "search_windows_bruteforce",
           "duplicate_groups"]
