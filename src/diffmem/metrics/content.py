"""Content memorization at frame level (DESIGN.md, "Content memorization"; the GSSCD role).

f is an L2-normalised copy-detection descriptor. For a generated item G with frames g_1..g_F and the
frames x of every training video and image:

    s(g_i)           = max_x <f(g_i), f(x)>            nearest training frame
    content_score(G) = max_i s(g_i)
    coverage(G)      = fraction of i with s(g_i) > tau_c
    memorized        iff content_score(G) > tau_c

The reference ("training frames") is a `VectorIndex` (exact, or compressed with exact re-ranking) or an
(N, D) array. Image tables follow AMG: Top-5 % (95th percentile of scores), Top-1 (max), % above 0.5
and % above 0.4 (the SSCD conventions), all over items.

Objects with `update`/`compute` (`ContentMemorization`, `CopyTable`) and functional twins
(`content_memorization`, `copy_table`); `nearest_similarity` is the differentiable torch form used
as AMG's sigma_t.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import DiffmemError

TABLE_THRESHOLDS = (0.5, 0.4)


# ----------------------------------------------------------------------------- nearest frames

def nearest_training_frames(queries: np.ndarray, reference, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """s(g) and the argmax for every query row: (similarities (F,), reference row ids (F,))."""
    q = np.ascontiguousarray(np.asarray(queries, dtype=np.float32))
    if q.ndim != 2:
        raise DiffmemError(f"queries must be (F, D), got shape {q.shape}")
    if hasattr(reference, "search"):
        s, i = reference.search(q, 1)
        return s[:, 0], i[:, 0]
    ref = np.asarray(reference, dtype=np.float32)
    if ref.ndim != 2 or ref.shape[1] != q.shape[1]:
        raise DiffmemError(f"reference must be (N, {q.shape[1]}), got shape {ref.shape}")
    best = np.full(len(q), -np.inf, np.float32)
    arg = np.full(len(q), -1, np.int64)
    for lo in range(0, len(ref), chunk):
        sims = q @ ref[lo:lo + chunk].T
        j = sims.argmax(1)
        v = sims[np.arange(len(q)), j]
        better = v > best
        best[better], arg[better] = v[better], j[better] + lo
    return best, arg


def nearest_similarity(query, reference):
    """Differentiable twin for torch: query (B,D), reference (N,D) -> (max similarity (B,), argmax (B,)).
    Gradients flow to `query` (and to `reference` if it requires them)."""
    sims = query @ reference.T
    return sims.max(dim=1)


def content_scores(frame_similarities: np.ndarray, threshold: float) -> tuple[float, float, int]:
    """(content_score, coverage, best frame) from the per-frame s(g_i)."""
    s = np.asarray(frame_similarities, dtype=np.float64)
    if s.size == 0:
        raise DiffmemError("an item needs at least one frame")
    best = int(np.argmax(s))
    return float(s[best]), float((s > threshold).mean()), best


# ----------------------------------------------------------------------------- per item

@dataclass
class FrameMatch:
    frame: int            # position of the generated frame in its sampled sequence
    similarity: float     # s(g_i)
    vector_id: int        # row of the reference
    train_id: str | None
    train_frame: int | None
    train_timestamp: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class ContentResult:
    item_id: str
    content_score: float
    coverage: float
    memorized: bool
    threshold: float
    best_frame: int
    match: dict                               # {"train_id", "frame", "similarity", "timestamp", "path", "caption"}
    frames: list[FrameMatch] = field(default_factory=list)

    def as_dict(self, frames: bool = True) -> dict:
        d = {"item_id": self.item_id, "content_score": self.content_score, "coverage": self.coverage,
             "memorized": self.memorized, "threshold": self.threshold, "best_frame": self.best_frame,
             "match": dict(self.match)}
        if frames:
            d["frames"] = [f.as_dict() for f in self.frames]
        return d


def _lookup(reference, metadata, ids: np.ndarray) -> list[dict]:
    """Metadata rows for reference ids: from a VectorIndex, a DataFrame / list of dicts, or none."""
    if metadata is None and hasattr(reference, "metadata"):
        metadata = reference.metadata
    out = []
    for i in ids:
        i = int(i)
        if i < 0 or metadata is None:
            out.append({})
        elif hasattr(metadata, "iloc"):
            out.append(metadata.iloc[i].to_dict())
        else:
            out.append(dict(metadata[i]))
    return out


def _opt(v, cast):
    if v is None:
        return None
    try:
        if isinstance(v, float) and v != v:
            return None
        return cast(v)
    except (TypeError, ValueError):
        return None


def score_item(item_id: str, descriptors: np.ndarray, reference, threshold: float, metadata=None, *,
               nearest: tuple[np.ndarray, np.ndarray] | None = None) -> ContentResult:
    """Content memorization of one generated item from its frame descriptors (F, D). `nearest`: its frames'
    (similarities, reference ids) when already searched (`score_items`)."""
    if threshold is None:
        raise DiffmemError("content memorization needs a threshold tau_c; this descriptor has none calibrated")
    sims, ids = nearest if nearest is not None else nearest_training_frames(descriptors, reference)
    score, cov, best = content_scores(sims, threshold)
    rows = _lookup(reference, metadata, ids)
    frames = [FrameMatch(j, float(sims[j]), int(ids[j]), _opt(rows[j].get("item_id"), str),
                         _opt(rows[j].get("frame"), int), _opt(rows[j].get("timestamp"), float))
              for j in range(len(sims))]
    r = rows[best]
    match = {"train_id": _opt(r.get("item_id"), str), "frame": _opt(r.get("frame"), int),
             "similarity": float(sims[best]), "timestamp": _opt(r.get("timestamp"), float),
             "path": _opt(r.get("path"), str), "caption": _opt(r.get("caption"), str),
             "vector_id": int(ids[best])}
    return ContentResult(str(item_id), score, cov, bool(score > threshold), float(threshold), best, match, frames)


def score_items(items: Sequence[tuple[str, np.ndarray]], reference, threshold: float, metadata=None
                ) -> list[ContentResult]:
    """`score_item` for several (item id, frame descriptors) with one search over all their frames: against
    the large world's 21 k frames, a search per item was 1.15 s of a 7 s audit of 48 clips, one 0.16 s."""
    if not items:
        return []
    sims, ids = nearest_training_frames(np.concatenate([d for _, d in items]), reference)
    out, lo = [], 0
    for item_id, d in items:
        out.append(score_item(item_id, d, reference, threshold, metadata, nearest=(sims[lo:lo + len(d)],
                                                                                  ids[lo:lo + len(d)])))
        lo += len(d)
    return out


class ContentMemorization:
    """Metric object: `update(item_id, frame_descriptors)` per generated item, `compute()` for all."""

    def __init__(self, reference, threshold: float, metadata=None):
        self.reference, self.threshold, self.metadata = reference, threshold, metadata
        self.results: list[ContentResult] = []

    def update(self, item_id: str, descriptors: np.ndarray) -> ContentResult:
        r = score_item(item_id, descriptors, self.reference, self.threshold, self.metadata)
        self.results.append(r)
        return r

    def compute(self) -> dict:
        return summarize(self.results, self.threshold)

    def reset(self) -> None:
        self.results = []


def content_memorization(items: Mapping[str, np.ndarray] | Sequence[tuple[str, np.ndarray]], reference,
                         threshold: float, metadata=None) -> dict:
    """Functional twin of `ContentMemorization`: {item id: descriptors} -> compute()'s dict."""
    m = ContentMemorization(reference, threshold, metadata)
    for item_id, d in (items.items() if isinstance(items, Mapping) else items):
        m.update(item_id, d)
    return m.compute()


def summarize(results: Sequence[ContentResult], threshold: float) -> dict:
    scores = np.array([r.content_score for r in results], dtype=np.float64)
    return {"n_items": len(results), "threshold": threshold,
            "n_memorized": int(sum(r.memorized for r in results)),
            "fraction_memorized": float(np.mean([r.memorized for r in results])) if results else 0.0,
            "mean_coverage": float(np.mean([r.coverage for r in results])) if results else 0.0,
            "table": copy_table(scores, extra_thresholds=(threshold,)),
            "items": [r.as_dict() for r in results]}


# ----------------------------------------------------------------------------- AMG-style table

def copy_table(scores: Sequence[float] | np.ndarray, thresholds: Sequence[float] = TABLE_THRESHOLDS,
               extra_thresholds: Sequence[float] = ()) -> dict:
    """AMG's image table over per-item scores: Top-5 % (95th percentile), Top-1 (max) and the percentage
    of items above each threshold (0.5 and 0.4 by default; `extra_thresholds` adds e.g. a calibrated tau_c).
    Percentages are in % (0-100). Empty input gives None values."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    ths = list(dict.fromkeys([float(t) for t in (*thresholds, *extra_thresholds) if t is not None]))
    out: dict[str, Any] = {"n": int(s.size),
                           "top5_pct": float(np.percentile(s, 95)) if s.size else None,
                           "top1": float(s.max()) if s.size else None}
    for t in ths:
        out[f"pct_above_{t:g}"] = float(100.0 * (s > t).mean()) if s.size else None
    return out


class CopyTable:
    """Metric object for `copy_table`: `update(scores)` in batches, `compute()`."""

    def __init__(self, thresholds: Sequence[float] = TABLE_THRESHOLDS, extra_thresholds: Sequence[float] = ()):
        self.thresholds, self.extra = tuple(thresholds), tuple(extra_thresholds)
        self.scores: list[np.ndarray] = []

    def update(self, scores) -> None:
        self.scores.append(np.asarray(scores, dtype=np.float64).ravel())

    def compute(self) -> dict:
        s = np.concatenate(self.scores) if self.scores else np.zeros(0)
        return copy_table(s, self.thresholds, self.extra)

    def reset(self) -> None:
        self.scores = []
