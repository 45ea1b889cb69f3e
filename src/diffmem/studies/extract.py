"""The extraction study: generate N samples per prompt, audit them, and tabulate what was extracted.

`run_extract` chains three resumable steps, each in its own folder under OUT:

    OUT/generated/   the generation (`diffmem.studies.generate`): one clip per (prompt, seed), a manifest
    OUT/audit/       the audit of the generated clips against the training set (`diffmem.studies.audit`)
    OUT/extract.parquet, extract.json, samples.parquet, report.html   the study's tables

Definitions and tables: `diffmem.studies.extract_tables` (a sample is content-extracted when its audit
verdict is content or both, motion-extracted for motion or both). Tables: per prompt (extract.parquet, one
row per prompt), per group (the prompt file's `group`, e.g. the embedded world's duplicated_video /
duplicated_caption / novel) and overall (extract.json). The page: `diffmem.studies.extract_report`.
OUT/labels.jsonl says, per prompt, whether any of its samples was extracted (and how;
`diffmem.data.labels.labels_from_audit_counts`): the ground truth `diffmem detect --labels` evaluates
inference-time detection against.

Motion is audited at the lower of the motion policy's rate and the generated videos' rate (see
`_motion_parts`), so a 4 fps model is compared with its training clips step for step.
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from ..data.labels import labels_from_audit_counts, write_labels
from ..data.prompts import as_prompt_entries
from ..errors import DiffmemError
from ..index.content import content_items
from ..index.motion import start_motion_index
from ..io.lock import writes_folder
from ..io.results import environment, write_json, write_parquet, write_text
from .audit import audit, resolve_reference
from .extract_report import clip_pairs, extract_report, train_lookup
from .extract_tables import samples_table, tabulate
from .generate import GenerateConfig, generate
from .generate_ray import generate_ray
from .motion_audit import MotionAuditConfig, at_rate, motion_part

__all__ = ["run_extract"]

# What each label of labels.jsonl carries besides memorized and kind.
_LABEL_FIELDS = {"rate_extracted": "rate_extracted", "id": "prompt_id", "group": "group"}


def _motion_plan(out: Path, *, gen_fps: float | None, motion_index: Path | None = None,
                 max_frames: int | None = None) -> tuple[MotionAuditConfig, Path]:
    """The motion audit's config at the generated videos' rate (`motion_audit.at_rate`), over the first
    `max_frames` frames of every video when given, and its index folder `motion_index` (default: beside the
    audit, named by its policy)."""
    cfg = at_rate(MotionAuditConfig(), gen_fps)
    if max_frames:
        cfg = replace(cfg, policy=replace(cfg.policy, max_frames=int(max_frames)))
    return cfg, (motion_index if motion_index is not None else out / f"motion_index_{cfg.policy.fingerprint}")


def _motion_parts(content_index, out: Path, *, gen_fps: float | None, progress: bool,
                  motion_index: Path | None = None, max_frames: int | None = None) -> tuple[list, str, float | None]:
    """([motion audit part], status, tau_m) by `_motion_plan`."""
    cfg, folder = _motion_plan(out, gen_fps=gen_fps, motion_index=motion_index, max_frames=max_frames)
    part = motion_part(content_index, out, cfg, motion_index=folder, progress=progress)
    return [part], f"audited at {cfg.policy.fps:g} fps", float(cfg.nmf.tau_m)


@writes_folder("extract")
def run_extract(model, prompts, train_or_index, out, *, n: int = 4, seed: int = 0, steps: int = 25,
                guidance: float = 7.5, top: int | None = None, motion: bool = True, batch_size: int = 8,
                examples: int = 12, label_min_rate: float = 0.0, descriptor=None, threshold: float | None = None,
                device=None, dtype: str = "float32", model_config: str | Path | None = None,
                progress: bool = True, log=None, engine: str = "local",
                address: str | None = None, num_frames: int | None = None, height: int | None = None,
                width: int | None = None, motion_index: str | Path | None = None,
                motion_frames: int | None = None) -> dict:
    """The extraction study (see the module docstring): generate `n` samples per prompt (seeds
    seed..seed+n-1), audit them against `train_or_index`, tabulate; resumable at every step.

    engine "ray": the generation runs as a Ray sweep (`generate_ray`; `address` joins a cluster).
    motion_index: the training clips' motion index folder, built there if missing and reused when present
    (default OUT/audit/motion_index_<policy>): several studies against one training set share one.
    motion_frames: compare motion over the first `motion_frames` frames of every video (generated and
    training): for a model trained on the beginnings of its clips (the large world's model: their first
    second), what it can reproduce; half the flow of 2-s training clips. Default: whole clips.

    prompts: a prompt file (`read_prompts`) or PromptEntry list; `top` keeps the first `top` prompts.
    Writes OUT/extract.parquet (per prompt), OUT/samples.parquet (per sample), OUT/extract.json,
    OUT/labels.jsonl (per-prompt memorized labels for `diffmem detect --labels`), OUT/report.html.
    Returns the summary (also in extract.json).
    """
    t0 = time.perf_counter()
    out = Path(out)
    entries = as_prompt_entries(prompts)
    if top is not None:
        entries = entries[:top]
    settings = GenerateConfig(n=n, seed=seed, steps=steps, guidance=guidance, num_frames=num_frames, height=height,
                              width=width)
    specs = entries
    say = log or (lambda msg: None)

    # when the generated videos' rate is known before sampling (an adapter object), the training videos'
    # motion index is built in a background process while this one samples (its flow and the sampler each
    # keep their own cores busy); a model given by name is loaded by `generate`, and the index built after
    background, motion_index, resolved = None, Path(motion_index) if motion_index else None, None
    gen_fps = settings.fps or getattr(model, "fps", None)
    t_ref = time.perf_counter()
    if motion and engine == "local" and gen_fps:
        resolved = resolve_reference(train_or_index, out / "audit", descriptor=descriptor,
                                     threshold=threshold, device=device or "cpu", progress=progress)
        index = resolved[0]
        cfg, folder = _motion_plan(out / "audit", gen_fps=float(gen_fps), motion_index=motion_index,
                                   max_frames=motion_frames)
        background = start_motion_index(content_items(index), folder, cfg.policy, busy_cores=torch.get_num_threads())
        if background is not None:
            say("indexing the training videos' motion in the background while sampling")
    t_ref = time.perf_counter() - t_ref

    say(f"generating {n} samples for each of {len(entries)} prompts")
    t = time.perf_counter()
    if engine == "ray":
        gen = generate_ray(model, specs, out / "generated", settings, batch_size=batch_size, device=device,
                           dtype=dtype, model_config=model_config,
                           progress=progress, log=log, address=address)
    elif engine == "local":
        gen = generate(model, specs, out / "generated", settings, batch_size=batch_size, device=device,
                       dtype=dtype, model_config=model_config,
                       progress=progress)
    else:
        raise DiffmemError(f"unknown engine {engine!r}; use local or ray")
    t_gen = time.perf_counter() - t

    say("auditing the samples against the training set")
    t = time.perf_counter()
    if background is not None:
        background.result()  # the build's own error, if any, is raised here
    # the content index first (opened, or built from the training set into OUT/audit/train_index), so the
    # motion part indexes the same training items
    index, _, _, ref_kind = resolved or resolve_reference(train_or_index, out / "audit", descriptor=descriptor,
                                                          threshold=threshold, device=device or "cpu",
                                                          progress=progress)
    reference = train_or_index if ref_kind == "index" else index.folder
    parts, motion_status, tau_m = (_motion_parts(index, out / "audit", gen_fps=gen.get("fps"), progress=progress,
                                                  motion_index=motion_index,
                                                  max_frames=motion_frames)
                                   if motion else ([], "off", None))
    res = audit(out / "generated" / "manifest.parquet", reference, out / "audit", descriptor=descriptor,
                threshold=threshold, parts=parts, motion=False, progress=progress, device=device or "cpu")
    t_audit = time.perf_counter() - t + t_ref

    manifest = pd.read_parquet(out / "generated" / "manifest.parquet")
    samples = samples_table(manifest, res.items, entries)
    tau_c = res.summary["threshold"]
    cth = {"tau_c": tau_c, "0.5": 0.5, "0.4": 0.4}
    mth = {"tau_m": tau_m} if tau_m is not None else None
    per_prompt, tables = tabulate(samples, entries, content_thresholds=cth, motion_thresholds=mth)

    train_paths, train_captions = train_lookup(res, samples)
    pairs = clip_pairs(samples, train_paths, train_captions, limit=examples)
    # labels.jsonl: one row per prompt id; a prompt's last row with samples gives its label. The empty
    # prompt (unconditional samples) has none: detection has no text to score.
    labels = labels_from_audit_counts([r for r in per_prompt.to_dict("records") if str(r.get("prompt") or "").strip()],
                                      out / "extract.parquet", min_rate=label_min_rate, pool=False,
                                      fields=_LABEL_FIELDS)

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
