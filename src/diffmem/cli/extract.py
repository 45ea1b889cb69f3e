"""`diffmem extract MODEL --prompts FILE --train TRAIN_OR_INDEX --n N --out DIR`: the extraction study."""
from __future__ import annotations

import sys

from .options import add_model_loading, add_sample_size, add_threads, count, natural, nonnegative

HELP = "generate, audit and tabulate extracted training items"  # shown by `diffmem --help` without importing the library


def register(sub):
    p = sub.add_parser(
        "extract", help=HELP,
        description="Generate N samples per prompt (seeds SEED..SEED+N-1), audit them against the training set, "
                    "and tabulate how many training items each prompt extracted (content / motion / both), with "
                    "score distributions and an HTML report of extracted clips beside their training originals. "
                    "Writes DIR/extract.parquet (per prompt), samples.parquet (per sample), extract.json, "
                    "labels.jsonl (for `diffmem detect --labels`) and report.html. Running again resumes.")
    p.add_argument("model", metavar="MODEL", help="builtin:tiny-t2v, a `diffmem train` folder or a diffusers pipeline folder")
    p.add_argument("--prompts", required=True, metavar="FILE",
                   help="prompt file: from `diffmem prompts`, a world's prompts.jsonl, Wen et al.'s JSONL, "
                        "Webster's ground-truth parquet, or plain text (one prompt per line)")
    p.add_argument("--train", required=True, metavar="TRAIN_OR_INDEX",
                   help="training set (folder or manifest) or a content index built by `diffmem index build`")
    p.add_argument("--n", type=count, default=4, help="samples per prompt (default 4)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--top", type=count, default=None, metavar="K", help="use only the first K prompts of the file")
    p.add_argument("--seed", type=natural, default=0, help="first seed (default 0)")
    p.add_argument("--steps", type=count, default=25, help="denoising steps (default 25)")
    p.add_argument("--guidance", type=nonnegative, default=7.5, help="classifier-free guidance scale (default 7.5)")
    p.add_argument("--no-motion", dest="motion", action="store_false", help="audit content only")
    p.add_argument("--examples", type=natural, default=12, help="extracted examples shown in the report (default 12)")
    p.add_argument("--batch-size", type=count, default=8, help="samples per denoiser batch (default 8)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local (default), or ray: the generation sweep (prompts x seeds) runs as Ray tasks, one "
                        "model per actor (pip install 'diffmem[ray]')")
    p.add_argument("--address", default=None,
                   help="with --engine ray: the Ray cluster to join; default: start a local Ray")
    add_sample_size(p)
    add_model_loading(p)
    add_threads(p)
    p.set_defaults(func=_run)
    return p


def _run(args) -> int:
    from ..studies.extract import run_extract
    from ..studies.extract_report import format_summary

    s = run_extract(args.model, args.prompts, args.train, args.out, n=args.n, seed=args.seed, steps=args.steps,
                    guidance=args.guidance, top=args.top, motion=args.motion, batch_size=args.batch_size,
                    examples=args.examples, device=args.device, dtype=args.dtype, model_config=args.model_config,
                    progress=sys.stderr.isatty(),
                    log=lambda m: print(m, file=sys.stderr), engine=args.engine, address=args.address,
                    num_frames=args.frames, height=args.height, width=args.width)
    print(format_summary(s))
    print(f"report: {args.out}/report.html")
    return 0
