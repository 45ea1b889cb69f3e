"""`diffmem demo [--out OUT]`: the whole study, offline, on the embedded world."""
from __future__ import annotations

import sys


def register(sub):
    p = sub.add_parser(
        "demo", help="run the offline demonstration on the embedded world",
        description="Build the embedded world into OUT/world (and, as diffmem grows, train, audit, detect and "
                    "guide on it). Running again resumes.")
    p.add_argument("--out", default="demo-out", help="output folder (default: demo-out)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--size", default="small", choices=("tiny", "small", "medium"), help="world size (default small)")
    p.add_argument("--force", action="store_true", help="replace a world of another seed or size in OUT/world")
    p.set_defaults(func=run, _parser=p)
    return p


def run(args) -> int:
    from ..studies.demo import run_demo

    result = run_demo(args.out, seed=args.seed, size=args.size, force=args.force, progress=sys.stderr.isatty())
    print(result.format())
    return 0
