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

from ..data.world import WorldSummary, make_world
from ..errors import DiffmemError

DEFAULT_MODEL = "builtin:tiny-t2v"
# The world prompt groups added to the curated prompts as controls (and the groups their rates are reported by).
CONTROL_GROUPS = ("novel", "motion_memorization")
# Stage folders that depend on the model and sampler settings (replaced by force=True).
MODEL_STAGES = ("extract", "detect", "amg")


@dataclass
class Stage:
    name: str
    status: str = "pending"      # done | skipped | failed
    seconds: float = 0.0
    result: str = ""             # one line for the summary table
    detail: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "seconds": round(self.seconds, 1), "result": self.result,
                "detail": self.detail}


@dataclass
class DemoResult:
    out: Path
    world: WorldSummary | None
    stages: list[Stage] = field(default_factory=list)
    report: Path | None = None
    seconds: float = 0.0

    def stage(self, name: str) -> Stage | None:
        return next((s for s in self.stages if s.name == name), None)

    def format(self) -> str:
        lines = [f"diffmem demo: {self.out}  ({self.seconds:.0f} s)", ""]
        w = max(len(s.name) for s in self.stages) if self.stages else 8
        lines.append(f"  {'stage':<{w}}  {'status':<8} {'time':>6}  result")
        for s in self.stages:
            lines.append(f"  {s.name:<{w}}  {s.status:<8} {s.seconds:>5.0f}s  {s.result}")
        ex = self.stage("extract")
        if ex is not None and ex.status == "done":
            lines += ["", "extraction by prompt group (share of samples; items = distinct training items extracted):"]
            lines += ["  " + ln for ln in ex.detail["table"].splitlines()]
        if self.report:
            lines += ["", f"report: {self.report}"]
        return "\n".join(lines)


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.0f}%"


def run_demo(out, *, seed: int = 0, size: str = "small", model: Any = DEFAULT_MODEL, n: int = 2,
             steps: int | None = None, guidance: float | None = None, top: int | None = None, novel: int = 8,
             detect_seeds: int = 4, amg: bool = True, amg_prompts: int = 3, force: bool = False,
             progress: bool = False, log=None) -> DemoResult:
    """Run (or resume) the demo in folder `out`; see the module docstring.

    model: a model spec or `DenoiserAdapter` (default: the committed tiny text-to-video model).
    n: samples per prompt (seeds seed..seed+n-1).
    novel: how many of the world's novel prompts join as controls (all its motion-memorization prompts
    do: they come in memorized / control pairs).
    steps / guidance: sampler settings (default: the model's `recommended` ones when it has them, else
    25 steps at guidance 3, see DEMO_GUIDANCE).
    top: keep only the top curated prompts.
    amg_prompts: how many memorized prompts AMG is evaluated on (it samples with gradients: the slowest stage).
    force: replace a world of another seed or size, and start the model's stages afresh (needed after
    changing the model or its settings: their finished samples would otherwise be refused).
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
    if force:  # results of another model or other settings would be refused on resume: start them afresh
        import shutil

        for sub in MODEL_STAGES:
            if (out / sub).is_dir():
                shutil.rmtree(out / sub)

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
        cfg = EvalConfig(n=n, seed=seed, steps=sampler["steps"], guidance=sampler["guidance"],
                         variants=("baseline", "full"))
        r = evaluate_amg(adapter, entries, world_dir / "train.parquet", out / "amg", cfg, progress=progress, log=say)
        table = {row["variant"]: row for row in r["table"]}
        st.detail = {"table": r["table"], "n_prompts": len(entries)}
        b, f = table.get("baseline", {}), table.get("full", {})
        names = {"dup_content_memorized_pct": "% content-memorized", "all_motion_memorized_pct": "% motion-memorized",
                 "top5": "Top-5% score", "quality": f"quality ({b.get('quality_metric', 'FD')})"}
        st.result = (f"{len(entries)} memorized prompts x {n} samples, plain -> AMG: "
                     + "; ".join(f"{names.get(k, k)} {_fmtv(b.get(k))} -> {_fmtv(f.get(k))}" for k in _amg_keys(b)))

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


def demo_report(result: DemoResult, out: Path) -> str:
    from ..io.html import esc, img, page, table

    parts = ["<p>The whole study on the embedded world, offline: a captioned video corpus with known duplicates, "
             "a tiny text-to-video model trained on it, and every measurement diffmem makes "
             f"({result.seconds:.0f} s on this machine).</p>"]
    stages = [s for s in result.stages if s.name != "report"]
    findings = {"prompts": "Prompt curation", "extract": "Extraction", "detect": "Detection", "amg": "Mitigation"}
    items = "".join(f"<li><b>{esc(label)}</b>: {esc(s.result)}</li>" for name, label in findings.items()
                    for s in stages if s.name == name and s.status == "done")
    if items:
        parts.append(f"<h2>Findings</h2><ul>{items}</ul>")
    rows = [[s.name, s.status, f"{s.seconds:.0f} s", s.result] for s in stages]
    parts.append("<h2>Stages</h2>" + table(["stage", "status", "time", "result"], rows))

    ex = result.stage("extract")
    if ex is not None and ex.status == "done":
        head = ["group", "prompts", "samples", "content", "motion", "both", "extracted", "training items extracted"]
        body = []
        for g, b in [*ex.detail["by_group"].items(), ("all", ex.detail["overall"])]:
            body.append([g, b["n_prompts"], b["n_samples"], _pct(b["rate_content"]), _pct(b["rate_motion"]),
                         _pct(b["rate_both"]), _pct(b["rate_extracted"]), b["n_train_extracted"]])
        parts.append("<h2>Extraction by prompt group</h2><p>Share of generated samples that copy a training item "
                     f"(motion audit: {esc(ex.detail['motion'])}).</p>" + table(head, body))
        try:
            from .extract import examples_from, pairs_html

            pairs = examples_from(out / "extract", limit=12)
            if pairs:
                parts.append("<h2>Extracted training clips beside their originals</h2>" + pairs_html(pairs))
        except Exception as e:  # the rest of the report is still worth having
            parts.append(f"<p>(examples unavailable: {esc(e)})</p>")

    det = result.stage("detect")
    if det is not None and det.status == "done":
        roc = _roc_uri(out)
        parts.append("<h2>Inference-time detection</h2><p>" + esc(det.result) + "</p>" + (img(roc, "ROC", height=None) if roc else ""))

    am = result.stage("amg")
    if am is not None and am.status == "done":
        tab = am.detail["table"]
        keys = ["variant"] + [k for k in tab[0] if k != "variant" and isinstance(tab[0][k], (int, float))][:8]
        parts.append("<h2>Anti-Memorization Guidance</h2>"
                     + table(keys, [[_fmtv(r.get(k)) for k in keys] for r in tab]))
    elif am is not None:
        parts.append(f"<h2>Anti-Memorization Guidance</h2><p>{esc(am.status)}: {esc(am.result)}</p>")

    links = [(name, out / sub) for name, sub in (("world summary", "world/summary.json"),
                                                 ("curated prompts", "prompts/curated.jsonl"),
                                                 ("extraction report", "extract/report.html"),
                                                 ("audit report", "extract/audit/report.html"),
                                                 ("detection report", "detect/report.html"),
                                                 ("AMG report", "amg/amg_report.html"))]
    items = "".join(f"<li><a href='{esc(p.relative_to(out).as_posix())}'>{esc(name)}</a></li>"
                    for name, p in links if p.exists())
    parts.append(f"<h2>Every stage's own results</h2><ul>{items}</ul>")
    return page("diffmem demo", "".join(parts))


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
