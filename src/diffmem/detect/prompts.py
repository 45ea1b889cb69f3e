"""Prompt scoring: each prompt's detection magnitudes, averaged over n seeds and the first s steps.

    scores = prompt_scores(adapter, prompts, DetectConfig(seeds=4, steps=1))   # {prompt: {magnitude: score}}
    score = magnitude_function(adapter, seeds=2, steps=1)                        # prompts -> [{magnitude: score}]
    run = cached_records(adapter, prompts, settings, "out/", model_name="builtin:tiny-t2v")

`prompt_scores` (and its update/compute form `PromptDetector`) is the functional twin of `diffmem detect` (`diffmem.studies.detect.run_detect`), which
scores through `cached_records`: the per-sample records of each prompt are written to
``out/items/<hash>.json`` as each chunk of prompts finishes, so a killed run resumes where it stopped
(records made with other settings or another model are ignored; fewer seeds or steps reuse them).
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tqdm.auto import tqdm

from ..io.results import read_json, write_json
from ..models.sampler import iter_samples
from .calibrate import DetectConfig
from .detectors import EXTRA_EVALS, detector_names
from .magnitude import MagnitudeDetector, aggregate_records, first_step_records

__all__ = ["prompt_scores", "PromptDetector", "score_records", "detector_evals", "magnitude_function", "chunk_size", "fingerprint", "item_path",
           "load_item", "CachedRecords", "cached_records"]


def prompt_scores(adapter, prompts: Sequence[str], settings: DetectConfig = DetectConfig(), *,
                  batch_size: int = 8, progress: bool = False, detectors: Sequence[str] = ()) -> dict[str, dict[str, float]]:
    """The functional twin of a detection run: {prompt: {score name: score}} for distinct `prompts`: the
    magnitudes, and the scores of the first-step `detectors` (`detect.detectors`) when given."""
    distinct = list(dict.fromkeys(prompts))
    records = score_records(adapter, distinct, settings, batch_size=batch_size, progress=progress, detectors=detectors)
    return {p: {k: v for k, v in row.items() if k != "count"} for p, row in aggregate_records(records).items()}


class PromptDetector:
    """The update/compute form of `prompt_scores`, for every detector at once (the magnitudes and the
    first-step `detectors`): `update(prompts)` scores the prompts not seen yet (e.g. as a prompt list
    streams in), `compute()` returns {prompt: {score name: mean over seeds (and steps)}}, `records` the
    per-sample values, `reset()` forgets them.

        det = PromptDetector(adapter, DetectConfig(seeds=4), detectors=("anisotropy", "attention"))
        det.update(batch_1); det.update(batch_2)
        scores = det.compute()          # == prompt_scores(adapter, batch_1 + batch_2, ..., detectors=...)
    """

    def __init__(self, adapter, settings: DetectConfig = DetectConfig(), *, detectors: Sequence[str] = (),
                 batch_size: int = 8):
        self.adapter, self.settings, self.detectors, self.batch_size = adapter, settings, tuple(detectors), batch_size
        self.reset()

    def reset(self) -> None:
        self.records: list[dict] = []
        self._seen: set[str] = set()

    def update(self, prompts: Sequence[str]) -> None:
        new = [p for p in dict.fromkeys(prompts) if p not in self._seen]
        if new:
            self.records += score_records(self.adapter, new, self.settings, batch_size=self.batch_size,
                                          progress=False, detectors=self.detectors)
            self._seen.update(new)

    def compute(self) -> dict[str, dict[str, float]]:
        return {p: {k: v for k, v in row.items() if k != "count"} for p, row in aggregate_records(self.records).items()}


def score_records(adapter, prompts: Sequence[str], settings: DetectConfig, *, batch_size: int,
                  progress: bool, detectors: Sequence[str] = ()) -> list[dict]:
    """Per-sample, per-step magnitude records (keyed by prompt) of distinct `prompts`; the first-step
    `detectors` add their scores to the step-0 records."""
    seeds = [settings.first_seed + k for k in range(settings.seeds)]
    if settings.steps == 1:  # shared eps(x_T, ""): half the evaluations of the sampler path
        return first_step_records(adapter, prompts, seeds, settings.sampler_config(), batch_size=batch_size,
                                  detectors=detectors)
    all_prompts = [p for p in prompts for _ in seeds]
    all_seeds = [s for _ in prompts for s in seeds]
    det = MagnitudeDetector(steps=settings.steps, frame_axis=adapter.frame_axis)
    for _ in iter_samples(adapter, all_prompts, all_seeds, settings.sampler_config(), batch_size=batch_size,
                          hooks=[det], max_steps=settings.steps, decode=False, progress=progress):
        pass
    if detectors:  # the other detectors are first-step ones: their pass, merged into the step-0 records
        extra = detector_names(detectors, adapter.frame_axis is not None)
        first = {(r["key"], r["seed"]): r for r in first_step_records(
            adapter, prompts, seeds, settings.sampler_config(), batch_size=batch_size, detectors=detectors)}
        for r in det.records:
            if r["step"] == 0:
                r.update({n: first[(r["key"], r["seed"])][n] for n in extra})
    return det.records


def detector_evals(settings: DetectConfig, detectors: Sequence[str], n_prompts: int | None = None) -> dict[str, float]:
    """Denoiser evaluations per prompt that each detector costs on its own ("magnitude" at `settings`, the
    first-step ones at n = settings.seeds seeds); an unconditional evaluation shared by `n_prompts`
    prompts counts 1 / n_prompts (all of it without `n_prompts`). A JVP counts as 2 evaluations."""
    n, share = settings.seeds, (1 / n_prompts if n_prompts else 1.0)
    first = n * (1 + share)  # eps(x_T, prompt) per seed + eps(x_T, "") shared
    out = {"magnitude": settings.denoiser_evals_per_prompt(n_prompts)}
    for d in detectors:
        if d == "attention":  # read inside the conditional evaluation alone
            out[d] = float(n)
        else:  # + (cond and shared uncond at t_lo) or (the JVP through both branches)
            out[d] = first + (n * (1 + share) if d == "anisotropy" else n * EXTRA_EVALS[d])
    return out


def magnitude_function(adapter, *, seeds: int, steps: int, progress: bool = True):
    """prompts -> [{content, motion, total}] detection magnitudes of `adapter` (`prompt_scores` with
    `seeds` seeds and `steps` steps), in prompt order: how prompt curation ranks by a model."""
    settings = DetectConfig(seeds=seeds, steps=steps)

    def score(prompts: list[str]) -> list[dict]:
        s = prompt_scores(adapter, prompts, settings, progress=progress)
        return [s[p] for p in prompts]

    return score


def chunk_size(settings: DetectConfig, batch_size: int) -> int:
    """Prompts scored (and written) together. At s = 1 they share the unconditional evaluations, so take
    many; through the sampler, a few batches."""
    return 64 if settings.steps == 1 else max(1, 4 * batch_size // settings.seeds)


def fingerprint(model: str, settings: DetectConfig) -> str:
    """What makes stored records reusable: the model and every setting but the seed and step counts."""
    d = {k: v for k, v in settings.as_dict().items() if k not in ("seeds", "steps")}
    return hashlib.sha256(json.dumps({"model": model, **d}, sort_keys=True).encode()).hexdigest()[:16]


def item_path(out: Path, prompt: str) -> Path:
    return out / "items" / (hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:24] + ".json")


def load_item(path: Path, fingerprint: str, settings: DetectConfig, required: Sequence[str] = ()) -> list[dict] | None:
    """The stored records of one prompt for `settings` with the `required` first-step scores, or None
    when they must be scored (again)."""
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
    if any(r.get(n) is None for r in keep if r["step"] == 0 for n in required):
        return None  # made without a detector asked for now
    return keep


@dataclass
class CachedRecords:
    """What `cached_records` returns: the records of every prompt, which prompts were scored now (the
    others were resumed), the denoiser evaluations that took and its seconds."""

    records: dict[str, list[dict]]
    scored: list[str]
    denoiser_evals: int
    seconds: float


def cached_records(adapter, prompts: Sequence[str], settings: DetectConfig, out: str | Path, *, model_name: str,
                   batch_size: int = 8, progress: bool = False, resume: bool = True,
                   detectors: Sequence[str] = ()) -> CachedRecords:
    """Per-sample records {prompt: [record]} of the distinct `prompts`, from out/items/ where stored
    (`resume`) and scored `chunk_size` prompts at a time otherwise, each chunk written as it finishes."""
    out = Path(out)
    fp = fingerprint(model_name, settings)
    required = detector_names(detectors, adapter.frame_axis is not None)
    distinct = list(dict.fromkeys(prompts))
    records: dict[str, list[dict]] = {}
    todo = []
    for p in distinct:
        got = load_item(item_path(out, p), fp, settings, required) if resume else None
        if got is not None:
            records[p] = got
        else:
            todo.append(p)
    chunk = chunk_size(settings, batch_size)
    evals_run, t1 = 0, time.perf_counter()
    with tqdm(total=len(todo), desc="detect", unit="prompt", disable=not progress or not todo) as bar:
        for c0 in range(0, len(todo), chunk):
            part = todo[c0:c0 + chunk]
            recs = score_records(adapter, part, settings, batch_size=batch_size, progress=False, detectors=detectors)
            evals_run += settings.seeds * (len(part) + 1) if settings.steps == 1 else \
                2 * settings.seeds * settings.steps * len(part)
            for d in detectors:  # what the first-step detectors add to that
                evals_run += settings.seeds * (len(part) + 1 if d == "anisotropy" else EXTRA_EVALS[d] * len(part))
                if settings.steps > 1:  # their own first-step pass
                    evals_run += settings.seeds * (len(part) + 1)
            for p in part:
                mine = [dict(r, key=None) for r in recs if r["key"] == p]
                records[p] = mine
                write_json(item_path(out, p), {"prompt": p, "fingerprint": fp, "model": model_name,
                                               "settings": settings.as_dict(), "records": mine})
            bar.update(len(part))
    return CachedRecords(records, todo, evals_run, time.perf_counter() - t1)
