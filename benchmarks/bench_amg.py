"""What Anti-Memorization Guidance costs, against plain sampling of the same prompts and seeds in the same run.

    python benchmarks/bench_amg.py [--model builtin:tiny-t2v] --world WORLD [--n 2] [--steps 25] [--repeat 2]
    python benchmarks/bench_amg.py --proxy        # the motion proxy's agreement with OFS-k on world clips

WORLD is the world the model was trained on (its train.parquet is the training set AMG compares with;
its prompts.jsonl gives the memorized prompts, group duplicated_video, and the novel ones, group novel).
For each group: seconds per sample without AMG and with full AMG (content + motion channels), their
ratio, and what AMG did (steps triggered, similarity / gradient / extra-denoiser calls per sample).
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
    ap.add_argument("--cache", default=None, help="folder for the training reference cache")
    # 1 by default, as the demo: on 2 cores the small descriptor convolutions ran ~2x slower with 2 threads
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1; 0 = torch's default)")
    ap.add_argument("--proxy", action="store_true", help="measure the motion proxy against OFS-k instead")
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

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}")
    from diffmem.models.registry import load_adapter
    from diffmem.models.sampler import SamplerConfig, sample
    from diffmem.guidance.config import AMGConfig
    from diffmem.guidance.reference import TrainingReference, build_amg_hook

    world = Path(args.world)
    adapter = load_adapter(args.model)
    t0 = time.perf_counter()
    ref = TrainingReference.build(world, fps=float(getattr(adapter, "fps", 8.0)), cache=args.cache)
    print(f"training reference: {len(ref.ids)} frames, {ref.n_motion_windows} motion windows "
          f"({time.perf_counter() - t0:.1f} s, cached in {args.cache})")
    cfg = SamplerConfig(num_steps=args.steps, guidance_scale=args.guidance)
    checks = [int(k) for k in args.check_every.split(",")]
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
