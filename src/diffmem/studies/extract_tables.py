"""The extraction study's tables: per-sample audit rows joined with their prompts, tabulated per prompt,
per group and overall (`diffmem.studies.extract`).

Definitions (one generated sample = one (prompt, seed)):

- a sample is *content-extracted* when its audit verdict is `content` or `both`, *motion-extracted*
  for `motion` or `both`; *extracted* for any of the three;
- the training items extracted by a set of samples are the distinct training ids matched by their
  memorized verdicts (the content match for content/both, the motion match for motion/both);
- rates are fractions of samples; score distributions are n, mean, median, p95 (the "Top-5 %"
  of AMG's tables), max, and the fraction above the audit's thresholds.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..data.prompts import PromptEntry
from ..errors import DiffmemError
from .audit import VERDICTS

__all__ = ["CONTENT_VERDICTS", "MOTION_VERDICTS", "SAMPLE_COLUMNS", "score_summary", "tabulate", "samples_table",
           "present", "match_id"]

# The audit's verdicts (`diffmem.studies.audit.VERDICTS`) that extract a content / a motion.
CONTENT_VERDICTS = ("content", "both")
MOTION_VERDICTS = ("motion", "both")

# The per-sample columns the tables need (the audit's rows, joined with their prompt):
#   sample_id, prompt_id, seed, verdict, content_score, content_match, motion_score, motion_match
# content_match / motion_match: the nearest training id (None when not known); scores may be NaN
# when a measurement is not available (e.g. an image model has no motion).
SAMPLE_COLUMNS = ("sample_id", "prompt_id", "seed", "verdict", "content_score", "content_match",
                  "motion_score", "motion_match")


def score_summary(values: Iterable[float], thresholds: Mapping[str, float] | None = None) -> dict:
    """n, mean, median, p95, max (NaN dropped) and the fraction strictly above each named threshold."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    v = v[np.isfinite(v)]
    out: dict = {"n": int(v.size)}
    if v.size:
        out.update(mean=float(v.mean()), median=float(np.median(v)), p95=float(np.percentile(v, 95)),
                   max=float(v.max()))
    else:
        out.update(mean=None, median=None, p95=None, max=None)
    for name, t in (thresholds or {}).items():
        out[f"frac_above_{name}"] = float((v > t).mean()) if v.size else None
    return out


def _extracted_ids(rows: pd.DataFrame) -> list[str]:
    ids: set[str] = set()
    for v, cm, mm in zip(rows["verdict"], rows["content_match"], rows["motion_match"]):
        if v in CONTENT_VERDICTS and present(cm):
            ids.add(str(cm))
        if v in MOTION_VERDICTS and present(mm):
            ids.add(str(mm))
    return sorted(ids)


def present(x) -> bool:
    """A match id that is there (not None, NaN or empty)."""
    return x is not None and not (isinstance(x, float) and math.isnan(x)) and str(x) != ""


def _counts(rows: pd.DataFrame) -> dict:
    n = len(rows)
    c = Counter(rows["verdict"])
    n_content = c["content"] + c["both"]
    n_motion = c["motion"] + c["both"]
    n_any = c["content"] + c["motion"] + c["both"]
    ext = _extracted_ids(rows)

    def rate(k):
        return k / n if n else None

    return {
        "n_samples": n, "n_content": n_content, "n_motion": n_motion, "n_both": c["both"], "n_extracted_samples": n_any,
        "rate_content": rate(n_content), "rate_motion": rate(n_motion), "rate_both": rate(c["both"]),
        "rate_extracted": rate(n_any), "n_train_extracted": len(ext), "train_extracted": ext,
    }


def tabulate(samples: pd.DataFrame, entries: Sequence[PromptEntry], *,
             content_thresholds: Mapping[str, float] | None = None,
             motion_thresholds: Mapping[str, float] | None = None) -> tuple[pd.DataFrame, dict]:
    """The study's tables from per-sample audit rows (`SAMPLE_COLUMNS`) and the prompts.

    Returns (per_prompt, summary): one row per prompt (in prompt order, prompts without samples
    included with zero counts), and a dict with `overall` and `by_group` (each: counts, rates,
    distinct training ids extracted, score distributions).
    """
    missing = [c for c in SAMPLE_COLUMNS if c not in samples.columns]
    if missing:
        raise DiffmemError(f"sample table lacks columns {missing}")
    bad = sorted(set(samples["verdict"]) - set(VERDICTS))
    if bad:
        raise DiffmemError(f"unknown verdicts {bad}; expected {list(VERDICTS)}")
    by_prompt = {pid: g for pid, g in samples.groupby("prompt_id", sort=False)}
    empty = samples.iloc[0:0]
    rows = []
    for e in entries:
        g = by_prompt.get(e.id, empty)
        r = {"prompt_id": e.id, "prompt": e.prompt, "group": e.group, "label": e.label}
        r.update(_counts(g))
        for kind, th in (("content", content_thresholds), ("motion", motion_thresholds)):
            s = score_summary(g[f"{kind}_score"], th)
            r.update({f"{kind}_{k}": v for k, v in s.items() if k != "n"})
        ev = e.evidence or {}
        r["rank"] = ev.get("rank")
        r["reasons"] = ev.get("reasons")
        r["magnitude"] = ev.get("magnitude")
        rows.append(r)
    per_prompt = pd.DataFrame(rows)

    def block(sub: pd.DataFrame, prompts: int) -> dict:
        d = _counts(sub)
        d["n_prompts"] = prompts
        d["n_prompts_extracted"] = int(sub.loc[sub["verdict"] != "none", "prompt_id"].nunique()) if len(sub) else 0
        d["content_score"] = score_summary(sub["content_score"], content_thresholds)
        d["motion_score"] = score_summary(sub["motion_score"], motion_thresholds)
        return d

    known = {e.id for e in entries}
    overall = block(samples[samples["prompt_id"].isin(known)], len(entries))
    by_group = {}
    groups = [e.group for e in entries if e.group is not None]
    for grp in dict.fromkeys(groups):
        ids = {e.id for e in entries if e.group == grp}
        by_group[grp] = block(samples[samples["prompt_id"].isin(ids)], len(ids))
    return per_prompt, {"overall": overall, "by_group": by_group}


def match_id(m) -> str | None:
    """A match field of an audit record: a dict with train_id, or the id itself."""
    if isinstance(m, Mapping):
        m = m.get("train_id")
    return None if m is None or (isinstance(m, float) and math.isnan(m)) else str(m)


def samples_table(manifest: pd.DataFrame, audit_items: Sequence[Mapping], entries: Sequence[PromptEntry]) -> pd.DataFrame:
    """One row per audited generated sample: the generation's manifest row joined with its audit record
    (`SAMPLE_COLUMNS` + path, prompt, group, coverage, motion fields when audited)."""
    by_id = {str(r["id"]): r for r in audit_items}
    groups = {e.id: e.group for e in entries}
    rows = []
    for g in manifest.itertuples(index=False):
        r = by_id.get(str(g.id))
        if r is None:  # skipped by the audit (unreadable): reported there, not counted here
            continue
        rows.append({
            "sample_id": str(g.id), "prompt_id": str(g.prompt_id), "prompt": g.prompt, "seed": int(g.seed),
            "group": groups.get(str(g.prompt_id)), "path": str(r.get("path") or g.path), "verdict": r["verdict"],
            "content_score": float(r.get("content_score", float("nan"))),
            "content_match": match_id(r.get("content_match")), "coverage": r.get("coverage"),
            "motion_score": float(r["motion_score"]) if r.get("motion_score") is not None else float("nan"),
            "motion_match": match_id(r.get("motion_match")),
        })
    cols = list(SAMPLE_COLUMNS) + ["prompt", "group", "path", "coverage"]
    return pd.DataFrame(rows, columns=list(dict.fromkeys(cols + (list(rows[0]) if rows else []))))
