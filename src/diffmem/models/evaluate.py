"""Does a model reproduce its training clips? A pixel-level check on the embedded world.

This is the measure the tiny model's acceptance numbers were computed with, before the content
audit (descriptor-based, DESIGN.md "Content memorization") existed. It compares whole clips:

    l2(G, X)  = RMS distance between clip G and training clip X, frame for frame (same times, same size),
                pixel values in [0, 1]
    d1, d2    = l2 to the nearest and to the second-nearest *distinct* training content
                (byte-identical copies of a clip count once)
    ratio(G)  = d1 / d2
    memorized iff ratio < 0.75

Why a ratio test and not DESIGN's nL2 (Carlini et al.; d1 over alpha = 0.5 times the mean distance to
the k = 50 nearest, memorized below 1.4): on the world, whose clips share sprites, textures and
motions, nL2 < 1.4 holds for 49 % of the training clips scored against the *other* training clips
(known-novel pairs) -- it cannot separate anything there. The ratio asks whether one training clip
stands out as *the* source. Calibration (small world, seed 0, 158 distinct contents at 8 x 32 x 32,
each scored against all the others): ratio min 0.76, 1st percentile 0.82, median 0.98; so 0.75 gives
no false positives on known-novel clips. Exact copies plus Gaussian pixel noise of sigma 0.05 have
ratio median 0.45 (max 0.77), sigma 0.1 median 0.70. Whole-clip distance means a clip is called a
copy only when its content *and* its motion match, which is what "reproduces the clip" means.
The distances are `metrics.pixel.nearest_rms`'s (the one pixel-distance kernel), in float64.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..io.video import read_frames
from ..metrics.pixel import nearest_rms
from .train import TrainConfig, load_training_data

THRESHOLD = 0.75  # see the module docstring for the calibration


@dataclass
class TrainingClips:
    """Distinct training contents at a common size: float32 (S, F*H*W*3) in [0, 1], one id list per content."""

    vectors: np.ndarray
    ids: list[list[str]]
    captions: list[str]


def distinct_training_clips(world: str | Path, frames: int, size: int) -> TrainingClips:
    """Read a world's (or manifest's) items at `frames` x `size` x `size`; merge byte-identical contents."""
    data = load_training_data(world, TrainConfig(size=size, frames=frames), progress=False)
    seen: dict[bytes, int] = {}
    vecs, ids, caps = [], [], []
    for arr, cid, cap in zip(data.frames, data.ids, data.captions):
        key = arr.tobytes()
        if key in seen:
            ids[seen[key]].append(cid)
            continue
        seen[key] = len(vecs)
        vecs.append(arr.reshape(-1).astype(np.float32) / 255.0)
        ids.append([cid])
        caps.append(cap)
    return TrainingClips(np.stack(vecs), ids, caps)


def clip_copy_scores(generated: np.ndarray, training: TrainingClips,
                     exclude: list[set[str]] | None = None) -> list[dict]:
    """d1, d2, ratio and the nearest content for each generated clip (N, F, H, W, 3), uint8 or float in [0, 1].

    `exclude[i]`: training ids not to count for clip i (to score training clips against the *rest*,
    which is how the threshold was calibrated).
    """
    g = np.asarray(generated)
    g = (g.astype(np.float64) / 255.0) if g.dtype == np.uint8 else g.astype(np.float64)
    g = g.reshape(len(g), -1)
    t = training.vectors.astype(np.float64)
    if g.shape[1] != t.shape[1]:
        raise ValueError(f"generated clips have {g.shape[1]} values, training clips {t.shape[1]}: not the same size")
    excluded = [{j for j, idl in enumerate(training.ids) if exclude[i] & set(idl)} if exclude is not None else set()
                for i in range(len(g))]
    # the two nearest contents that are not excluded are among the 2 + (most excluded) nearest
    with torch.no_grad():
        dist, nearest = nearest_rms(torch.from_numpy(g), torch.from_numpy(t), k=2 + max(map(len, excluded), default=0))
    out = []
    for i in range(len(g)):
        cand = [(float(d), int(j)) for d, j in zip(dist[i], nearest[i]) if int(j) not in excluded[i]]
        cand += [(float("inf"), 0)] * 2  # fewer than two contents left: infinitely far
        (d_1, j1), (d_2, _) = cand[0], cand[1]
        ratio = d_1 / d_2 if d_2 > 0 else 1.0
        out.append({"d1": d_1, "d2": d_2, "ratio": ratio, "nearest_ids": training.ids[j1],
                    "nearest_caption": training.captions[j1], "memorized": ratio < THRESHOLD})
    return out


def world_memorization(samples: str | Path, world: str | Path) -> dict:
    """Score a `diffmem generate` folder against a world: per-sample scores and the share memorized per group.

    Samples are compared at their own frame count and size (the training clips are read to match).
    When the world has a prompts.jsonl, `copies_its_source` says whether the nearest training clip is
    one of the clips the prompt's caption was paired with (train_ids).
    Returns {"per_group": {group: {n, memorized, share, share_copies_source, median_ratio}}, "samples": [...]}.
    """
    samples, world = Path(samples), Path(world)
    df = pd.read_parquet(samples / "manifest.parquet")
    clips = [read_frames(samples / p).array for p in df["path"]]
    f, s = clips[0].shape[0], clips[0].shape[1]
    training = distinct_training_clips(world, f, s)
    sources = {}
    if (world / "prompts.jsonl").is_file():
        for line in (world / "prompts.jsonl").read_text(encoding="utf-8").splitlines():
            if line.strip():
                rec = json.loads(line)
                sources.setdefault(rec["prompt"], set()).update(rec.get("train_ids") or [])
    scores = clip_copy_scores(np.stack(clips), training)
    rows = []
    for (_, r), sc in zip(df.iterrows(), scores):
        src = sources.get(r["prompt"], set())
        rows.append({"id": r["id"], "prompt": r["prompt"], "group": r.get("group"), "seed": int(r["seed"]), **sc,
                     "copies_its_source": bool(sc["memorized"] and src & set(sc["nearest_ids"]))})
    per_group = {}
    for grp in dict.fromkeys(r["group"] for r in rows):
        sel = [r for r in rows if r["group"] == grp]
        per_group[str(grp)] = {"n": len(sel), "memorized": int(sum(r["memorized"] for r in sel)),
                               "share": float(np.mean([r["memorized"] for r in sel])),
                               "share_copies_source": float(np.mean([r["copies_its_source"] for r in sel])),
                               "median_ratio": float(np.median([r["ratio"] for r in sel])),
                               "median_d1": float(np.median([r["d1"] for r in sel]))}
    return {"measure": "whole-clip pixel RMS, nearest / second-nearest distinct training content",
            "threshold": THRESHOLD, "per_group": per_group, "samples": rows}
