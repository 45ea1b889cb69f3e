"""What Anti-Memorization Guidance costs, against plain sampling of the same prompts and seeds in the same run.

    python benchmarks/bench_amg.py [--model builtin:tiny-t2v] --world WORLD [--n 2] [--steps 25] [--repeat 2]
    python benchmarks/bench_amg.py --proxy        # the motion proxy's agreement with OFS-k on world clips
    python benchmarks/bench_amg.py --world WORLD --reference [--fps 8]   # building the training reference

WORLD is the world the model was trained on (its train.parquet is the training set AMG compares with;
its prompts.jsonl gives the memorized prompts, group duplicated_video, and the novel ones, group novel).
For each group: seconds per sample without AMG and with full AMG (content + motion channels; measured every
k-th step, and with --guard behind the detection guard), their ratio, and what AMG did (steps triggered, similarity / gradient / extra-denoiser calls per sample).
Plain and AMG runs alternate, `--repeat` times each; the best time of each is reported.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def _prompts(world: Path, group: str, limit: int) -> list[str]:
    out = []
    for line in (world / "prompts.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("group") == group and rec["prompt"] not in out:
            out.append(rec["prompt"])
    return out[:limit]


def _median_ms(fn, repeat: int) -> float:
    import statistics

    fn()  # warm-up
    times = []
    for _ in range(max(repeat, 3)):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def cost_split(adapter, ref, prompts: list[str], steps: int, repeat: int) -> list[tuple[str, float]]:
    """Milliseconds per AMG step for one batch of these prompts, part by part, at the step after the first
    (x0_hat from the CFG noise, as the hook computes it): what a check costs against the denoiser."""
    import torch

    from diffmem.guidance.config import AMGConfig
    from diffmem.guidance.similarity import _flat_frames, motion_proxy, proxy_windows
    from diffmem.models.adapter import predicted_x0

    b = len(prompts)
    sched = adapter.make_scheduler("ddim")
    sched.set_timesteps(steps)
    t = sched.timesteps[1]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b, *adapter.latent_shape(), generator=g)
    with torch.no_grad():
        both = torch.cat([adapter.encode_prompt([""] * b), adapter.encode_prompt(prompts)])
        eps = adapter.predict_noise(torch.cat([x, x]), t, both)
    eps_g = eps[:b] + 3.0 * (eps[b:] - eps[:b])
    abar = adapter.alpha_bar(t)
    content = ref.content_similarity(AMGConfig())
    motion = ref.motion_similarity(AMGConfig()) if ref.n_motion_windows and adapter.kind == "video" else None
    with torch.no_grad():
        frames = adapter.decode(predicted_x0(x, eps_g, abar)).float()
        flat, _, _ = _flat_frames(frames)
        q = content.descriptor.embed(flat).float().numpy()
        pooled = motion_proxy(frames, motion.policy) if motion else None
        win = proxy_windows(pooled, motion.policy.k)[0] if motion else None

    def gradient():
        with torch.enable_grad():
            xg = x.detach().clone().requires_grad_(True)
            fr = adapter.decode(predicted_x0(xg, eps_g, abar)).float()
            total = content.for_gradient(fr).sum()
            if motion is not None:
                total = total + motion(fr)[0].sum()
            torch.autograd.grad(total, xg)

    parts = [
        ("denoiser (CFG, 2 predictions)", lambda: adapter.predict_noise(torch.cat([x, x]), t, both)),
        ("decode x0_hat", lambda: adapter.decode(predicted_x0(x, eps_g, abar))),
        ("descriptor", lambda: content.descriptor.embed(flat)),
        ("content search (every frame, k = 1)", lambda: content.neighbours.search(q, 1)),
        ("content sigma + y_N (descriptor and search included)", lambda: content(frames)),
    ]
    if motion is not None:
        parts += [("motion proxy", lambda: motion_proxy(frames, motion.policy)),
                  ("motion search", lambda: win @ motion.windows.T),
                  ("motion sigma + y_N (proxy and search included)", lambda: motion(frames))]
    parts.append(("gradient of sigma (decode + descriptor + motion + backward)", gradient))
    with torch.no_grad():
        out = [(name, _median_ms(fn, repeat) / b) for name, fn in parts[:-1]]
    out.append((parts[-1][0], _median_ms(parts[-1][1], repeat) / b))
    return out


def reference_cost(world: Path, fps: float, repeat: int) -> None:
    """Seconds to build AMG's training reference (no cache) from the training files, describing every frame,
    against building it from a content index of the same descriptor and rate, which holds those vectors
    (what `diffmem amg evaluate --index` and the demo do); runs alternate, median of `repeat` (at least 3)."""
    import statistics
    import tempfile

    import numpy as np

    from diffmem.guidance.reference import TrainingReference
    from diffmem.index import build_content_index

    with tempfile.TemporaryDirectory(prefix="bench-ref-") as tmp:
        index = Path(tmp) / "index"
        build_content_index(world / "train.parquet", index, fps=fps, progress=False)
        times, refs = {"described": [], "from the index": []}, {}
        for k in range(max(repeat, 3)):
            for name, src in (("described", world), ("from the index", index)):
                t = time.perf_counter()
                refs[name] = TrainingReference.build(src, fps=fps, size=32, cache=Path(tmp) / f"c{k}-{len(times[name])}-{name[0]}",
                                                     motion_index=Path(tmp) / "motion")
                times[name].append(time.perf_counter() - t)
        a, b = refs["described"], refs["from the index"]
        order = {(i, f): r for r, (i, f) in enumerate(zip(a.ids, a.frames_idx))}
        rows = [order[(i, f)] for i, f in zip(b.ids, b.frames_idx)]
        same = len(rows) == len(a.ids) and np.allclose(a.vectors[rows], b.vectors, atol=1e-6)
        med = {k: statistics.median(v) for k, v in times.items()}
        for k, v in med.items():
            print(f"training reference {k:15s} {v:6.2f} s (median of {len(times[k])})")
        print(f"ratio {med['from the index'] / med['described']:.2f}; the same vectors: {same}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="builtin:tiny-t2v")
    ap.add_argument("--world", help="the training world folder (train.parquet, prompts.jsonl)")
    ap.add_argument("--prompts", type=int, default=4, help="prompts per group (default 4)")
    ap.add_argument("--n", type=int, default=2, help="seeds per prompt (default 2)")
    ap.add_argument("--steps", type=int, default=25)
    # 3: where the committed tiny model memorizes most (its checkpoints README); the demo samples there too
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--check-every", default="1,5",
                    help="AMG variants to time: similarity measured every k-th step, comma-separated (default 1,5)")
    ap.add_argument("--guard", default=None, metavar="CALIBRATION",
                    help="also time AMG behind the detection guard (a calibration made with --seeds 1), check every step")
    ap.add_argument("--cache", default=None, help="folder for the training reference cache")
    # 1 by default, as the demo: on 2 cores the small descriptor convolutions ran ~2x slower with 2 threads
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1; 0 = torch's default)")
    ap.add_argument("--proxy", action="store_true", help="measure the motion proxy against OFS-k instead")
    ap.add_argument("--reference", action="store_true",
                    help="time building the training reference from the files against from a content index instead")
    ap.add_argument("--fps", type=float, default=8.0, help="frame rate of the training reference (--reference)")
    ap.add_argument("--split", action="store_true",
                    help="also print the per-step cost of each part of a check (ms per sample), novel prompts")
    args = ap.parse_args()

    if args.proxy:
        from diffmem.world.amg_proxy import proxy_agreement

        t0 = time.perf_counter()
        r = proxy_agreement(3)
        print(json.dumps(r, indent=1))
        print(f"({time.perf_counter() - t0:.1f} s)")
        return
    if not args.world:
        ap.error("--world is required (the model's training world)")
    if args.reference:
        import torch

        torch.set_num_threads(args.threads or torch.get_num_threads())
        reference_cost(Path(args.world), args.fps, args.repeat)
        return

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}")
    from diffmem.guidance.config import AMGConfig
    from diffmem.guidance.reference import TrainingReference, build_amg_hook
    from diffmem.models.registry import load_adapter
    from diffmem.models.sampler import SamplerConfig, sample

    world = Path(args.world)
    adapter = load_adapter(args.model)
    t0 = time.perf_counter()
    ref = TrainingReference.build(world, fps=float(getattr(adapter, "fps", 8.0)), cache=args.cache)
    print(f"training reference: {len(ref.ids)} frames, {ref.n_motion_windows} motion windows "
          f"({time.perf_counter() - t0:.1f} s, cached in {args.cache})")
    cfg = SamplerConfig(num_steps=args.steps, guidance_scale=args.guidance)
    if args.split:
        ps = [p for p in _prompts(world, "novel", args.prompts) for _ in range(args.n)]
        split = cost_split(adapter, ref, ps, args.steps, args.repeat)
        den = split[0][1]
        print(f"per AMG step, batch of {len(ps)}, median of {max(args.repeat, 3)} (ms per sample; ratio to the denoiser)")
        for name, ms in split:
            print(f"  {name:58s} {ms:7.2f} ms  {ms / den:5.2f}x")
    checks: list = [int(k) for k in args.check_every.split(",")]
    if args.guard:
        from diffmem.detect.guard import MemorizationGuard

        MemorizationGuard.from_file(args.guard, model=args.model)  # refused now, not after the plain runs
        checks.append("guard")
    rows = []
    for group in ("duplicated_video", "novel"):
        prompts = _prompts(world, group, args.prompts)
        if not prompts:
            continue
        ps = [p for p in prompts for _ in range(args.n)]
        seeds = [k for _ in prompts for k in range(args.n)]
        best = {"plain": float("inf"), **{k: float("inf") for k in checks}}
        hooks = {}
        for _ in range(args.repeat):  # plain and each AMG variant alternate, so load changes hit all alike
            t = time.perf_counter()
            sample(adapter, ps, seeds, cfg, batch_size=len(ps), progress=False)
            best["plain"] = min(best["plain"], time.perf_counter() - t)
            for k in checks:
                if k == "guard":
                    hooks[k] = build_amg_hook(ref, AMGConfig(), kind=adapter.kind,
                                              pre_switch=MemorizationGuard.from_file(args.guard))
                else:
                    hooks[k] = build_amg_hook(ref, AMGConfig(check_every=k), kind=adapter.kind)
                t = time.perf_counter()
                sample(adapter, ps, seeds, cfg, batch_size=len(ps), hooks=[hooks[k]], progress=False)
                best[k] = min(best[k], time.perf_counter() - t)
        n = len(ps)
        for k in checks:
            h = hooks[k]
            rows.append((group, k, n, best["plain"] / n, best[k] / n, best[k] / best["plain"],
                         sum(h.summary(i)["amg_triggered_steps"] > 0 for i in range(n)),
                         sum(h.summary(i)["amg_triggered_steps"] for i in range(n)) / n,
                         h.stats["similarity_calls"] / n, h.stats["grad_calls"] / n, h.stats["dup_calls"] / n))
    hdr = ("group", "check every", "samples", "plain s/sample", "AMG s/sample", "AMG / plain", "samples triggered",
           "triggered steps/sample", "similarity calls/sample", "gradient calls/sample", "extra denoiser calls/sample")
    print(" | ".join(hdr))
    for r in rows:
        print(" | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in r))


if __name__ == "__main__":
    main()
