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

A stage whose requirement is missing (e.g. no model weights) is reported as skipped, with the reason,
and the stages that do not need it still run.
"""
from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..world import WorldSummary, make_world
from ..errors import DiffmemError

DEFAULT_MODEL = "builtin:tiny-t2v"
# The world prompt groups added to the curated prompts as controls (and the groups their rates are reported by).
CONTROL_GROUPS = ("novel", "motion_memorization")
# Stage folders that depend on the model and sampler settings (replaced by force=True).
MODEL_STAGES = ("extract", "detect", "amg")
# Samples per prompt. Extraction: 4 rather than 2 cuts the standard error of the per-group rates by ~30 % for
# ~13 s more (whole demo 42 -> 55 s, 2-core machine, 1 thread). AMG: 2, on 3 prompts (it samples with gradients).
DEMO_N, AMG_N = 4, 2
# The stages whose results are findings (the others prepare them), in the order they are told.
FINDINGS = ("prompts", "extract", "detect", "amg")


@dataclass
class Stage:
    name: str
    status: str = "pending"      # done | skipped | failed
    seconds: float = 0.0
    result: str = ""             # one line for the report's stage table (all the numbers)
    detail: dict = field(default_factory=dict)
    headline: str = ""           # what a new user should take away, short (terminal summary); default: result

    def as_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "seconds": round(self.seconds, 1), "result": self.result,
                "headline": self.headline, "detail": self.detail}


@dataclass
class DemoResult:
    out: Path
    world: WorldSummary | None
    stages: list[Stage] = field(default_factory=list)
    report: Path | None = None
    seconds: float = 0.0
    settings: dict = field(default_factory=dict)  # model, n, sampler: what the numbers were measured with

    def stage(self, name: str) -> Stage | None:
        return next((s for s in self.stages if s.name == name), None)

    def format(self) -> str:
        """The terminal summary: what was found (one line per finding stage), the extraction table, the
        stages' times, and where the report is. Skipped and failed stages say why."""
        st = self.settings
        how = (f": model {st['model']}, {st['n']} samples per prompt, {st['steps']} steps, guidance {st['guidance']:g}"
               if st.get("model") else "")
        lines = [f"diffmem demo finished in {self.seconds:.0f} s{how}", ""]
        w = max(len(s.name) for s in self.stages) if self.stages else 8
        for s in self.stages:
            if s.name in FINDINGS and s.status == "done":
                lines.append(f"  {s.name:<{w}}  {s.headline or s.result}")
            elif s.status != "done":
                lines.append(f"  {s.name:<{w}}  {s.status.upper()}: {s.result}")
        ex = self.stage("extract")
        if ex is not None and ex.status == "done":
            lines += ["", "Extraction by prompt group (share of samples that copy a training item; items = distinct "
                      "training items copied):"]
            lines += ["  " + ln for ln in ex.detail["table"].splitlines()]
        lines += ["", "Time per stage: " + ", ".join(f"{s.name} {s.seconds:.0f} s" for s in self.stages)]
        if self.report:
            lines.append(f"Report: {self.report}  (one self-contained page: open it in a browser)")
        return "\n".join(lines)


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.0f}%"


def run_demo(out, *, seed: int = 0, size: str = "small", model: Any = DEFAULT_MODEL, n: int = DEMO_N,
             steps: int | None = None, guidance: float | None = None, top: int | None = None, novel: int = 8,
             detect_seeds: int = 4, amg: bool = True, amg_prompts: int = 3, amg_n: int = AMG_N, force: bool = False,
             progress: bool = False, log=None) -> DemoResult:
    """Run (or resume) the demo in folder `out`; see the module docstring.

    model: a model spec or `DenoiserAdapter` (default: the committed tiny text-to-video model).
    n: samples per prompt (seeds seed..seed+n-1).
    novel: how many of the world's novel prompts join as controls (all its motion-memorization prompts
    do: they come in memorized / control pairs).
    steps / guidance: sampler settings (default: the model's `recommended` ones when it has them, else
    25 steps at guidance 3, see DEMO_GUIDANCE).
    top: keep only the top curated prompts.
    amg_prompts, amg_n: how many memorized prompts AMG is evaluated on, with how many samples each (AMG
    samples with gradients: per sample the slowest stage).
    force: replace a world of another seed or size, and start the model's stages afresh. (They start afresh
    anyway when the model or the settings recorded in OUT/demo_settings.json changed.)
    """
    say = log or (lambda m: None)
    t_start = time.perf_counter()
    out = Path(out)
    result = DemoResult(out, None)

    def run(name: str, fn):
        st = Stage(name)
        result.stages.append(st)
        say(f"[{name}]")
        t0 = time.perf_counter()
        try:
            fn(st)
            if st.status == "pending":
                st.status = "done"
        except _Skip as e:
            st.status, st.result = "skipped", str(e)
        except DiffmemError as e:
            st.status, st.result = "failed", f"{type(e).__name__}: {e}"
        except Exception as e:  # a stage's bug must not hide the other stages' results
            st.status, st.result = "failed", f"{type(e).__name__}: {e}"
            st.detail["traceback"] = traceback.format_exc()
        st.seconds = time.perf_counter() - t0
        say(f"[{name}] {st.status} in {st.seconds:.0f} s: {st.result}")
        return st

    world_dir, index_dir = out / "world", out / "index"
    ctx: dict = {}

    # 1. world ----------------------------------------------------------------------------------
    def world(st: Stage):
        result.world = make_world(world_dir, seed=seed, size=size, force=force, progress=progress)
        w = result.world
        st.result = (f"{w.n_items} training items ({w.n_videos} videos, {w.n_images} images), "
                     f"{w.n_duplicate_groups} duplicated sources ({w.n_duplicated_files} files), "
                     f"{w.n_caption_groups} caption-only duplicates")
        st.detail = w.as_dict()

    run("world", world)
    if result.world is None:
        return _finish(result, t_start)

    # the model ---------------------------------------------------------------------------------
    adapter, why = _load_model(model)
    sampler = _sampler_defaults(adapter, steps, guidance)
    if adapter is not None:
        result.settings = {"model": adapter.name or str(model), "n": n, "seed": seed, **sampler, "amg_n": amg_n,
                           "amg_prompts": amg_prompts, "detect_seeds": detect_seeds}
    changed = _settings_changed(out, result.settings)
    if changed and not force:
        say(f"the model's stages in {out} were made with other settings ({changed}): redoing them")
    if force or changed:  # results of another model or other settings would be refused on resume
        import shutil

        for sub in MODEL_STAGES:
            if (out / sub).is_dir():
                shutil.rmtree(out / sub)
    if result.settings:
        from ..io.results import write_json

        write_json(out / SETTINGS_FILE, result.settings)

    # 2. index ----------------------------------------------------------------------------------
    # Frames are indexed at the model's frame rate when it is below the default 8 fps: its samples have
    # no frames in between, so the extra training frames would only cost time (half of it at 4 fps).
    from ..index import DEFAULT_FPS

    model_fps = float(getattr(adapter, "fps", 0) or 0)
    index_fps = min(DEFAULT_FPS, model_fps) if model_fps else DEFAULT_FPS
    try:  # an index from an earlier run keeps its rate (correct either way; resuming beats rebuilding)
        index_fps = float(json.loads((index_dir / "index.json").read_text())["config"]["fps"] or index_fps)
    except (OSError, ValueError, KeyError, TypeError):
        pass

    def index(st: Stage):
        from ..index import build_content_index

        rep = build_content_index(world_dir / "train.parquet", index_dir, fps=index_fps, progress=progress)
        st.result = (f"{rep.index.meta.get('n_items', '?')} items, {len(rep.index)} frame descriptors at {index_fps:g} fps "
                     f"({rep.index.policy.get('name')})")
        st.detail = rep.as_dict()

    run("index", index)
    train_ref = index_dir if (index_dir / "index.json").is_file() else world_dir / "train.parquet"

    # 3. prompts --------------------------------------------------------------------------------
    def prompts(st: Stage):
        from .prompts import duplicate_recall, read_prompts, run_prompts, write_prompts

        pdir = out / "prompts"
        s = run_prompts(train_ref, pdir / "curated.jsonl", progress=progress)
        curated = read_prompts(pdir / "curated.jsonl")
        gt = json.loads((world_dir / "ground_truth.json").read_text())
        dup = [g["ids"] for g in gt["duplicate_groups"]]
        cap = [g["ids"] for g in gt["caption_groups"]]
        k = len(dup)
        rec = duplicate_recall(curated, dup, top=k)
        rec_all = duplicate_recall(curated, dup + cap, top=len(dup) + len(cap))
        study = _study_prompts(curated, world_dir / "prompts.jsonl", top, novel)
        write_prompts(pdir / "study.jsonl", study)
        ctx["study"] = study
        groups = {}
        for e in study:
            groups[e.group] = groups.get(e.group, 0) + 1
        st.result = (f"{s['n_prompts']} curated; duplicated sources among the top {k}: "
                     f"{rec['recalled']}/{rec['groups']} ({_pct(rec['recall'])}); with caption-only duplicates, top "
                     f"{rec_all['top']}: {rec_all['recalled']}/{rec_all['groups']}; study set {len(study)} prompts")
        st.headline = (f"the top {k} of {s['n_prompts']} curated prompts cover {rec['recalled']} of the world's "
                       f"{rec['groups']} duplicated training sources ({_pct(rec['recall'])})")
        st.detail = {"recall_duplicated": rec, "recall_duplicated_and_captions": rec_all, "study_groups": groups,
                     "curated": str(pdir / "curated.jsonl"), "study": str(pdir / "study.jsonl")}

    run("prompts", prompts)

    # 4. extract --------------------------------------------------------------------------------
    def extract(st: Stage):
        if adapter is None:
            raise _Skip(f"no model: {why}")
        if "study" not in ctx:
            raise _Skip("no prompts (the prompts stage did not finish)")
        from ..cli.extract import format_summary
        from .extract import run_extract

        s = run_extract(adapter, ctx["study"], train_ref, out / "extract", n=n, seed=seed, steps=sampler["steps"],
                        guidance=sampler["guidance"], progress=progress, log=say)
        o = s["overall"]
        st.result = (f"{o['n_train_extracted']} training items extracted by {o['n_extracted_samples']}/{o['n_samples']} "
                     f"samples ({_pct(o['rate_extracted'])}; content {_pct(o['rate_content'])}, motion "
                     f"{_pct(o['rate_motion'])}, both {_pct(o['rate_both'])}); {s['n_memorized_prompts']}/"
                     f"{s['n_labelled']} prompts extracted something")
        st.headline = (f"{o['n_train_extracted']} training items extracted: {o['n_extracted_samples']} of "
                       f"{o['n_samples']} samples ({_pct(o['rate_extracted'])}) copy one, from "
                       f"{s['n_memorized_prompts']} of {s['n_labelled']} prompts")
        st.detail = {"overall": {k: v for k, v in o.items() if k != "train_extracted"},
                     "by_group": {g: {k: v for k, v in b.items() if k not in ("train_extracted",)}
                                  for g, b in s["by_group"].items()},
                     "motion": s["config"]["motion"], "sampler": sampler, "n": n,
                     "table": format_summary(s).split("\n", 1)[1]}

    run("extract", extract)
    labels_path = out / "extract" / "labels.jsonl"

    # 5. detect ---------------------------------------------------------------------------------
    def detect(st: Stage):
        if adapter is None:
            raise _Skip(f"no model: {why}")
        if not labels_path.is_file():
            raise _Skip("no labels (the extract stage did not finish)")
        from ..detect.calibrate import DetectSettings
        from .detect import read_labels, run_detect

        lab = read_labels(labels_path)
        n_mem = sum(v["memorized"] for v in lab.values())
        settings = DetectSettings(seeds=detect_seeds, steps=1, num_steps=sampler["steps"],
                                  guidance_scale=sampler["guidance"])
        evaluate = 0 < n_mem < len(lab)
        s = run_detect(adapter, out / "prompts" / "study.jsonl", out / "detect", settings=settings,
                       labels=labels_path if evaluate else None, progress=progress)
        ev = (s.get("evaluation") or {}).get("memorized") or {}  # label set "memorized": any kind
        if not evaluate:
            st.result = (f"scored {s['n_prompts']} prompts; no ROC: the audit labelled "
                         f"{n_mem} of {len(lab)} prompts memorized (needs both kinds)")
        else:
            best = max(ev, key=lambda k: ev[k].get("auc", 0)) if ev else None
            parts = [f"{k} AUC {ev[k]['auc']:.3f}" for k in ev if "auc" in ev[k]]
            tpr = ev[best].get("tpr@1%fpr") if best else None
            st.result = (f"{len(lab)} prompts ({n_mem} memorized by the audit): " + ", ".join(parts)
                         + (f"; TPR@1%FPR ({best}) {_pct(tpr)}" if tpr is not None else "")
                         + f"; {settings.denoiser_evals_per_prompt()} denoiser calls per prompt")
            aucs = " / ".join(f"{k} {ev[k]['auc']:.2f}" for k in ev if "auc" in ev[k])
            st.headline = (f"AUC {aucs} (0.5 = chance) on {n_mem} prompts that extracted vs "
                           f"{len(lab) - n_mem} that did not")
        st.detail = {"evaluation": ev, "settings": settings.as_dict(), "n_memorized": n_mem, "n_prompts": len(lab)}
        ctx["detect"] = True

    run("detect", detect)

    # 6. AMG ------------------------------------------------------------------------------------
    def amg_stage(st: Stage):
        if not amg:
            raise _Skip("turned off (--no-amg)")
        if adapter is None:
            raise _Skip(f"no model: {why}")
        try:
            from .amg import EvalConfig, evaluate_amg
        except ImportError as e:
            raise _Skip(f"AMG is not available in this version ({e})") from None
        if not labels_path.is_file():
            raise _Skip("no labels (the extract stage did not finish)")
        from .detect import read_labels
        from .prompts import PromptEntry

        lab = read_labels(labels_path)
        by_text = {e.prompt: e for e in ctx.get("study", [])}
        mem = [by_text[p] for p, v in lab.items() if v["memorized"] and p in by_text][:amg_prompts]
        if not mem:
            raise _Skip("no prompt extracted anything: nothing for AMG to prevent")
        entries = [PromptEntry(e.id, e.prompt, group=e.group, evidence=e.evidence) for e in mem]
        cfg = EvalConfig(n=amg_n, seed=seed, steps=sampler["steps"], guidance=sampler["guidance"],
                         variants=("baseline", "full"))
        r = evaluate_amg(adapter, entries, world_dir / "train.parquet", out / "amg", cfg, progress=progress, log=say)
        table = {row["variant"]: row for row in r["table"]}
        st.detail = {"table": r["table"], "n_prompts": len(entries), "n": amg_n}
        b, f = table.get("baseline", {}), table.get("full", {})
        names = {"dup_content_memorized_pct": "% content-memorized", "all_motion_memorized_pct": "% motion-memorized",
                 "top5": "Top-5% score", "quality": f"quality ({b.get('quality_metric', 'FD')})"}
        st.result = (f"{len(entries)} memorized prompts x {amg_n} samples, plain -> AMG: "
                     + "; ".join(f"{names.get(k, k)} {_fmtv(b.get(k))} -> {_fmtv(f.get(k))}" for k in _amg_keys(b)))
        keys = [k for k in _amg_keys(b) if k != "quality"][:1] + [k for k in _amg_keys(b) if k == "quality"]
        st.headline = ("without -> with AMG: " + ", ".join(f"{names.get(k, k)} {_fmtv(b.get(k))} -> {_fmtv(f.get(k))}"
                                                             for k in keys)
                       + f" ({len(entries)} memorized prompts x {amg_n} samples)")

    run("amg", amg_stage)

    # 7. report ---------------------------------------------------------------------------------
    def report(st: Stage):
        from ..io.results import write_text

        path = out / "report.html"
        result.seconds = time.perf_counter() - t_start
        write_text(path, demo_report(result, out))
        result.report = path
        st.result = str(path)

    run("report", report)
    return _finish(result, t_start)


SETTINGS_FILE = "demo_settings.json"


def _settings_changed(out: Path, settings: dict) -> str | None:
    """What differs between `settings` and those the model's stages in `out` were made with (None: nothing,
    or nothing made yet). A folder of an older version without the record counts as changed when it
    finished (its demo.json exists); an interrupted one is left to resume (generation refuses a mismatch)."""
    if not settings or not any((out / sub).is_dir() for sub in MODEL_STAGES):
        return None
    try:
        old = json.loads((out / SETTINGS_FILE).read_text())
    except (OSError, ValueError):
        return "not recorded" if (out / "demo.json").is_file() else None
    diff = [f"{k} {old.get(k)} -> {v}" for k, v in settings.items() if old.get(k) != v]
    return ", ".join(diff) or None


class _Skip(Exception):
    """A stage that cannot run here (says why)."""


def _finish(result: DemoResult, t_start: float) -> DemoResult:
    from ..io.results import environment, write_json

    result.seconds = time.perf_counter() - t_start
    write_json(result.out / "demo.json", {"out": str(result.out), "seconds": round(result.seconds, 1),
                                          "stages": [s.as_dict() for s in result.stages],
                                          "environment": environment()})
    return result


def _fmtv(v) -> str:
    if v is None:
        return "-"
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _amg_keys(row: dict) -> list[str]:
    """The AMG table's headline columns that exist in this version of the table."""
    prefer = ("dup_content_memorized_pct", "all_motion_memorized_pct", "top5", "quality")
    keys = [k for k in prefer if k in row]
    return keys or [k for k, v in row.items() if isinstance(v, float)][:3]


def _load_model(model):
    """(adapter, None) or (None, why it is not available)."""
    from ..models.adapter import DenoiserAdapter

    if isinstance(model, DenoiserAdapter):
        return model, None
    try:
        from ..models.registry import load_adapter

        return load_adapter(model, "cpu"), None
    except ImportError as e:
        return None, f"the model registry is not available ({e})"
    except DiffmemError as e:
        return None, str(e)


# The demo samples at guidance 3: the committed tiny model memorizes most cleanly there (its checkpoints
# README measures 91 % of duplicated-video samples copying a clip at guidance 3, 59 % at 7.5, and no novel
# prompt copying at either). The library default elsewhere stays 7.5, Stable Diffusion's convention.
DEMO_STEPS, DEMO_GUIDANCE = 25, 3.0


def _sampler_defaults(adapter, steps, guidance) -> dict:
    """Sampler settings: given ones, else the model's recommendation (`adapter.recommended`), else the demo's."""
    rec = dict(getattr(adapter, "recommended", None) or {}) if adapter is not None else {}
    return {"steps": int(steps or rec.get("steps", DEMO_STEPS)),
            "guidance": float(guidance or rec.get("guidance", DEMO_GUIDANCE))}


def _study_prompts(curated, world_prompts: Path, top: int | None, novel: int | None = None):
    """Curated prompts (tagged with the world's group when the world lists that text) + the world's
    control prompts (novel, motion memorization), each text once, with unique ids."""
    from .prompts import PromptEntry, normalize_caption, read_prompts

    world = read_prompts(world_prompts)
    group_of = {normalize_caption(e.prompt): e.group for e in world}
    chosen = curated[:top] if top is not None else list(curated)
    out, seen = [], set()
    for e in chosen:
        key = normalize_caption(e.prompt)
        if key in seen:
            continue
        seen.add(key)
        out.append(PromptEntry(e.id, e.prompt, group=group_of.get(key, "curated_other"), evidence=e.evidence,
                               source="curated"))
    k = n_novel = 0
    for e in world:
        key = normalize_caption(e.prompt)
        if e.group == "novel":
            if novel is not None and n_novel >= novel:
                continue
            n_novel += 1
        if e.group in CONTROL_GROUPS and key not in seen:
            seen.add(key)
            k += 1
            out.append(PromptEntry(f"w{k:03d}", e.prompt, group=e.group, evidence=e.evidence, source="world"))
    return out


# ------------------------------------------------------------------------------------------------ report


# What each prompt group of the study is (the world's groups, see `diffmem.world`), for the report.
GROUP_NOTES = {
    "duplicated_video": "the caption of a training clip copied many times: memorization expected",
    "duplicated_image": "the caption of a training picture copied many times: memorization expected",
    "duplicated_caption": "a caption shared by several distinct clips: repeated text, but no single clip to copy",
    "curated_other": "curated prompts that the world does not list (e.g. near-duplicate captions)",
    "novel": "a sprite, background and motion all seen in training, never together: nothing to copy (control)",
    "motion_memorization": "a new appearance doing a motion that only one duplicated clip has (or a control "
                           "motion): tests motion memorization",
}

# Readable names of the AMG table's columns (others are shown by their own name).
AMG_COLUMNS = {
    "variant": "sampling", "n": "samples", "top5": "Top-5% content score", "top1": "max content score",
    "pct_above_tau": "% above tau_c", "dup_content_memorized_pct": "% duplicated-prompt samples content-memorized",
    "motion_prompts_motion_memorized_pct": "% motion prompts motion-memorized",
    "all_motion_memorized_pct": "% motion-memorized", "aligned_pct": "% matching the prompt",
    "quality": "quality: distance to the training frames (lower = better)", "quality_metric": "quality metric",
    "sec_per_sample": "s per sample", "mean_triggered_steps": "steps AMG acted", "novel_triggered_pct":
    "% novel samples AMG acted on",
}
VARIANT_NAMES = {"baseline": "plain sampling", "full": "with AMG"}


def demo_report(result: DemoResult, out: Path) -> str:
    """The demo's one page: what was found, then each finding with its evidence (tables, clips, ROC,
    AMG frames), then links to every stage's own report. Every text from data passes through `esc`."""
    from ..io.html import esc, img, page, table

    st = result.settings
    how = (f"Model <b>{esc(st['model'])}</b>, {esc(st['n'])} samples per prompt (seeds {esc(st['seed'])}.."
           f"{esc(st['seed'] + st['n'] - 1)}), {esc(st['steps'])} denoising steps, guidance {esc(st['guidance'])}. "
           if st.get("model") else "")
    parts = ["<p>The whole memorization study on the <b>embedded world</b>, offline: a captioned video corpus with "
             "known duplicates, a tiny text-to-video model trained on it, and every measurement diffmem makes: "
             "which prompts are prone to memorization, which training clips the model reproduces, whether the "
             "model's own noise predictions give it away at inference time, and whether Anti-Memorization "
             f"Guidance prevents it. {how}Total time {result.seconds:.0f} s. Reproduce with "
             f"<code>diffmem demo --out {esc(out)}</code> (a second run resumes).</p>"]

    stages = [s for s in result.stages if s.name != "report"]
    rows = [[s.name, s.status, f"{s.seconds:.0f} s", s.headline or s.result] for s in stages]
    parts.append("<h2>Summary</h2>" + table(["stage", "status", "time", "result"], rows))
    bad = [s for s in stages if s.status == "failed" and s.detail.get("traceback")]
    for s in bad:
        parts.append(f"<details><summary>{esc(s.name)}: traceback</summary><pre>{esc(s.detail['traceback'])}</pre>"
                     "</details>")

    pr = result.stage("prompts")
    wd = result.stage("world")
    if pr is not None and pr.status == "done":
        parts.append("<h2>Training set and curated prompts</h2><p>" + (esc(wd.result) + ". " if wd else "")
                     + "Prompts are curated from the training captions alone (duplicated captions and "
                       "near-duplicate content, no model): " + esc(pr.result) + ".</p>" + _curated_table(pr))

    ex = result.stage("extract")
    if ex is not None and ex.status == "done":
        head = ["group", "what it is", "prompts", "samples", "content", "motion", "both", "extracted",
                "training items extracted"]
        body = []
        for g, b in [*ex.detail["by_group"].items(), ("all", ex.detail["overall"])]:
            body.append([g, GROUP_NOTES.get(g, ""), b["n_prompts"], b["n_samples"], _pct(b["rate_content"]),
                         _pct(b["rate_motion"]), _pct(b["rate_both"]), _pct(b["rate_extracted"]),
                         b["n_train_extracted"]])
        parts.append("<h2>Extraction by prompt group</h2><p>" + esc(ex.result) + ".</p><p>Share of generated "
                     "samples the audit finds copying a training item: by appearance (content), by movement "
                     f"(motion; {esc(ex.detail['motion'])}) or both.</p>" + table(head, body))
        try:
            from .extract import examples_from, pairs_html

            pairs = examples_from(out / "extract", limit=12)
            if pairs:
                parts.append("<h2>Extracted training clips beside their originals</h2>" + pairs_html(pairs))
            else:
                parts.append("<h2>Extracted training clips beside their originals</h2><p>No sample was extracted.</p>")
        except Exception as e:  # the rest of the report is still worth having
            parts.append(f"<p>(examples unavailable: {esc(e)})</p>")

    det = result.stage("detect")
    if det is not None:
        parts.append("<h2>Inference-time detection</h2>")
        if det.status == "done":
            roc = _roc_uri(out)
            aucs = [v.get("auc") for v in (det.detail.get("evaluation") or {}).values() if isinstance(v, dict)]
            below = ""
            if aucs and all(a is not None and a < 0.5 for a in aucs):
                below = (" Here every AUC is <em>below</em> chance: memorized prompts change the prediction less "
                         "than novel ones. On the committed tiny model this is measured and explained in the "
                         "README's detection section: the caption's background word sets the magnitude, and along "
                         "memorized paths the prompt-free prediction already heads to the same clip, the opposite "
                         "of what Wen et al. found on Stable Diffusion.")
            parts.append("<p>Each prompt is scored before any video is made, from how much the prompt changes the "
                         "model's noise prediction in the first denoising step (content and motion magnitudes), "
                         "and the scores are compared with the audit's verdict (did the prompt extract anything). "
                         "AUC 1 = perfect separation, 0.5 = chance." + below + "</p><p>" + esc(det.result) + "</p>"
                         + (img(roc, "ROC", height=None) if roc else "<p>(no ROC: needs both kinds of prompt)</p>"))
        else:
            parts.append(f"<p>{esc(det.status)}: {esc(det.result)}</p>")

    am = result.stage("amg")
    if am is not None:
        parts.append("<h2>Anti-Memorization Guidance</h2>")
        if am.status == "done":
            tab = am.detail["table"]
            keys = ["variant"] + [k for k in tab[0] if k != "variant" and k in AMG_COLUMNS
                                  and any(r.get(k) is not None for r in tab)]
            body = [[VARIANT_NAMES.get(r.get("variant"), r.get("variant"))] + [_fmtv(r.get(k)) for k in keys[1:]]
                    for r in tab]
            parts.append("<p>The same memorized prompts and seeds, sampled plainly and with AMG. " + esc(am.result)
                         + ".</p>" + table([AMG_COLUMNS.get(k, k) for k in keys], body) + _amg_frames(out / "amg"))
        else:
            parts.append(f"<p>{esc(am.status)}: {esc(am.result)}</p>")

    links = [(name, out / sub) for name, sub in (("world summary", "world/summary.json"),
                                                 ("world ground truth", "world/ground_truth.json"),
                                                 ("curated prompts (with their evidence)", "prompts/curated.jsonl"),
                                                 ("the study's prompt set", "prompts/study.jsonl"),
                                                 ("extraction report", "extract/report.html"),
                                                 ("audit report", "extract/audit/report.html"),
                                                 ("per-prompt labels (for detection)", "extract/labels.jsonl"),
                                                 ("detection report", "detect/report.html"),
                                                 ("AMG report", "amg/amg_report.html"),
                                                 ("all numbers (demo.json)", "demo.json"))]
    items = "".join(f"<li><a href='{esc(p.relative_to(out).as_posix())}'>{esc(name)}</a></li>"
                    for name, p in links if p.exists() or p.name == "demo.json")
    parts.append(f"<h2>Every stage's own results</h2><ul>{items}</ul>")
    return page("diffmem demo", "".join(parts))


def _true(v) -> bool:
    """A table cell that is True (not None, not NaN, truthy)."""
    return v is not None and not (isinstance(v, float) and v != v) and bool(v)


def _curated_table(stage: Stage, limit: int = 20) -> str:
    """The top curated prompts with why each was chosen (the study prompt file's evidence)."""
    from ..io.html import esc, table

    try:
        from .prompts import read_prompts

        entries = read_prompts(stage.detail["study"])
    except Exception:  # the summary above still says what was curated
        return ""
    curated = [e for e in entries if (e.evidence or {}).get("reasons")]  # the world's controls have no reasons
    rows = [[e.id, e.prompt, e.group or "", e.evidence.get("n_both", ""), e.evidence.get("n_caption", ""),
             ", ".join(e.evidence.get("reasons") or [])] for e in curated[:limit]]
    if not rows:
        return ""
    more = f" ({len(curated) - limit} more in the prompt file)" if len(curated) > limit else ""
    return (table(["id", "prompt", "world group", "copies (same caption and content)", "items with this caption",
                   "why chosen"], rows)
            + f"<p>{esc(more)} {esc(len(entries) - len(curated))} prompts of the world join them in the study as "
              "controls (novel and motion-memorization prompts).</p>")


def _amg_frames(amg_dir: Path, limit: int = 6) -> str:
    """The same prompt and seed without and with AMG, side by side (memorized-without first), with the
    content scores: what AMG changed. Built from the AMG stage's per-sample table."""
    import pandas as pd

    from ..io.html import esc, img
    from .extract import _gif

    try:
        df = pd.read_parquet(amg_dir / "amg_samples.parquet")
    except Exception:
        return ""
    if not {"variant", "id", "path", "prompt"} <= set(df.columns):
        return ""
    variants = list(dict.fromkeys(df["variant"]))
    if len(variants) < 2:
        return ""
    before = "baseline" if "baseline" in variants else variants[0]
    after = "full" if "full" in variants else variants[-1]
    a = df[df["variant"] == before].set_index("id")
    b = df[df["variant"] == after].set_index("id")
    ids = [i for i in a.index if i in b.index]

    def memorized(r) -> bool:
        return any(_true(r.get(k)) for k in ("content_memorized", "motion_memorized"))

    ids.sort(key=lambda i: not memorized(a.loc[i]))
    cells = []
    for i in ids[:limit]:
        ra, rb = a.loc[i], b.loc[i]
        gifs = []
        for r in (ra, rb):
            p = Path(str(r["path"]))
            if not p.exists():  # a path relative to where the demo ran: the file's name under its variant
                p = amg_dir / "variants" / str(r["variant"]) / "samples" / p.name
            uri = _gif(p)
            gifs.append(img(uri, f"{r['variant']} {i}") if uri else "(not readable)")

        def score(r):
            v = r.get("content_score")
            return "-" if v is None or v != v else f"{v:.3f}"

        cells.append(f"<figure>{gifs[0]} {gifs[1]}<figcaption>{esc(ra['prompt'])} (seed {esc(ra.get('seed'))})<br>"
                     f"content score {esc(score(ra))} &rarr; {esc(score(rb))}"
                     f"{' (memorized without AMG)' if memorized(ra) else ''}</figcaption></figure>")
    if not cells:
        return ""
    return (f"<h3>Before and after: {esc(VARIANT_NAMES.get(before, before))} (left), "
            f"{esc(VARIANT_NAMES.get(after, after))} (right), same seed</h3>" + "".join(cells))


def _roc_uri(out: Path) -> str | None:
    """The ROC of the detection stage (content / motion / total magnitude vs the audit's labels)."""
    import pandas as pd

    from ..detect.evaluate import roc_auc, roc_curve, roc_figure
    from ..io.html import figure_png
    from .detect import read_labels

    try:
        df = pd.read_parquet(out / "detect" / "detect.parquet")
        lab = read_labels(out / "extract" / "labels.jsonl")
    except Exception:
        return None
    df = df[df["prompt"].isin(lab)]
    y = [lab[p]["memorized"] for p in df["prompt"]]
    if not any(y) or all(y):
        return None
    curves = {}
    for name in ("content", "motion", "total"):
        if name in df.columns:
            fpr, tpr, _ = roc_curve(df[name].to_numpy(), y)
            curves[f"{name} magnitude"] = (fpr, tpr, roc_auc(df[name].to_numpy(), y))
    return figure_png(roc_figure(curves, title="memorized (audit) vs not, by detection magnitude")) if curves else None
