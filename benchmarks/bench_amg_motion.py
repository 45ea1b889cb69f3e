"""AMG's motion channel on a model that motion-memorizes: before -> after, with counts (mitigations issue).

    python benchmarks/bench_amg_motion.py --world W [--n 2] [--out DIR] [--cache DIR]

The trained built-in models never reproduce a signature trajectory in a new appearance (README, "The
embedded world"), so the motion channel cannot be shown on them. This benchmark uses a hand-built denoiser
that does, by construction: for each of the world's motion-memorization prompts (role "memorized": an
appearance B seen in training, with the signature motion of another appearance A) it predicts

    x0(x_t, p) = (1 - k) R_p / s0 + k x_t / sqrt(abar_t),   k = abar_t^32,

R_p the world's own rendering of B moving along the signature's exact trajectory (`render_clip` of the
signature clip's spec with B's sprite and background), first second, at the tiny video model's 32 px and
8 fps; eps follows from x0. It returns its memorized clip until the last steps, where it keeps what the
sample has become (k = abar^32: with the tests' abar^2 the noise in x_t leaks into the result, RMS 0.57
from R_p on clips of RMS 0.32; with abar^32 plain sampling lands within 0.09 of R_p). Every other prompt (and "") predicts a grey clip (0), so
classifier-free guidance at the benchmark's scale s0 = 3 gives exactly R_p.

`diffmem amg evaluate` then runs on those prompts: plain CFG, full AMG (content + motion channels,
diffmem's default configuration) and AMG without the motion channel, same seeds; the motion audit (OFS-k
with natural motion filtering against the world's training clips) counts the samples whose motion copies a
training clip (`all_motion_memorized_pct`) and whose content does not (motion-only).
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

GUIDANCE = 3.0
TRUST = 32


def _oracle(world: Path, size: int = 32, frames: int = 8):
    from diffmem.io.video import resize_frames
    from diffmem.models.adapter import DenoiserAdapter
    from diffmem.world import item_specs, render_clip

    specs = item_specs(world)
    prompts = [json.loads(line) for line in (world / "prompts.jsonl").read_text().splitlines() if line.strip()]
    chosen = [p for p in prompts if p["group"] == "motion_memorization" and p.get("role") == "memorized"]
    patterns = {}
    for p in chosen:
        sig = specs[p["train_ids"][0]]  # a clip of the signature motion (its trajectory is the same in all)
        clip = render_clip(replace(sig, sprite=p["sprite"], background=p["background"]))
        step = max(1, round(sig.fps / 8.0))
        fr = resize_frames(clip[::step][:frames], (size, size)).astype(np.float32) / 255.0
        patterns[p["prompt"]] = torch.from_numpy(fr).permute(3, 0, 1, 2) * 2 - 1  # (3, F, S, S) in [-1, 1]
    shape = (3, frames, size, size)

    class MotionMemorizer(DenoiserAdapter):
        kind, space, name, fps = "video", "pixel", "bench:motion-memorizer", 8.0

        @property
        def device(self):
            return torch.device("cpu")

        def encode_prompt(self, texts):
            zero = torch.zeros(shape)
            return torch.stack([patterns.get(t, zero) / GUIDANCE for t in texts]).flatten(1)

        def predict_noise(self, latents, t, embeddings):
            m = embeddings.reshape(-1, *shape).expand(latents.shape[0], *shape)
            a = self.alpha_bar(t)
            k = a ** TRUST
            x0 = (1 - k) * m + k * latents / math.sqrt(a)
            return (latents - math.sqrt(a) * x0) / math.sqrt(1 - a)

        def decode(self, latents):
            return ((latents + 1) / 2).clamp(0, 1).permute(0, 2, 3, 4, 1)

        def latent_shape(self, num_frames=None, height=None, width=None):
            return shape

        def scheduler_config(self):
            return {"num_train_timesteps": 1000, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
                    "beta_end": 0.012, "clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1}

    return MotionMemorizer(), chosen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", required=True, help="a large world folder (`diffmem world make W --size large`)")
    ap.add_argument("--n", type=int, default=2, help="seeds per prompt")
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--out", default="bench-amg-motion")
    ap.add_argument("--cache", default=None, help="a training reference cache to reuse (an `amg evaluate` DIR/cache)")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from diffmem.guidance.config import AMGConfig
    from diffmem.studies.amg import EvalConfig, evaluate_amg

    world, out = Path(args.world), Path(args.out)
    adapter, chosen = _oracle(world)
    out.mkdir(parents=True, exist_ok=True)
    prompts = out / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(p) + "\n" for p in chosen))
    rows = {}
    for name, amg in (("with-motion", AMGConfig()), ("content-only", AMGConfig(motion=False))):
        run = out / name
        if args.cache and not (run / "cache").exists():
            shutil.copytree(args.cache, run / "cache")
        variants = ("baseline", "full") if name == "with-motion" else ("full",)
        res = evaluate_amg(adapter, prompts, world, run, EvalConfig(n=args.n, seed=args.seed, steps=25, guidance=GUIDANCE,
                                                                    variants=variants, amg=amg))
        for r in res["table"]:
            rows[f"{r['variant']} ({name})" if r["variant"] != "baseline" else "baseline"] = r
        import pandas as pd

        s = pd.read_parquet(run / "amg_samples.parquet")
        for v, g in s.groupby("variant"):
            key = f"{v} ({name})" if v != "baseline" else "baseline"
            rows[key]["counts"] = {"samples": len(g), "motion": int(g["motion_memorized"].fillna(False).sum()),
                                   "motion_only": int((g["motion_memorized"].fillna(False)
                                                       & ~g["content_memorized"].fillna(False)).sum()),
                                   "content": int(g["content_memorized"].fillna(False).sum())}
    print(f"{len(chosen)} motion-memorization prompts x {args.n} seeds ({args.seed}...), 25 DDIM steps, guidance 3")
    print("variant | motion-memorized | motion-only | content-memorized | FD-builtin | aligned % | triggered steps/sample")
    for k, r in rows.items():
        c = r.get("counts", {})
        print(f"{k} | {c.get('motion')}/{c.get('samples')} | {c.get('motion_only')}/{c.get('samples')} | "
              f"{c.get('content')}/{c.get('samples')} | {r.get('quality', float('nan')):.3f} | "
              f"{r.get('aligned_pct', float('nan')):.1f} | {r.get('mean_triggered_steps', 0) or 0:.2f}")
    (out / "summary.json").write_text(json.dumps(rows, indent=2, default=str))


if __name__ == "__main__":
    main()
