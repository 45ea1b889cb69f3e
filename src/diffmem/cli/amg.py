"""`diffmem amg evaluate MODEL --prompts FILE --index INDEX --out DIR`: AMG's table, with and without AMG.

The flags map onto `diffmem.guidance.AMGConfig` (`amg_config_from_args`); their defaults are its defaults.
Library modules are imported when the command runs, so `diffmem --help` stays fast.
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
)

HELP = "evaluate Anti-Memorization Guidance against plain sampling"  # shown by `diffmem --help` without importing the library


def register(sub):
    from ..studies.amg import DEFAULT_VARIANTS, OTHER_VARIANTS, VARIANTS, EvalConfig

    p = sub.add_parser("amg", help=HELP,
                       description="Anti-Memorization Guidance (AMG): evaluate it on a prompt list.")
    p.set_defaults(_parser=p)
    acts = p.add_subparsers(dest="action", metavar="ACTION")
    e = acts.add_parser(
        "evaluate", help="run the same prompts and seeds with and without AMG (and each ablation); write the table",
        description="Generate every prompt with the same seeds as plain CFG (baseline), with each AMG term alone "
                    "(spe, dup, sim), with full AMG, and optionally always-on AMG; then measure content "
                    "memorization (Top-5 %, Top-1, % above tau_c), motion memorization (OFS-k with natural motion "
                    "filtering), the quality distance to the training frames (FID with --inception, else a Frechet "
                    "distance in the built-in descriptor space, named FD-builtin) and text alignment (CLIP score "
                    "with --clip, else on the embedded world whether the clip shows the captioned sprite and motion). "
                    "Writes DIR/amg_table.{json,parquet}, DIR/amg_samples.parquet, DIR/amg_report.html and "
                    "DIR/variants/<name>/ (resumable).")
    d = EvalConfig()
    e.add_argument("model", help="builtin:tiny-t2v | builtin:tiny-t2i | a model folder")
    e.add_argument("--prompts", required=True, help="prompt file (.jsonl with prompt/group, .txt, .csv, .parquet)")
    e.add_argument("--index", required=True,
                   help="the training set: a content index folder (`diffmem index`), a manifest "
                        "(.parquet/.csv/.jsonl), a media folder, or a world folder")
    e.add_argument("--out", required=True, help="output folder")
    e.add_argument("--n", type=count, default=d.n, help=f"samples per prompt (default {d.n})")
    e.add_argument("--seed", type=natural, default=d.seed, help=f"seed of sample 0; sample k uses seed+k (default {d.seed})")
    e.add_argument("--steps", type=count, default=d.steps, help=f"denoising steps (default {d.steps})")
    e.add_argument("--guidance", type=nonnegative, default=d.guidance, help=f"CFG scale s0 (default {d.guidance})")
    e.add_argument("--scheduler", choices=("ddim", "ddpm"), default=d.scheduler,
                   help="the sampler of every variant (default ddim; ddpm for amg-iddpm-2024)")
    e.add_argument("--ablations", nargs="*", default=None, metavar="VARIANT", choices=[*VARIANTS, *OTHER_VARIANTS],
                   help=f"variants to run on the same prompts and seeds (default: {' '.join(DEFAULT_VARIANTS)}; also: "
                        f"always, amg-sd-2024 and amg-iddpm-2024 (AMG as its authors' code runs it), and the other "
                        f"mitigations {' '.join(OTHER_VARIANTS)})")
    add_amg_knobs(e.add_argument_group("AMG (diffmem's full and single-term variants)"), preset=False)
    e.add_argument("--inception", default=None, help="local TorchScript Inception file: report FID")
    e.add_argument("--inception-sha256", default=None, metavar="HEX",
                   help="the Inception file's expected sha256 (refused before sampling if it differs)")
    e.add_argument("--clip", default=None, help="local CLIP folder (transformers): report CLIP score")
    e.add_argument("--batch-size", type=count, default=d.batch_size, help=f"samples per batch (default {d.batch_size})")
    e.add_argument("--device", default="cpu", help="cpu (default), cuda, or auto")
    add_sample_size(e)
    add_model_loading(e)
    add_threads(e)
    e.set_defaults(func=run_evaluate, _parser=e)
    return p


def run_evaluate(args) -> int:
    from ..studies.amg import DEFAULT_VARIANTS, EvalConfig, evaluate_amg

    cfg = EvalConfig(n=args.n, seed=args.seed, steps=args.steps, guidance=args.guidance, scheduler=args.scheduler,
                     variants=tuple(args.ablations or DEFAULT_VARIANTS), batch_size=args.batch_size,
                     amg=amg_config_from_args(args), num_frames=args.frames, height=args.height, width=args.width)
    result = evaluate_amg(args.model, args.prompts, args.index, args.out, cfg, inception=args.inception,
                          inception_sha256=args.inception_sha256, clip=args.clip, device=args.device, dtype=args.dtype,
                          model_config=args.model_config, guard=args.amg_guard, progress=sys.stderr.isatty(),
                          log=lambda m: print(m, file=sys.stderr))
    for row in result["table"]:
        print(json.dumps({k: v for k, v in row.items() if v is not None}))
    print(f"wrote {args.out}/amg_table.json and {args.out}/amg_report.html", file=sys.stderr)
    return 0
