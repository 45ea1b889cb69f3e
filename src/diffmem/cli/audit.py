"""`diffmem audit GENERATED TRAIN_OR_INDEX --out OUT`: which generated items copy training data."""
from __future__ import annotations

import sys

from .index import add_descriptor_args
from .options import (add_manifest_options, add_motion_policy, manifest_columns, motion_policy, add_threads, count,
                      positive, similarity)

HELP = "audit generated items against a training set"  # shown by `diffmem --help` without importing the library


def register(sub):
    p = sub.add_parser(
        "audit", help=HELP,
        description="Compare every sampled frame of every generated item with its nearest training frame. "
                    "Writes OUT/audit.parquet (one row per item), OUT/audit.json (config, summary, items, skipped) "
                    "and OUT/report.html. TRAIN_OR_INDEX is a training set (indexed into OUT/train_index first) "
                    "or an index folder from `diffmem index build`. A killed audit resumes.")
    p.add_argument("generated", help="generated items: a folder of media, or a manifest (CSV / JSONL / Parquet)")
    p.add_argument("train_or_index", help="training set (folder or manifest) or a content index folder")
    p.add_argument("--out", required=True, help="output folder")
    add_descriptor_args(p, default=None)
    p.add_argument("--threshold", type=similarity, default=None,
                   help="tau_c (default: the descriptor's: 0.5 for SSCD, the calibrated value for builtin)")
    p.add_argument("--fps", type=positive, default=None,
                   help="frame sampling rate (default: the index's; 8 when a training set is indexed here)")
    p.add_argument("--factory", default="Flat", help="FAISS factory when indexing a training set here (default Flat)")
    p.add_argument("--batch-size", type=count, default=64, help="frames per descriptor batch (default 64)")
    p.add_argument("--no-report", action="store_true", help="skip report.html")
    m = p.add_argument_group("motion memorization (OFS-k with natural motion filtering)")
    m.add_argument("--no-motion", action="store_true", help="content only: skip the motion part")
    add_motion_policy(m)
    m.add_argument("--motion-threshold", type=similarity, default=None, help="tau_m (default 0.9)")
    m.add_argument("--motion-index", default=None,
                   help="motion index folder (built, resumed or extended there; used read-only when complete). "
                        "Default: INDEX/motion_index when TRAIN_OR_INDEX is an index built with --motion (no "
                        "training video is decoded), else OUT/motion_index")
    add_manifest_options(p)
    add_threads(p)
    p.set_defaults(func=run, _parser=p)
    return p


def _motion_config(args):
    if args.no_motion:
        return False
    from dataclasses import replace

    from ..metrics.motion import NMFConfig
    from ..studies.motion_audit import MotionAuditConfig

    nmf = NMFConfig() if args.motion_threshold is None else replace(NMFConfig(), tau_m=args.motion_threshold)
    return MotionAuditConfig(policy=motion_policy(args), nmf=nmf)


def run(args) -> int:
    from ..studies.audit import audit

    motion = _motion_config(args)
    r = audit(args.generated, args.train_or_index, args.out, descriptor=args.descriptor, policy=args.policy,
              sha256=args.sha256, threshold=args.threshold, fps=args.fps, factory=args.factory, device=args.device,
              batch_size=args.batch_size, progress=sys.stderr.isatty(), report=not args.no_report,
              motion=motion, motion_index=args.motion_index, root=args.root,
              columns=manifest_columns(args))
    s = r.summary
    v = s["verdicts"]
    motion_note = "" if not motion else f", {v['motion'] + v['both']} motion-memorized (tau_m {motion.nmf.tau_m:g})"
    print(f"{s['n_audited']} items audited, {s['n_content_memorized']} content-memorized "
          f"(tau_c {s['threshold']:g}){motion_note}; {s['n_skipped_generated']} generated and {s['n_skipped_train']} "
          f"training items skipped; results in {args.out}")
    for k in r.skipped:
        print(f"  skipped ({k.get('set')}) {k.get('id')}: {k.get('reason')}", file=sys.stderr)
    return 0
