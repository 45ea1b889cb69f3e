"""Sampling speed of the built-in tiny model: steps per second and samples per minute on this machine.

    python benchmarks/bench_sampling.py [--model builtin:tiny-t2v] [--steps 25] [--n 16] [--threads N]

Rows (all in the same run, same prompts and seeds):
- batch 1, guidance 7.5  -- the baseline (ratio 1.00);
- batch 8, guidance 7.5  -- what `diffmem generate` does by default;
- batch 8, guidance 1.0  -- no unconditional pass: half the denoiser rows;
- batch 8 + decode only  -- the cost of decoding and writing is not included elsewhere, so it is shown
  apart (decode of N samples from fixed latents).
"steps/s" counts denoising steps of one batch per second; "samples/min" counts finished samples.
Each configuration runs `--repeat` times and keeps the best (least disturbed by other processes).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path


def _prompts(n: int) -> list[str]:
    base = ["a rocket loops over bricks", "a cup grows over gravel", "a cat zigzags across grass",
            "a face moves down across stars", "an astronaut circles over craters", "a digit shrinks over bricks",
            "a picture of a cat on craters", "the camera pans right over grass"]
    return [base[i % len(base)] for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="builtin:tiny-t2v")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--n", type=int, default=16, help="samples per configuration (default 16)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = ap.parse_args()

    import torch

    from diffmem.models import SamplerConfig, load_adapter, sample

    if args.threads:
        torch.set_num_threads(args.threads)
    adapter = load_adapter(args.model, args.device)
    prompts = _prompts(args.n)
    seeds = list(range(args.n))
    rows = []

    def run(label, batch, guidance, decode=False):
        cfg = SamplerConfig(num_steps=args.steps, guidance_scale=guidance)
        best = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            sample(adapter, prompts, seeds, cfg, batch_size=batch, decode=decode, progress=False)
            best = min(best, time.perf_counter() - t0)
        n_batches = -(-args.n // batch)
        rows.append({"config": label, "batch": batch, "guidance": guidance, "seconds": best,
                     "steps_per_s": n_batches * args.steps / best, "samples_per_min": 60 * args.n / best})

    run("batch 1, cfg 7.5 (baseline)", 1, 7.5)
    run("batch 8, cfg 7.5", 8, 7.5)
    run("batch 8, cfg 1.0 (no uncond pass)", 8, 1.0)
    run("batch 8, cfg 7.5, + decode", 8, 7.5, decode=True)

    base = rows[0]["seconds"]
    print(f"model {args.model} ({adapter.kind}, latents {adapter.latent_shape()}), {args.steps} DDIM steps, "
          f"{args.n} samples, device {args.device}, torch threads {torch.get_num_threads()}, "
          f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")
    print(f"{'configuration':38s} {'seconds':>8s} {'steps/s':>8s} {'samples/min':>12s} {'speed vs baseline':>18s}")
    for r in rows:
        print(f"{r['config']:38s} {r['seconds']:8.2f} {r['steps_per_s']:8.2f} {r['samples_per_min']:12.1f} "
              f"{base / r['seconds']:17.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model, "steps": args.steps, "n": args.n, "rows": rows},
                                              indent=2))


if __name__ == "__main__":
    main()
