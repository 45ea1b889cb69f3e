"""`diffmem prompts TRAIN --out FILE`: curate the prompts most prone to trigger memorization."""
from __future__ import annotations

from .options import add_manifest_options, add_threads, count, manifest_columns, similarity, unit

HELP = "curate memorization-prone prompts from a training set"  # shown by `diffmem --help` without importing the library


def register(sub):
    p = sub.add_parser(
        "prompts", help=HELP,
        description="Curate the prompts most prone to trigger memorization from a captioned training set: "
                    "exact and near-duplicate captions and near-duplicate content, ranked by how often the model "
                    "saw them (or by detection magnitude with --model). Writes a JSONL prompt file with the "
                    "evidence for every prompt, and FILE's stem + .summary.json.")
    p.add_argument("train", metavar="TRAIN", help="training set: folder of media, or CSV/JSONL/Parquet with id, path, caption")
    p.add_argument("--out", required=True, metavar="FILE", help="prompt file to write (JSONL)")
    p.add_argument("--top", type=count, default=None, metavar="N", help="keep the N best prompts (default: all candidates)")
    p.add_argument("--min-count", type=count, default=2, metavar="K",
                   help="a cluster needs at least K items to propose a prompt (default 2)")
    p.add_argument("--caption-threshold", type=unit, default=0.8, metavar="J",
                   help="character 4-gram Jaccard at which two captions are near-duplicates (default 0.8; 1 = exact only)")
    p.add_argument("--no-content", dest="content", action="store_false",
                   help="use captions only (do not read the media to find near-duplicate content)")
    p.add_argument("--descriptor", default="builtin", help="content descriptor (default builtin)")
    p.add_argument("--content-threshold", type=similarity, default=None, metavar="TAU",
                   help="item similarity above which two items are near-duplicate content (default: the descriptor's tau_c)")
    p.add_argument("--model", default=None, help="rank by this model's detection magnitude (e.g. builtin:tiny-t2v)")
    p.add_argument("--detect-seeds", type=count, default=2, metavar="N", help="seeds per prompt for --model (default 2)")
    p.add_argument("--include-singletons", action="store_true",
                   help="with --model: also score the caption of every non-duplicated item")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    add_manifest_options(p)
    add_threads(p)
    p.set_defaults(func=_run)
    return p


def _run(args) -> int:
    from ..data.prompts import read_prompts
    from ..studies.prompts import run_prompts, summary_path

    s = run_prompts(args.train, args.out, content=args.content, descriptor=args.descriptor,
                    caption_threshold=args.caption_threshold, content_threshold=args.content_threshold,
                    min_count=args.min_count, top=args.top, model=args.model, detect_seeds=args.detect_seeds,
                    include_singletons=args.include_singletons, device=args.device, root=args.root,
                    columns=manifest_columns(args))
    entries = read_prompts(args.out) if s["n_prompts"] else []  # an empty file is no prompt list to read back
    print(f"{s['n_prompts']} prompts from {s['n_items']} items ({s['n_skipped']} skipped), ranked by {s['ranking']}")
    if not entries:
        print(f"  no caption or content cluster has {args.min_count} items (--min-count); to rank every caption, "
              "give --model MODEL --include-singletons")
    for e in entries[:10]:
        ev = e.evidence
        extra = f" magnitude={ev['magnitude']:.4g}" if ev.get("magnitude") is not None else ""
        print(f"  {ev['rank']:>3}. both={ev['n_both']} content={ev['n_content']} caption={ev['n_caption']}{extra}"
              f"  {e.prompt[:70]!r}  [{', '.join(ev['reasons'])}]")
    if len(entries) > 10:
        print(f"  ... {len(entries) - 10} more")
    print(f"wrote {args.out} and {summary_path(args.out)}")
    return 0
