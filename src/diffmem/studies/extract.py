"""The extraction study: generate N samples per prompt, audit them, and tabulate what was extracted.

`run_extract` chains three resumable steps, each in its own folder under OUT:

    OUT/generated/   the generation (`diffmem.studies.generate`): one clip per (prompt, seed), a manifest
    OUT/audit/       the audit of the generated clips against the training set (`diffmem.studies.audit`)
    OUT/extract.parquet, extract.json, samples.parquet, report.html   the study's tables

Definitions (one generated sample = one (prompt, seed)):

- a sample is *content-extracted* when its audit verdict is `content` or `both`, *motion-extracted*
  for `motion` or `both`; *extracted* for any of the three;
- the training items extracted by a set of samples are the distinct training ids matched by their
  memorized verdicts (the content match for content/both, the motion match for motion/both);
- rates are fractions of samples; score distributions are n, mean, median, p95 (the "Top-5 %"
  of AMG's tables), max, and the fraction above the audit's thresholds.

Tables: per prompt (extract.parquet, one row per prompt), per group (the prompt file's `group`,
e.g. the embedded world's duplicated_video / duplicated_caption / novel) and overall (extract.json).
OUT/labels.jsonl says, per prompt, whether any of its samples was extracted (and how): the ground truth
`diffmem detect --labels` evaluates inference-time detection against.

Motion is audited at the lower of the motion policy's rate and the generated videos' rate (see
`_motion_parts`), so a 4 fps model is compared with its training clips step for step.
"""
from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..errors import DiffmemError
from .prompts import PromptEntry

__all__ = ["VERDICTS", "SAMPLE_COLUMNS", "run_extract", "tabulate", "score_summary", "samples_table", "prompt_labels",
           "clip_pairs", "extract_report", "pairs_html", "examples_from"]

VERDICTS = ("content", "motion", "both", "none")
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
        if v in CONTENT_VERDICTS and _present(cm):
            ids.add(str(cm))
        if v in MOTION_VERDICTS and _present(mm):
            ids.add(str(mm))
    return sorted(ids)


def _present(x) -> bool:
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


# --------------------------------------------------------------------------------------------
# Report


def _fmt(v, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if pct:
        return f"{100 * v:.1f} %"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def _histograms(samples: pd.DataFrame, thresholds: Mapping[str, float | None]) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io.html import figure_png

    kinds = [k for k in ("content", "motion") if samples[f"{k}_score"].notna().any()]
    if not kinds:
        return None
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.5 * len(kinds), 3.2), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        for verdicts, label, color in ((("none",), "not extracted", "#888"),
                                       (("content", "motion", "both"), "extracted", "#c33")):
            v = samples.loc[samples["verdict"].isin(verdicts), f"{kind}_score"].dropna()
            if len(v):
                ax.hist(v, bins=30, alpha=0.6, label=f"{label} ({len(v)})", color=color)
        if thresholds.get(kind) is not None:
            ax.axvline(thresholds[kind], color="k", ls="--", lw=0.8, label=f"threshold {thresholds[kind]:g}")
        ax.set_xlabel(f"{kind} score")
        ax.set_ylabel("samples")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return figure_png(fig)


def pairs_html(pairs: Sequence[dict]) -> str:
    """Generated clip | training original | verdict and scores, one row per extracted example."""
    from ..io.html import esc, img

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
    from ..io.html import config_block, img, page, table

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

    hist = _histograms(samples, thresholds or {})
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


# --------------------------------------------------------------------------------------------
# The study


def _entries_of(prompts) -> list[PromptEntry]:
    from .prompts import read_prompts

    if isinstance(prompts, (str, Path)):
        return read_prompts(prompts)
    entries = list(prompts)
    if not entries:
        raise DiffmemError("no prompts")
    if len({e.id for e in entries}) != len(entries):
        raise DiffmemError("prompt ids must be unique")
    return entries


def _gif(path: Path, fps: float | None = None, size: int = 64, max_frames: int = 16) -> str | None:
    """A small animated GIF data URI of a clip (a PNG for an image); None when it cannot be read."""
    from ..io.html import gif_data_uri, png_data_uri
    from ..io.video import read_frames, resize_frames

    try:
        frames = read_frames(path)
    except Exception:  # the report shows the ids even when a file went missing since the audit
        return None
    fr, ts = frames.array, np.asarray(frames.timestamps, dtype=float)
    if fps is None and len(ts) > 1 and ts[-1] > ts[0]:
        fps = (len(ts) - 1) / (ts[-1] - ts[0])  # play at the clip's own rate: a 4 fps sample beside an 8 fps original
    if len(fr) > max_frames:  # keep the whole clip, at a lower rate
        step = int(np.ceil(len(fr) / max_frames))
        fr, fps = fr[::step], (fps or 8.0) / step
    fr = resize_frames(fr, size)
    return png_data_uri(fr[0]) if len(fr) == 1 else gif_data_uri(fr, fps or 8.0)


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
    mem = mem[[_present(t) for t in mem["train_id"]]]
    mem = mem.sort_values("score", ascending=False).drop_duplicates("train_id")
    out = []
    for r in mem.head(limit).itertuples(index=False):
        tid = str(r.train_id)
        out.append({"sample_id": r.sample_id, "prompt": r.prompt, "verdict": r.verdict,
                    "content_score": r.content_score, "motion_score": r.motion_score, "train_id": tid,
                    "train_caption": train_captions.get(tid, ""), "generated_uri": _gif(Path(r.path)),
                    "original_uri": _gif(Path(train_paths[tid])) if tid in train_paths else None})
    return [p for p in out if p["generated_uri"]]


def prompt_labels(per_prompt: pd.DataFrame, min_rate: float = 0.0) -> dict[str, dict]:
    """Ground-truth labels for detection from the audit: a prompt is memorized when more than
    `min_rate` of its samples were extracted (default: at least one); kind = content / motion / both / none
    by which kinds of extraction its samples showed. The format `diffmem detect --labels` reads."""
    out = {}
    for r in per_prompt.itertuples(index=False):
        if not r.n_samples:
            continue
        mem = bool(r.n_extracted_samples > 0 and r.rate_extracted > min_rate)
        c, m = r.n_content > 0, r.n_motion > 0
        kind = "both" if c and m else "content" if c else "motion" if m else "none"
        out[r.prompt] = {"memorized": mem, "kind": kind if mem else "none", "rate_extracted": float(r.rate_extracted),
                         "id": r.prompt_id, "group": r.group}
    return out


def _match_id(m) -> str | None:
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
            "content_match": _match_id(r.get("content_match")), "coverage": r.get("coverage"),
            "motion_score": float(r["motion_score"]) if r.get("motion_score") is not None else float("nan"),
            "motion_match": _match_id(r.get("motion_match")),
        })
    cols = list(SAMPLE_COLUMNS) + ["prompt", "group", "path", "coverage"]
    return pd.DataFrame(rows, columns=list(dict.fromkeys(cols + (list(rows[0]) if rows else []))))


def _motion_parts(content_index, out: Path, *, gen_fps: float | None, progress: bool) -> tuple[list, str, float | None]:
    """([motion audit part], status, tau_m) when diffmem has the motion audit, else content only.

    Motion is compared at the lower of the motion policy's rate and the generated videos' own rate:
    sampling a 4 fps video at 8 fps repeats every frame, so every other flow would be zero and no
    window could match a training window, however exact the copy.
    """
    try:
        from dataclasses import replace

        from .motion_audit import MotionAuditConfig, motion_part
    except ImportError:
        return [], "not available in this version (content only)", None
    cfg = MotionAuditConfig()
    if gen_fps and cfg.policy.fps and gen_fps < cfg.policy.fps:
        cfg = replace(cfg, policy=replace(cfg.policy, fps=float(gen_fps)))
    part = motion_part(content_index, out, cfg, motion_index=out / f"motion_index_{cfg.policy.fingerprint}",
                       progress=progress)
    return [part], f"audited at {cfg.policy.fps:g} fps", float(cfg.nmf.tau_m)


def run_extract(model, prompts, train_or_index, out, *, n: int = 4, seed: int = 0, steps: int = 25,
                guidance: float = 7.5, top: int | None = None, motion: bool = True, batch_size: int = 8,
                examples: int = 12, label_min_rate: float = 0.0, descriptor=None, threshold: float | None = None,
                device=None, progress: bool = True, log=None, engine: str = "local",
                address: str | None = None) -> dict:
    """The extraction study (see the module docstring): generate `n` samples per prompt (seeds
    seed..seed+n-1), audit them against `train_or_index`, tabulate; resumable at every step.

    engine "ray": the generation runs as a Ray sweep (`generate_ray`; `address` joins a cluster).

    prompts: a prompt file (`read_prompts`) or PromptEntry list; `top` keeps the first `top` prompts.
    Writes OUT/extract.parquet (per prompt), OUT/samples.parquet (per sample), OUT/extract.json,
    OUT/labels.jsonl (per-prompt memorized labels for `diffmem detect --labels`), OUT/report.html.
    Returns the summary (also in extract.json).
    """
    import time

    from ..io.results import environment, write_json, write_parquet, write_text
    from .audit import audit, resolve_reference
    from .detect import write_labels
    from .generate import GenerateSettings, PromptSpec, generate

    t0 = time.perf_counter()
    out = Path(out)
    entries = _entries_of(prompts)
    if top is not None:
        entries = entries[:top]
    settings = GenerateSettings(n=n, seed=seed, steps=steps, guidance=guidance)
    specs = [PromptSpec(e.id, e.prompt, e.group) for e in entries]
    say = log or (lambda msg: None)

    say(f"generating {n} samples for each of {len(entries)} prompts")
    t = time.perf_counter()
    if engine == "ray":
        from .generate_ray import generate_ray

        gen = generate_ray(model, specs, out / "generated", settings, batch_size=batch_size, device=device,
                           progress=progress, log=log, address=address)
    elif engine == "local":
        gen = generate(model, specs, out / "generated", settings, batch_size=batch_size, device=device,
                       progress=progress)
    else:
        raise DiffmemError(f"unknown engine {engine!r}; use local or ray")
    t_gen = time.perf_counter() - t

    say("auditing the samples against the training set")
    t = time.perf_counter()
    # the content index first (opened, or built from the training set into OUT/audit/train_index), so the
    # motion part indexes the same training items
    index, _, _, ref_kind = resolve_reference(train_or_index, out / "audit", descriptor=descriptor,
                                              threshold=threshold, device=device or "cpu", progress=progress)
    reference = train_or_index if ref_kind == "index" else index.folder
    parts, motion_status, tau_m = (_motion_parts(index, out / "audit", gen_fps=gen.get("fps"), progress=progress)
                                   if motion else ([], "off", None))
    res = audit(out / "generated" / "manifest.parquet", reference, out / "audit", descriptor=descriptor,
                threshold=threshold, parts=parts, progress=progress, device=device or "cpu")
    t_audit = time.perf_counter() - t

    manifest = pd.read_parquet(out / "generated" / "manifest.parquet")
    samples = samples_table(manifest, res.items, entries)
    tau_c = res.summary["threshold"]
    cth = {"tau_c": tau_c, "0.5": 0.5, "0.4": 0.4}
    mth = {"tau_m": tau_m} if tau_m is not None else None
    per_prompt, tables = tabulate(samples, entries, content_thresholds=cth, motion_thresholds=mth)

    train_paths, train_captions = _train_lookup(res, samples)
    pairs = clip_pairs(samples, train_paths, train_captions, limit=examples)
    labels = prompt_labels(per_prompt, label_min_rate)

    config = {"model": gen.get("model"), "generation": settings.as_dict(), "prompts": str(prompts) if isinstance(prompts, (str, Path)) else "given in code",
              "n_prompts": len(entries), "top": top, "train_or_index": str(train_or_index),
              "audit": {k: res.config.get(k) for k in ("reference_kind", "fps", "content", "motion") if k in res.config},
              "motion": motion_status, "label_min_rate": label_min_rate}
    summary = {**tables, "config": config,
               "audit_skipped": res.skipped, "n_labelled": len(labels),
               "n_memorized_prompts": sum(v["memorized"] for v in labels.values()),
               "seconds": {"generate": round(t_gen, 2), "audit": round(t_audit, 2),
                           "total": round(time.perf_counter() - t0, 2)},
               "environment": environment()}
    write_parquet(out / "extract.parquet", per_prompt)
    write_parquet(out / "samples.parquet", samples)
    write_labels(out / "labels.jsonl", labels)
    write_json(out / "extract.json", summary)
    write_text(out / "report.html", extract_report(per_prompt, tables, samples, clip_pairs=pairs,
                                                   thresholds={"content": tau_c, "motion": tau_m}, config=config))
    return summary


def _train_lookup(res, samples: pd.DataFrame) -> tuple[dict[str, Path], dict[str, str]]:
    """Paths and captions of the matched training items, from the audit records (content matches) or
    the content index's metadata (every match)."""
    paths, caps = {}, {}
    for r in res.items:
        m = r.get("content_match")
        if isinstance(m, Mapping) and m.get("train_id") is not None:
            paths[str(m["train_id"])] = Path(str(m.get("path")))
            caps[str(m["train_id"])] = m.get("caption") or ""
    wanted = ({str(x) for x in samples["motion_match"] if _present(x)} - set(paths)) if len(samples) else set()
    if wanted:
        try:
            from ..index import VectorIndex

            ref = Path(res.config.get("reference", ""))
            folder = ref if (ref / "index.json").is_file() else res.out / "train_index"
            meta = VectorIndex.open(folder).metadata
            sub = meta[meta["item_id"].isin(wanted)].drop_duplicates("item_id")
            for r in sub.itertuples(index=False):
                paths[str(r.item_id)] = Path(str(r.path))
                caps[str(r.item_id)] = str(r.caption or "")
        except Exception:  # the examples then show the id without the clip
            pass
    return paths, caps


def examples_from(out, limit: int = 12) -> list[dict]:
    """The extracted examples of a finished `run_extract` folder (for reports that embed them)."""
    from types import SimpleNamespace

    from ..io.results import read_json

    out = Path(out)
    samples = pd.read_parquet(out / "samples.parquet")
    audit = read_json(out / "audit" / "audit.json")
    res = SimpleNamespace(items=audit["items"], config=audit["config"], out=out / "audit")
    paths, caps = _train_lookup(res, samples)
    return clip_pairs(samples, paths, caps, limit=limit)
