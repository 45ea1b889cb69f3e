"""Optical flow and motion-index benchmark; with --calibrate, the measurement behind the motion thresholds.

    python benchmarks/bench_flow.py               # flow fields / s (DIS, Farneback; 64, 128, 256 px), search speed
    python benchmarks/bench_flow.py --compressed  # + search in a compressed (IVF) motion index
    python benchmarks/bench_flow.py --calibrate   # tau_m, static_px and the motion verdict's precision / recall

Speed: ratios are against DIS at 128 px (the default policy), measured in the same run.
Search: windows are real Phi_k descriptors of synthetic sprite and pan clips, replicated with
small perturbations up to the index size; queries are windows of other clips.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def _timeit(fn, min_time: float = 1.0, min_reps: int = 3) -> float:
    """Seconds per call (median of repeated calls over at least `min_time`)."""
    fn()  # warm-up
    times, start = [], time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < min_time:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def bench_flow(sides=(64, 128, 256), n_pairs: int = 8) -> list[dict]:
    from diffmem.flow import get_estimator
    from diffmem.world.synthetic import camera_video

    rows = []
    for side in sides:
        frames, _ = camera_video("rotate", 2.0, n_frames=n_pairs + 1, size=(side, side), seed=0)
        for backend in ("dis", "farneback"):
            est = get_estimator(backend)
            sec = _timeit(lambda: est.video(frames)) / n_pairs
            rows.append({"backend": backend, "px": side, "fields_per_s": 1.0 / sec, "ms_per_field": 1e3 * sec})
    base = next(r for r in rows if r["backend"] == "dis" and r["px"] == 128)["fields_per_s"]
    for r in rows:
        r["vs_dis128"] = r["fields_per_s"] / base
    return rows


def bench_search(sizes=(10_000, 100_000), n_queries: int = 64, compressed: bool = False) -> list[dict]:
    import tempfile

    from diffmem.world.synthetic import motion_corpus
    from diffmem.features.motion import MotionPolicy, VideoMotion
    from diffmem.index.motion import MotionIndex
    from diffmem.metrics.motion import NMFConfig

    policy = MotionPolicy()
    train, gen = motion_corpus(seed=0, n_sprites=8, pans_per_direction=2, n_zooms=2, n_stills=1, n_copies=4,
                               n_subclips=0, n_novel=4, n_new_pans=0, n_new_stills=0, n_new_zooms=0)
    # Exact flows of the corpus (their descriptors are what an index holds; flow cost is benchmarked above).
    base = np.concatenate([VideoMotion.from_flows(c.flow * 2, policy.grid, policy.k).windows for c in train])
    queries = np.concatenate([VideoMotion.from_flows(c.flow * 2, policy.grid, policy.k).windows for c in gen])
    queries = queries[np.resize(np.arange(len(queries)), n_queries)]
    rng = np.random.default_rng(0)
    rows = []
    for n in sizes:
        reps = base[rng.integers(len(base), size=n)] + rng.normal(0, 0.02, (n, base.shape[1])).astype(np.float32)
        reps /= np.linalg.norm(reps, axis=1, keepdims=True)
        nmf = NMFConfig()
        plain = _timeit(lambda: reps @ queries.T, min_time=0.5) / n_queries
        factories = ["Flat"] + (["IVF1024,Flat"] if compressed and n >= 50_000 else [])
        for factory in factories:
            with tempfile.TemporaryDirectory() as tmp:
                index = MotionIndex.create(f"{tmp}/idx", policy, factory=factory)
                index.index.add(reps, [{"item_id": f"t{i // 13}", "start": i % 13, "motion": 2.0} for i in range(n)])
                t = time.perf_counter()
                index.close()
                build = time.perf_counter() - t
                sec = _timeit(lambda: index.neighbours(queries, tau=nmf.tau_m, static_px=nmf.static_px,
                                                        enough_groups=nmf.natural_groups), min_time=0.5) / n_queries
            rows.append({"index_windows": n, "factory": factory, "build_s": build, "queries_per_s": 1 / sec,
                         "ms_per_query": 1e3 * sec, "bare_matmul_ms_per_query": 1e3 * plain,
                         "nmf_search_vs_bare": plain / sec})
    return rows


def _table(rows: list[dict]) -> str:
    cols = list(rows[0])
    fmt = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)  # noqa: E731
    cells = [[fmt(r[c]) for c in cols] for r in rows]
    width = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(cols, width))]
    lines += ["  ".join(x.rjust(w) for x, w in zip(r, width)) for r in cells]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- calibration


def calibrate(seeds=(0, 1, 2), fpr: float = 0.01) -> dict:
    """Measure what the motion thresholds rest on; print it; return the numbers.

    tau_m: the (1 - fpr) quantile of OFS-k over *known-novel pairs* (distinct random sprite
    trajectories, estimated flow), as tau_c is calibrated for content; compared with the OFS-k of
    true copies (same trajectory and shape, other texture and background) in the same run.
    static_px: still shots with sensor noise vs the slowest moving windows.
    Then the motion verdict's precision / recall on full synthetic corpora with those thresholds.
    """
    import itertools

    from diffmem.world.synthetic import motion_corpus
    from diffmem.features.motion import MotionPolicy, describe_motion
    from diffmem.index.motion import MotionIndex
    from diffmem.metrics.motion import NMFConfig, ofs_k_windows
    from diffmem.studies.motion_audit import MotionAuditConfig, MotionAuditor

    policy = MotionPolicy()
    novel, copies, still_motion, moving_motion = [], [], [], []
    per_seed = []
    for seed in seeds:
        t0 = time.perf_counter()
        train, gen = motion_corpus(seed=seed)
        cache: dict = {}

        def motion(c):
            key = hash(c.frames.tobytes())
            if key not in cache:
                cache[key] = describe_motion(c.frames, policy)
            return cache[key]

        tm = {c.id: motion(c) for c in train}
        sprites = [c.id for c in train if c.kind == "sprite" and "_dup" not in c.id]
        for a, b in itertools.combinations(sprites, 2):
            novel.append(ofs_k_windows(tm[a].windows, tm[b].windows).score)
        gm = {c.id: motion(c) for c in gen}
        for c in gen:
            if c.kind == "sprite" and c.label == "none":
                novel.extend(ofs_k_windows(gm[c.id].windows, tm[s].windows).score for s in sprites)
            if c.label == "motion":
                copies.append(ofs_k_windows(gm[c.id].windows, tm[c.source].windows).score)
        for c in train + gen:
            (still_motion if c.kind == "still" else moving_motion).extend(motion(c).motion.tolist())
        per_seed.append((seed, train, gen, tm, gm, time.perf_counter() - t0))
    novel, copies = np.asarray(novel), np.asarray(copies)
    tau = float(np.quantile(novel, 1 - fpr))
    print(f"\nOFS-k, known-novel pairs (n={len(novel)}): median {np.median(novel):.3f}, 95% {np.quantile(novel, .95):.3f}, "
          f"99% {np.quantile(novel, .99):.3f}, max {novel.max():.3f}")
    print(f"OFS-k, copies in another appearance (n={len(copies)}): min {copies.min():.3f}, 5% "
          f"{np.quantile(copies, .05):.3f}, median {np.median(copies):.3f}")
    print(f"-> tau_m at {fpr:.0%} false positives on known-novel pairs: {tau:.3f} (default {NMFConfig().tau_m})")
    print(f"window motion (px/frame at 128 px): still shots max {max(still_motion):.3f}, "
          f"moving windows min {min(moving_motion):.3f}, 1% {np.quantile(moving_motion, .01):.3f} "
          f"(default static_px {NMFConfig().static_px})")

    import tempfile

    rows = []
    cfg = MotionAuditConfig(policy=policy)
    tmp = tempfile.TemporaryDirectory()
    for seed, train, gen, tm, gm, secs in per_seed:
        index = MotionIndex.create(f"{tmp.name}/synthetic{seed}", policy)
        for c in train:
            index.add(c.id, tm[c.id])
        index.close()
        groups = {c.id: c.id.split("_dup")[0] for c in train}
        auditor = MotionAuditor(index, cfg, groups)
        res = {c.id: auditor.score_motion(c.id, gm[c.id]) for c in gen}
        rows.append(_pr(f"synthetic seed {seed}", gen, res, groups))
    world = _world_rows(cfg, tmp.name)
    rows.extend(world)
    print()
    print(_table(rows))
    return {"tau_m": tau, "novel": novel, "copies": copies, "rows": rows}


def _pr(name, gen, res, groups) -> dict:
    tp = sum(1 for c in gen if c.label == "motion" and res[c.id].motion_memorized
             and groups.get(res[c.id].motion_match.train_id, res[c.id].motion_match.train_id) == groups.get(c.source, c.source)
             and res[c.id].motion_match.offset == c.offset)
    fp = sum(1 for c in gen if c.label == "none" and res[c.id].motion_memorized)
    pos = sum(1 for c in gen if c.label == "motion")
    kinds = sorted({c.kind for c in gen if c.label == "none"})
    flagged = {k: sum(res[c.id].motion_memorized for c in gen if c.kind == k and c.label == "none") for k in kinds}
    return {"corpus": name, "positives": pos, "negatives": len(gen) - pos, "tp": tp, "fp": fp,
            "precision": tp / max(tp + fp, 1), "recall": tp / max(pos, 1),
            "fp_by_kind": " ".join(f"{k}:{v}" for k, v in flagged.items())}


def _world_rows(cfg, tmp: str) -> list[dict]:
    """World clips: the signature-motion sources re-rendered with recoloured sprites over other
    backgrounds (full clip, and from frame 4), against a training set of world clips that includes
    those sources (duplicated), common motions, pans and still shots; negatives are new still shots
    and pans over new content."""
    try:
        from diffmem import world as W
    except ImportError:
        return []
    from diffmem.world.synthetic import SynthClip
    from diffmem.features.motion import describe_motion
    from diffmem.index.motion import MotionIndex
    from diffmem.studies.motion_audit import MotionAuditor

    rng = np.random.default_rng(7)
    cfgw = W.SIZES["small"]
    specs, train = [], []
    for m in W.SIGNATURE_MOTIONS:
        spec = W._random_spec(rng, ("rocket", "bricks", m, ""), cfgw)
        specs.append(spec)
        for d in range(3):
            train.append((f"{m}_dup{d}" if d else m, spec))
    for j in range(24):
        direction = W.DIRECTIONS["pan"][j % 4]
        train.append((f"pan{j}", W._random_spec(rng, (None, W.BACKGROUNDS[j % 6], "pan", direction), cfgw)))
    for j in range(12):
        m = ("linear", "circle", "zigzag", "zoom_in", "zoom_out", "static")[j % 6]
        d = "right" if m == "linear" else ""
        train.append((f"{m}{j}", W._random_spec(rng, (W.SPRITES[j % 6], W.BACKGROUNDS[j % 5], m, d), cfgw)))
    policy = cfg.policy
    index = MotionIndex.create(f"{tmp}/world", policy)
    cache = {}
    for tid, spec in train:
        if spec not in cache:
            cache[spec] = describe_motion(W.render_clip(spec), policy)
    for tid, spec in train:
        index.add(tid, cache[spec])
    index.close()
    groups = {tid: tid.split("_dup")[0] for tid, _ in train}
    gen = []
    for i, spec in enumerate(specs):
        sp = W.load_sprite(spec.sprite, spec.sprite_instance)
        for v in range(3):
            rgb = sp.rgb[..., np.random.default_rng(v).permutation(3)]
            rgb = 1 - rgb if v % 2 else rgb
            bg = W.load_texture(W.BACKGROUNDS[(v + 1) % 6], W.texture_side(spec.size))
            fr = W.render_clip(spec, sprite_override=np.dstack([rgb, sp.alpha]), background_override=bg)
            gen.append(SynthClip(f"{spec.motion}-copy{v}", fr, None, "sprite", "motion", spec.motion, 0))
            if v == 0:
                gen.append(SynthClip(f"{spec.motion}-sub", fr[4:], None, "sprite", "motion", spec.motion, 4))
    for j in range(8):
        direction = W.DIRECTIONS["pan"][j % 4]
        sprite = W.SPRITES[j % 6] if j % 2 else None
        spec = W._random_spec(rng, (sprite, W.BACKGROUNDS[(j + 3) % 6], "pan", direction), cfgw)
        gen.append(SynthClip(f"newpan{j}", W.render_clip(spec), None, "pan"))
    for j in range(4):
        spec = W._random_spec(rng, (W.SPRITES[j], W.BACKGROUNDS[j + 1], "static", ""), cfgw)
        gen.append(SynthClip(f"newstill{j}", W.render_clip(spec), None, "still"))
    auditor = MotionAuditor(index, cfg, groups)
    res = {c.id: auditor.score_frames(c.id, c.frames) for c in gen}
    for c in gen:
        if c.label == "motion":
            r = res[c.id]
            print(f"  world {c.id:16s} OFS-k {r.raw_score:.3f} memorized={r.motion_memorized} "
                  f"offset={r.motion_match.offset if r.motion_match else None} (true {c.offset})")
    return [_pr("world signature", gen, res, groups)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calibrate", action="store_true", help="measure the motion thresholds (a few minutes)")
    ap.add_argument("--compressed", action="store_true",
                    help="also a compressed (IVF1024,Flat) index at 100 000 windows")
    args = ap.parse_args(argv)
    import cv2

    print(f"machine: {os.cpu_count()} CPUs, OpenCV threads {cv2.getNumThreads()}, numpy {np.__version__}")
    if args.calibrate:
        calibrate()
        return 0
    print("\nOptical flow (flow fields per second, one pair of frames each):")
    print(_table(bench_flow()))
    print("\nMotion-index search (NMF neighbour lists, widening from 64; window dim 512; "
          "baseline: one bare matrix product over all windows):")
    print(_table(bench_search(compressed=args.compressed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
