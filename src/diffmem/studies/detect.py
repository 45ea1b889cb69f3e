"""`diffmem detect`: score prompts by content and motion magnitude, flag them, evaluate against labels.

    run_detect(model, prompts, out, settings=DetectSettings(seeds=4, steps=1), calibration=None,
               labels=None, calibrate_fpr=None) -> summary dict

Per prompt: its magnitudes averaged over n seeds and the first s steps (the sampler stops there), the
flags from a calibration, and the cost in denoiser evaluations. Writes into `out`:

- ``detect.parquet``: one row per prompt: id, prompt, group, content, motion, total (image models:
  total only), flag_<magnitude>, flagged, denoiser_evals, cost_fraction (+ memorized, label_kind with
  labels);
- ``steps.parquet``: one row per prompt, seed and step (the per-sample magnitudes), so any smaller
  n and s can be re-scored without running the model again;
- ``summary.json``: model, settings, calibration, counts, cost, evaluation, package versions;
- ``report.html``: score distributions, ROC curves, the prompts table;
- ``calibration.json`` when `calibrate_fpr` is given: thresholds from these prompts (the novel ones,
  by labels, when labels are given; else all of them);
- ``items/<hash>.json``: per-prompt records, written as each batch finishes, so a killed run
  resumes where it stopped (records made with other settings or another model are ignored).

Labels (`read_labels`): CSV, JSONL or Parquet with columns ``prompt`` (or ``caption``/``text``),
``memorized`` (bool: true/false, 1/0, yes/no) and optionally ``kind`` in content|motion|both|none; or
the per-prompt table of `diffmem extract` (``extract.parquet``: prompt, n_samples, n_content, n_motion),
whose audited generations give the labels (`labels_from_audit_counts`). Ground truth should come from
auditing generations, not from a duplication list.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..detect.calibrate import Calibration, DetectSettings, calibrate
from ..detect.evaluate import evaluate_scores, roc_curve, roc_figure
from ..detect.magnitude import MagnitudeDetector, aggregate_records, first_step_records, magnitude_names
from ..errors import BadInputError, DiffmemError
from ..io.results import environment, read_json, write_json, write_parquet, write_text

KINDS = ("content", "motion", "both", "none")
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f", ""}


# --------------------------------------------------------------------------------------------
# Labels


def _as_bool(v, path, where) -> bool:
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)) and v in (0, 1):
        return bool(v)
    if isinstance(v, float) and v in (0.0, 1.0):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in _TRUE | _FALSE:
        return v.strip().lower() in _TRUE
    raise BadInputError(path, f"{where}: memorized must be true/false, got {v!r}")


def read_labels(path: str | Path) -> dict[str, dict]:
    """{prompt: {"memorized": bool, "kind": content|motion|both|none}} from CSV / JSONL / Parquet.

    `kind` defaults to "content" for memorized prompts and "none" otherwise. A prompt listed twice must
    carry the same label both times.
    """
    path = Path(path)
    if not path.exists():
        raise BadInputError(path, "no such labels file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".jsonl", ".ndjson"):
            records = []
            for ln, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise BadInputError(path, f"line {ln}: not JSON ({e.msg})") from None
                    if not isinstance(rec, dict):
                        raise BadInputError(path, f"line {ln}: expected a JSON object")
                    records.append(rec)
        elif suffix in (".csv", ".parquet"):
            import pandas as pd

            df = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path, keep_default_na=False)
            records = df.to_dict("records")
        else:
            raise BadInputError(path, "labels must be .csv, .jsonl or .parquet")
    except BadInputError:
        raise
    except Exception as e:  # pandas / pyarrow raise many types for a bad file
        raise BadInputError(path, f"cannot read labels: {e}") from None
    if records and "memorized" not in records[0] and "label" not in records[0] and \
            {"n_samples", "n_content", "n_motion"} <= set(records[0]):
        return labels_from_audit_counts(records, path)
    out: dict[str, dict] = {}
    for k, rec in enumerate(records, 1):
        where = f"row {k}"
        text = next((rec[f] for f in ("prompt", "caption", "text") if isinstance(rec.get(f), str)), None)
        if not text or not text.strip():
            raise BadInputError(path, f"{where}: no prompt (column prompt, caption or text)")
        if "memorized" in rec:
            mem = _as_bool(rec["memorized"], path, where)
        elif "label" in rec:
            mem = _as_bool(rec["label"], path, where)
        else:
            raise BadInputError(path, f"{where}: no memorized column")
        kind = rec.get("kind")
        kind = (str(kind).strip().lower() if kind not in (None, "") else ("content" if mem else "none"))
        if kind not in KINDS:
            raise BadInputError(path, f"{where}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if mem != (kind != "none"):
            raise BadInputError(path, f"{where}: memorized={mem} contradicts kind={kind!r}")
        lab = {"memorized": mem, "kind": kind}
        if text in out and out[text] != lab:
            raise BadInputError(path, f"{where}: prompt {text[:60]!r} is labelled twice, differently")
        out[text] = lab
    if not out:
        raise BadInputError(path, "no labels")
    return out


def labels_from_audit_counts(records, path: str | Path = "<audit table>") -> dict[str, dict]:
    """Labels from audited generations: the per-prompt table of `diffmem extract` (extract.parquet).

    A prompt is memorized when at least one of its audited samples is (n_content or n_motion > 0); its
    kind is content, motion, or both by which verdicts its samples got. Prompts without audited samples
    are left unlabelled; a prompt listed twice pools its samples.
    """
    pooled: dict[str, list[int]] = {}
    for k, rec in enumerate(records, 1):
        text = rec.get("prompt")
        if not isinstance(text, str) or not text.strip():
            raise BadInputError(path, f"row {k}: no prompt")
        try:
            n, c, m = (int(rec[f]) for f in ("n_samples", "n_content", "n_motion"))
        except (TypeError, ValueError) as e:
            raise BadInputError(path, f"row {k}: bad sample counts ({e})") from None
        acc = pooled.setdefault(text, [0, 0, 0])
        acc[0] += n
        acc[1] += c
        acc[2] += m
    out = {}
    for text, (n, c, m) in pooled.items():
        if n == 0:
            continue
        kind = "both" if c and m else "content" if c else "motion" if m else "none"
        out[text] = {"memorized": kind != "none", "kind": kind, "n_samples": n, "n_content": c, "n_motion": m}
    if not out:
        raise BadInputError(path, "no audited samples to take labels from")
    return out


def write_labels(path: str | Path, labels: Mapping[str, Mapping]) -> Path:
    """Write {prompt: {memorized, kind, ...}} as JSONL (the format `read_labels` reads)."""
    lines = [json.dumps({"prompt": p, **{k: v for k, v in lab.items()}}) + "\n" for p, lab in labels.items()]
    return write_text(path, "".join(lines))


# --------------------------------------------------------------------------------------------
# Scoring


def prompt_scores(adapter, prompts: Sequence[str], settings: DetectSettings = DetectSettings(), *,
                  batch_size: int = 8, progress: bool = False) -> dict[str, dict[str, float]]:
    """The functional twin of a detection run: {prompt: {magnitude: score}} for distinct `prompts`."""
    distinct = list(dict.fromkeys(prompts))
    records = _score(adapter, distinct, settings, batch_size=batch_size, progress=progress)
    return {p: {k: v for k, v in row.items() if k != "count"} for p, row in aggregate_records(records).items()}


def _score(adapter, prompts: Sequence[str], settings: DetectSettings, *, batch_size: int, progress: bool) -> list[dict]:
    from ..models.sampler import iter_samples

    seeds = [settings.first_seed + k for k in range(settings.seeds)]
    if settings.steps == 1:  # shared eps(x_T, ""): half the evaluations of the sampler path
        return first_step_records(adapter, prompts, seeds, settings.sampler_config(), batch_size=batch_size)
    all_prompts = [p for p in prompts for _ in seeds]
    all_seeds = [s for _ in prompts for s in seeds]
    det = MagnitudeDetector(steps=settings.steps, frame_axis=adapter.frame_axis)
    for _ in iter_samples(adapter, all_prompts, all_seeds, settings.sampler_config(), batch_size=batch_size,
                          hooks=[det], max_steps=settings.steps, decode=False, progress=progress):
        pass
    return det.records


def _chunk(settings: DetectSettings, batch_size: int) -> int:
    # Prompts scored (and written) together. At s = 1 they share the unconditional evaluations, so
    # take many; through the sampler, a few batches.
    return 64 if settings.steps == 1 else max(1, 4 * batch_size // settings.seeds)


def _fingerprint(model: str, settings: DetectSettings) -> str:
    d = {k: v for k, v in settings.as_dict().items() if k not in ("seeds", "steps")}
    return hashlib.sha256(json.dumps({"model": model, **d}, sort_keys=True).encode()).hexdigest()[:16]


def _item_path(out: Path, prompt: str) -> Path:
    return out / "items" / (hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:24] + ".json")


def _load_item(path: Path, fingerprint: str, settings: DetectSettings) -> list[dict] | None:
    try:
        d = read_json(path)
    except (OSError, ValueError):
        return None
    if d.get("fingerprint") != fingerprint:
        return None
    want = {settings.first_seed + k for k in range(settings.seeds)}
    keep = [r for r in d.get("records", []) if r.get("seed") in want and r.get("step", -1) < settings.steps]
    if {(r["seed"], r["step"]) for r in keep} != {(s, i) for s in want for i in range(settings.steps)}:
        return None  # made with fewer seeds or steps: score again
    return keep


# --------------------------------------------------------------------------------------------
# The study


def load_model(model, device=None):
    """A `DenoiserAdapter` from a name or path (the models registry), or the adapter itself."""
    from ..models.adapter import DenoiserAdapter

    if isinstance(model, DenoiserAdapter):
        return model
    from ..models import load_adapter  # the registry: "builtin:..." names and diffusers folders

    return load_adapter(str(model), device=device)


def run_detect(model, prompts, out, *, settings: DetectSettings | None = None, calibration: str | Path | Calibration | None = None,
               labels: str | Path | Mapping | None = None, calibrate_fpr: float | None = None,
               fprs: Sequence[float] = (0.01, 0.03), batch_size: int = 8, device=None, progress: bool = True,
               resume: bool = True) -> dict:
    """Score every prompt, flag, evaluate; write the results into `out` (see the module docstring).

    `prompts`: a prompt file (any format `diffmem.studies.prompts.read_prompts` reads) or a list of
    strings. `settings` default to the calibration's (or `DetectSettings()`); explicit settings that
    differ from the calibration's are refused. `calibrate_fpr`: also write `out/calibration.json`.
    """
    t0 = time.perf_counter()
    out = Path(out)
    cal = Calibration.load(calibration) if isinstance(calibration, (str, Path)) else calibration
    if settings is None:
        settings = cal.settings if cal is not None else DetectSettings()
    adapter = load_model(model, device)
    model_name = adapter.name or str(model)
    if cal is not None:
        cal.check(model_name, settings)

    entries = _read_prompt_entries(prompts)
    lab = read_labels(labels) if isinstance(labels, (str, Path)) else (dict(labels) if labels is not None else None)

    # Score each distinct prompt once, resuming from finished items.
    fp = _fingerprint(model_name, settings)
    distinct = list(dict.fromkeys(e["prompt"] for e in entries))
    records: dict[str, list[dict]] = {}
    todo = []
    for p in distinct:
        got = _load_item(_item_path(out, p), fp, settings) if resume else None
        if got is not None:
            records[p] = got
        else:
            todo.append(p)
    chunk = _chunk(settings, batch_size)
    from tqdm.auto import tqdm

    share = min(len(distinct), chunk)  # prompts that share one unconditional evaluation at s = 1
    evals_run, t1 = 0, time.perf_counter()
    with tqdm(total=len(todo), desc="detect", unit="prompt", disable=not progress or not todo) as bar:
        for c0 in range(0, len(todo), chunk):
            part = todo[c0:c0 + chunk]
            recs = _score(adapter, part, settings, batch_size=batch_size, progress=False)
            evals_run += settings.seeds * (len(part) + 1) if settings.steps == 1 else \
                2 * settings.seeds * settings.steps * len(part)
            for p in part:
                mine = [dict(r, key=None) for r in recs if r["key"] == p]
                records[p] = mine
                write_json(_item_path(out, p), {"prompt": p, "fingerprint": fp, "model": model_name,
                                                "settings": settings.as_dict(), "records": mine})
            bar.update(len(part))

    t_score = time.perf_counter() - t1
    names = list(magnitude_names(adapter.frame_axis))
    flat = [dict(r, key=p) for p in distinct for r in records[p]]
    scores = aggregate_records(flat, names=names)

    new_cal = None
    if calibrate_fpr is not None:
        pool = [p for p in distinct if lab is None or (p in lab and not lab[p]["memorized"])]
        if not pool:
            raise DiffmemError("no novel prompts to calibrate from (labels mark every prompt memorized)")
        new_cal = calibrate({n: [scores[p][n] for p in pool] for n in names}, calibrate_fpr, model=model_name,
                            settings=settings)
        flags_any = np.zeros(len(pool), dtype=bool)
        for f in new_cal.flags({n: [scores[p][n] for p in pool] for n in _flag_names(names)}).values():
            flags_any |= f
        new_cal.calibration_fpr["any"] = float(flags_any.mean())
        new_cal.save(out / "calibration.json")
        if cal is None:
            cal = new_cal

    rows = _rows(entries, scores, names, settings, cal, lab, share)
    write_parquet(out / "detect.parquet", rows)
    write_parquet(out / "steps.parquet", [{"prompt": p, **{k: v for k, v in r.items() if k != "key"}}
                                          for p in distinct for r in records[p]])

    evaluation, grid, curves, note = None, None, None, None
    if lab is not None:
        groups: dict[str, list[str]] = {}
        for e in entries:
            if e["group"]:
                groups.setdefault(e["group"], []).append(e["prompt"])
        evaluation, curves, sets = _evaluate(distinct, scores, lab, names, fprs, groups)
        if not sets:
            note = (f"no evaluation: the labels give no set with both memorized and novel prompts "
                    f"({sum(1 for p in distinct if p in lab)} of {len(distinct)} prompts labelled)")
        grid = _grid(flat, sets, names, settings, fprs, len(distinct), batch_size)
    summary = {
        "model": adapter.describe() if hasattr(adapter, "describe") else {"name": model_name},
        "settings": settings.as_dict(),
        "prompts": str(prompts) if isinstance(prompts, (str, Path)) else f"{len(entries)} prompts given in code",
        "n_prompts": len(entries), "n_distinct": len(distinct), "resumed": len(distinct) - len(todo),
        "magnitudes": names,
        "cost": {"denoiser_evals_per_prompt": settings.denoiser_evals_per_prompt(share),
                 "generation_evals": settings.generation_evals(), "fraction_of_generation": settings.cost_fraction(share),
                 "prompts_sharing_uncond": share if settings.steps == 1 else None,
                 "denoiser_evals_run": evals_run, "seconds_scoring": round(t_score, 2),
                 "seconds_per_prompt": round(t_score / len(todo), 4) if todo else None},
        "calibration": None if cal is None else cal.as_dict(),
        "calibration_written": str(out / "calibration.json") if new_cal is not None else None,
        "flagged": _flag_counts(rows, names) if cal is not None else None,
        "labels": str(labels) if isinstance(labels, (str, Path)) else (None if labels is None else "given in code"),
        "n_labelled": None if lab is None else sum(1 for p in distinct if p in lab),
        "evaluation": evaluation,
        "evaluation_note": note,
        "evaluation_grid": grid,
        "score_summary": {n: _describe([scores[p][n] for p in distinct]) for n in names},
        "seconds": round(time.perf_counter() - t0, 2),
        "environment": environment(),
    }
    write_json(out / "summary.json", summary)
    write_text(out / "report.html", _report(summary, rows, names, cal, curves))
    return summary


def _flag_names(names: Sequence[str]) -> list[str]:
    # The verdict uses content and motion for video models, the single magnitude for image models;
    # total (= sqrt(content^2 + motion^2)) is calibrated and reported but is no separate evidence.
    return [n for n in names if n != "total"] or list(names)


def _read_prompt_entries(prompts) -> list[dict]:
    if isinstance(prompts, (str, Path)):
        from .prompts import read_prompts

        return [{"id": e.id, "prompt": e.prompt, "group": e.group} for e in read_prompts(prompts)]
    items = list(prompts)
    if not items:
        raise DiffmemError("no prompts given")
    out = []
    for k, p in enumerate(items):
        if not isinstance(p, str) or not p.strip():
            raise DiffmemError(f"prompt {k} is empty or not text")
        out.append({"id": f"p{k:05d}", "prompt": p, "group": None})
    return out


def _rows(entries, scores, names, settings, cal, lab, share) -> list[dict]:
    rows = []
    for e in entries:
        s = scores[e["prompt"]]
        row = {"id": e["id"], "prompt": e["prompt"], "group": e["group"]}
        row.update({n: s[n] for n in names})
        if cal is not None:
            flags = cal.flags({n: s[n] for n in names})
            for n in names:
                row[f"flag_{n}"] = bool(flags[n]) if n in flags else None
            row["flagged"] = any(bool(flags[n]) for n in _flag_names(names) if n in flags)
        row["denoiser_evals"] = settings.denoiser_evals_per_prompt(share)
        row["cost_fraction"] = settings.cost_fraction(share)
        if lab is not None:
            lb = lab.get(e["prompt"])
            row["memorized"] = None if lb is None else lb["memorized"]
            row["label_kind"] = None if lb is None else lb["kind"]
        rows.append(row)
    return rows


def _flag_counts(rows, names) -> dict:
    out = {n: int(sum(1 for r in rows if r.get(f"flag_{n}"))) for n in names}
    out["any"] = int(sum(1 for r in rows if r.get("flagged")))
    return out


def _describe(v) -> dict:
    v = np.asarray(v, dtype=np.float64)
    return {"min": float(v.min()), "median": float(np.median(v)), "mean": float(v.mean()), "max": float(v.max())}


def label_sets(prompts: Sequence[str], lab: Mapping[str, Mapping]) -> dict[str, tuple[list[str], list[bool]]]:
    """The evaluation sets: "memorized" (any kind vs none), and per kind ("content", "motion": prompts of that
    kind or "both" vs none). Unlabelled prompts are left out."""
    labelled = [p for p in prompts if p in lab]
    sets = {"memorized": (labelled, [lab[p]["memorized"] for p in labelled])}
    for kind in ("content", "motion"):
        sel = [p for p in labelled if lab[p]["kind"] in (kind, "both", "none")]
        y = [lab[p]["kind"] in (kind, "both") for p in sel]
        if any(y) and not all(y):
            sets[kind] = (sel, y)
    return sets


def _evaluate(prompts, scores, lab, names, fprs, groups=None):
    sets = _eval_sets(prompts, lab, groups)
    out, curves = {}, {}
    for set_name, (sel, y) in sets.items():
        out[set_name] = evaluate_scores({n: [scores[p][n] for p in sel] for n in names}, y, fprs)
        if set_name == "memorized":
            for n in names:
                fpr, tpr, _ = roc_curve([scores[p][n] for p in sel], y)
                curves[n] = (fpr, tpr, out[set_name][n]["auc"])
    return out, curves, sets


def _eval_sets(prompts, lab, groups):
    sets = {k: v for k, v in label_sets(prompts, lab).items() if any(v[1]) and not all(v[1])}
    # Within each group of the prompt file too (e.g. the world's motion_memorization group: the same
    # appearances with a memorized or a novel motion), where both classes occur.
    for g, members in (groups or {}).items():
        sel = [p for p in dict.fromkeys(members) if p in lab]
        y = [lab[p]["memorized"] for p in sel]
        if any(y) and not all(y):
            sets[f"group:{g}"] = (sel, y)
    return sets


def _grid(flat, sets, names, settings: DetectSettings, fprs, n_distinct: int, batch_size: int) -> list[dict]:
    """AUC / TPR per evaluation set for the first n' seeds and s' steps of this run, n' in {1, n}, s' in {1, s}."""
    out = []
    for n in sorted({1, settings.seeds}):
        for s in sorted({1, settings.steps}):
            sub = aggregate_records(flat, seeds=n, steps=s, names=names)
            sub_settings = DetectSettings(**{**settings.as_dict(), "seeds": n, "steps": s})
            share = min(n_distinct, _chunk(sub_settings, batch_size))  # what a run at (n, s) would cost
            for set_name, (sel, y) in sets.items():
                ev = evaluate_scores({m: [sub[p][m] for p in sel] for m in names}, y, fprs)
                row = {"set": set_name, "seeds": n, "steps": s,
                       "denoiser_evals": sub_settings.denoiser_evals_per_prompt(share),
                       "cost_fraction": sub_settings.cost_fraction(share)}
                for m in names:
                    for k, v in ev[m].items():
                        if k == "auc" or k.startswith("tpr@"):
                            row[f"{m}_{k}"] = v
                out.append(row)
    return out


# --------------------------------------------------------------------------------------------
# The HTML page


def _hist_figure(rows, names, cal, by: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[str, list[dict]] = {}
    for r in rows:
        key = r.get(by) if by else "all"
        groups.setdefault("unlabelled" if key is None else str(key), []).append(r)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.2), squeeze=False)
    for ax, n in zip(axes[0], names):
        vals = np.asarray([r[n] for r in rows], dtype=np.float64)
        bins = np.linspace(vals.min(), vals.max() if vals.max() > vals.min() else vals.min() + 1e-6, 30)
        for g, rs in sorted(groups.items()):
            ax.hist([r[n] for r in rs], bins=bins, histtype="step", lw=1.6, label=f"{g} ({len(rs)})")
        if cal is not None and n in cal.thresholds:
            ax.axvline(cal.thresholds[n], color="#b00", ls="--", lw=1, label=f"threshold @{cal.fpr:g} FPR")
        ax.set_title(f"{n} magnitude")
        ax.set_xlabel("score")
    axes[0][0].set_ylabel("prompts")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def _report(summary, rows, names, cal, curves) -> str:
    from ..io.html import config_block, esc, figure_png, img, page, table

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
    parts.append(img(figure_png(_hist_figure(rows, names, cal, by)), "score distributions", height=None))
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
        if curves:
            parts.append(img(figure_png(roc_figure(curves, "memorized vs novel")), "ROC", height=None))
        if summary.get("evaluation_grid"):
            parts.append("<h3>Seeds and steps</h3>")
            g = summary["evaluation_grid"]
            keys = list(g[0])
            parts.append(table(keys, [[f"{r[k]:.4g}" if isinstance(r[k], float) else r[k] for k in keys] for r in g]))
    parts.append("<h2>Prompts</h2>")
    cols = ["id", "prompt", "group"] + names + (["flagged"] if cal is not None else []) + \
        (["memorized", "label_kind"] if "memorized" in rows[0] else [])
    top = sorted(rows, key=lambda r: -max(r[n] for n in names))[:500]
    parts.append(table(cols, [[f"{r[c]:.4g}" if isinstance(r.get(c), float) else r.get(c) for c in cols] for r in top]))
    if len(rows) > len(top):
        parts.append(f"<p>{esc(len(rows) - len(top))} more prompts in detect.parquet.</p>")
    parts.append("<h2>Configuration</h2>")
    parts.append(config_block({k: summary[k] for k in ("model", "settings", "prompts", "labels", "cost")}))
    return page("diffmem detect", "".join(parts))
