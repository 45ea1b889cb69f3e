"""`diffmem world make OUT [--seed S] [--size tiny|small|medium] [--force]`: build the embedded world."""
from __future__ import annotations

import sys

from .options import natural

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
    m.add_argument("--size", default="small", choices=("tiny", "small", "medium"),
                   help="tiny: 32 px, ~38 files (tests); small: 64 px, 16 frames, ~250 files (default); "
                        "medium: 96 px, ~960 files")
    m.add_argument("--force", action="store_true", help="write into a non-empty folder that is not this world")
    m.set_defaults(func=run_make, _parser=m)
    return p


def run_make(args) -> int:
    from ..world import make_world

    summary = make_world(args.out, seed=args.seed, size=args.size, force=args.force, progress=sys.stderr.isatty())
    print(summary.format())
    return 0
