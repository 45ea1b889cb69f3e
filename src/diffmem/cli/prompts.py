"""`diffmem prompts TRAIN --out FILE`: curate the prompts most prone to trigger memorization."""
from __future__ import annotations

import sys

from .options import add_manifest_options, add_threads, count, manifest_columns, similarity, unit

HELP = "curate memorization-prone prompts from a training set"  # shown by `diffmem --help` without importing the library


def register(sub):
    p = sub.add_parser(
        "prompts", help=HELP,
        description="Curate the prompts most prone to trigger memorization from a captioned training set: "
                    "exact and near-duplicate captions and near-duplicate content, ranked by how often the model "
                    "saw them (or by detection magnitude with --model). Writes a JSONL prompt file with the "
                    "evidence for every prompt, and FILE's stem + .summary.json.")
    p.add_argument("train", metavar="TRAIN", nargs="+",
                   help="training set: folder of media, or CSV/JSONL/Parquet with id, path, caption; with --work, "
                        "one or more caption tables (e.g. the parts of a LAION metadata set)")
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
    w = p.add_argument_group("at scale (--work): caption clusters in shards, for millions of captions")
    w.add_argument("--work", default=None, metavar="DIR",
                   help="curate from the captions only, in shards whose intermediate files go to DIR (resumable; "
                        "memory per task bounded whatever the number of captions); the same prompts as --no-content")
    w.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="with --work: local (a process pool, default) or ray (tasks on a Ray cluster; needs "
                        "pip install 'diffmem[ray]')")
    w.add_argument("--address", default=None, help="with --engine ray: the Ray cluster to join (default: a local Ray)")
    w.add_argument("--workers", type=count, default=None, metavar="N",
                   help="with --work --engine local: processes (default: the CPU count, at most 8)")
    w.add_argument("--shard-rows", type=count, default=None, metavar="N",
                   help="with --work: captions per shard (default 1000000; a task holds one shard, about 0.7 GB)")
    w.add_argument("--partitions", type=count, default=None, metavar="P",
                   help="with --work: link tasks, each one partition of the LSH buckets (default 16)")
    add_manifest_options(p)
    add_threads(p)
    p.set_defaults(func=_run)
    return p


def _run(args) -> int:
    from ..data.prompts import read_prompts
    from ..errors import DiffmemError
    from ..studies.prompts import run_prompts

    if args.work is not None:
        return _run_sharded(args)
    for opt, given in (("--engine ray", args.engine != "local"), ("--address", args.address),
                       ("--workers", args.workers), ("--shard-rows", args.shard_rows), ("--partitions", args.partitions)):
        if given:
            raise DiffmemError(f"{opt} is for the sharded curation: give --work DIR too")
    if len(args.train) > 1:
        raise DiffmemError(f"{len(args.train)} training sets given: several caption tables are curated together "
                           "with --work DIR (sharded, captions only)")
    args.train = args.train[0]
    s = run_prompts(args.train, args.out, content=args.content, descriptor=args.descriptor,
                    caption_threshold=args.caption_threshold, content_threshold=args.content_threshold,
                    min_count=args.min_count, top=args.top, model=args.model, detect_seeds=args.detect_seeds,
                    include_singletons=args.include_singletons, device=args.device, root=args.root,
                    columns=manifest_columns(args))
    entries = read_prompts(args.out) if s["n_prompts"] else []  # an empty file is no prompt list to read back
    print(f"{s['n_prompts']} prompts from {s['n_items']} items ({s['n_skipped']} skipped), ranked by {s['ranking']}")
    _show(args, entries)
    return 0


def _run_sharded(args) -> int:
    from ..data.prompts import read_prompts
    from ..errors import DiffmemError
    from ..studies.caption_shards import PARTITIONS, SHARD_ROWS, run_sharded_prompts

    for opt, given in (("--model", args.model), ("--include-singletons", args.include_singletons),
                       ("--content-threshold", args.content_threshold), ("--root", args.root)):
        if given:
            raise DiffmemError(f"{opt} does not apply to --work (captions only, no media, no model)")
    if args.address and args.engine != "ray":
        raise DiffmemError("--address joins a Ray cluster: it needs --engine ray")
    s = run_sharded_prompts(args.train, args.out, args.work, columns=manifest_columns(args),
                            caption_threshold=args.caption_threshold, min_count=args.min_count, top=args.top,
                            shard_rows=args.shard_rows or SHARD_ROWS, partitions=args.partitions or PARTITIONS,
                            engine=args.engine, workers=args.workers, address=args.address,
                            progress=sys.stderr.isatty())
    entries = read_prompts(args.out) if s["n_prompts"] else []
    print(f"{s['n_prompts']} prompts from {s['n_items']} captions ({s['n_clustered']} in clusters of "
          f"{max(args.min_count, 2)} or more), caption clusters in {s['seconds_clusters']:.1f} s")
    _show(args, entries)
    return 0


def _show(args, entries) -> None:
    from ..studies.prompts import summary_path

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
