"""Anti-Memorization Guidance end to end: `diffmem amg evaluate` (the paper's table, with and without AMG)
and `diffmem generate --amg`.

    evaluate_amg("builtin:tiny-t2v", "world/prompts.jsonl", "world", "runs/amg")      # `diffmem amg evaluate`
    generate_with_amg("builtin:tiny-t2v", prompts, out, settings, "world")            # `diffmem generate --amg`

The library pieces are in `diffmem.guidance` (`AMGConfig`, the one configuration; `TrainingReference`;
`build_amg_hook`; `write_traces`); the table and the reports in `studies.amg_report`.

The evaluation runs the same prompts and seeds through every variant (baseline = plain CFG; "spe",
"dup", "sim" = one term alone; "full" = all three; "always" = all three with the switch always on),
each through `studies.generate.generate` (so resumable), and measures per sample: content score
(max over frames of the nearest training-frame similarity), motion score and verdict (the motion
audit with natural motion filtering), and alignment; per variant: Top-5 % (95th percentile of the
content scores), Top-1 (max), % above tau_c, % content- and motion-memorized among the duplicated
prompts, the quality distance to the training frames, alignment, frame-to-frame change (`flicker`), and wall time.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..data.prompts import read_prompts
from ..detect.guard import MemorizationGuard
from ..errors import BadInputError, DiffmemError
from ..guidance.authors import require_ddpm
from ..guidance.config import AMGConfig
from ..guidance.hook import write_traces
from ..guidance.reference import PRESETS, TrainingReference, build_amg_hook
from ..io.lock import writes_folder
from ..io.results import environment, read_json, to_jsonable, write_json, write_parquet, write_text
from ..io.video import read_frames
from ..metrics.motion import NMFConfig
from ..metrics.quality import CLIPScore, InceptionFeatures
from ..mitigate import (
    JAIN_PRESETS,
    REN_C1,
    CrossAttentionReweight,
    DynamicTransition,
    EmbeddingOverride,
    NoiseOverride,
    SAILConfig,
    WenConfig,
    optimize_embedding,
    optimize_noise,
)
from ..models.registry import load_adapter
from ..world.judge import WorldAlignment, parse_world_caption
from .amg_report import amg_report, amg_table, evaluation_html, quality_by_variant
from .generate import GenerateConfig, generate
from .motion_audit import MotionAuditConfig, MotionAuditor

#: variant -> (terms, switch) of its AMG configuration; None = plain CFG
VARIANTS = {
    "baseline": None,
    "spe": (("spe",), "threshold"),
    "dup": (("dup",), "threshold"),
    "sim": (("sim",), "threshold"),
    "full": (("spe", "dup", "sim"), "threshold"),
    "always": (("spe", "dup", "sim"), "always"),
    "amg-sd-2024": (("spe", "dup", "sim"), "threshold"),  # the authors' Stable Diffusion step (guidance.authors)
    "amg-iddpm-2024": (("sim",), "threshold"),  # their CIFAR-10 step: needs scheduler "ddpm" (guidance.authors)
    "guarded": (("spe", "dup", "sim"), "threshold"),  # full AMG for the samples the detection guard flags
}
#: the other mitigations (`diffmem.mitigate`), compared on the same prompts and seeds
OTHER_VARIANTS = ("jain-none-2025", "jain-opposite-2025", "jain-dynamic-2025", "wen-2024", "jeon-sail-2025", "sail",
                  "ren-2024")
#: variants that read the detection calibration given as `guard`
NEEDS_CALIBRATION = ("guarded", "sail")
DEFAULT_VARIANTS = ("baseline", "spe", "dup", "sim", "full")


@dataclass
class EvalConfig:
    """The evaluation's sampling and variants; `amg`: the AMG configuration (each variant sets its
    terms and switch on it)."""

    n: int = 2
    seed: int = 0
    steps: int = 25
    guidance: float = 7.5
    variants: tuple[str, ...] = DEFAULT_VARIANTS
    batch_size: int = 8
    amg: AMGConfig = field(default_factory=AMGConfig)
    scheduler: str = "ddim"          # every variant samples with it ("ddpm" for amg-iddpm-2024)
    num_frames: int | None = None   # sample size (diffusers models; None = the model's)
    height: int | None = None
    width: int | None = None

    def as_dict(self) -> dict:
        d = asdict(self)
        d["amg"] = self.amg.as_dict()
        return d


@writes_folder("amg evaluate")
def evaluate_amg(model, prompts, index, out: str | Path, config: EvalConfig = EvalConfig(), *,
                 inception: str | Path | None = None, inception_sha256: str | None = None,
                 clip: str | Path | None = None, device="cpu", dtype: str = "float32",
                 model_config: str | Path | None = None, motion_index: str | Path | None = None,
                 motion_frames: int | None = None, guard: str | Path | None = None, progress: bool = False,
                 log=None) -> dict:
    """Run every variant on the same prompts and seeds; write DIR/amg_table.{parquet,json}, the per-sample
    rows DIR/amg_samples.parquet and DIR/amg_report.html. Returns the summary (the table + settings).
    motion_index, motion_frames: the training set's motion index folder to share (e.g. an extraction
    study's) and the frames compared (`TrainingReference.build`)."""
    log = log or (lambda m: None)
    unknown = [v for v in config.variants if v not in VARIANTS and v not in OTHER_VARIANTS]
    if unknown:
        raise DiffmemError(f"unknown AMG variants {unknown}; choose from {', '.join([*VARIANTS, *OTHER_VARIANTS])}")
    if "amg-iddpm-2024" in config.variants:
        require_ddpm(config.scheduler, "the amg-iddpm-2024 variant (every variant samples with --scheduler)")
    out = Path(out)
    # the FID network is loaded (and its sha256 checked) before any sample is made, not after
    fid_space = InceptionFeatures(inception, device, sha256=inception_sha256) if inception else None
    adapter = load_adapter(model, device, dtype=dtype, config=model_config)
    entries = read_prompts(prompts) if isinstance(prompts, (str, Path)) else list(prompts)
    fps = float(getattr(adapter, "fps", 8.0))
    probe = adapter.decode(_zeros_latents(adapter))
    size = int(probe.shape[-2])
    log(f"training reference from {index} (cached in {out / 'cache'})")
    training = TrainingReference.build(index, fps=fps, size=size, cache=out / "cache", motion_index=motion_index,
                                       motion_frames=motion_frames, progress=progress)
    settings = GenerateConfig(n=config.n, seed=config.seed, steps=config.steps, guidance=config.guidance,
                              scheduler=config.scheduler, num_frames=config.num_frames, height=config.height,
                              width=config.width)
    specs = [{"id": e.id, "prompt": e.prompt, "group": e.group} for e in entries]
    roles = {e.id: (e.evidence or {}).get("role") for e in entries}

    auditor = MotionAuditor(training.motion_index, MotionAuditConfig(policy=training.motion_index.policy),
                            groups=training.groups) if training.n_motion_windows else None
    align = _alignment(entries, adapter, clip, fps, size)
    need = [v for v in config.variants if v in NEEDS_CALIBRATION]
    if need and guard is None:
        raise DiffmemError(f"the {' and '.join(repr(v) for v in need)} variant needs a detection calibration "
                           "(--guard FILE, made with `diffmem detect --calibrate --seeds 1`)")
    calibration = None
    if guard is not None:  # checked now, before any sample is made
        calibration = MemorizationGuard.from_file(guard, model=getattr(adapter, "name", None)).calibration
        if "sail" in config.variants and "wen" not in calibration.thresholds:
            raise BadInputError(guard, "has no 'wen' threshold, which the 'sail' variant's target is")
    if "ren-2024" in config.variants and not hasattr(adapter, "attention_edit"):
        raise DiffmemError(f"the 'ren-2024' variant edits text cross-attention after a beginning token, which "
                           f"{adapter.name or 'this model'} does not have (diffusers UNets do)")
    rows, per_variant = [], {}
    for name in config.variants:
        vdir = out / "variants" / name
        hooks, extra, gen_model = [], {"variant": name}, adapter
        t0 = time.time()
        if name in OTHER_VARIANTS:
            gen_model, hooks, extra["mitigation"] = _other_mitigation(name, adapter, specs, settings, calibration)
        elif VARIANTS[name] is not None:
            terms, switch = VARIANTS[name]
            pre = MemorizationGuard(calibration) if name == "guarded" else None  # a fresh guard per variant
            hook = build_amg_hook(training, replace(config.amg, terms=terms, switch=switch), kind=adapter.kind,
                                  preset=name if name in PRESETS else None, pre_switch=pre, adapter=adapter)
            hooks = [hook]
            extra["amg"] = {"settings": config.amg.as_dict(), "config": hook.describe(),
                            "similarities": [s.kind for s in hook.similarities]}
            if pre is not None:
                extra["amg"]["guard"] = {"calibration": str(guard), "thresholds": pre.thresholds}
        log(f"variant {name}: generating {len(specs) * config.n} samples")
        prepare = time.time() - t0  # Wen et al.'s optimisation runs before sampling: part of its cost
        amg_hook = hooks[0] if hooks and hasattr(hooks[0], "records") else None
        after = (lambda rows, h=amg_hook, d=vdir: write_traces(h, d, rows)) if amg_hook is not None else None
        summary = generate(gen_model, specs, vdir, settings, batch_size=config.batch_size, hooks=hooks,
                           extra_settings=extra, after_batch=after, progress=progress)
        if summary.get("n_generated"):
            summary = {**summary, "seconds": (summary.get("seconds") or 0.0) + prepare}
        wall = time.time() - t0
        per_variant[name] = _timing(vdir, summary, wall)
        rows += _measure_variant(vdir, name, training, auditor, align, roles)
    write_parquet(out / "amg_samples.parquet", rows)
    tau_m = NMFConfig().tau_m
    table = amg_table(rows, training.tau_c, tau_m, per_variant)
    q = quality_by_variant(out, config.variants, training, fid_space)
    for r in table:
        r.update(q.get(r["variant"], {}))
    result = {"model": adapter.describe(), "prompts": str(prompts), "index": str(index), "config": config.as_dict(),
              "descriptor": training.descriptor.policy.as_dict(), "tau_c": training.tau_c,
              "tau_c_source": training.tau_c_source,
              "tau_m": tau_m, "alignment": align.describe() if align else None,
              "training_skipped": [s.as_dict() for s in training.skipped], "table": table,
              "environment": environment()}
    write_json(out / "amg_table.json", result)
    write_parquet(out / "amg_table.parquet", table)
    write_text(out / "amg_report.html", evaluation_html(result, rows, out))
    return result


def _other_mitigation(name: str, adapter, specs, settings: GenerateConfig, calibration=None):
    """(the model to sample with, sampler hooks, its description) for one of `OTHER_VARIANTS`."""
    if name in ("jeon-sail-2025", "sail"):
        return _sail(name, adapter, specs, settings, calibration)
    if name == "ren-2024":
        return CrossAttentionReweight(adapter), [], {"rule": "cross-attention re-weighting", "c1": REN_C1, "mask": True}
    if name in JAIN_PRESETS:
        rule = JAIN_PRESETS[name]
        return adapter, [rule], {"rule": "static transition", "tau": rule.tau, "w_before": rule.w_before}
    if name == "jain-dynamic-2025":
        return adapter, [DynamicTransition()], {"rule": "dynamic transition", "w_before": 1.0}
    wen = WenConfig()  # "wen-2024": each prompt's embedding optimised on the noises of its own seeds
    cfg = settings.sampler_config()
    seeds = [settings.seed + k for k in range(settings.n)]
    embeddings, losses = {}, {}
    for sp in specs:
        if sp["prompt"] and sp["prompt"] not in embeddings:
            embeddings[sp["prompt"]], losses[sp["prompt"]] = optimize_embedding(adapter, sp["prompt"], seeds, cfg, wen)
    return (EmbeddingOverride(adapter, embeddings, "wen-2024"), [],
            {"rule": "prompt-embedding optimisation", **asdict(wen),
             "mean_loss_before": float(np.mean([v[0] for v in losses.values()])) if losses else None,
             "mean_loss_after": float(np.mean([v[-1] for v in losses.values()])) if losses else None})


def _sail(name: str, adapter, specs, settings: GenerateConfig, calibration):
    """Jeon et al.'s SAIL: each prompt's n starting noises searched from its first seed, then sampled as
    usual. "jeon-sail-2025": their constants (Stable Diffusion's scale); "sail": the same alpha with the
    threshold set from the calibration's `wen` threshold (`SAILConfig.for_target`)."""
    cfg = settings.sampler_config()
    sail = (SAILConfig() if name == "jeon-sail-2025"
            else SAILConfig.for_target(adapter, calibration.thresholds["wen"], cfg))
    noises, rounds, evals = {}, [], 0
    for sp in specs:
        p = sp["prompt"]
        if not p or (p, settings.seed) in noises:
            continue
        lat, info = optimize_noise(adapter, p, settings.n, settings.seed, cfg, sail)
        noises.update({(p, settings.seed + k): lat[k] for k in range(settings.n)})
        rounds.append(info["rounds"])
        evals += info["denoiser_evals"]
    return (NoiseOverride(adapter, noises, name), [],
            {"rule": "initial-noise search", **asdict(sail), "mean_rounds": float(np.mean(rounds)) if rounds else None,
             "denoiser_evals": evals})


def _timing(vdir: Path, summary: dict, wall: float) -> dict:
    """Seconds per generated sample of this variant, kept from the run that generated them (a resumed
    run that generates nothing reports the stored figure; a partial one, the samples it made)."""
    path = vdir / "timing.json"
    n = int(summary.get("n_generated") or 0)
    if n:
        t = {"seconds": summary.get("seconds"), "n_generated": n, "wall": round(wall, 2),
             "sec_per_sample": (summary.get("seconds") or 0.0) / n}
        write_json(path, t)
        return t
    return read_json(path) if path.is_file() else {}


def _zeros_latents(adapter):
    return torch.zeros(1, *adapter.latent_shape(), device=adapter.device, dtype=adapter.dtype)


def _alignment(entries, adapter, clip, fps, size):
    if clip:
        return CLIPScore(clip)
    # the world's judge, when the prompts are world captions (those it cannot read get no value)
    if entries and any(parse_world_caption(e.prompt) is not None for e in entries):
        n_frames = int(adapter.decode(_zeros_latents(adapter)).shape[1])
        return WorldAlignment(size=size, n_frames=n_frames, fps=fps)
    return None


def _measure_variant(vdir: Path, name: str, training, auditor, align, roles) -> list[dict]:
    """Per sample of a variant: content score and verdict, flicker, motion verdict, alignment, AMG's
    trace summary. Cached in DIR/measures.json by sample id and file time."""
    cache = vdir / "measures.json"
    old = read_json(cache) if cache.is_file() else {}
    man = pd.read_parquet(vdir / "manifest.parquet")
    rows = []
    for r in man.to_dict("records"):
        sid = r["id"]
        key = f"{sid}:{(vdir / r['path']).stat().st_mtime_ns if (vdir / r['path']).exists() else 0}"
        if key in old:
            rows.append(old[key])
            continue
        row = {"variant": name, "id": sid, "prompt": r["prompt"], "prompt_id": r["prompt_id"], "group": r["group"],
               "role": roles.get(r["prompt_id"]), "seed": int(r["seed"]), "path": str(vdir / r["path"])}
        try:
            fr = read_frames(vdir / r["path"]).array
        except BadInputError as e:
            row["error"] = e.reason
            rows.append(row)
            continue
        row.update(training.content_score(fr))
        # frame-to-frame change (mean |difference| of consecutive frames, 0-255): damage that a distance
        # in descriptor space can miss, e.g. one frame blown out by too strong a dissimilarity push
        row["flicker"] = float(np.abs(np.diff(fr.astype(np.float32), axis=0)).mean()) if len(fr) >= 2 else None
        row["content_memorized"] = row["content_score"] > training.tau_c
        if auditor is not None and len(fr) >= 2:
            m = auditor.score_frames(sid, fr)
            row["motion_score"] = m.motion_score
            row["motion_raw"] = m.raw_score
            row["motion_memorized"] = bool(m.motion_memorized)
            row["motion_item"] = m.motion_match.train_id if m.motion_match is not None else None
        if align is not None:
            if hasattr(align, "judge"):
                try:
                    a = align.judge(fr, r["prompt"])
                    row.update({"aligned": a["aligned"], "sprite_ok": a["sprite_ok"], "motion_ok": a["motion_ok"]})
                except DiffmemError:
                    pass  # not a caption the world's judge reads (e.g. "a picture of ..."): no alignment value
            else:
                row["clip_score"] = align.clip_score(fr, r["prompt"])
        tr = vdir / "samples" / f"{sid}.amg.json"
        if tr.is_file():
            row.update(read_json(tr)["summary"])
        old[key] = to_jsonable(row)
        rows.append(old[key])
        write_json(cache, old)
    return rows


# ----------------------------------------------------------------------------- `diffmem generate --amg`


@writes_folder("generate --amg")
def generate_with_amg(model, prompts, out: str | Path, settings, index: str | Path, *,
                      amg: AMGConfig = AMGConfig(), report: bool = False, batch_size: int = 8, device="cpu",
                      dtype: str = "float32", model_config: str | Path | None = None,
                      content_index: str | Path | None = None, progress: bool = False, log=None,
                      preset: str | None = None, guard: str | Path | None = None) -> dict:
    """`studies.generate.generate` with the AMG hook, then DIR/samples/<id>.amg.json per sample (which steps
    triggered which term, the similarity trajectories) and, with `report`, DIR/amg_report.html.

    `index`: the training set AMG compares with (content index, manifest, media folder or world folder);
    its descriptor cache and motion index go to DIR/amg-cache (reused on the next run). The samples are
    those of `build_amg_hook(TrainingReference.build(index, fps=...), amg, kind=...)` passed to
    `generate` (README, "AMG", Library).
    """
    log = log or (lambda m: None)
    out = Path(out)
    if preset == "amg-iddpm-2024":
        require_ddpm(settings.scheduler, "--amg-preset amg-iddpm-2024")
    adapter = load_adapter(model, device, dtype=dtype, config=model_config)
    pre = MemorizationGuard.from_file(guard, model=getattr(adapter, "name", None)) if guard is not None else None
    size = int(adapter.decode(_zeros_latents(adapter)).shape[-2])
    log(f"AMG: training reference from {index}")
    training = TrainingReference.build(index, fps=float(getattr(adapter, "fps", 8.0)), size=size,
                                       cache=out / "amg-cache", content_index=content_index, progress=progress)
    hook = build_amg_hook(training, amg, kind=adapter.kind, preset=preset, pre_switch=pre, adapter=adapter)
    extra = {"amg": {"settings": amg.as_dict() if preset is None else {"preset": preset}, "config": hook.describe(), "index": str(index),
                     "similarities": [s.kind for s in hook.similarities],
                     "descriptor": training.descriptor.policy.as_dict()}}
    if pre is not None:
        extra["amg"]["guard"] = {"calibration": str(guard), "thresholds": pre.thresholds}
    written = []
    summary = generate(adapter, prompts, out, settings, batch_size=batch_size, hooks=[hook], extra_settings=extra,
                       after_batch=lambda rows: written.append(write_traces(hook, out, rows)),
                       progress=progress, log=log)
    summary["amg_traces_written"] = sum(written)
    summary["amg_stats"] = dict(hook.stats)
    if report:
        summary["amg_report"] = str(amg_report(out, adapter, settings, batch_size=batch_size))
    return summary
