"""The motion index: Phi_k windows of training videos, searchable like the content index.

Training windows go into their own `VectorIndex` folder whose policy is the motion policy
(`diffmem.features.motion.MotionPolicy`: flow backend, resolution, grid, k, fps; fingerprinted), so
motion search scales like content search. `build_motion_index` resumes a killed build.

Built once beside a content index (`diffmem index build TRAIN --out INDEX --motion` writes
INDEX/motion_index, `MOTION_SUBFOLDER`), it is reused read-only by every audit against INDEX: an
audit then decodes no training video (`prebuilt_motion_index`).
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import cv2
import numpy as np
import torch
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from ..errors import BadInputError, PolicyMismatchError, Skipped
from ..features.motion import MotionPolicy, VideoMotion, describe_motion, read_motion_frames
from ..flow import get_estimator
from ..io.lock import writes_folder
from .content import content_items
from .faiss_index import VectorIndex
from .ray_engine import ray_map, ray_session


@dataclass(frozen=True)
class Neighbour:
    """A training window found for a generated window."""

    similarity: float
    train_id: str
    train_start: int
    train_motion: float


class MotionIndex:
    """Phi_k windows of training videos in a `VectorIndex` folder (diffmem.index), one metadata row per
    window: item_id (the training id), start (first frame of the window), motion (its window motion,
    px/frame). The folder's policy is the motion policy (fingerprinted); opening it with another policy
    is refused. Committed shards survive a kill; `build_motion_index` resumes from them.
    """

    def __init__(self, index, policy: MotionPolicy):
        self.index, self.policy = index, policy
        self._cols = None

    @property
    def dim(self) -> int:
        return 2 * self.policy.grid ** 2 * self.policy.k

    @property
    def folder(self) -> Path:
        return self.index.folder

    @staticmethod
    def _policy_record(policy: MotionPolicy) -> dict:
        return {**policy.as_dict(), "name": policy.name, "fingerprint": policy.fingerprint}

    @classmethod
    def create(cls, folder: str | Path, policy: MotionPolicy | None = None, *, factory: str = "Flat",
               shard_size: int = 65536) -> "MotionIndex":
        """A new motion index folder, or the existing one built with the same policy (to resume or extend).

        factory: FAISS factory string; exact ("Flat") by default, e.g. "IVF4096,Flat" for millions of
        windows (candidates are re-ranked with the exact vectors, so OFS-k values stay exact)."""
        policy = policy or MotionPolicy()
        folder = Path(folder)
        if (folder / "index.json").exists():
            existing = cls.open(folder)
            check_motion_policy(existing.policy, policy, f"motion index {folder}")
            return existing
        dim = 2 * policy.grid ** 2 * policy.k
        idx = VectorIndex.create(folder, dim=dim, policy=cls._policy_record(policy), factory=factory, metric="ip",
                                 config={"kind": "motion"}, shard_size=shard_size)
        return cls(idx, policy)

    @classmethod
    def open(cls, folder: str | Path) -> "MotionIndex":
        idx = VectorIndex.open(folder)
        rec = idx.policy or {}
        if rec.get("kind") != "motion":
            raise BadInputError(folder, "not a motion index (its policy is not a motion policy)")
        policy = MotionPolicy.from_dict({k: v for k, v in rec.items() if k not in ("name", "fingerprint")})
        if policy.fingerprint != rec.get("fingerprint"):
            raise BadInputError(folder, "motion policy record does not match its fingerprint (edited by hand?)")
        return cls(idx, policy)

    # building
    def done(self, item_id: str) -> bool:
        """Whether the item is indexed or was recorded as left out (unreadable, too short)."""
        return self.index.has_item(item_id) or any(s.get("id") == item_id for s in self.index.skipped)

    def missing(self, items: Iterable) -> list:
        """The video items among `items` this index neither holds nor recorded as left out."""
        left_out = {s.get("id") for s in self.index.skipped}
        return [it for it in items if it.kind == "video" and it.id not in left_out and not self.index.has_item(it.id)]

    def add(self, train_id: str, motion: VideoMotion, path: str | Path = "") -> int:
        """Index one training video's windows (buffered; `flush`/`close` commits). A video shorter than
        k flows has no window: it is recorded as left out, with the reason."""
        if motion.k != self.policy.k or (len(motion.windows) and motion.windows.shape[1] != self.dim):
            raise PolicyMismatchError(f"motion of {train_id!r} was not made with this index's policy "
                                      f"({self.policy.name})")
        n = len(motion.windows)
        if n == 0:
            self.index.add_skipped({"id": train_id, "path": str(path), "reason":
                                    f"too short for a motion window: {motion.n_flows} flows < k={self.policy.k}"})
            return 0
        self.index.add(motion.windows, [{"item_id": train_id, "start": j, "motion": float(m)}
                                        for j, m in enumerate(motion.motion)])
        self._cols = None
        return n

    def close(self) -> "MotionIndex":
        self.index.close()
        self._cols = None
        return self

    def __len__(self) -> int:
        return len(self.index)

    @property
    def train_ids(self) -> list[str]:
        meta = self.index.metadata
        return list(dict.fromkeys(meta["item_id"])) if len(meta) else []

    def _columns(self):
        if self._cols is None:
            meta = self.index.metadata
            self._cols = (meta["item_id"].to_numpy(object), meta["start"].to_numpy(np.int64),
                          meta["motion"].to_numpy(np.float64))
        return self._cols

    # querying
    def neighbours(self, windows: np.ndarray, *, tau: float, static_px: float, enough_groups: int,
                   groups: Mapping[str, str] | None = None, start_k: int = 64) -> list[list[Neighbour]]:
        """For each query window: training windows, best first, containing every one above `tau` -- or
        enough of them to reach `enough_groups` distinct groups (`groups`: train_id -> duplicate group) --
        and at least the best one that moves (window motion >= `static_px`); the search widens 4x at a
        time until that holds. NMF (`diffmem.metrics.motion`) needs exactly this."""
        groups = groups or {}
        n = len(self)
        windows = np.asarray(windows, np.float32)
        out: list[list[Neighbour]] = [[] for _ in range(len(windows))]
        if not n or not len(windows):
            return out
        tid, start, mot = self._columns()
        todo = list(range(len(windows)))
        k = max(1, int(start_k))
        while todo:
            k = min(k, n)
            sims, rows = self.index.search(windows[todo], k)
            again = []
            for r, qi in enumerate(todo):
                ok = rows[r] >= 0
                nbs = [Neighbour(float(s), str(tid[i]), int(start[i]), float(mot[i]))
                       for s, i in zip(sims[r][ok], rows[r][ok])]
                moving = [nb for nb in nbs if nb.train_motion >= static_px]
                seen = {groups.get(nb.train_id, nb.train_id) for nb in moving if nb.similarity > tau}
                last = nbs[-1].similarity if nbs else -np.inf
                if k >= n or (moving and last <= tau) or len(seen) >= enough_groups:
                    out[qi] = nbs
                else:
                    again.append(qi)
            todo, k = again, k * 4
        return out


def check_motion_policy(have: MotionPolicy, want: MotionPolicy, what: str) -> None:
    if have.fingerprint != want.fingerprint:
        raise PolicyMismatchError(
            f"motion policy mismatch: the {what} was made with {have.name!r} (fingerprint {have.fingerprint}) "
            f"but {want.name!r} (fingerprint {want.fingerprint}) was given; use the same flow backend, "
            f"resolution, grid, k and fps, or build a new motion index")


#: where `diffmem index build --motion` puts the motion index of a content index folder
MOTION_SUBFOLDER = "motion_index"


def prebuilt_motion_index(folder: str | Path, policy: MotionPolicy, items: Iterable) -> tuple[MotionIndex | None, str]:
    """(the motion index in `folder`, "") when it exists, was built with `policy` and covers every video of
    `items`, so it can be used read-only (no lock, no decoding: concurrent audits share it); else
    (None, why not)."""
    folder = Path(folder)
    if not (folder / "index.json").is_file():
        return None, f"no motion index in {folder}"
    index = MotionIndex.open(folder)
    if index.policy.fingerprint != policy.fingerprint:
        return None, (f"{folder} was built with {index.policy.name} at {index.policy.fps} fps (fingerprint "
                      f"{index.policy.fingerprint}); this audit needs {policy.name} at {policy.fps} fps")
    missing = index.missing(items)
    if missing:
        return None, f"{folder} lacks {len(missing)} training videos (e.g. {missing[0].id})"
    return index, ""


def build_motion_index_beside(content_index: VectorIndex, policy: MotionPolicy | None = None, **options
                              ) -> tuple[MotionIndex, list[Skipped]]:
    """The motion index of exactly the training videos a content index holds, in its folder's
    MOTION_SUBFOLDER (`diffmem index build --motion`), where every audit against it finds it.
    `options`: as `build_motion_index` (progress, engine, address, workers...)."""
    return build_motion_index(content_items(content_index), Path(content_index.folder) / MOTION_SUBFOLDER,
                              policy, **options)


# videos below which a build stays in this process (a worker pool's start-up costs about a second)
POOL_MIN_VIDEOS = 200


def _describe_file(args):
    """Worker: (path, policy dict) -> (VideoMotion or None, why not). One OpenCV thread per worker: the pool,
    not the kernels, spreads the work over the cores."""
    path, policy_dict = args
    cv2.setNumThreads(1)
    policy = MotionPolicy.from_dict(policy_dict)
    return _describe_local(path, policy, get_estimator(policy.flow.backend))


@writes_folder("motion index build")
def build_motion_index(items: Iterable, out: str | Path, policy: MotionPolicy | None = None, *,
                       factory: str = "Flat", shard_size: int = 65536, estimator=None, progress: bool = False,
                       workers: int | None = None, engine: str = "local", address: str | None = None
                       ) -> tuple[MotionIndex, list[Skipped]]:
    """Index the training videos among `items` (manifest `Item`s) in folder `out`.

    Resumes a killed build and extends an existing index with items it does not hold yet. Images have
    no motion and are left out silently; unreadable files and videos shorter than k flows are recorded
    in the index (`skipped`) and returned.

    workers: processes that decode and compute flow (None: one per CPU core, up to 8, when there are at
    least POOL_MIN_VIDEOS videos to index and no custom `estimator`, else 1). Results are added in item
    order, so the index is the same whatever the number of workers.

    engine "ray": the flow is computed as Ray tasks (one CPU each; `address` joins a cluster, None starts a
    local Ray), RAY_CHUNK videos at a time, each chunk committed in item order: the same index as a local
    build, and a killed build loses at most the chunk that was running.
    """
    if engine not in ("local", "ray"):
        raise ValueError(f"engine must be 'local' or 'ray', not {engine!r}")
    policy = policy or MotionPolicy()
    index = MotionIndex.create(out, policy, factory=factory, shard_size=shard_size)
    todo = index.missing(items)
    if engine == "ray":
        if estimator is not None:
            raise ValueError("a custom flow estimator runs in this process only (engine='local')")
        return _build_on_ray(index, todo, policy, progress=progress, address=address)
    if workers is None:
        workers = min(os.cpu_count() or 1, 8) if len(todo) >= POOL_MIN_VIDEOS and estimator is None else 1
    if workers > 1 and estimator is not None:
        raise ValueError("a custom flow estimator runs in this process only (workers=1)")
    pool = None
    try:
        if workers > 1:
            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
            jobs = [(str(it.path), policy.as_dict()) for it in todo]
            results = pool.map(_describe_file, jobs, chunksize=8)
        else:
            est = estimator if estimator is not None else get_estimator(policy.flow.backend)
            results = (_describe_local(it.path, policy, est) for it in todo)
        for it, (motion, why) in tqdm(zip(todo, results), total=len(todo), desc="motion index", unit="video",
                                      disable=not progress):
            if motion is None:
                index.index.add_skipped(Skipped(it.id, str(it.path), why).as_dict())
            else:
                index.add(it.id, motion, it.path)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        index.index.flush()  # whatever finished is kept, also on KeyboardInterrupt
    index.close()
    return index, [Skipped(s["id"], s.get("path", ""), s.get("reason", "")) for s in index.index.skipped]


def _build_job(items: list, out: str, policy: dict, workers: int) -> None:
    """Worker process of `start_motion_index`: one thread per worker, so that it keeps to the cores it was
    given (OpenCV's, torch's and the BLAS library's own thread pools would otherwise take the sampler's core
    too: with them the demo's sampling took 84-92 s instead of 60 s)."""
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    with threadpool_limits(1):  # threadpoolctl comes with scikit-learn
        build_motion_index(items, out, MotionPolicy.from_dict(policy), workers=workers)


def start_motion_index(items: Iterable, out: str | Path, policy: MotionPolicy, *, busy_cores: int = 1):
    """Build (or resume) the motion index of `items` in `out` in a background process, on the cores that
    `busy_cores` leaves free, while this process does other work: the extraction study samples on one core
    while the training videos' flow runs on the others, instead of one after the other. Returns a Future
    (`.result()` waits and re-raises the build's error), or None when `out` already holds the whole index."""
    items = list(items)
    if prebuilt_motion_index(out, policy, items)[0] is not None:
        return None
    workers = max(1, min(os.cpu_count() or 1, 8) - max(0, int(busy_cores)))
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    try:
        return pool.submit(_build_job, items, str(out), policy.as_dict(), workers)
    finally:
        pool.shutdown(wait=False)  # the job runs on; the process exits when it is done


#: videos per Ray round: committed (and safe from a kill) after each
RAY_CHUNK = 256


def _build_on_ray(index: MotionIndex, todo: list, policy: MotionPolicy, *, progress: bool,
                  address: str | None) -> tuple[MotionIndex, list[Skipped]]:
    bar = tqdm(total=len(todo), desc="motion index (ray)", unit="video", disable=not progress)
    try:
        if todo:
            with ray_session(address):
                for k in range(0, len(todo), RAY_CHUNK):
                    chunk = todo[k:k + RAY_CHUNK]
                    results = ray_map(_describe_file, [((str(it.path), policy.as_dict()),) for it in chunk])
                    for it, (motion, why) in zip(chunk, results):
                        if motion is None:
                            index.index.add_skipped(Skipped(it.id, str(it.path), why).as_dict())
                        else:
                            index.add(it.id, motion, it.path)
                    index.index.flush()
                    bar.update(len(chunk))
    finally:
        bar.close()
        index.index.flush()
    index.close()
    return index, [Skipped(s["id"], s.get("path", ""), s.get("reason", "")) for s in index.index.skipped]


def _describe_local(path, policy: MotionPolicy, estimator):
    try:
        frames = read_motion_frames(path, policy)
    except BadInputError as e:
        return None, e.reason
    return describe_motion(frames, policy, estimator), ""
