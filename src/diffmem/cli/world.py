"""`diffmem world make OUT [--seed S] [--size tiny|small|medium|large] [--force]`: build the embedded world.
`diffmem world evaluate MODEL --world W --out DIR`: how a model memorizes on it, per prompt group."""
from __future__ import annotations

import sys

from .options import add_threads, count, natural, nonnegative

HELP = "build the synthetic embedded world (captioned clips with known duplicates)"  # shown by `diffmem --help` without importing the library


def register(sub):
    p = sub.add_parser(
        "world", help=HELP,
        description="The embedded world: a captioned video corpus made offline from images bundled in "
                    "scikit-image and scikit-learn, with deliberately duplicated clips and captions, "
                    "ground truth and evaluation prompts.")
    p.set_defaults(_parser=p)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    m = actions.add_parser(
        "make", help="write a world into a folder",
        description="Write videos/, images/, train.parquet (id, path, caption, kind), ground_truth.json, "
                    "prompts.jsonl and summary.json into OUT. The same seed and size always give the same world; "
                    "running again on a finished or interrupted world of the same seed and size completes it.")
    m.add_argument("out", help="output folder (missing, empty, or a world of the same seed and size)")
    m.add_argument("--seed", type=natural, default=0, help="random seed (default 0)")
    m.add_argument("--size", default="small", choices=("tiny", "small", "medium", "large"),
                   help="tiny: 32 px, ~38 files (tests); small: 64 px, 16 frames, ~250 files (default); "
                        "medium: 96 px, ~960 files; large: version 2, 64 px, 1481 files, duplicates rare "
                        "(4.9 %%) and prompt-specific")
    m.add_argument("--force", action="store_true", help="write into a non-empty folder that is not this world")
    m.add_argument("--signature-variants", type=natural, default=None, metavar="N",
                   help="version-2 (large) worlds: N more clips of each signature motion on other trajectories, in "
                        "new appearances, so the motion word names a kind of motion (default: the size's own, 0)")
    m.set_defaults(func=run_make, _parser=m)
    e = actions.add_parser(
        "evaluate", help="how a model memorizes on a world, per prompt group (audit, judge, detection)",
        description="Generate N samples for every prompt of the world's prompts.jsonl (and --unconditional samples "
                    "of the empty prompt), audit them against the world, judge them with the world's judge, and "
                    "score every prompt's magnitudes: per group the share of content-memorized, motion-only and "
                    "right-source motion samples, the judge's sprite and motion rates, and detection AUCs, each "
                    "beside the world-v2 targets. Writes OUT/world_eval.json; running again resumes.")
    e.add_argument("model", help="builtin:tiny-t2v or a `diffmem train` folder")
    e.add_argument("--world", required=True, help="a world folder made by `diffmem world make`")
    e.add_argument("--out", required=True, help="output folder")
    e.add_argument("--n", type=count, default=4, help="samples per prompt (default 4)")
    e.add_argument("--unconditional", type=natural, default=64, help="samples of the empty prompt (default 64)")
    e.add_argument("--seed", type=natural, default=0, help="first seed (default 0)")
    e.add_argument("--steps", type=count, default=25, help="denoising steps (default 25)")
    e.add_argument("--guidance", type=nonnegative, default=3.0, help="classifier-free guidance (default 3, the demo's)")
    e.add_argument("--no-judge", action="store_true", help="skip the world's judge")
    add_threads(e)
    e.set_defaults(func=run_evaluate, _parser=e)
    return p


def run_make(args) -> int:
    from ..world import make_world

    if args.signature_variants is not None and args.size != "large":
        args._parser.error(f"--signature-variants: a version-2 world (--size large) has them, not --size {args.size}")
    summary = make_world(args.out, seed=args.seed, size=args.size, force=args.force, progress=sys.stderr.isatty(),
                         signature_variants=args.signature_variants)
    print(summary.format())
    return 0


def run_evaluate(args) -> int:
    from ..studies.world_eval import evaluate_world_model, format_world_eval

    res = evaluate_world_model(args.model, args.world, args.out, n=args.n, n_unconditional=args.unconditional,
                               seed=args.seed, steps=args.steps, guidance=args.guidance, judge=not args.no_judge,
                               progress=sys.stderr.isatty(), log=lambda m: print(m, file=sys.stderr))
    print(format_world_eval(res))
    return 0
