"""How a model memorizes on the embedded world: per prompt group, with diffmem's own audit and the world's judge.

`evaluate_world_model(model, world, out)` (CLI: `diffmem world evaluate MODEL --world W --out DIR`):

1. the extraction study (`run_extract`) on every prompt of the world's prompts.jsonl (N samples each),
   and on the empty prompt (`n_unconditional` samples), both audited against one content index and one
   motion index of the world (built once in OUT/index and OUT/motion_index);
2. per group: the share of samples that are **content-memorized** (audit verdict content or both), that are
   **motion-only memorized** (verdict motion) and, of those, **matched to the right source** (the motion
   match is one of the prompt's train_ids: for a motion-memorization prompt, a clip of the signature
   trajectory); the motion-memorization group is split by role (memorized / control);
3. the world's judge (`WorldAlignment`) on the samples of every captioned prompt: does the sample show the
   captioned sprite, and the captioned motion?
4. inference-time detection (`run_detect`, the demo's settings) with the world's planted groups as labels:
   duplicated video / image prompts (memorized) against novel prompts, and the motion-memorization
   prompts (memorized) against their controls.

The targets of the world-v2 issue are recorded beside each figure (`TARGETS`), so a reader sees at once
what a model does and does not show. Writes OUT/world_eval.json and returns it.
"""
from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..data.prompts import PromptEntry
from ..detect.calibrate import DetectConfig
from ..detect.detectors import prompt_words
from ..errors import DiffmemError
from ..index import DEFAULT_FPS, build_content_index
from ..io.lock import writes_folder
from ..io.results import environment, write_json
from ..io.video import read_frames
from ..models.registry import load_adapter
from ..world.judge import WorldAlignment, parse_world_caption, world_paths
from .detect import run_detect
from .extract import run_extract

CONTENT_VERDICTS, MOTION_ONLY = ("content", "both"), "motion"
# (group, figure) -> (comparison, value): the world-v2 issue's acceptance targets
TARGETS = {
    ("duplicated_video", "content"): (">=", 0.60), ("duplicated_image", "content"): (">=", 0.50),
    ("unconditional", "content"): ("<=", 0.05), ("novel", "memorized"): ("<=", 0.03),
    ("novel", "judge_sprite"): (">=", 0.70), ("novel", "judge_motion"): (">=", 0.50),
    ("motion_memorized", "motion_only_right_source"): (">=", 0.30), ("motion_control", "motion"): ("<=", 0.05),
    ("detect_content", "auc"): (">=", 0.95), ("detect_content", "tpr@1%fpr"): (">=", 0.5),
    ("detect_motion", "auc"): (">=", 0.85),
}


def _group_of(p: dict) -> str:
    if p["group"] == "motion_memorization":
        return f"motion_{p.get('role', 'memorized')}"
    return p["group"]


def _rates(rows: pd.DataFrame, train_ids: dict) -> dict:
    n = len(rows)
    if n == 0:
        return {"n": 0}
    content = rows["verdict"].isin(CONTENT_VERDICTS)
    motion_any = rows["verdict"].isin(("motion", "both"))
    only = rows["verdict"] == MOTION_ONLY
    right = [v == MOTION_ONLY and str(m) in train_ids.get(p, ()) for v, m, p in
             zip(rows["verdict"], rows["motion_match"], rows["prompt"])]
    return {"n": n, "content": float(content.mean()), "motion": float(motion_any.mean()),
            "motion_only": float(only.mean()), "motion_only_right_source": float(np.mean(right)),
            "memorized": float((rows["verdict"] != "none").mean())}


def _check(table: dict) -> dict:
    out = {}
    for (group, key), (op, target) in TARGETS.items():
        v = (table.get(group) or {}).get(key)
        if v is None:
            continue
        out[f"{group} {key}"] = {"value": v, "target": f"{op} {target:g}",
                                 "met": bool(v >= target if op == ">=" else v <= target)}
    return out


@writes_folder("world evaluate")
def evaluate_world_model(model, world, out, *, n: int = 4, n_unconditional: int = 64, seed: int = 0,
                         steps: int = 25, guidance: float = 3.0, detect_seeds: int = 4, judge: bool = True,
                         detectors: tuple = ("all",), progress: bool = True, log=None) -> dict:
    """See the module docstring. `world`: a folder made by `diffmem world make`. `detectors`: the
    first-step detectors scored beside the magnitudes (`run_detect`; default every one the model has)."""
    t0 = time.perf_counter()
    world, out = Path(world), Path(out)
    say = log or (lambda m: None)
    prompts_path = world / "prompts.jsonl"
    if not prompts_path.is_file():
        raise DiffmemError(f"{world}: no prompts.jsonl (not a diffmem world; make one with `diffmem world make`)")
    adapter = load_adapter(model)
    world_prompts = [json.loads(line) for line in prompts_path.read_text(encoding="utf-8").splitlines() if line]
    captioned = [p for p in world_prompts if p["prompt"]]
    entries = [PromptEntry(f"w{k:04d}", p["prompt"], group=_group_of(p)) for k, p in enumerate(captioned)]
    train_ids = {p["prompt"]: set(p["train_ids"]) for p in captioned}

    fps = min(DEFAULT_FPS, float(getattr(adapter, "fps", 0) or DEFAULT_FPS))
    say(f"indexing the world's training frames at {fps:g} fps")
    build_content_index(world / "train.parquet", out / "index", fps=fps, progress=progress)
    window = model_window(adapter, world)
    common = dict(n=n, seed=seed, steps=steps, guidance=guidance, progress=progress, log=say,
                  motion_index=out / "motion_index", motion_frames=window)
    if window:
        say(f"the model makes the first {window} frames of the world's clips: motion is compared over those")
    say(f"{len(entries)} world prompts x {n} samples")
    run_extract(adapter, entries, out / "index", out / "prompts", **common)
    samples = pd.read_parquet(out / "prompts" / "samples.parquet")
    parts = [samples]
    if n_unconditional and any(not p["prompt"] for p in world_prompts):
        say(f"the empty prompt x {n_unconditional} samples")
        run_extract(adapter, [PromptEntry("unconditional", "", group="unconditional")], out / "index",
                    out / "unconditional", **{**common, "n": n_unconditional})
        parts.append(pd.read_parquet(out / "unconditional" / "samples.parquet"))
    samples = pd.concat(parts, ignore_index=True)

    table = {g: _rates(rows, train_ids) for g, rows in samples.groupby("group", sort=True)}
    if judge:
        cfg = getattr(adapter, "cfg", None)
        wcfg = json.loads((world / "ground_truth.json").read_text(encoding="utf-8"))["config"]
        judge_m = WorldAlignment(size=getattr(cfg, "size", 32), n_frames=getattr(cfg, "frames", 8),
                                 fps=float(getattr(adapter, "fps", 4.0) or 4.0),
                                 clip_seconds=wcfg["n_frames"] / wcfg["fps"], paths=world_paths(world))
        by_group = defaultdict(list)
        # the judge reads clip captions (sprite and motion); pictures and the empty prompt are not judged
        rows = samples[[parse_world_caption(t) is not None for t in samples["prompt"]]]
        for r in (rows.itertuples(index=False) if not progress else _bar(rows)):
            frames = read_frames(r.path).array
            by_group[r.group].append(judge_m.judge(frames, r.prompt))
        for g, js in by_group.items():
            table[g].update({"judge_sprite": float(np.mean([j["sprite_ok"] for j in js])),
                             "judge_motion": float(np.mean([j["motion_ok"] for j in js])),
                             "judge_aligned": float(np.mean([j["aligned"] for j in js]))})

    say("detection: magnitudes of every world prompt")
    labels = {}
    for p in captioned:
        g = _group_of(p)
        if g in ("duplicated_video", "duplicated_image", "motion_memorized"):
            labels[p["prompt"]] = {"memorized": True, "kind": "motion" if g == "motion_memorized" else "content"}
        elif g in ("novel", "motion_control"):
            labels[p["prompt"]] = {"memorized": False, "kind": "none"}
    dcfg = DetectConfig(seeds=detect_seeds, steps=1, num_steps=steps, guidance_scale=guidance)
    sets = {"detect_content": ("duplicated_video", "duplicated_image", "novel"),
            "detect_motion": ("motion_memorized", "motion_control"),
            "detect_length_control": ("duplicated_video", "duplicated_image", LONG_UNIQUE)}
    long_unique = _long_unique_captions(world, [e.prompt for e in entries if e.group.startswith("duplicated_")])
    labels.update({c: {"memorized": False, "kind": "none"} for c in long_unique})
    entries = entries + [PromptEntry(f"u{k:04d}", c, group=LONG_UNIQUE) for k, c in enumerate(long_unique)]
    for name, groups in sets.items():
        chosen = [e for e in entries if e.group in groups]
        kinds = {labels[e.prompt]["memorized"] for e in chosen}
        if kinds != {True, False}:
            table[name] = {"auc": None, "n_prompts": len(chosen), "by_detector": {},
                           "why": "needs memorized and novel prompts"}
            continue
        res = run_detect(adapter, [e.prompt for e in chosen], out / name, settings=dcfg,
                         labels={e.prompt: labels[e.prompt] for e in chosen}, progress=progress, detectors=detectors)
        ev = (res.get("evaluation") or {}).get("memorized") or {}
        key = "motion" if name == "detect_motion" else "content"
        best = ev.get(key) or {}
        table[name] = {"auc": best.get("auc"), "tpr@1%fpr": best.get("tpr@1%fpr"),
                       "by_detector": ev, "n_prompts": len(chosen),
                       "denoiser_evals_per_prompt": dcfg.denoiser_evals_per_prompt(),
                       "comparison": [r for r in res.get("comparison") or [] if r["set"] == "memorized"]}

    result = {"model": adapter.name or str(model), "world": str(world), "n": n, "n_unconditional": n_unconditional,
              "seed": seed, "steps": steps, "guidance": guidance, "groups": table, "targets": _check(table),
              "seconds": round(time.perf_counter() - t0, 1), "environment": environment()}
    write_json(out / "world_eval.json", result)
    return result


LONG_UNIQUE = "long_unique_captions"


def _long_unique_captions(world, memorized: list[str], k: int = 40) -> list[str]:
    """Up to `k` captions of unique training clips (seen once: not memorized) at least as long as the
    shortest memorized prompt, evenly spread: the negatives of a detection set in which the prompt's
    length cannot separate (the large world's duplicated captions carry two tag words)."""
    if not memorized:
        return []
    shortest = min(prompt_words(p) for p in memorized)
    items = json.loads((Path(world) / "ground_truth.json").read_text(encoding="utf-8"))["items"]
    caps = sorted({it["caption"] for it in items
                   if it.get("role") == "unique" and prompt_words(it["caption"]) >= shortest})
    return caps[:: max(1, len(caps) // k)][:k]


def model_window(adapter, world) -> int | None:
    """The frames a video model makes when they cover only the beginning of the world's clips (the large
    world's model: the first second of 2-s clips, at their 8 fps), else None (whole clips)."""
    if adapter.kind != "video":
        return None
    cfg = json.loads((Path(world) / "ground_truth.json").read_text(encoding="utf-8"))["config"]
    frames, fps = int(adapter.latent_shape()[1]), float(getattr(adapter, "fps", 0) or 0)
    if not fps or frames / fps >= cfg["n_frames"] / cfg["fps"] - 1e-6:
        return None
    return frames


def _bar(rows: pd.DataFrame):
    return tqdm(rows.itertuples(index=False), total=len(rows), desc="judge", leave=False)


def format_world_eval(result: dict) -> str:
    """A plain-text table of `evaluate_world_model`'s result."""
    lines = [f"{'group':<20} {'n':>4} {'content':>8} {'motion':>7} {'mot.only':>8} {'right src':>9} "
             f"{'sprite':>7} {'motion(j)':>9}"]

    def pct(v):
        return "" if v is None else f"{100 * v:.0f} %"

    for g, r in result["groups"].items():
        if g.startswith("detect_"):
            continue
        lines.append(f"{g:<20} {r.get('n', 0):>4} {pct(r.get('content')):>8} {pct(r.get('motion')):>7} "
                     f"{pct(r.get('motion_only')):>8} {pct(r.get('motion_only_right_source')):>9} "
                     f"{pct(r.get('judge_sprite')):>7} {pct(r.get('judge_motion')):>9}")
    for g in ("detect_content", "detect_motion", "detect_length_control"):
        r = result["groups"].get(g)
        if r:
            aucs = ", ".join(f"{k} AUC {v['auc']:.3f}" for k, v in r["by_detector"].items() if v.get("auc") is not None)
            lines.append(f"{g}: {aucs} ({r['n_prompts']} prompts)")
    lines.append("targets:")
    for k, t in result["targets"].items():
        lines.append(f"  {'met ' if t['met'] else 'MISS'} {k}: {t['value']:.3f} (target {t['target']})")
    return "\n".join(lines)
