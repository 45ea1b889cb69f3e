"""`diffmem detect`: score prompts by content and motion magnitude, flag them, evaluate against labels.

    run_detect(model, prompts, out, settings=DetectConfig(seeds=4, steps=1), calibration=None,
               labels=None, calibrate_fpr=None) -> summary dict

Per prompt: its magnitudes averaged over n seeds and the first s steps (the sampler stops there), the
flags from a calibration, and the cost in denoiser evaluations. Writes into `out`:

- ``detect.parquet``: one row per prompt: id, prompt, group, content, motion, total (image models:
  total only), flag_<magnitude>, flagged, denoiser_evals, cost_fraction (+ memorized, label_kind with
  labels);
- ``steps.parquet``: one row per prompt, seed and step (the per-sample magnitudes), so any smaller
  n and s can be re-scored without running the model again;
- ``summary.json``: model, settings, calibration, counts, cost, evaluation, package versions;
- ``report.html``: score distributions, ROC curves, the prompts table (`detect_report`);
- ``calibration.json`` when `calibrate_fpr` is given: thresholds from these prompts (the novel ones,
  by labels, when labels are given; else all of them);
- ``items/<hash>.json``: per-prompt records, written as each batch finishes, so a killed run
  resumes where it stopped (`diffmem.detect.prompts.cached_records`).

Labels: `diffmem.data.labels.read_labels` (a label file, or the per-prompt table of `diffmem extract`,
whose audited generations give the labels). Ground truth should come from auditing generations, not
from a duplication list.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..data.labels import read_labels
from ..data.prompts import UNCONDITIONAL, as_prompt_entries
from ..detect.calibrate import Calibration, DetectConfig, calibrate
from ..detect.detectors import DETECTORS, detector_names, prompt_words
from ..detect.evaluate import evaluate_scores, roc_curves
from ..detect.magnitude import aggregate_records, magnitude_names
from ..detect.prompts import cached_records, chunk_size, detector_evals
from ..errors import DiffmemError
from ..io.lock import writes_folder
from ..io.results import environment, write_json, write_parquet, write_text
from ..models import load_adapter
from .detect_report import detect_report

__all__ = ["run_detect", "label_sets"]


@writes_folder("detect")
def run_detect(model, prompts, out, *, settings: DetectConfig | None = None, calibration: str | Path | Calibration | None = None,
               labels: str | Path | Mapping | None = None, calibrate_fpr: float | None = None,
               fprs: Sequence[float] = (0.01, 0.03), fpr_rule: str = "strict", batch_size: int = 8, device=None,
               dtype: str = "float32", model_config: str | Path | None = None, progress: bool = True,
               resume: bool = True, detectors: Sequence[str] = ()) -> dict:
    """Score every prompt, flag, evaluate; write the results into `out` (see the module docstring).

    `prompts`: a prompt file (any format `diffmem.data.prompts.read_prompts` reads) or a list of
    strings. `settings` default to the calibration's (or `DetectConfig()`); explicit settings that
    differ from the calibration's are refused. `calibrate_fpr`: also write `out/calibration.json`.
    `detectors`: first-step detectors scored beside the magnitudes ("anisotropy", "sharpness", "attention"
    or "all"; `diffmem.detect.detectors`); with labels, `comparison.parquet` ranks every score.
    """
    t0 = time.perf_counter()
    out = Path(out)
    cal = Calibration.load(calibration) if isinstance(calibration, (str, Path)) else calibration
    if settings is None:
        settings = cal.settings if cal is not None else DetectConfig()
    adapter = load_adapter(model, device=device, dtype=dtype, config=model_config)
    model_name = adapter.name or str(model)
    if "all" in detectors:  # every detector this model supports
        detectors = tuple(d for d in DETECTORS if d != "attention" or hasattr(adapter, "attention_probe"))
    detectors = tuple(d for d in detectors if d != "magnitude")
    if cal is not None:
        cal.check(model_name, settings)

    given = as_prompt_entries(prompts)
    # the empty prompt of an unconditional group has no text to score: left out (any other empty prompt is an error)
    given = [e for e in given if e.prompt.strip() or e.group != UNCONDITIONAL] or given
    entries = [{"id": e.id, "prompt": e.prompt, "group": e.group}
               for e in as_prompt_entries(given, allow_empty=False)]
    lab = read_labels(labels) if isinstance(labels, (str, Path)) else (dict(labels) if labels is not None else None)

    # Score each distinct prompt once, resuming from finished items.
    distinct = list(dict.fromkeys(e["prompt"] for e in entries))
    extra = detector_names(detectors, adapter.frame_axis is not None)  # unknown names fail before any work
    run = cached_records(adapter, distinct, settings, out, model_name=model_name, batch_size=batch_size,
                         progress=progress, resume=resume, detectors=detectors)
    records, todo, evals_run, t_score = run.records, run.scored, run.denoiser_evals, run.seconds
    share = min(len(distinct), chunk_size(settings, batch_size))  # prompts sharing one uncond. evaluation at s = 1
    names = list(magnitude_names(adapter.frame_axis)) + extra
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
        # beside every score: the prompt's length, the baseline a detector must beat (cost 0)
        for p in distinct:
            scores[p][BASELINE] = float(prompt_words(p))
        evaluation, curves, sets = _evaluate(distinct, scores, lab, [*names, BASELINE], fprs, groups, fpr_rule)
        if not sets:
            note = (f"no evaluation: the labels give no set with both memorized and novel prompts "
                    f"({sum(1 for p in distinct if p in lab)} of {len(distinct)} prompts labelled)")
        grid = _grid(flat, sets, [n for n in names if n not in extra], settings, fprs, len(distinct), batch_size,
                     fpr_rule)
    costs = detector_evals(settings, detectors, share if settings.steps == 1 else None)
    comparison = _comparison(evaluation, [*names, BASELINE], {**costs, "baseline": 0.0}, settings) if evaluation else None
    if comparison:
        write_parquet(out / "comparison.parquet", comparison)
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
        "detectors": ["magnitude", *detectors],
        "comparison": comparison,
        "score_summary": {n: _describe([scores[p][n] for p in distinct]) for n in names},
        "seconds": round(time.perf_counter() - t0, 2),
        "environment": environment(),
    }
    write_json(out / "summary.json", summary)
    write_text(out / "report.html", detect_report(summary, rows, names, cal, curves))
    return summary


BASELINE = "prompt_words"


def score_detector(name: str) -> str:
    """The detector a score name belongs to (the magnitudes' names: "magnitude")."""
    if name == BASELINE:
        return "baseline"
    return next((d for d, (video, image) in DETECTORS.items() if name in video or name in image), "magnitude")


def _comparison(evaluation: Mapping, names: Sequence[str], costs: Mapping[str, float], settings: DetectConfig) -> list[dict]:
    """One row per evaluation set and score: AUC with its 95 % interval, TPR at each FPR, and the score's
    detector's cost per prompt (denoiser evaluations and the fraction of one generation)."""
    rows = []
    for set_name, ev in evaluation.items():
        for n in names:
            e = ev[n]
            det = score_detector(n)
            ci = e.get("auc_ci95") or (None, None)
            rows.append({"set": set_name, "score": n, "detector": det, "auc": e["auc"], "auc_lo": ci[0], "auc_hi": ci[1],
                         **{k: v for k, v in e.items() if k.startswith("tpr@")},
                         "n_memorized": e["n_memorized"], "n_novel": e["n_novel"],
                         "denoiser_evals": costs[det], "cost_fraction": costs[det] / settings.generation_evals()})
    return rows


def _flag_names(names: Sequence[str]) -> list[str]:
    # The verdict uses content and motion for video models, total for image models; total (= sqrt(content^2
    # + motion^2)) and wen (= total x sqrt(N)) are calibrated and reported but are no separate evidence.
    # The other detectors' scores are compared and calibrated, not (yet) part of the verdict.
    return [n for n in names if n in ("content", "motion")] or ["total"]


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


def _evaluate(prompts, scores, lab, names, fprs, groups=None, rule: str = "strict"):
    sets = _eval_sets(prompts, lab, groups)
    out, curves = {}, {}
    for set_name, (sel, y) in sets.items():
        out[set_name] = evaluate_scores({n: [scores[p][n] for p in sel] for n in names}, y, fprs, rule)
        if set_name == "memorized":
            curves = roc_curves({n: [scores[p][n] for p in sel] for n in names}, y)
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


def _grid(flat, sets, names, settings: DetectConfig, fprs, n_distinct: int, batch_size: int,
          rule: str = "strict") -> list[dict]:
    """AUC / TPR per evaluation set for the first n' seeds and s' steps of this run, n' in {1, n}, s' in {1, s}."""
    out = []
    for n in sorted({1, settings.seeds}):
        for s in sorted({1, settings.steps}):
            sub = aggregate_records(flat, seeds=n, steps=s, names=names)
            sub_settings = DetectConfig(**{**settings.as_dict(), "seeds": n, "steps": s})
            share = min(n_distinct, chunk_size(sub_settings, batch_size))  # what a run at (n, s) would cost
            for set_name, (sel, y) in sets.items():
                ev = evaluate_scores({m: [sub[p][m] for p in sel] for m in names}, y, fprs, rule, n_boot=0)
                row = {"set": set_name, "seeds": n, "steps": s,
                       "denoiser_evals": sub_settings.denoiser_evals_per_prompt(share),
                       "cost_fraction": sub_settings.cost_fraction(share)}
                for m in names:
                    for k, v in ev[m].items():
                        if k == "auc" or k.startswith("tpr@"):
                            row[f"{m}_{k}"] = v
                out.append(row)
    return out
