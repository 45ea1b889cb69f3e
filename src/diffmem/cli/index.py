"""`diffmem index build TRAIN --out INDEX` and `diffmem index info INDEX`: the content index of a training set."""
from __future__ import annotations

import json
import sys

from .options import add_manifest_options, add_motion_policy, manifest_columns, motion_policy, add_threads, count, positive


def add_descriptor_args(p, *, default: str | None = "builtin") -> None:
    """--descriptor / --policy / --sha256 / --device, shared with `diffmem audit`."""
    from ..features import DESCRIPTOR_SPECS
    from ..features.policy import SSCD_POLICIES

    shown = default or "the index's own, else builtin"
    p.add_argument("--descriptor", default=default, metavar="SPEC",
                   help=f"copy descriptor: {DESCRIPTOR_SPECS} "
                        f"(default: {shown}). sscd takes a TorchScript file, "
                        "a known checkpoint name (e.g. sscd_disc_mixup, downloaded into the cache) or a URL")
    p.add_argument("--policy", default=None, choices=sorted(SSCD_POLICIES),
                   help="SSCD preprocessing policy (default sscd-official: short side 288, ImageNet normalisation; "
                        "legacy-dcr / legacy-amg reproduce published numbers)")
    p.add_argument("--sha256", default=None, help="expected sha256 of the model file; a mismatch is an error")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")


HELP = "build a nearest-neighbour index of a training set"  # shown by `diffmem --help` without importing the library


def register(sub):
    p = sub.add_parser(
        "index", help=HELP,
        description="The content index: a copy-detection descriptor of every sampled frame of every training "
                    "video and image (FAISS), with Parquet metadata (item_id, frame, timestamp, caption, path).")
    p.set_defaults(_parser=p)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    b = actions.add_parser(
        "build", help="index a training set (resumes / extends an existing index)",
        description="Index every frame of TRAIN sampled at --fps into the folder INDEX: index.json (policy, "
                    "fingerprint, counts, skipped items), shards/*.npy (exact vectors) + shards/*.parquet "
                    "(metadata), and faiss.index for compressed factories. Running again on the same INDEX "
                    "resumes a killed build or adds the items it does not hold yet; a different descriptor "
                    "policy is refused.")
    b.add_argument("train", help="training set: a folder of media, or a CSV / JSONL / Parquet manifest (id, path, caption)")
    b.add_argument("--out", required=True, help="index folder (new, or an index to resume / extend)")
    add_descriptor_args(b)
    b.add_argument("--fps", type=positive, default=8.0,
                   help="sample frames at this rate (default 8; the audit samples generated items at the same rate)")
    b.add_argument("--factory", default="Flat",
                   help="FAISS factory string (default Flat = exact). For large sets e.g. 'IVF4096,Flat', "
                        "'IVF4096,PQ32', 'HNSW32,Flat'; candidates are re-ranked exactly before any threshold")
    b.add_argument("--batch-size", type=count, default=64, help="frames per descriptor batch (default 64)")
    b.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local (default): this process. ray: descriptor extraction on Ray Data actors (one model "
                        "per actor; each actor gets a GPU when the cluster has GPUs), compressed "
                        "indexes encoded shard by shard; the same index as local. Needs pip install 'diffmem[ray]'")
    b.add_argument("--address", default=None,
                   help="with --engine ray: the Ray cluster to join (e.g. auto, ray://host:10001); default: start a "
                        "local Ray for this build")
    m = b.add_argument_group("motion (--motion)")
    m.add_argument("--motion", action="store_true",
                   help="also index the training videos' motion windows (optical flow, OFS-k) into INDEX/motion_index, "
                        "once: every `diffmem audit` against INDEX then uses it and decodes no training video")
    add_motion_policy(m, fps=True)
    add_threads(b)
    add_manifest_options(b)
    b.set_defaults(func=run_build, _parser=b)
    i = actions.add_parser("info", help="describe an index", description="Print an index's counts, policy and settings as JSON.")
    i.add_argument("index", help="index folder")
    i.set_defaults(func=run_info, _parser=i)
    return p


def run_build(args) -> int:
    from ..errors import DiffmemError
    from ..index import build_content_index

    train = args.train
    columns = manifest_columns(args)
    if args.root or columns is not None:
        from ..data.manifest import load_manifest

        train = load_manifest(args.train, root=args.root, columns=columns)
    if args.engine == "ray":
        from ..index.ray_engine import build_content_index_ray

        # --device cpu is also the default: on Ray it means "GPU actors if the cluster has GPUs"
        rep = build_content_index_ray(train, args.out, descriptor=args.descriptor, policy=args.policy,
                                      sha256=args.sha256, fps=args.fps, factory=args.factory,
                                      device=None if args.device == "cpu" else args.device,
                                      batch_size=args.batch_size, progress=sys.stderr.isatty(), address=args.address)
    elif args.address:
        raise DiffmemError("--address joins a Ray cluster: it needs --engine ray")
    else:
        rep = build_content_index(train, args.out, descriptor=args.descriptor, policy=args.policy,
                                  sha256=args.sha256, fps=args.fps, factory=args.factory, device=args.device,
                                  batch_size=args.batch_size, progress=sys.stderr.isatty())
    d = rep.as_dict()
    print(f"{args.out}: {d['n_vectors']} frames of {rep.index.meta.get('n_items', 0)} items "
          f"({d['added']} added now, {d['already']} already there, {len(d['skipped'])} skipped, "
          f"{len(d['truncated'])} truncated); "
          f"policy {rep.index.policy.get('name')} ({rep.index.fingerprint})")
    for s in d["skipped"]:
        print(f"  skipped {s['id']}: {s['path']}: {s['reason']}", file=sys.stderr)
    for i in d["truncated"]:
        print(f"  truncated {i}: indexed from the frames that decoded", file=sys.stderr)
    if args.motion:
        _build_motion(args, rep.index)
    return 0


def _build_motion(args, content_index) -> None:
    from ..index import build_motion_index_beside

    index, skipped = build_motion_index_beside(content_index, motion_policy(args), progress=sys.stderr.isatty(),
                                               engine=args.engine, address=args.address)
    print(f"{index.folder}: {len(index)} motion windows of {len(index.train_ids)} videos ({len(skipped)} left out); "
          f"policy {index.policy.name} at {index.policy.fps:g} fps ({index.policy.fingerprint})")
    for s in skipped:
        print(f"  motion: left out {s.id}: {s.reason}", file=sys.stderr)


def run_info(args) -> int:
    from ..index import VectorIndex

    print(json.dumps(VectorIndex.open(args.index).describe(), indent=2, default=str))
    return 0
