"""The offline demonstration (`diffmem demo`, `make demo`): the whole study, end to end, on the embedded world.

Stages, each in its own folder under OUT, each resumable (running the demo again skips finished work):

    1. world     OUT/world      the embedded world: captioned clips with known duplicates (`make_world`)
    2. index     OUT/index      frame descriptors of every training item (`build_content_index`)
    3. prompts   OUT/prompts    curated memorization-prone prompts (`run_prompts`), their recall of the
                                world's duplicated sources, and the study's prompt set: the curated prompts
                                plus the world's novel and motion-memorization prompts as controls
    4. extract   OUT/extract    N samples per prompt from the model, audited (`run_extract`); per-prompt
                                labels (did it extract anything?) for detection
    5. detect    OUT/detect     content / motion magnitudes of every prompt, ROC against those labels
    6. amg       OUT/amg        Anti-Memorization Guidance against plain sampling on the memorized prompts
    7. report    OUT/report.html   one page: the summary, extracted clips beside their originals, the ROC,
                                the AMG table, links to every stage's own report

A stage that cannot run is reported with the reason (skipped when it was turned off or an earlier stage
gave it nothing to do; failed when the model cannot be loaded), and the stages that do not need it still
run; `diffmem demo` exits 1 when a stage failed.
"""
from __future__ import annotations

import json
import shutil
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

from ..data.labels import read_labels
from ..data.prompts import PromptEntry, read_prompts, write_prompts
from ..detect.calibrate import DetectConfig
from ..errors import DiffmemError
from ..index import DEFAULT_FPS, build_content_index
from ..io.lock import writes_folder
from ..io.results import environment, write_json, write_text
from ..models.registry import CHECKPOINTS
from ..world import load_ground_truth, make_world
from .amg import EvalConfig, evaluate_amg
from .demo_report import demo_report
from .demo_result import DemoResult, Stage, StageSkipped, pct_text, value_text
from .demo_settings import (
    MODEL_STAGES,
    SETTINGS_FILE,
    DemoRun,
    load_model,
    sampler_defaults,
    settings_changed,
    study_prompts,
)
from .detect import run_detect
from .extract import run_extract
from .extract_report import format_summary
from .prompts import duplicate_recall, run_prompts
from .world_eval import model_window

DEFAULT_MODEL = "builtin:tiny-t2v-large"
# Curated prompts kept in the study on the large world: its curation ranks the 7 duplicated sources
# first, then near-duplicate captions (size-word variants of one caption, 160 more); 12 keeps the first
# and a few of the second, which the extraction shows to be harmless.
LARGE_TOP = 12
# Samples per prompt. Extraction: 4 rather than 2 cuts the standard error of the per-group rates by ~30 % for
# ~13 s more (whole demo 42 -> 55 s, 2-core machine, 1 thread). AMG: 2, on 3 prompts (it samples with gradients).
DEMO_N, AMG_N = 4, 2


def world_size_for(model: Any) -> str:
    """The world size a model was trained on: a built-in model's recorded one, else "large"."""
    name = model if isinstance(model, str) else getattr(model, "name", "")
    if isinstance(name, str) and name.startswith("builtin:"):
        try:
            meta = json.loads((CHECKPOINTS / f"{name.split(':', 1)[1]}.json").read_text(encoding="utf-8"))
            return str(meta["training"]["world"]["size"])
        except (OSError, ValueError, KeyError):
            pass
    return "large"


@writes_folder("demo")
def run_demo(out, *, seed: int = 0, size: str | None = None, model: Any = DEFAULT_MODEL, n: int = DEMO_N,
             steps: int | None = None, guidance: float | None = None, top: int | None = None, novel: int = 8,
             detect_seeds: int = 4, amg: bool = True, amg_prompts: int = 3, amg_n: int = AMG_N, force: bool = False,
             progress: bool = False, log=None) -> DemoResult:
    """Run (or resume) the demo in folder `out`; see the module docstring.

    model: a model spec or `DenoiserAdapter` (default: the committed tiny text-to-video model of the
    version-2 world). size: the world's (default: the one the model was trained on, `world_size_for`).
    n: samples per prompt (seeds seed..seed+n-1).
    novel: how many of the world's novel prompts join as controls (all its motion-memorization prompts
    do: they come in memorized / control pairs).
    steps / guidance: sampler settings (default: the model's `recommended` ones when it has them, else
    25 steps at guidance 3, see DEMO_GUIDANCE).
    top: keep only the top curated prompts (default: all; on the large world `LARGE_TOP`).
    amg_prompts, amg_n: how many memorized prompts AMG is evaluated on, with how many samples each (AMG
    samples with gradients: per sample the slowest stage).
    force: replace a world of another seed or size, and start the model's stages afresh. (They start afresh
    anyway when the model or the settings recorded in OUT/demo_settings.json changed.)
    """
    t_start = time.perf_counter()
    out = Path(out)
    size = size or world_size_for(model)
    if top is None and size == "large":
        top = LARGE_TOP
    r = DemoRun(out, seed, size, n, top, novel, detect_seeds, amg, amg_prompts, amg_n, force, progress,
             log or (lambda m: None), DemoResult(out, None))
    _run_stage(r, "world", _world)
    if r.result.world is None:
        return _finish(r.result, t_start)
    _prepare_model(r, model, steps, guidance)
    for name, fn in (("index", _index), ("prompts", _prompts), ("extract", _extract), ("detect", _detect),
                     ("amg", _amg)):
        _run_stage(r, name, fn)
    r.result.seconds = time.perf_counter() - t_start
    _run_stage(r, "report", _report)
    return _finish(r.result, t_start)


def _run_stage(r: DemoRun, name: str, fn) -> Stage:
    """Run one stage; a skipped or failed stage is recorded with why, and the others still run."""
    st = Stage(name)
    r.result.stages.append(st)
    r.say(f"[{name}]")
    t0 = time.perf_counter()
    try:
        fn(r, st)
        if st.status == "pending":
            st.status = "done"
    except StageSkipped as e:
        st.status, st.result = "skipped", str(e)
    except DiffmemError as e:
        st.status, st.result = "failed", f"{type(e).__name__}: {e}"
    except Exception as e:  # a stage's bug must not hide the other stages' results
        st.status, st.result = "failed", f"{type(e).__name__}: {e}"
        st.detail["traceback"] = traceback.format_exc()
    st.seconds = time.perf_counter() - t0
    r.say(f"[{name}] {st.status} in {st.seconds:.0f} s: {st.result}")
    return st


def _world(r: DemoRun, st: Stage) -> None:
    r.result.world = w = make_world(r.world_dir, seed=r.seed, size=r.size, force=r.force, progress=r.progress)
    st.result = (f"{w.n_items} training items ({w.n_videos} videos, {w.n_images} images), "
                 f"{w.n_duplicate_groups} duplicated sources ({w.n_duplicated_files} files), "
                 f"{w.n_caption_groups} caption-only duplicates")
    st.detail = w.as_dict()


def _prepare_model(r: DemoRun, model, steps, guidance) -> None:
    """Load the model, settle the sampler settings, and clear the model's stages if they were made with
    other settings (results of another model or other settings would be refused on resume)."""
    r.adapter, r.why = load_model(model)
    r.sampler = sampler_defaults(r.adapter, steps, guidance)
    settings = r.result.settings
    if r.adapter is not None:
        settings.update({"model": r.adapter.name or str(model), "n": r.n, "seed": r.seed, **r.sampler,
                         "amg_n": r.amg_n, "amg_prompts": r.amg_prompts, "detect_seeds": r.detect_seeds})
    changed = settings_changed(r.out, settings)
    if changed and not r.force:
        r.say(f"the model's stages in {r.out} were made with other settings ({changed}): redoing them")
    if r.force or changed:
        for sub in MODEL_STAGES:
            if (r.out / sub).is_dir():
                shutil.rmtree(r.out / sub)
    if settings:
        write_json(r.out / SETTINGS_FILE, settings)
    # Frames are indexed at the model's frame rate when it is below the default 8 fps: its samples have
    # no frames in between, so the extra training frames would only cost time (half of it at 4 fps).
    model_fps = float(getattr(r.adapter, "fps", 0) or 0)
    r.index_fps = min(DEFAULT_FPS, model_fps) if model_fps else DEFAULT_FPS
    try:  # an index from an earlier run keeps its rate (correct either way; resuming beats rebuilding)
        r.index_fps = float(json.loads((r.index_dir / "index.json").read_text())["config"]["fps"] or r.index_fps)
    except (OSError, ValueError, KeyError, TypeError):
        pass


def _index(r: DemoRun, st: Stage) -> None:
    rep = build_content_index(r.world_dir / "train.parquet", r.index_dir, fps=r.index_fps, progress=r.progress)
    st.result = (f"{rep.index.meta.get('n_items', '?')} items, {len(rep.index)} frame descriptors at "
                 f"{r.index_fps:g} fps ({rep.index.policy.get('name')})")
    st.detail = rep.as_dict()


def _prompts(r: DemoRun, st: Stage) -> None:
    pdir = r.out / "prompts"
    s = run_prompts(r.train_ref, pdir / "curated.jsonl", progress=r.progress)
    curated = read_prompts(pdir / "curated.jsonl")
    gt = load_ground_truth(r.world_dir)
    dup = [g["ids"] for g in gt["duplicate_groups"]]
    cap = [g["ids"] for g in gt["caption_groups"]]
    k = len(dup)
    rec = duplicate_recall(curated, dup, top=k)
    rec_all = duplicate_recall(curated, dup + cap, top=len(dup) + len(cap))
    r.study = study_prompts(curated, r.world_dir / "prompts.jsonl", r.top, r.novel)
    write_prompts(pdir / "study.jsonl", r.study)
    groups = dict(Counter(e.group for e in r.study))
    st.result = (f"{s['n_prompts']} curated; duplicated sources among the top {k}: "
                 f"{rec['recalled']}/{rec['groups']} ({pct_text(rec['recall'])}); with caption-only duplicates, top "
                 f"{rec_all['top']}: {rec_all['recalled']}/{rec_all['groups']}; study set {len(r.study)} prompts")
    st.headline = (f"the top {k} of {s['n_prompts']} curated prompts cover {rec['recalled']} of the world's "
                   f"{rec['groups']} duplicated training sources ({pct_text(rec['recall'])})")
    st.detail = {"recall_duplicated": rec, "recall_duplicated_and_captions": rec_all, "study_groups": groups,
                 "curated": str(pdir / "curated.jsonl"), "study": str(pdir / "study.jsonl")}


def _extract(r: DemoRun, st: Stage) -> None:
    r.need_model()
    if r.study is None:
        raise StageSkipped("no prompts (the prompts stage did not finish)")
    s = run_extract(r.adapter, r.study, r.train_ref, r.out / "extract", n=r.n, seed=r.seed,
                    steps=r.sampler["steps"], guidance=r.sampler["guidance"], progress=r.progress, log=r.say,
                    motion_index=r.motion_index_dir, motion_frames=model_window(r.adapter, r.world_dir))
    o = s["overall"]
    st.result = (f"{o['n_train_extracted']} training items extracted by {o['n_extracted_samples']}/{o['n_samples']} "
                 f"samples ({pct_text(o['rate_extracted'])}; content {pct_text(o['rate_content'])}, motion "
                 f"{pct_text(o['rate_motion'])}, both {pct_text(o['rate_both'])}); {s['n_memorized_prompts']}/"
                 f"{s['n_labelled']} prompts extracted something")
    st.headline = (f"{o['n_train_extracted']} training items extracted: {o['n_extracted_samples']} of "
                   f"{o['n_samples']} samples ({pct_text(o['rate_extracted'])}) copy one, from "
                   f"{s['n_memorized_prompts']} of {s['n_labelled']} prompts")
    st.detail = {"overall": {k: v for k, v in o.items() if k != "train_extracted"},
                 "by_group": {g: {k: v for k, v in b.items() if k != "train_extracted"}
                              for g, b in s["by_group"].items()},
                 "motion": s["config"]["motion"], "sampler": r.sampler, "n": r.n,
                 "table": format_summary(s).split("\n", 1)[1]}


def _detect(r: DemoRun, st: Stage) -> None:
    r.need_model()
    r.need_labels()
    lab = read_labels(r.labels_path)
    n_mem = sum(v["memorized"] for v in lab.values())
    settings = DetectConfig(seeds=r.detect_seeds, steps=1, num_steps=r.sampler["steps"],
                              guidance_scale=r.sampler["guidance"])
    evaluate = 0 < n_mem < len(lab)
    # every first-step detector the model has, side by side (detect/report.html and the demo's report)
    s = run_detect(r.adapter, r.out / "prompts" / "study.jsonl", r.out / "detect", settings=settings,
                   labels=r.labels_path if evaluate else None, progress=r.progress, detectors=("all",))
    ev = (s.get("evaluation") or {}).get("memorized") or {}  # label set "memorized": any kind
    # wen = total x sqrt(N): the same ranking, the same AUC; the detect stage's own report shows it
    # the length baseline (detect's report compares it with every score) stays out of the one-line summary
    baseline = ev.get("prompt_words")
    comparison = [c for c in s.get("comparison") or [] if c["set"] == "memorized"]
    ev = {k: ev[k] for k in ("content", "motion", "total") if k in ev}  # the one-line summary: the magnitudes
    if not evaluate:
        st.result = (f"scored {s['n_prompts']} prompts; no ROC: the audit labelled "
                     f"{n_mem} of {len(lab)} prompts memorized (needs both kinds)")
    else:
        best = max(ev, key=lambda k: ev[k].get("auc", 0)) if ev else None
        parts = [f"{k} AUC {ev[k]['auc']:.3f}" for k in ev if "auc" in ev[k]]
        tpr = ev[best].get("tpr@1%fpr") if best else None
        st.result = (f"{len(lab)} prompts ({n_mem} memorized by the audit): " + ", ".join(parts)
                     + (f"; TPR@1%FPR ({best}) {pct_text(tpr)}" if tpr is not None else "")
                     + f"; {settings.denoiser_evals_per_prompt()} denoiser calls per prompt")
        aucs = " / ".join(f"{k} {ev[k]['auc']:.2f}" for k in ev if "auc" in ev[k])
        st.headline = (f"AUC {aucs} (0.5 = chance) on {n_mem} prompts that extracted vs "
                       f"{len(lab) - n_mem} that did not")
    st.detail = {"evaluation": ev, "baseline_prompt_words": baseline, "comparison": comparison,
                 "settings": settings.as_dict(),
                 "n_memorized": n_mem, "n_prompts": len(lab)}


def _amg(r: DemoRun, st: Stage) -> None:
    if not r.amg:
        raise StageSkipped("turned off (--no-amg)")
    r.need_model()
    r.need_labels()
    lab = read_labels(r.labels_path)
    by_text = {e.prompt: e for e in r.study or []}
    mem = [by_text[p] for p, v in lab.items() if v["memorized"] and p in by_text][:r.amg_prompts]
    if not mem:
        raise StageSkipped("no prompt extracted anything: nothing for AMG to prevent")
    entries = [PromptEntry(e.id, e.prompt, group=e.group, evidence=e.evidence) for e in mem]
    cfg = EvalConfig(n=r.amg_n, seed=r.seed, steps=r.sampler["steps"], guidance=r.sampler["guidance"],
                     variants=("baseline", "full"))
    # the index's items and neighbours and the extraction's motion index: no training video decoded for them again
    res = evaluate_amg(r.adapter, entries, r.train_ref, r.out / "amg", cfg, progress=r.progress, log=r.say,
                       motion_index=r.motion_index_dir, motion_frames=model_window(r.adapter, r.world_dir))
    table = {row["variant"]: row for row in res["table"]}
    st.detail = {"table": res["table"], "n_prompts": len(entries), "n": r.amg_n}
    b, f = table.get("baseline", {}), table.get("full", {})
    names = {"dup_content_memorized_pct": "% content-memorized", "all_motion_memorized_pct": "% motion-memorized",
             "top5": "Top-5% score", "quality": f"quality ({b.get('quality_metric', 'FD')})"}
    st.result = (f"{len(entries)} memorized prompts x {r.amg_n} samples, plain -> AMG: "
                 + "; ".join(f"{names.get(k, k)} {value_text(b.get(k))} -> {value_text(f.get(k))}" for k in _amg_keys(b)))
    keys = [k for k in _amg_keys(b) if k != "quality"][:1] + [k for k in _amg_keys(b) if k == "quality"]
    st.headline = ("without -> with AMG: " + ", ".join(f"{names.get(k, k)} {value_text(b.get(k))} -> {value_text(f.get(k))}"
                                                         for k in keys)
                   + f" ({len(entries)} memorized prompts x {r.amg_n} samples)")


def _report(r: DemoRun, st: Stage) -> None:
    path = r.out / "report.html"
    write_text(path, demo_report(r.result, r.out))
    r.result.report = path
    st.result = str(path)


def _finish(result: DemoResult, t_start: float) -> DemoResult:
    result.seconds = time.perf_counter() - t_start
    write_json(result.out / "demo.json", {"out": str(result.out), "seconds": round(result.seconds, 1),
                                          "stages": [s.as_dict() for s in result.stages],
                                          "environment": environment()})
    return result


def _amg_keys(row: dict) -> list[str]:
    """The AMG table's headline columns that exist in this version of the table."""
    prefer = ("dup_content_memorized_pct", "all_motion_memorized_pct", "top5", "quality")
    keys = [k for k in prefer if k in row]
    return keys or [k for k, v in row.items() if isinstance(v, float)][:3]


