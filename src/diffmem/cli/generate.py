"""`diffmem generate MODEL --prompts FILE --n N --seed S --out DIR`: sample videos (or images) for a prompt list.

`--amg` flags (`--amg-c1` ... `--amg-check-every`, `--amg-preset`) map onto `diffmem.guidance.AMGConfig`
(`options.amg_config_from_args`), with its defaults. Library modules are imported when the command runs, so `diffmem --help` stays fast.
"""
from __future__ import annotations

import json
import sys

from .options import (
    add_amg_knobs,
    add_model_loading,
    add_sample_size,
    add_threads,
    amg_config_from_args,
    count,
    natural,
    nonnegative,
    positive,
)

HELP = "generate samples from a model for a prompt list"  # shown by `diffmem --help` without importing the library


def register(sub):
    from ..studies.generate import GenerateConfig

    d = GenerateConfig()
    p = sub.add_parser(
        "generate", help=HELP,
        description="Sample N videos (or images) per prompt with our DDIM/DDPM loop and classifier-free guidance. "
                    "MODEL: builtin:tiny-t2v, builtin:tiny-t2i, a `diffmem train` folder, a local diffusers "
                    "pipeline folder or hub id in the local cache (StableDiffusionPipeline, TextToVideoSDPipeline, "
                    "AnimateDiffPipeline, CogVideoXPipeline), or a single-file .safetensors with --config. "
                    "Writes DIR/samples/, DIR/manifest.parquet (id, path, caption, kind, prompt, group, seed...) and "
                    "DIR/generation.json (all settings). Running again resumes: finished samples are kept.")
    p.add_argument("model", help="builtin:tiny-t2v | builtin:tiny-t2i | a model folder | a hub id | a .safetensors file")
    p.add_argument("--prompts", required=True,
                   help='prompt file: .txt (one per line), .jsonl ("prompt", optional "group" and "id"), .csv or .parquet')
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--n", type=count, default=d.n, help=f"samples per prompt (default {d.n})")
    p.add_argument("--seed", type=natural, default=d.seed, help=f"seed of sample 0; sample k uses seed+k (default {d.seed})")
    p.add_argument("--steps", type=count, default=d.steps, help=f"denoising steps (default {d.steps})")
    p.add_argument("--guidance", type=nonnegative, default=d.guidance, help=f"classifier-free guidance scale (default {d.guidance})")
    p.add_argument("--scheduler", choices=("ddim", "ddpm", "default"), default=d.scheduler,
                   help="ddim (default, deterministic), ddpm, or default (the model's own scheduler class)")
    p.add_argument("--eta", type=nonnegative, default=d.eta, help="DDIM eta (default 0)")
    p.add_argument("--negative-prompt", default=d.negative_prompt, help="unconditional prompt (default empty)")
    add_sample_size(p)
    add_model_loading(p)
    p.add_argument("--fps", type=positive, default=None, help="frame rate of written videos (default: model's, else 8)")
    p.add_argument("--format", default=d.video_format, choices=("mp4", "gif", "webm", "avi", "mov"),
                   help="video container (default mp4; image models write png)")
    p.add_argument("--batch-size", type=count, default=8, help="samples per denoiser batch (default 8)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, or auto")
    add_threads(p, default=None)
    g = p.add_argument_group("Anti-Memorization Guidance (AMG)")
    g.add_argument("--amg", action="store_true",
                   help="guide away from training data while sampling; needs --index. Writes DIR/samples/<id>.amg.json "
                        "(per step: similarity, threshold, which terms fired)")
    g.add_argument("--index", default=None,
                   help="the training set AMG compares with: a content index folder, a manifest, a media folder "
                        "or a world folder")
    g.add_argument("--amg-report", action="store_true",
                   help="also write DIR/amg_report.html: similarity trajectories, frames with and without AMG (same seed)")
    add_amg_knobs(g, prefix="amg-")
    p.set_defaults(func=run, _parser=p)
    return p


def run(args) -> int:
    from ..studies.generate import GenerateConfig, generate

    settings = GenerateConfig(n=args.n, seed=args.seed, steps=args.steps, guidance=args.guidance,
                                scheduler=args.scheduler, eta=args.eta, negative_prompt=args.negative_prompt,
                                num_frames=args.frames, height=args.height, width=args.width, fps=args.fps,
                                video_format=args.format)
    if args.amg or args.amg_report or args.index or args.amg_guard:
        from ..errors import DiffmemError
        from ..studies.amg import generate_with_amg

        if not (args.amg and args.index):
            raise DiffmemError("--amg needs --index (the training set), and --index / --amg-report / --amg-guard need --amg")
        summary = generate_with_amg(args.model, args.prompts, args.out, settings, args.index,
                                    amg=amg_config_from_args(args), preset=args.amg_preset, report=args.amg_report,
                                    batch_size=args.batch_size, device=args.device, dtype=args.dtype,
                                    model_config=args.model_config, guard=args.amg_guard,
                                    progress=sys.stderr.isatty(), log=lambda m: print(m, file=sys.stderr))
    else:
        summary = generate(args.model, args.prompts, args.out, settings, batch_size=args.batch_size,
                           device=args.device, dtype=args.dtype, model_config=args.model_config, progress=sys.stderr.isatty(), log=lambda m: print(m, file=sys.stderr))
    print(json.dumps({k: summary[k] for k in ("n_prompts", "n_samples", "n_generated", "n_already_done", "seconds",
                                              "samples_per_minute")}))
    print(f"wrote {args.out}/manifest.parquet", file=sys.stderr)
    return 0
