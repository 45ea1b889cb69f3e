"""How well a score separates memorized prompts from novel ones: ROC AUC, TPR at a fixed FPR, the ROC curve.

Convention everywhere: higher score = more likely memorized; a prompt is flagged when its score is
strictly above the threshold. Labels are 1/True for memorized (positive), 0/False for novel.

- `roc_auc`: the Mann-Whitney statistic, P(score_pos > score_neg) + 0.5 P(tie), which equals the area
  under the ROC curve with ties handled as sklearn does.
- `roc_curve` / `roc_curves`: the curve's points (drawn by `diffmem.io.figures.roc_figure`).
- `tpr_at_fpr`: the threshold is set from the negatives alone -- the lowest one at which at most
  floor(fpr * N_neg) negatives are above it -- and the TPR is the fraction of positives above it. This
  is the best TPR of any ROC point whose FPR is <= fpr (Wen et al. 2024 report TPR@1%FPR this way).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from ..errors import DiffmemError


def _arrays(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel()
    if s.shape != y.shape:
        raise DiffmemError(f"{s.size} scores but {y.size} labels")
    if not np.all(np.isfinite(s)):
        raise DiffmemError("scores contain NaN or infinity")
    y = y.astype(bool)
    if y.all() or not y.any():
        raise DiffmemError("ROC evaluation needs both memorized and novel prompts "
                           f"(got {int(y.sum())} memorized, {int((~y).sum())} novel)")
    return s, y


def _average_ranks(x: np.ndarray) -> np.ndarray:
    # 1-based ranks, ties get the mean of the ranks they span.
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    ranks = np.empty(len(x), dtype=np.float64)
    _, first, counts = np.unique(sorted_x, return_index=True, return_counts=True)
    for f, c in zip(first, counts):
        ranks[order[f:f + c]] = f + (c + 1) / 2.0
    return ranks


def roc_auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve (Mann-Whitney U / (N_pos N_neg), ties count one half)."""
    s, y = _arrays(scores, labels)
    ranks = _average_ranks(s)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def threshold_at_fpr(negative_scores: Sequence[float], fpr: float) -> float:
    """The lowest threshold with at most floor(fpr * N) of `negative_scores` strictly above it.

    With fewer than 1/fpr negatives this is their maximum (no false positive allowed): the FPR cannot
    be resolved more finely than 1/N.
    """
    if not 0.0 <= fpr < 1.0:
        raise DiffmemError(f"fpr must be in [0, 1), got {fpr}")
    neg = np.sort(np.asarray(negative_scores, dtype=np.float64).ravel())[::-1]
    if neg.size == 0:
        raise DiffmemError("no novel (negative) scores to set a threshold from")
    k = int(math.floor(fpr * neg.size + 1e-9))  # how many negatives may be above the threshold
    return float(neg[min(k, neg.size - 1)])


def tpr_at_fpr(scores: Sequence[float], labels: Sequence[bool], fpr: float) -> float:
    """Fraction of positives strictly above `threshold_at_fpr(negatives, fpr)`."""
    s, y = _arrays(scores, labels)
    thr = threshold_at_fpr(s[~y], fpr)
    return float(np.mean(s[y] > thr))


def roc_curve(scores: Sequence[float], labels: Sequence[bool]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds): one point per distinct score (flag when score >= threshold), from (0, 0)."""
    s, y = _arrays(scores, labels)
    thresholds = np.unique(s)[::-1]
    pos, neg = s[y], s[~y]
    # counts of scores >= each threshold, via sorted search
    pos_sorted, neg_sorted = np.sort(pos), np.sort(neg)
    tp = pos.size - np.searchsorted(pos_sorted, thresholds, side="left")
    fp = neg.size - np.searchsorted(neg_sorted, thresholds, side="left")
    fpr = np.concatenate([[0.0], fp / neg.size])
    tpr = np.concatenate([[0.0], tp / pos.size])
    return fpr, tpr, np.concatenate([[np.inf], thresholds])


def roc_curves(scores: Mapping[str, Sequence[float]], labels: Sequence[bool]) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """{name: (fpr, tpr, auc)} for each named score: what `diffmem.io.figures.roc_figure` draws."""
    out = {}
    for name, sc in scores.items():
        fpr, tpr, _ = roc_curve(sc, labels)
        out[name] = (fpr, tpr, roc_auc(sc, labels))
    return out


def evaluate_scores(scores: Mapping[str, Sequence[float]], labels: Sequence[bool],
                    fprs: Sequence[float] = (0.01, 0.03)) -> dict[str, dict]:
    """Per magnitude: auc, tpr@fpr for each fpr, n_pos, n_neg, and the threshold used at each fpr."""
    out = {}
    for name, sc in scores.items():
        s, y = _arrays(sc, labels)
        row = {"auc": roc_auc(s, y), "n_memorized": int(y.sum()), "n_novel": int((~y).sum())}
        for f in fprs:
            row[f"tpr@{_pct(f)}fpr"] = tpr_at_fpr(s, y, f)
            row[f"threshold@{_pct(f)}fpr"] = threshold_at_fpr(s[~y], f)
        # With fewer than 1/fpr novel prompts the FPR level is not resolved: say so next to the number.
        row["fpr_resolution"] = 1.0 / int((~y).sum())
        out[name] = row
    return out


def _pct(f: float) -> str:
    p = f * 100
    return f"{p:g}%"
