"""The content index of a training set: a descriptor vector for every sampled frame of every training
video and image, with metadata rows (item_id, frame, source_frame, timestamp, caption, path, kind).

    idx = build_content_index("train.parquet", "INDEX", descriptor="builtin", fps=8)
    idx, desc = open_content_index("INDEX")          # the descriptor is rebuilt from the stored policy
    items = content_items(idx)                         # the training items it holds (id, path, caption, kind)

Resumes after a kill and extends an existing index with the items it does not hold yet; a corrupt item
is recorded in index.json (`skipped`) and the rest completes.
"""
from __future__ import annotations

import itertools
import os
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.manifest import Item, Manifest, load_manifest
from ..errors import BadInputError, DiffmemError, PolicyMismatchError, Skipped
from ..features import descriptor_from_policy, load_descriptor
from ..io.lock import writes_folder
from ..io.video import TruncatedVideoWarning, read_frames
from .faiss_index import VectorIndex

DEFAULT_FPS = 8.0


@dataclass
class ItemFrames:
    array: np.ndarray       # uint8 (T,H,W,3)
    timestamps: np.ndarray  # float seconds (T,)
    indices: np.ndarray     # source frame numbers (T,)
    truncated: bool = False


def read_item_frames(path, fps: float | None) -> ItemFrames:
    """Frames of a video (sampled at `fps`, every frame when None) or an image (one frame).
    Raises BadInputError for a file that cannot be decoded."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncatedVideoWarning)  # recorded as `truncated` instead
        fr = read_frames(path, fps=fps)
    if len(fr) == 0:
        raise BadInputError(path, "no frames")
    return ItemFrames(fr.array, np.asarray(fr.timestamps, float), np.asarray(fr.indices, np.int64),
                      bool(getattr(fr, "truncated", False)))


# the metadata row of every indexed frame (both engines write exactly these, in this order)
FRAME_COLUMNS = ("item_id", "frame", "source_frame", "timestamp", "caption", "path", "kind", "truncated")


def extract_item(desc, item_id: str, path, caption: str, kind: str, fps: float | None,
                 batch_size: int = 64) -> tuple[np.ndarray, list[dict]]:
    """One training item -> (vectors (T, d), one metadata row per frame): the per-item step of both build
    engines (local and Ray). A truncated or damaged video keeps the frames that decoded, marked
    `truncated`. Raises BadInputError for media that cannot be decoded (the caller records a Skipped)."""
    return describe_item(desc, item_id, path, caption, kind, read_item_frames(path, fps), batch_size)


def describe_item(desc, item_id: str, path, caption: str, kind: str, fr: ItemFrames,
                  batch_size: int = 64) -> tuple[np.ndarray, list[dict]]:
    """`extract_item` on frames already read."""
    vecs = desc.encode(fr.array, batch_size=batch_size)
    rows = [{"item_id": item_id, "frame": int(j), "source_frame": int(fr.indices[j]),
             "timestamp": float(fr.timestamps[j]), "caption": caption, "path": str(path), "kind": kind,
             "truncated": fr.truncated} for j in range(len(vecs))]
    return vecs, rows


@dataclass
class BuildReport:
    index: VectorIndex
    added: int = 0          # items added by this run
    already: int = 0        # items the index held before (resume / extend)
    skipped: list[Skipped] = field(default_factory=list)
    truncated: list[str] = field(default_factory=list)  # ids of items indexed from a truncated file

    def as_dict(self) -> dict:
        return {"index": str(self.index.folder), "added": self.added, "already": self.already,
                "skipped": [s.as_dict() for s in self.skipped], "truncated": list(self.truncated),
                "n_vectors": len(self.index)}


def open_build_target(out, manifest, desc, *, fps, factory: str, search_params: str | None,
                      shard_size: int) -> VectorIndex:
    """The index a build writes into: `out` created, or reopened to resume / extend when its descriptor
    policy, factory and frame rate are the same (one place for both engines, local and Ray). A training
    set with no media item is refused here, before anything is written."""
    out = Path(out)
    if not manifest.items:
        why = f"; {len(manifest.skipped)} skipped, e.g. {manifest.skipped[0].reason}" if manifest.skipped else ""
        raise BadInputError(getattr(manifest, "source", None) or manifest.root, f"no media item to index{why}")
    if fps is not None and not fps > 0:
        raise DiffmemError(f"--fps must be a positive number of frames per second, got {fps}")
    config = {"fps": fps, "train": str(getattr(manifest, "source", None) or manifest.root),
              "descriptor": desc.policy.name}
    index = VectorIndex.open_or_create(out, dim=desc.dim, policy=desc.policy, factory=factory, metric="ip",
                                       search_params=search_params, config=config, shard_size=shard_size)
    if index.config.get("fps") != fps:
        raise DiffmemError(f"{out}: the index samples frames at fps={index.config.get('fps')}, not {fps}; "
                           "use the same --fps or build a new index")
    return index


@writes_folder("index build")
def build_content_index(train, out, *, descriptor: Any = "builtin", policy: str | None = None,
                        sha256: str | None = None, fps: float | None = DEFAULT_FPS, factory: str = "Flat",
                        device: Any = "cpu", batch_size: int = 64, progress: bool = True,
                        shard_size: int = 65536, search_params: str | None = None,
                        workers: int | None = None) -> BuildReport:
    """Index every sampled frame of `train` (a folder / manifest path, or a Manifest) into folder `out`.

    An existing index in `out` is resumed / extended: it must have the same descriptor policy
    (PolicyMismatchError otherwise), factory and frame rate. `workers`: items decoded and described at
    once, each by its own thread (default `item_workers()`); the vectors are the same for any number."""
    manifest = train if isinstance(train, Manifest) else load_manifest(train)
    desc = load_descriptor(descriptor, policy=policy, sha256=sha256, device=device)
    index = open_build_target(out, manifest, desc, fps=fps, factory=factory, search_params=search_params,
                              shard_size=shard_size)
    report = BuildReport(index)
    for s in manifest.skipped:
        index.add_skipped(s.as_dict())
        report.skipped.append(s)
    todo = [it for it in manifest.items if not index.has_item(it.id)]
    report.already = len(manifest.items) - len(todo)
    bar = _progress(todo, progress, f"indexing {len(todo)} items")

    def extract(it):  # in a worker thread: one item's vectors and rows (as the Ray engine's), or why it was skipped
        try:
            return extract_item(desc, it.id, it.path, it.caption, it.kind, fps, batch_size)
        except BadInputError as e:
            return e

    n = item_workers(workers, str(getattr(desc, "device", "cpu")) != "cpu")
    try:
        for it, got in map_items(bar, extract, workers=n, ahead=2 * n + PREFETCH):
            if isinstance(got, BadInputError):
                sk = Skipped(it.id, str(it.path), got.reason)
                index.add_skipped(sk.as_dict())
                report.skipped.append(sk)
                continue
            vecs, rows = got
            index.add(vecs, rows)  # in item order, whatever order the workers finish in
            report.added += 1
            if rows and rows[0]["truncated"]:
                report.truncated.append(it.id)
    finally:
        index.flush()  # whatever finished is kept, also on KeyboardInterrupt
    index.close()
    check_not_empty(index, report)
    return report


#: items decoded ahead of the descriptor by `prefetch_frames`
PREFETCH = 4
#: most item workers `item_workers` chooses (their Python parts share one interpreter lock)
MAX_ITEM_WORKERS = 4


def item_workers(workers: int | None = None, gpu: bool = False) -> int:
    """How many items to process at once: `workers` when given, else the cores divided by torch's threads
    per operation (capped at MAX_ITEM_WORKERS; 1 on a GPU). The tiny frames' kernels are too small for a
    second thread inside them, and an item's vectors do not depend on which thread makes them, so with
    `--threads 1` a 2-core machine describes two items at once (1.7-1.8x the descriptor's one-thread rate)."""
    if workers is not None:
        if int(workers) < 1:
            raise DiffmemError(f"workers must be >= 1, got {workers}")
        return int(workers)
    if gpu:
        return 1
    return max(1, min(MAX_ITEM_WORKERS, (os.cpu_count() or 1) // max(1, torch.get_num_threads())))


def map_items(items: Iterable[Item], fn, *, workers: int = 1, ahead: int = PREFETCH) -> Iterator[tuple[Item, Any]]:
    """(item, fn(item)) in item order, with `fn` running in `workers` threads up to `ahead` items ahead
    (decoding in PyAV and torch's kernels run without the interpreter lock, so threads overlap). Leaving
    the loop early cancels what was not started."""
    pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="diffmem-item")
    pending: deque = deque()
    source = iter(items)
    try:
        for it in itertools.islice(source, max(1, ahead)):
            pending.append((it, pool.submit(fn, it)))
        while pending:
            it, fut = pending.popleft()
            nxt = next(source, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(fn, nxt)))
            yield it, fut.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def prefetch_frames(items: Iterable[Item], fps: float | None, ahead: int = PREFETCH
                    ) -> Iterator[tuple[Item, ItemFrames | BadInputError]]:
    """(item, its frames, or the BadInputError reading it raised) in item order, decoding up to `ahead`
    items ahead in one background thread (`map_items`), so that decoding the next items overlaps the work
    on this one."""
    def read(it):
        try:
            return read_item_frames(it.path, fps)
        except BadInputError as e:
            return e

    return map_items(items, read, workers=1, ahead=ahead)


def check_not_empty(index: VectorIndex, report: BuildReport) -> None:
    """A build that indexed no frame at all is an error (its every item was unreadable), not a success."""
    if len(index) == 0:
        first = f": e.g. {report.skipped[0].path}: {report.skipped[0].reason}" if report.skipped else ""
        raise DiffmemError(f"{index.folder}: no frame of any training item could be read; the index is "
                           f"empty ({len(report.skipped)} items skipped{first})")


def open_content_index(folder, descriptor: Any = None, *, policy: str | None = None, sha256: str | None = None,
                       threshold: float | None = None, device: Any = "cpu"):
    """(index, descriptor): the descriptor given (checked against the index's policy) or rebuilt from it."""
    index = VectorIndex.open(folder)
    if len(index) == 0:
        raise BadInputError(folder, "the index holds no frame descriptors (built from an empty or unreadable "
                                    "training set); build it again from a training set with media")
    want = (index.policy or {}).get("name")
    if descriptor is None and policy is not None and policy != want:
        raise PolicyMismatchError(f"{folder}: the index was built with the descriptor policy {want!r}, not "
                                  f"{policy!r}; leave --policy out to use the index's, or build a new index")
    if descriptor is None:
        desc = descriptor_from_policy(index.policy, device=device, threshold=threshold)
    else:
        desc = load_descriptor(descriptor, policy=policy, sha256=sha256, threshold=threshold, device=device)
        index.check_policy(desc.policy)
    return index, desc


def content_items(index: VectorIndex, ids: Iterable[str] | None = None) -> list[Item]:
    """The training items a content index holds, one per item_id in index order, from each item's first
    metadata row: id, path, caption ("" when missing) and kind ("video" when missing). `ids`: only these."""
    meta = index.metadata
    if not len(meta):
        return []
    if ids is not None:
        meta = meta[meta["item_id"].astype(str).isin({str(i) for i in ids})]
    first = meta.drop_duplicates("item_id")
    return [Item(str(r.item_id), Path(str(r.path)), r.caption if isinstance(getattr(r, "caption", None), str) else "",
                 str(getattr(r, "kind", None) or "video"))
            for r in first.itertuples(index=False)]


def _progress(items, enabled: bool, desc: str):
    if not enabled:
        return items
    return tqdm(items, desc=desc, unit="item", leave=False)
