"""How well a score separates memorized prompts from novel ones: ROC AUC, TPR at a fixed FPR, the ROC curve.

Convention everywhere: higher score = more likely memorized; a prompt is flagged when its score is
strictly above the threshold. Labels are 1/True for memorized (positive), 0/False for novel.

- `roc_auc`: the Mann-Whitney statistic, P(score_pos > score_neg) + 0.5 P(tie), which equals the area
  under the ROC curve with ties handled as sklearn does.
- `roc_curve` / `roc_curves`: the curve's points (drawn by `diffmem.io.figures.roc_figure`).
- `tpr_at_fpr`: the threshold is set from the negatives alone and the TPR is the fraction of positives
  above it. Two rules (`FPR_RULES`) for how many negatives may be above the threshold:
  ``strict`` (default): the false-positive rate must be strictly below the target, at most
  ceil(fpr * N_neg) - 1 negatives: the TPR of the last ROC point whose FPR is < fpr, as Wen et al.
  (ICLR 2024) evaluate TPR@1%FPR (with 500 novel prompts: 4 false positives);
  ``at-most``: at most floor(fpr * N_neg) negatives (FPR <= fpr; 5 of 500), diffmem's rule before
  version 0.2, up to 0.09 higher TPR at AUC 0.99; still what `Calibration` uses to set a deployed
  threshold, where the target is a budget that may be spent in full.
- `auc_interval`: a stratified bootstrap 95 % interval of the AUC (prompt sets are small).
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


FPR_RULES = ("strict", "at-most")


def allowed_false_positives(n_negatives: int, fpr: float, rule: str = "strict") -> int:
    """How many of `n_negatives` may be above the threshold: strict, k / N < fpr; at-most, k / N <= fpr."""
    if rule not in FPR_RULES:
        raise DiffmemError(f"unknown FPR rule {rule!r}; choose from {', '.join(FPR_RULES)}")
    x = fpr * n_negatives
    if rule == "at-most":
        return int(math.floor(x + 1e-9))
    return max(0, int(math.ceil(x - 1e-9)) - 1)


def threshold_at_fpr(negative_scores: Sequence[float], fpr: float, rule: str = "strict") -> float:
    """The lowest threshold with at most `allowed_false_positives(N, fpr, rule)` of `negative_scores`
    strictly above it.

    With too few negatives to allow one false positive this is their maximum: the FPR cannot be resolved
    more finely than 1/N.
    """
    if not 0.0 <= fpr < 1.0:
        raise DiffmemError(f"fpr must be in [0, 1), got {fpr}")
    neg = np.sort(np.asarray(negative_scores, dtype=np.float64).ravel())[::-1]
    if neg.size == 0:
        raise DiffmemError("no novel (negative) scores to set a threshold from")
    k = allowed_false_positives(neg.size, fpr, rule)
    return float(neg[min(k, neg.size - 1)])


def tpr_at_fpr(scores: Sequence[float], labels: Sequence[bool], fpr: float, rule: str = "strict") -> float:
    """Fraction of positives strictly above `threshold_at_fpr(negatives, fpr, rule)`."""
    s, y = _arrays(scores, labels)
    thr = threshold_at_fpr(s[~y], fpr, rule)
    return float(np.mean(s[y] > thr))


def auc_interval(scores: Sequence[float], labels: Sequence[bool], n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the AUC, positives and negatives resampled separately (so every
    resample has both classes and the class sizes of the data)."""
    s, y = _arrays(scores, labels)
    pos, neg = s[y], s[~y]
    rng = np.random.default_rng(seed)
    aucs = np.empty(n_boot)
    for b in range(n_boot):
        p = pos[rng.integers(0, pos.size, pos.size)]
        n = neg[rng.integers(0, neg.size, neg.size)]
        aucs[b] = roc_auc(np.r_[p, n], np.r_[np.ones(p.size, bool), np.zeros(n.size, bool)])
    a = (1 - level) / 2
    return float(np.quantile(aucs, a)), float(np.quantile(aucs, 1 - a))


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
                    fprs: Sequence[float] = (0.01, 0.03), rule: str = "strict", n_boot: int = 1000) -> dict[str, dict]:
    """Per magnitude: auc, its bootstrap 95 % interval (`auc_ci95`, n_boot resamples; 0: none), tpr@fpr for
    each fpr under `rule`, n_pos, n_neg, and the threshold used at each fpr."""
    out = {}
    for name, sc in scores.items():
        s, y = _arrays(sc, labels)
        row = {"auc": roc_auc(s, y), "n_memorized": int(y.sum()), "n_novel": int((~y).sum()), "fpr_rule": rule}
        if n_boot:
            row["auc_ci95"] = list(auc_interval(s, y, n_boot))
        for f in fprs:
            row[f"tpr@{_pct(f)}fpr"] = tpr_at_fpr(s, y, f, rule)
            row[f"threshold@{_pct(f)}fpr"] = threshold_at_fpr(s[~y], f, rule)
        # With fewer than 1/fpr novel prompts the FPR level is not resolved: say so next to the number.
        row["fpr_resolution"] = 1.0 / int((~y).sum())
        out[name] = row
    return out


def _pct(f: float) -> str:
    p = f * 100
    return f"{p:g}%"
