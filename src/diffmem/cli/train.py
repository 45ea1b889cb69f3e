"""`diffmem train WORLD --out CKPT`: train a built-in tiny text-to-video (or text-to-image) model on a CPU."""
from __future__ import annotations

import json
import shlex
import sys

from .options import add_threads, count, natural, nonnegative, positive

HELP = "train a built-in tiny diffusion model on a world"  # shown by `diffmem --help` without importing the library


def register(sub):
    from ..models.train import TrainConfig

    d = TrainConfig()
    p = sub.add_parser(
        "train", help=HELP,
        description="Train the built-in tiny latent diffusion model (frame autoencoder, word-level text encoder, "
                    "(2+1)D conv denoiser) on a world folder (its train.parquet) or any manifest. Writes CKPT/config.json "
                    "and CKPT/model.safetensors; resumes from CKPT/train_state.pt after an interruption "
                    "(run the same command again).")
    p.add_argument("world", help="a world folder (made by `diffmem world make`) or a manifest (csv/jsonl/parquet/folder)")
    p.add_argument("--out", required=True, help="checkpoint folder to write")
    p.add_argument("--kind", choices=("video", "image"), default=d.kind,
                   help="video: text-to-video (default); image: the text-to-image twin")
    p.add_argument("--seed", type=natural, default=d.seed, help=f"random seed (default {d.seed})")
    p.add_argument("--steps", type=count, default=d.steps, help=f"denoiser training steps (default {d.steps})")
    p.add_argument("--latent-channels", type=count, default=d.latent_channels,
                   help=f"autoencoder latent channels per 4x4 patch, at most 48 (default {d.latent_channels})")
    p.add_argument("--batch-size", type=count, default=d.batch, help=f"denoiser batch (default {d.batch})")
    p.add_argument("--lr", type=positive, default=d.lr, help=f"peak learning rate (default {d.lr})")
    p.add_argument("--channels", default=",".join(map(str, d.channels)),
                   help=f"denoiser widths at the two resolutions (default {','.join(map(str, d.channels))})")
    p.add_argument("--size", type=count, default=d.size, help=f"frame side in pixels (default {d.size})")
    p.add_argument("--frames", type=count, default=d.frames, help=f"frames per clip (default {d.frames})")
    p.add_argument("--fps", type=positive, default=None,
                   help="read each video's first --frames frames at this rate (default: --frames frames spread over "
                        "the whole video); the model then makes clips at this rate")
    p.add_argument("--motion-weight", type=nonnegative, default=d.motion_weight, metavar="W",
                   help="count the moving parts of each clip (1 + W x their motion relative to the clip's mean) "
                        "times in the loss; 0 is plain MSE (default 0)")
    p.add_argument("--full-xattn", action="store_true",
                   help="cross-attention at the full latent resolution too (where words put things frame by frame); "
                        "may be added to an --init model without it")
    p.add_argument("--self-attn", action="store_true",
                   help="joint space-time self-attention at both latent resolutions (frame f can find where things "
                        "were in frame f-1 anywhere); may be added to an --init model without it")
    p.add_argument("--init", default=None, metavar="CKPT",
                   help="continue from this finished model folder (same architecture and captions) for --steps more "
                        "steps, with a fresh learning-rate schedule (default: train from scratch)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, or auto")
    add_threads(p, default=None)
    p.add_argument("--quiet", action="store_true", help="no progress bar; a log line every 100 steps instead")
    p.set_defaults(func=run, _parser=p)
    return p


def run(args) -> int:

    from ..device import resolve_device
    from ..errors import DiffmemError
    from ..models.train import TrainConfig, train_tiny

    try:
        channels = tuple(int(c) for c in args.channels.split(","))
    except ValueError:
        raise DiffmemError(f"--channels must be two integers like 48,96, got {args.channels!r}") from None
    if len(channels) != 2:
        raise DiffmemError(f"--channels must be two integers like 48,96, got {args.channels!r}")
    if args.size % 4:
        raise DiffmemError(f"--size must be a multiple of 4, got {args.size}")
    cfg = TrainConfig(kind=args.kind, seed=args.seed, steps=args.steps, latent_channels=args.latent_channels, batch=args.batch_size,
                      lr=args.lr, channels=channels, size=args.size, frames=args.frames,
                      fps=args.fps, full_xattn=args.full_xattn, self_attn=args.self_attn, motion_weight=args.motion_weight)
    command = "diffmem " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["train"] else None
    summary = train_tiny(args.world, args.out, cfg, device=resolve_device(args.device),
                         progress=not args.quiet and sys.stderr.isatty(),
                         log=lambda m: print(m, file=sys.stderr), command=command, init=args.init)
    print(json.dumps({k: summary[k] for k in ("n_training_clips", "final_loss", "seconds", "parameters") if k in summary}))
    return 0
