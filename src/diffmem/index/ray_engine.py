"""The Ray engine: `diffmem index build --engine ray` spreads descriptor extraction over a Ray cluster.

Same result as the local engine (`content.build_content_index`): the same `VectorIndex` folder, the
same vector ids in the same order, the same metadata rows, descriptors equal up to float rounding,
the same compressed FAISS index. Only who computes changes:

1. The manifest's items are cut into tasks of `items_per_task` consecutive items.
2. Ray Data runs the tasks as `map_batches` over an actor pool, one descriptor model per actor (a GPU
   per actor when the cluster has GPUs). Each task reads its media, samples frames by timestamp,
   describes them, and writes its result atomically to OUT/.ray_staging/ (vectors .npy, rows
   .parquet, then a .json that marks it complete).
3. The driver commits finished tasks into the index *in manifest order* through the same
   `VectorIndex.add` the local engine uses, so shards, ids and metadata are identical.
4. A compressed factory (IVF-PQ...) is trained on the same sample and encoded shard by shard as Ray
   tasks, then merged (`sharded.build_compressed`).

Resume: items already in the index are not redone; tasks whose staged result exists are committed
without recomputing; so a killed build loses at most the tasks that were running. Staging is
removed when the build completes.

Ray is an optional dependency (`pip install 'diffmem[ray]'`). Without `address`, a local Ray is
started for the build and stopped after it; with one, the build joins that cluster (every node needs
diffmem installed and the media and OUT on a shared filesystem at the same paths).
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import faiss
import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..data.manifest import Manifest, load_manifest
from ..errors import BadInputError, DiffmemError, Skipped
from ..features import load_descriptor
from ..io.atomic import atomic_output
from ..io.lock import writes_folder
from ..io.results import read_json, write_json
from .content import DEFAULT_FPS, FRAME_COLUMNS, BuildReport, check_not_empty, extract_item, open_build_target
from .faiss_index import is_exact
from .sharded import build_compressed

__all__ = ["require_ray", "ray_session", "ray_map", "build_content_index_ray", "extract_item",
           "DEFAULT_ITEMS_PER_TASK"]

DEFAULT_ITEMS_PER_TASK = 64
STAGING = ".ray_staging"


def require_ray():
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError as e:
        raise DiffmemError("the Ray engine needs Ray: pip install 'diffmem[ray]' (ray[data] >= 2.30), "
                           f"or use --engine local ({e})") from None
    return ray


class ray_session:
    """Context manager: join `address`, or start a local Ray (stopped on exit) if none is running.

    Local: num_cpus (default: all), no dashboard, worker logs not forwarded (errors still raise).
    """

    def __init__(self, address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None):
        self.address, self.num_cpus, self.num_gpus = address, num_cpus, num_gpus
        self.started = False

    def __enter__(self):
        ray = require_ray()
        if not ray.is_initialized():
            kw: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False,
                                      logging_level=logging.WARNING)
            if self.address:
                ray.init(address=self.address, **kw)
            else:
                ray.init(num_cpus=self.num_cpus, num_gpus=self.num_gpus, **kw)
            self.started = True
        _quiet_ray_data()
        return ray

    def __exit__(self, *exc):
        if self.started:
            import ray

            ray.shutdown()
        return False


def _quiet_ray_data() -> None:
    import ray.data

    ctx = ray.data.DataContext.get_current()
    for attr, val in (("enable_progress_bars", False), ("print_on_execution_start", False),
                      ("enable_operator_progress_bars", False)):
        if hasattr(ctx, attr):
            setattr(ctx, attr, val)
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray").setLevel(logging.WARNING)


def _call_single_threaded(fn, args):
    # one Ray CPU per task: BLAS / OpenMP threads beyond it only contend with the other tasks
    faiss.omp_set_num_threads(1)
    return fn(*args)


def ray_map(fn: Callable, arg_tuples: Sequence[tuple], *, num_cpus: float = 1, progress: bool = False) -> list:
    """fn(*args) for every args as Ray tasks (Ray must be initialised); results in the given order."""
    ray = require_ray()
    remote = ray.remote(num_cpus=num_cpus)(_call_single_threaded)
    refs = [remote.remote(fn, tuple(a)) for a in arg_tuples]
    if progress and refs:
        pending = list(refs)
        with tqdm(total=len(refs), desc=getattr(fn, "__name__", "tasks"), leave=False) as bar:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                bar.update(len(done))
    return ray.get(refs)


# ------------------------------------------------------------------------------ per item, per task


def _stage_task(desc, items: list[dict], fps, batch_size: int, staging: Path, name: str) -> dict:
    """Extract a task's items and write OUT/.ray_staging/NAME.{npy,parquet,json} (json last)."""
    vecs, rows, order = [], [], []
    for it in items:
        try:
            v, r = extract_item(desc, it["id"], it["path"], it["caption"], it["kind"], fps, batch_size)
        except BadInputError as e:
            order.append({"id": it["id"], "path": it["path"], "skipped": e.reason})
            continue
        vecs.append(v)
        rows.extend(r)
        order.append({"id": it["id"], "n": int(len(v))})
    dim = int(desc.dim)
    arr = np.concatenate(vecs).astype(np.float32, copy=False) if vecs else np.zeros((0, dim), np.float32)
    staging.mkdir(parents=True, exist_ok=True)
    with atomic_output(staging / f"{name}.npy", suffix=".npy") as tmp:
        np.save(tmp, arr, allow_pickle=False)
    with atomic_output(staging / f"{name}.parquet", suffix=".parquet") as tmp:
        pd.DataFrame(rows, columns=list(FRAME_COLUMNS)).to_parquet(tmp, index=False)
    write_json(staging / f"{name}.json", {"name": name, "items": order, "n_vectors": int(len(arr))})
    return {"name": name, "n_vectors": int(len(arr)), "n_items": len(items)}


class _Extractor:
    """Ray Data actor: one descriptor model per actor, one task per call."""

    def __init__(self, descriptor, policy, sha256, device, fps, batch_size, staging, threads=1):
        torch.set_num_threads(max(1, int(threads)))
        if device in (None, "auto"):
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.desc = load_descriptor(descriptor, policy=policy, sha256=sha256, device=device)
        self.fps, self.batch_size, self.staging = fps, batch_size, Path(staging)

    def __call__(self, batch: dict) -> dict:
        out = {"name": [], "n_vectors": [], "n_items": []}
        for name, items in zip(batch["name"], batch["items"]):
            r = _stage_task(self.desc, json.loads(str(items)), self.fps, self.batch_size, self.staging, str(name))
            for k in out:
                out[k].append(r[k])
        return {k: np.asarray(v) for k, v in out.items()}


def _task_name(k: int, items: list[dict], fps, fingerprint: str) -> str:
    h = hashlib.sha256(json.dumps([items, fps, fingerprint], sort_keys=True).encode()).hexdigest()[:12]
    return f"{k:06d}-{h}"


def _commit(index, staging: Path, name: str, report) -> None:
    """Add a staged task to the index item by item, in order (exactly as the local engine adds)."""
    info = read_json(staging / f"{name}.json")
    vecs = np.load(staging / f"{name}.npy", mmap_mode="r")
    rows = pd.read_parquet(staging / f"{name}.parquet").to_dict("records")
    at = 0
    for it in info["items"]:
        if "skipped" in it:
            sk = Skipped(it["id"], it["path"], it["skipped"])
            index.add_skipped(sk.as_dict())
            report.skipped.append(sk)
            continue
        n = int(it["n"])
        if not index.has_item(it["id"]):  # a kill mid-commit may have flushed part of this task
            index.add(np.asarray(vecs[at:at + n]), [_plain(r) for r in rows[at:at + n]])
            report.added += 1
            if n and rows[at].get("truncated"):
                report.truncated.append(it["id"])
        else:
            report.already += 1
        at += n


def _plain(row: dict) -> dict:
    # parquet gives numpy scalars back; the local engine stores Python ints / floats / strings
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}


def actor_pool(ray, n_tasks: int, device, num_actors: int | None, gpus_per_actor: float | None):
    """(actors, GPUs per actor) for a `map_batches` actor pool: a GPU each when the cluster has GPUs
    and `device` is not "cpu", one actor per GPU (else per CPU) unless given, never more than tasks."""
    res = ray.cluster_resources()
    n_gpu = int(res.get("GPU", 0))
    if gpus_per_actor is None:
        gpus_per_actor = 1 if n_gpu and device != "cpu" else 0
    if num_actors is None:
        num_actors = n_gpu if gpus_per_actor else max(1, int(res.get("CPU", 1)))
    return max(1, min(int(num_actors), n_tasks)), gpus_per_actor


# ------------------------------------------------------------------------------ the build

@writes_folder("index build (ray)")
def build_content_index_ray(train, out, *, descriptor: Any = "builtin", policy: str | None = None,
                            sha256: str | None = None, fps: float | None = None, factory: str = "Flat",
                            device: Any = None, batch_size: int = 64, progress: bool = True,
                            shard_size: int = 65536, search_params: str | None = None,
                            address: str | None = None, num_cpus: int | None = None,
                            num_actors: int | None = None, gpus_per_actor: float | None = None,
                            items_per_task: int = DEFAULT_ITEMS_PER_TASK, keep_staging: bool = False):
    """`content.build_content_index` on Ray (see the module docstring); returns its BuildReport.

    address: a Ray cluster ("auto", "ray://host:10001"); None starts a local Ray with num_cpus CPUs.
    num_actors: descriptor actors (default: one per GPU if the cluster has GPUs, else one per CPU).
    gpus_per_actor: default 1 when the cluster has GPUs and device is not "cpu", else 0.
    device: the actors' descriptor device (default "cuda" on GPU actors, "cpu" otherwise).
    """
    fps = DEFAULT_FPS if fps is None else fps
    manifest = train if isinstance(train, Manifest) else load_manifest(train)
    # the driver holds the descriptor only for its policy (the index's dim / fingerprint, checked now,
    # before any cluster time is spent); the actors load their own
    desc = load_descriptor(descriptor, policy=policy, sha256=sha256, device="cpu")
    out = Path(out)
    index = open_build_target(out, manifest, desc, fps=fps, factory=factory, search_params=search_params,
                              shard_size=shard_size)
    report = BuildReport(index)
    report.engine = {"engine": "ray", "tasks": 0, "tasks_run": 0, "tasks_from_staging": 0}
    for s in manifest.skipped:
        index.add_skipped(s.as_dict())
        report.skipped.append(s)

    staging = out / STAGING
    items = [{"id": it.id, "path": str(it.path), "caption": it.caption, "kind": it.kind} for it in manifest.items]
    tasks = []
    for k in range(0, len(items), max(1, int(items_per_task))):
        block = items[k:k + items_per_task]
        todo = [it for it in block if not index.has_item(it["id"])]
        report.already += len(block) - len(todo)
        if todo:
            tasks.append((_task_name(k // items_per_task, todo, fps, desc.fingerprint), todo))
    report.engine["tasks"] = len(tasks)
    staged = {n for n, _ in tasks if (staging / f"{n}.json").exists()}
    to_run = [(n, todo) for n, todo in tasks if n not in staged]
    report.engine["tasks_from_staging"] = len(staged)
    report.engine["tasks_run"] = len(to_run)

    session = ray_session(address, num_cpus=num_cpus)
    started = False
    next_i = 0
    ready = set(staged)

    def commit_ready():
        nonlocal next_i
        while next_i < len(tasks) and tasks[next_i][0] in ready:
            _commit(index, staging, tasks[next_i][0], report)
            next_i += 1

    bar = None
    try:
        commit_ready()
        if to_run or not is_exact(factory):  # compressed: shards are encoded as Ray tasks
            ray = session.__enter__()
            started = True
        if to_run:
            num_actors, gpus_per_actor = actor_pool(ray, len(to_run), device, num_actors, gpus_per_actor)
            actor_device = device or ("cuda" if gpus_per_actor else "cpu")
            ds = ray.data.from_items([{"name": n, "items": json.dumps(todo)} for n, todo in to_run],
                                     override_num_blocks=len(to_run))
            ds = ds.map_batches(
                _Extractor, batch_size=1, compute=ray.data.ActorPoolStrategy(size=num_actors),
                num_cpus=1, num_gpus=gpus_per_actor or None,
                fn_constructor_kwargs=dict(descriptor=descriptor, policy=policy, sha256=sha256,
                                           device=actor_device, fps=fps, batch_size=batch_size,
                                           staging=str(staging)))
            if progress:
                bar = tqdm(total=len(to_run), desc=f"ray: extracting {sum(len(t) for _, t in to_run)} items",
                           unit="task", leave=False)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                for row in ds.iter_rows():
                    ready.add(str(row["name"]))
                    if bar is not None:
                        bar.update(1)
                    commit_ready()  # the index grows as soon as the next task in order is done
        commit_ready()
        if next_i != len(tasks):  # pragma: no cover - Ray returned without some task
            raise DiffmemError(f"{out}: {len(tasks) - next_i} Ray tasks did not report; run again to resume")
        index.flush()
        if not is_exact(factory):
            build_compressed(index, map_fn=(lambda fn, args: ray_map(fn, args, progress=progress)) if started
                             else None, progress=progress)
        index.close()
    finally:
        if bar is not None:
            bar.close()
        index.flush()  # whatever was committed is kept, also on KeyboardInterrupt
        if started:
            session.__exit__(None, None, None)
    if not keep_staging:
        shutil.rmtree(staging, ignore_errors=True)
    check_not_empty(index, report)
    return report
