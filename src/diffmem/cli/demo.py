"""`diffmem demo [--out OUT]` (what `make demo` runs): the whole study, offline, on the embedded world."""
from __future__ import annotations

import sys

from .options import add_threads, count, natural, nonnegative

HELP = "run the whole study offline on the embedded world (start here)"  # shown by `diffmem --help` without importing the library


def register(sub):
    p = sub.add_parser(
        "demo", help=HELP,
        description="Build the embedded world (captioned clips with known duplicates) and its index, curate "
                    "memorization-prone prompts, extract training clips from the committed tiny text-to-video "
                    "model, audit them, detect memorized prompts at inference time, and mitigate with "
                    "Anti-Memorization Guidance; print a summary table and write OUT/report.html. "
                    "Everything runs on a CPU in a few minutes; running again resumes.")
    p.add_argument("--out", default="demo-out", help="output folder (default: demo-out)")
    p.add_argument("--seed", type=natural, default=0, help="random seed of the world and the samples (default 0)")
    p.add_argument("--size", default=None, choices=("tiny", "small", "medium", "large"),
                   help="world size (default: the one the model was trained on; large, the version-2 world, for "
                        "builtin:tiny-t2v-large, small for builtin:tiny-t2v)")
    p.add_argument("--model", default="builtin:tiny-t2v-large",
                   help="model (default builtin:tiny-t2v-large; builtin:tiny-t2v is the version-1 world's)")
    p.add_argument("--n", type=count, default=4, help="samples per prompt in the extraction study (default 4)")
    p.add_argument("--amg-n", type=count, default=2, help="samples per prompt in the AMG stage (default 2)")
    p.add_argument("--novel", type=natural, default=8, metavar="K",
                   help="novel prompts of the world added as controls (default 8)")
    p.add_argument("--top", type=count, default=None, metavar="K",
                   help="use only the top K curated prompts (default: all; 12 on the large world)")
    p.add_argument("--steps", type=count, default=None, help="denoising steps (default 25)")
    p.add_argument("--guidance", type=nonnegative, default=None,
                   help="classifier-free guidance scale (default 3: where the tiny model memorizes most cleanly)")
    p.add_argument("--no-amg", dest="amg", action="store_false", help="skip the AMG stage (the slowest)")
    p.add_argument("--force", action="store_true",
                   help="replace a world of another seed or size, and redo the model's stages (these are redone "
                        "anyway when the model or its settings changed)")
    add_threads(p, default=1)
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    p.set_defaults(func=run, _parser=p)
    return p


def run(args) -> int:
    from ..studies.demo import run_demo

    log = None if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    result = run_demo(args.out, seed=args.seed, size=args.size, model=args.model, n=args.n, top=args.top,
                      novel=args.novel, steps=args.steps, guidance=args.guidance,
                      amg=args.amg, amg_n=args.amg_n, force=args.force,
                      progress=sys.stderr.isatty() and not args.quiet, log=log)
    print(result.format())
    failed = [s.name for s in result.stages if s.status == "failed"]
    return 1 if failed or result.world is None else 0
