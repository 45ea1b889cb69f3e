"""The HTML page of `diffmem detect` (report.html): settings and cost, score distributions, the evaluation
against labels with its ROC curves and seeds x steps grid, the prompts table, the configuration."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..detect.calibrate import Calibration
from ..io.figures import HistPanel, histogram_figure, roc_figure
from ..io.html import config_block, esc, img, page, table

__all__ = ["detect_report", "score_histograms"]


def score_histograms(rows: Sequence[Mapping], names: Sequence[str], cal: Calibration | None, by: str):
    """One panel per magnitude: the prompts' scores, one histogram per value of `by` (e.g. label_kind;
    "" = all together), with the calibrated threshold."""
    groups: dict[str, list[Mapping]] = {}
    for r in rows:
        key = r.get(by) if by else "all"
        groups.setdefault("unlabelled" if key is None else str(key), []).append(r)
    panels = []
    for n in names:
        vals = np.asarray([r[n] for r in rows], dtype=np.float64)
        bins = np.linspace(vals.min(), vals.max() if vals.max() > vals.min() else vals.min() + 1e-6, 30)
        lines = []
        if cal is not None and n in cal.thresholds:
            lines.append((cal.thresholds[n], {"color": "#b00", "ls": "--", "lw": 1, "label": f"threshold @{cal.fpr:g} FPR"}))
        panels.append(HistPanel(
            hists=[([r[n] for r in rs], {"histtype": "step", "lw": 1.6, "label": f"{g} ({len(rs)})"})
                   for g, rs in sorted(groups.items())],
            bins=bins, lines=lines, title=f"{n} magnitude", xlabel="score", legend=False))
    panels[0].ylabel = "prompts"
    panels[-1].legend = True
    return histogram_figure(panels, panel_size=(4.2, 3.2), legend_fontsize=7)


def detect_report(summary: Mapping, rows: Sequence[Mapping], names: Sequence[str], cal: Calibration | None,
                  curves: Mapping | None) -> str:
    """The page, from `run_detect`'s summary and per-prompt rows; `curves`: {magnitude: (fpr, tpr, auc)}."""
    parts = []
    st = summary["settings"]
    cost = summary["cost"]
    frac = f"{cost['fraction_of_generation']:.3f}"
    evals = f"{cost['denoiser_evals_per_prompt']:.3g}"
    parts.append(f"<p>Model <b>{esc(summary['model'].get('name'))}</b>; {esc(summary['n_prompts'])} prompts; "
                 f"n = {esc(st['seeds'])} seeds, s = {esc(st['steps'])} steps of a {esc(st['num_steps'])}-step "
                 f"{esc(st['scheduler'])} sampler (guidance {esc(st['guidance_scale'])}). Cost per prompt: "
                 f"{esc(evals)} denoiser evaluations = "
                 f"{esc(frac)} of one generation.</p>")
    if cal is not None:
        thr = ", ".join(f"{esc(n)} &gt; {v:.4g}" for n, v in cal.thresholds.items())
        parts.append(f"<p>Flagged when {thr} (calibrated for FPR {esc(cal.fpr)} on "
                     f"{esc(next(iter(cal.novel_summary.values()), {}).get('count', '?'))} novel prompts). "
                     f"Flagged prompts: {esc(summary['flagged'])}.</p>")
    by = "label_kind" if any(r.get("label_kind") for r in rows) else ("group" if any(r.get("group") for r in rows) else "")
    parts.append("<h2>Score distributions</h2>")
    parts.append(img(score_histograms(rows, names, cal, by).data_uri(), "score distributions", height=None))
    if summary.get("evaluation"):
        parts.append("<h2>Evaluation against labels</h2>")
        head = ["set", "magnitude", "AUC", "TPR@1%FPR", "TPR@3%FPR", "memorized", "novel"]
        body = []
        for set_name, ev in summary["evaluation"].items():
            for n in names:
                e = ev[n]
                body.append([set_name, n, f"{e['auc']:.4f}", f"{e.get('tpr@1%fpr', float('nan')):.3f}",
                             f"{e.get('tpr@3%fpr', float('nan')):.3f}", e["n_memorized"], e["n_novel"]])
        parts.append(table(head, body))
        if summary.get("comparison"):
            parts.append("<h3>Detectors side by side</h3><p>Every score on the same prompts and seeds (set "
                         "memorized), best first, with its detector's cost per prompt. prompt_words is the "
                         "baseline: a detector that does not beat the prompt's length may be reading it.</p>")
            cmp = sorted((r for r in summary["comparison"] if r["set"] == "memorized"), key=lambda r: -r["auc"])
            parts.append(table(
                ["score", "detector", "AUC [95 % interval]", "TPR@1%FPR", "TPR@3%FPR", "denoiser evals", "of a generation"],
                [[r["score"], r["detector"], f"{r['auc']:.3f}" + (f" [{r['auc_lo']:.3f}, {r['auc_hi']:.3f}]"
                                                                   if r.get("auc_lo") is not None else ""),
                  f"{r.get('tpr@1%fpr', float('nan')):.3f}", f"{r.get('tpr@3%fpr', float('nan')):.3f}",
                  f"{r['denoiser_evals']:.3g}", f"{r['cost_fraction']:.3f}"] for r in cmp]))
        if curves:
            parts.append(img(roc_figure(curves, "memorized vs novel").data_uri(), "ROC", height=None))
        if summary.get("evaluation_grid"):
            parts.append("<h3>Seeds and steps</h3>")
            g = summary["evaluation_grid"]
            keys = list(g[0])
            parts.append(table(keys, [[f"{r[k]:.4g}" if isinstance(r[k], float) else r[k] for k in keys] for r in g]))
    parts.append("<h2>Prompts</h2>")
    cols = ["id", "prompt", "group"] + list(names) + (["flagged"] if cal is not None else []) + \
        (["memorized", "label_kind"] if "memorized" in rows[0] else [])
    top = sorted(rows, key=lambda r: -max(r[n] for n in names))[:500]
    parts.append(table(cols, [[f"{r[c]:.4g}" if isinstance(r.get(c), float) else r.get(c) for c in cols] for r in top]))
    if len(rows) > len(top):
        parts.append(f"<p>{esc(len(rows) - len(top))} more prompts in detect.parquet.</p>")
    parts.append("<h2>Configuration</h2>")
    parts.append(config_block({k: summary[k] for k in ("model", "settings", "prompts", "labels", "cost")}))
    return page("diffmem detect", "".join(parts))
