"""The matplotlib figures of the HTML reports: score histograms and ROC curves.

    fig = histogram_figure([HistPanel(hists=[(scores, {"label": "items"})], lines=[(tau, {"ls": "--"})])])
    fig = roc_figure({"content": (fpr, tpr, auc)}, "memorized vs novel")
    img(figure_png(fig), "ROC")                       # diffmem.io.html: a data URI, the figure closed

Figures are built with matplotlib's object API (`matplotlib.figure.Figure`): no pyplot backend is
selected, so making a report does not change the plotting backend of a notebook that calls it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

__all__ = ["HistPanel", "histogram_figure", "roc_figure"]


@dataclass
class HistPanel:
    """One panel of `histogram_figure`.

    hists: (values, style) pairs, each drawn as `Axes.hist(values, bins=bins, range=range, **style)` (style:
    label, color, alpha, histtype, lw ...). lines: (x, style) pairs drawn after them as
    `Axes.axvline(x, **style)` (thresholds). legend: draw this panel's legend.
    """

    hists: Sequence[tuple[Any, Mapping[str, Any]]] = ()
    bins: Any = 30
    range: tuple[float, float] | None = None
    lines: Sequence[tuple[float, Mapping[str, Any]]] = ()
    title: str | None = None
    xlabel: str | None = None
    ylabel: str | None = None
    legend: bool = True


def histogram_figure(panels: Sequence[HistPanel], *, panel_size: tuple[float, float] = (4.5, 3.2),
                     legend_fontsize: float = 7, tight_layout: bool = True) -> Figure:
    """Histograms side by side, one panel each (`panel_size` inches per panel)."""
    fig = Figure(figsize=(panel_size[0] * len(panels), panel_size[1]))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, p in zip(axes, panels):
        for values, style in p.hists:
            ax.hist(values, bins=p.bins, range=p.range, **style)
        for x, style in p.lines:
            ax.axvline(x, **style)
        if p.title:
            ax.set_title(p.title)
        if p.xlabel:
            ax.set_xlabel(p.xlabel)
        if p.ylabel:
            ax.set_ylabel(p.ylabel)
        if p.legend:
            ax.legend(fontsize=legend_fontsize)
    if tight_layout:
        fig.tight_layout()
    return fig


def roc_figure(curves: Mapping[str, tuple[np.ndarray, np.ndarray, float]], title: str = "ROC") -> Figure:
    """One ROC curve per entry {label: (fpr, tpr, auc)}: linear axes, and log-FPR axes."""
    fig = Figure(figsize=(9, 4))
    axes = fig.subplots(1, 2)
    for ax, log in zip(axes, (False, True)):
        for label, (fpr, tpr, auc) in curves.items():
            x = np.clip(fpr, 1e-4, 1) if log else fpr
            ax.step(x, tpr, where="post", label=f"{label} (AUC {auc:.3f})")
        # chance line y = x; sampled densely so that it is drawn right on the log axis too
        chance = np.logspace(-4, 0, 200) if log else np.array([0.0, 1.0])
        ax.plot(chance, chance, ":", color="grey", lw=0.8)
        ax.set_xlabel("false positive rate" + (" (log)" if log else ""))
        ax.set_ylabel("true positive rate")
        if log:
            ax.set_xscale("log")
            ax.axvline(0.01, color="#b00", lw=0.6, ls="--")
            ax.axvline(0.03, color="#b80", lw=0.6, ls="--")
        ax.set_ylim(0, 1.02)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
