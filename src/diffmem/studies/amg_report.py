"""AMG's study outputs: the evaluation table (one row per variant), its HTML report, and the report of a
`diffmem generate --amg` folder (`amg_report`). Orchestration is in `studies.amg`."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import BadInputError
from ..io.embed import gif_data_uri
from ..io.figures import COLORS, LinePanel, line_figure
from ..io.html import config_block, esc, img, page, table
from ..io.results import read_json, write_text
from ..io.video import read_frames
from ..metrics.quality import feature_space, quality_distances
from ..models.adapter import frames_to_uint8
from ..models.sampler import sample

#: prompt groups whose samples count as "duplicated prompts" in the table (the world's names)
DUPLICATED_GROUPS = ("duplicated_video", "duplicated_image", "duplicated_caption")


# ----------------------------------------------------------------------------- the table


def amg_table(rows: Sequence[dict], tau_c: float, tau_m: float, timing: dict | None = None) -> list[dict]:
    """One row per variant: Top-5 % (95th percentile of the content scores), Top-1 (max), % above tau_c,
    % content-memorized among the duplicated prompts, % motion-memorized, alignment, flicker, triggered
    steps and seconds per sample. Pure: rows in, table out."""
    df = pd.DataFrame(list(rows))
    out = []
    for name in dict.fromkeys(df["variant"]):
        d = df[df["variant"] == name]
        cs = d["content_score"].dropna().to_numpy(float)
        dup = d[d["group"].isin(DUPLICATED_GROUPS)]
        mot = d[(d["group"] == "motion_memorization") & (d["role"] == "memorized")]
        row = {"variant": name, "n": int(len(d)),
               "top5": float(np.percentile(cs, 95)) if len(cs) else None,
               "top1": float(cs.max()) if len(cs) else None,
               "pct_above_tau": float(100 * (cs > tau_c).mean()) if len(cs) else None,
               "dup_content_memorized_pct": _pct(dup.get("content_memorized")),
               "motion_prompts_motion_memorized_pct": _pct(mot.get("motion_memorized")),
               "all_motion_memorized_pct": _pct(d.get("motion_memorized")),
               "aligned_pct": _pct(d.get("aligned")),
               "flicker": float(d["flicker"].mean()) if "flicker" in d and d["flicker"].notna().any() else None,
               "clip_score": float(d["clip_score"].mean()) if "clip_score" in d else None}
        if "amg_triggered_steps" in d and d["amg_triggered_steps"].notna().any():
            row["mean_triggered_steps"] = float(d["amg_triggered_steps"].fillna(0).mean())
            nov = d[d["group"] == "novel"]
            row["novel_triggered_pct"] = _pct(nov["amg_triggered_steps"].fillna(0) > 0) if len(nov) else None
        if timing and name in timing:
            row["sec_per_sample"] = timing[name].get("sec_per_sample")
        out.append(row)
    return out


def _pct(col) -> float | None:
    if col is None:
        return None
    s = col.dropna()
    return float(100 * s.astype(bool).mean()) if len(s) else None


def quality_by_variant(out: Path, variants, training, inception) -> dict:
    """Quality distance of every variant's frames to the training frames (FID or FD-<descriptor>)."""
    space = feature_space(inception, training.descriptor)
    clips = {}
    for name in variants:
        man = pd.read_parquet(out / "variants" / name / "manifest.parquet")
        clips[name] = []
        for p in man["path"]:
            try:
                clips[name].append(read_frames(out / "variants" / name / p).array)
            except BadInputError:
                continue
    return {name: {"quality_metric": q["metric"], "quality": q["value"]}
            for name, q in quality_distances(clips, [training.fd_frames], space).items()}


# ----------------------------------------------------------------------------- HTML


def evaluation_html(result: dict, rows: Sequence[dict], out: Path) -> str:
    tab = result["table"]
    cols = [c for c in ("variant", "n", "top5", "top1", "pct_above_tau", "dup_content_memorized_pct",
                        "motion_prompts_motion_memorized_pct", "quality_metric", "quality", "aligned_pct",
                        "clip_score", "flicker", "mean_triggered_steps", "novel_triggered_pct", "sec_per_sample")
            if any(r.get(c) is not None for r in tab)]
    body = [f"<p>tau_c = {result['tau_c']:.3f} ({esc(result['descriptor']['name'])}), tau_m = {result['tau_m']}</p>",
            table(cols, [[_fmt(r.get(c)) for c in cols] for r in tab])]
    body.append("<h2>Memorized samples: baseline vs full AMG (same seed)</h2>")
    body.append(_before_after(rows, out))
    body.append("<h2>Configuration</h2>" + config_block(result["config"]))
    return page("Anti-Memorization Guidance: evaluation", "\n".join(body))


def _fmt(v):
    return f"{v:.3f}" if isinstance(v, float) else v


def _before_after(rows, out: Path, limit: int = 12) -> str:
    base = {r["id"]: r for r in rows if r["variant"] == "baseline"}
    full = {r["id"]: r for r in rows if r["variant"] == "full"}
    pairs = [(base[i], full[i]) for i in base
             if i in full and (base[i].get("content_memorized") or base[i].get("motion_memorized"))][:limit]
    if not pairs:
        return "<p>No memorized baseline sample (or no baseline/full variant).</p>"
    parts = []
    for b, f in pairs:
        cells = []
        for r in (b, f):
            try:
                fr = read_frames(r["path"]).array
                cells.append(img(gif_data_uri(fr, 4.0), r["variant"], height=96))
            except BadInputError:
                cells.append("(unreadable)")
        parts.append(f"<figure>{cells[0]} {cells[1]}<figcaption>{esc(b['prompt'])} (seed {b['seed']}): content "
                     f"{_fmt(b.get('content_score'))} &rarr; {_fmt(f.get('content_score'))}, motion "
                     f"{_fmt(b.get('motion_score'))} &rarr; {_fmt(f.get('motion_score'))}</figcaption></figure>")
    return "".join(parts)


# ----------------------------------------------------------------------------- `generate --amg-report`


def amg_report(out: str | Path, adapter, settings, *, batch_size: int = 8) -> Path:
    """DIR/amg_report.html for a `generate --amg` folder: per sample the sigma trajectories with their
    thresholds and the steps each term fired, and, for samples AMG changed, the frames without AMG for
    the same seed (regenerated here: untriggered samples are identical by construction)."""
    out = Path(out)
    man = pd.read_parquet(out / "manifest.parquet")
    recs = []
    for r in man.to_dict("records"):
        p = out / "samples" / f"{r['id']}.amg.json"
        recs.append((r, read_json(p) if p.is_file() else None))
    changed = [(r, t) for r, t in recs if t and t["summary"].get("amg_triggered_steps", 0) > 0]
    before = {}
    if changed:
        o = sample(adapter, [r["prompt"] for r, _ in changed], [int(r["seed"]) for r, _ in changed],
                   settings.sampler_config(), batch_size=batch_size, progress=False)
        for (r, _), fr in zip(changed, frames_to_uint8(o.frames)):
            before[r["id"]] = fr
    rows_html, figs = [], []
    for r, t in recs:
        s = (t or {}).get("summary", {})
        rows_html.append([r["id"], r["prompt"], r["seed"], s.get("amg_triggered_steps"), s.get("amg_spe_steps"),
                          s.get("amg_dup_steps"), s.get("amg_sim_steps"),
                          _fmt(s.get("amg_sigma_content_max")), _fmt(s.get("amg_sigma_motion_max"))])
        if not t:
            continue
        after = read_frames(out / r["path"]).array
        cells = img(_trajectory_svg(t["trace"]), "sigma trajectory", height=160)
        if r["id"] in before:
            cells += img(gif_data_uri(before[r["id"]], 4.0), "without AMG", 96) + img(gif_data_uri(after, 4.0), "with AMG", 96)
            cap = "trajectory; without AMG; with AMG (same seed)"
        else:
            cells += img(gif_data_uri(after, 4.0), "with AMG (never triggered: identical without)", 96)
            cap = "trajectory; sample (AMG never triggered)"
        figs.append(f"<figure>{cells}<figcaption>{esc(r['id'])}: {esc(r['prompt'])}. {cap}</figcaption></figure>")
    body = table(["id", "prompt", "seed", "triggered steps", "spe", "dup", "sim", "max sigma content",
                  "max sigma motion"], rows_html) + "".join(figs)
    path = out / "amg_report.html"
    write_text(path, page("AMG generation report", body))
    return path


def _trajectory_svg(tr: dict) -> str:
    """One sample's sigma per channel against its lambda (dashed, same colour), with the triggered steps
    marked along the bottom (an SVG data URI)."""
    lines = []
    for k, (kind, vals) in enumerate(tr["sigma"].items()):
        color = COLORS[k % len(COLORS)]
        lines.append((range(len(vals)), vals, {"label": f"sigma {kind}", "color": color}))
        lines.append((range(len(tr["lambda"][kind])), tr["lambda"][kind], {"label": f"lambda {kind}", "color": color,
                                                                         "ls": "--"}))
    trig = [i for i, v in enumerate(tr["triggered"]) if v]
    return line_figure([LinePanel(lines=lines, marks=trig, marks_style={"color": "red", "label": "triggered"},
                                  xlabel="step")]).data_uri()
