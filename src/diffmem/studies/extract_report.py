"""The extraction study's HTML page (report.html): the headline, per-group and per-prompt tables, score
histograms, and the extracted examples beside their training originals (`clip_pairs`)."""
from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Mapping, Sequence

import pandas as pd

from ..index import VectorIndex
from ..index.content import content_items
from ..io.embed import clip_data_uri
from ..io.figures import HistPanel, histogram_figure
from ..io.html import config_block, esc, img, page, table
from ..io.results import read_json
from .extract_tables import CONTENT_VERDICTS, present

__all__ = ["extract_report", "pairs_html", "clip_pairs", "train_lookup", "examples_from", "score_histograms",
           "format_summary"]


def _fmt(v, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if pct:
        return f"{100 * v:.1f} %"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def score_histograms(samples: pd.DataFrame, thresholds: Mapping[str, float | None]) -> str | None:
    """Content and motion scores of the extracted samples and of the others (a data URI; None without scores)."""
    kinds = [k for k in ("content", "motion") if samples[f"{k}_score"].notna().any()]
    if not kinds:
        return None
    panels = []
    for kind in kinds:
        hists = []
        for verdicts, label, color in ((("none",), "not extracted", "#888"),
                                       (("content", "motion", "both"), "extracted", "#c33")):
            v = samples.loc[samples["verdict"].isin(verdicts), f"{kind}_score"].dropna()
            if len(v):
                hists.append((v, {"alpha": 0.6, "label": f"{label} ({len(v)})", "color": color}))
        lines = []
        if thresholds.get(kind) is not None:
            lines.append((thresholds[kind], {"color": "k", "ls": "--", "lw": 0.8,
                                             "label": f"threshold {thresholds[kind]:g}"}))
        panels.append(HistPanel(hists=hists, bins=30, lines=lines, xlabel=f"{kind} score", ylabel="samples"))
    return histogram_figure(panels, panel_size=(4.5, 3.2), legend_fontsize=7).data_uri()


def pairs_html(pairs: Sequence[dict]) -> str:
    """Generated clip | training original | verdict and scores, one row per extracted example."""
    parts = ["<p>Left: the generated sample (prompt id, seed). Middle: the training item it copies. "
             "Right: the audit's verdict and scores.</p>"]
    for cp in pairs:
        orig = img(cp["original_uri"], cp["train_id"]) if cp.get("original_uri") else "(not readable)"
        parts.append(
            "<div class='strip'>"
            f"<figure>{img(cp['generated_uri'], cp['sample_id'])}<figcaption>generated {esc(cp['sample_id'])}"
            f"<br>{esc(cp['prompt'][:80])}</figcaption></figure>"
            f"<figure>{orig}<figcaption>training {esc(cp['train_id'])}<br>{esc((cp.get('train_caption') or '')[:80])}"
            "</figcaption></figure>"
            f"<figure><figcaption>verdict <span class='flag'>{esc(cp['verdict'])}</span><br>"
            f"content {esc(_fmt(cp.get('content_score')))}<br>motion {esc(_fmt(cp.get('motion_score')))}"
            "</figcaption></figure></div>")
    return "".join(parts)


def extract_report(per_prompt: pd.DataFrame, summary: dict, samples: pd.DataFrame, *,
                   clip_pairs: Sequence[dict] = (), thresholds: Mapping[str, float | None] | None = None,
                   config: Mapping | None = None, title: str = "diffmem extract") -> str:
    """The HTML page: headline, per-group and per-prompt tables, score histograms, and the extracted
    examples beside their training originals (`clip_pairs`: dicts with prompt, verdict, scores,
    generated / original data URIs and ids, built by `run_extract`)."""
    o = summary["overall"]
    parts = [
        f"<p><b>{o['n_train_extracted']}</b> distinct training items extracted by <b>{o['n_extracted_samples']}</b> "
        f"of {o['n_samples']} samples ({_fmt(o['rate_extracted'], True)}) from {o['n_prompts_extracted']} of "
        f"{o['n_prompts']} prompts. Content: {_fmt(o['rate_content'], True)}, motion: {_fmt(o['rate_motion'], True)}, "
        f"both: {_fmt(o['rate_both'], True)}.</p>"
    ]
    head = ["group", "prompts", "samples", "content", "motion", "both", "extracted", "train items extracted",
            "content score p95", "motion score p95"]
    rows = []
    for name, b in [*summary.get("by_group", {}).items(), ("all", o)]:
        rows.append([name, b["n_prompts"], b["n_samples"], _fmt(b["rate_content"], True), _fmt(b["rate_motion"], True),
                     _fmt(b["rate_both"], True), _fmt(b["rate_extracted"], True), b["n_train_extracted"],
                     _fmt(b["content_score"]["p95"]), _fmt(b["motion_score"]["p95"])])
    parts.append("<h2>Extraction by group</h2>" + table(head, rows))

    hist = score_histograms(samples, thresholds or {})
    if hist:
        parts.append("<h2>Score distributions</h2>" + img(hist, "score histograms", height=None))

    if clip_pairs:
        parts.append("<h2>Extracted examples beside their training originals</h2>" + pairs_html(clip_pairs))

    head = ["#", "prompt", "group", "samples", "content", "motion", "both", "train items extracted",
            "content score max", "motion score max", "why chosen"]
    rows = []
    for r in per_prompt.itertuples(index=False):
        rows.append([r.prompt_id, r.prompt[:90], r.group or "", r.n_samples, r.n_content, r.n_motion, r.n_both,
                     ", ".join(r.train_extracted) if r.train_extracted else "-", _fmt(r.content_max), _fmt(r.motion_max),
                     ", ".join(r.reasons) if isinstance(r.reasons, (list, tuple)) else ""])
    parts.append("<h2>Per prompt</h2>" + table(head, rows))
    if config:
        parts.append("<h2>Configuration</h2>" + config_block(config))
    return page(title, "".join(parts))


def clip_pairs(samples: pd.DataFrame, train_paths: Mapping[str, Path], train_captions: Mapping[str, str], *,
               limit: int = 12) -> list[dict]:
    """The most convincing extracted examples: one per distinct training item, highest score first.

    samples: the per-sample table with `path` (the generated file), `prompt` and the audit columns.
    """
    mem = samples[samples["verdict"] != "none"].copy()
    if mem.empty:
        return []
    # the training item a sample copies: its content match for content/both, else its motion match
    mem["train_id"] = [cm if v in CONTENT_VERDICTS else mm for v, cm, mm in
                       zip(mem["verdict"], mem["content_match"], mem["motion_match"])]
    mem["score"] = [c if v in CONTENT_VERDICTS else m for v, c, m in
                    zip(mem["verdict"], mem["content_score"], mem["motion_score"])]
    mem = mem[[present(t) for t in mem["train_id"]]]
    mem = mem.sort_values("score", ascending=False).drop_duplicates("train_id")
    out = []
    for r in mem.head(limit).itertuples(index=False):
        tid = str(r.train_id)
        out.append({"sample_id": r.sample_id, "prompt": r.prompt, "verdict": r.verdict,
                    "content_score": r.content_score, "motion_score": r.motion_score, "train_id": tid,
                    "train_caption": train_captions.get(tid, ""), "generated_uri": clip_data_uri(Path(r.path)),
                    "original_uri": clip_data_uri(Path(train_paths[tid])) if tid in train_paths else None})
    return [p for p in out if p["generated_uri"]]


def train_lookup(res, samples: pd.DataFrame) -> tuple[dict[str, Path], dict[str, str]]:
    """Paths and captions of the matched training items, from the audit records (content matches) or
    the content index's metadata (every match)."""
    paths, caps = {}, {}
    for r in res.items:
        m = r.get("content_match")
        if isinstance(m, Mapping) and m.get("train_id") is not None:
            paths[str(m["train_id"])] = Path(str(m.get("path")))
            caps[str(m["train_id"])] = m.get("caption") or ""
    wanted = ({str(x) for x in samples["motion_match"] if present(x)} - set(paths)) if len(samples) else set()
    if wanted:
        try:
            ref = Path(res.config.get("reference", ""))
            folder = ref if (ref / "index.json").is_file() else res.out / "train_index"
            for it in content_items(VectorIndex.open(folder), ids=wanted):
                paths[it.id] = it.path
                caps[it.id] = it.caption
        except Exception:  # the examples then show the id without the clip
            pass
    return paths, caps


def examples_from(out, limit: int = 12) -> list[dict]:
    """The extracted examples of a finished `run_extract` folder (for reports that embed them)."""
    out = Path(out)
    samples = pd.read_parquet(out / "samples.parquet")
    audit = read_json(out / "audit" / "audit.json")
    res = SimpleNamespace(items=audit["items"], config=audit["config"], out=out / "audit")
    paths, caps = train_lookup(res, samples)
    return clip_pairs(samples, paths, caps, limit=limit)


def format_summary(s: dict) -> str:
    """The study's headline and per-group table as text (`diffmem extract` prints it)."""
    def pct(v):
        return "-" if v is None else f"{100 * v:5.1f}%"

    o = s["overall"]
    lines = [f"{o['n_train_extracted']} distinct training items extracted by {o['n_extracted_samples']} of "
             f"{o['n_samples']} samples from {o['n_prompts_extracted']} of {o['n_prompts']} prompts "
             f"(motion audit: {s['config']['motion']})",
             f"{'group':<22}{'prompts':>8}{'samples':>8}{'content':>9}{'motion':>9}{'both':>9}{'extracted':>10}{'items':>7}"]
    for name, b in [*s.get("by_group", {}).items(), ("all", o)]:
        lines.append(f"{name:<22}{b['n_prompts']:>8}{b['n_samples']:>8}{pct(b['rate_content']):>9}"
                     f"{pct(b['rate_motion']):>9}{pct(b['rate_both']):>9}{pct(b['rate_extracted']):>10}"
                     f"{b['n_train_extracted']:>7}")
    return "\n".join(lines)
