"""AMG's training reference, and the hook built from it.

    training = TrainingReference.build("world", fps=4.0, cache="runs/amg-cache")
    hook = build_amg_hook(training, AMGConfig(), kind="video")      # the CLI's configuration
    generate("builtin:tiny-t2v", prompts, out, settings, hooks=[hook])

The training reference holds what sigma_t and the evaluation need from the training set: one
descriptor vector per training frame (content neighbours, exact search in memory, or a content
index), the motion index of training windows (`index.motion`, DIS flow at the model's frame rate),
content duplicate groups, and training frames for the quality distance. It is cached on disk.
"""
from __future__ import annotations

import hashlib
import io
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.manifest import load_manifest, manifest_file
from ..errors import BadInputError, DiffmemError, Skipped
from ..features.builtin import BuiltinDescriptor
from ..features.motion import MotionPolicy
from ..index.content import content_items, item_workers, map_items, open_content_index
from ..index.motion import build_motion_index
from ..io.atomic import atomic_output
from ..io.video import read_frames, resize_frames
from ..metrics.content import content_scores, nearest_training_frames
from ..metrics.motion import NMFConfig, duplicate_groups
from ..models.train import load_training_data
from .authors import AuthorsIDDPMHook, AuthorsSDHook
from .config import AMGConfig
from .hook import AMGHook

#: AMG as its authors ran it (DESIGN.md); diffmem's default is `AMGConfig`
PRESETS = ("amg-sd-2024", "amg-iddpm-2024")
from .similarity import ContentSimilarity, IndexNeighbours, MemoryNeighbours, MotionProxyPolicy, MotionSimilarity


class TrainingReference:
    """Descriptor vectors of every training frame, the motion index, groups, frames for FD (see module doc)."""

    def __init__(self, *, ids, frames_idx, captions, vectors, item_ids, item_captions, groups, motion_index,
                 fd_frames, descriptor, fps, skipped=(), source="", neighbours=None):
        self.ids, self.frames_idx, self.captions = list(ids), list(frames_idx), list(captions)
        self.vectors = np.asarray(vectors, np.float32)
        self._memory = MemoryNeighbours(self.vectors, self.ids, self.captions, self.frames_idx)
        self.neighbours = neighbours or self._memory
        self.item_captions = dict(zip(item_ids, item_captions))
        self.groups = dict(groups)
        self.motion_index = motion_index
        self.fd_frames = fd_frames
        self.descriptor = descriptor
        self.fps = fps
        self.skipped = list(skipped)
        self.source = str(source)

    @property
    def descriptor_calibrated(self) -> bool:
        pol = self.descriptor.policy
        return pol.threshold is not None and not str(pol.threshold_source).startswith("not calibrated")

    @property
    def tau_c(self) -> float:
        """The content verdict's threshold: the descriptor's calibrated tau_c, or, for a descriptor not
        calibrated yet, the 99th percentile of other-source similarities in this training set."""
        if self.descriptor_calibrated:
            return float(self.descriptor.policy.threshold)
        return self.other_source_quantile(0.99)

    @property
    def tau_c_source(self) -> str:
        if self.descriptor_calibrated:
            return str(self.descriptor.policy.threshold_source or "descriptor policy")
        return "99th percentile of nearest other-source similarities in the training set (descriptor not calibrated)"

    def other_source_similarities(self, max_frames: int = 4000, seed: int = 0) -> np.ndarray:
        """For (a sample of) training frames: the similarity to the nearest frame of another duplicate
        group -- the "similar but not a copy" distribution AMG's thresholds are set from. Exact
        (blocks of a matrix product over the in-memory vectors); cached."""
        if getattr(self, "_other", None) is None:
            n = len(self.vectors)
            rows = np.arange(n) if n <= max_frames else np.sort(
                np.random.default_rng(seed).choice(n, max_frames, replace=False))
            names = {g: k for k, g in enumerate(dict.fromkeys(self.groups.get(i, i) for i in self.ids))}
            gid = np.array([names[self.groups.get(i, i)] for i in self.ids])
            out = []
            for b in range(0, len(rows), 256):
                r = rows[b:b + 256]
                sims = self.vectors[r] @ self.vectors.T
                sims[gid[r][:, None] == gid[None, :]] = -np.inf
                out.append(sims.max(1))
            v = np.concatenate(out) if out else np.zeros(0)
            self._other = v[np.isfinite(v)]
        return self._other

    def other_source_quantile(self, q: float) -> float:
        v = self.other_source_similarities()
        return float(np.quantile(v, q)) if len(v) else 0.5

    @property
    def n_motion_windows(self) -> int:
        return 0 if self.motion_index is None else len(self.motion_index)

    @classmethod
    def build(cls, source: str | Path, *, fps: float, descriptor=None, size: int | None = None,
              cache: str | Path | None = None, dup_threshold: float = 0.95, content_index: str | Path | None = None,
              motion_index: str | Path | None = None, motion_frames: int | None = None,
              progress: bool = False) -> "TrainingReference":
        """From a training manifest (file or folder, or a world folder with train.parquet), or a content
        index folder (its items are the training set, its vectors the neighbours).

        fps: the model's frame rate (training videos are sampled at it, so motion compares step for
        step). size: side of the frames kept for the quality distance (default: native). cache: folder
        for the descriptor cache and the motion index (both reused, the index resumes a killed build);
        without it the motion index goes to a temporary folder. content_index: a prebuilt content
        index folder (`index.VectorIndex` with the same descriptor policy) for the neighbours.
        motion_index: the motion index folder to use (an extraction study's, with the same policy: nothing is
        decoded for it again), built there if missing; motion_frames: compare over the first frames only
        (`run_extract(motion_frames=)`).
        """
        src = Path(source)
        neighbours, items, skipped = None, None, []
        if content_index is None and (src / "index.json").is_file():
            content_index = src  # --index is a content index folder: its items are the training set
        known = {}  # item id -> its frame vectors, read from the content index instead of described again
        if content_index is not None:
            cidx, cdesc = open_content_index(content_index, descriptor)
            descriptor = descriptor or cdesc
            neighbours = IndexNeighbours(cidx)
            if content_index == src:
                items = content_items(cidx)
            if cidx.config.get("fps") is not None and float(cidx.config["fps"]) == float(fps):
                known = _vectors_by_item(cidx)
        if descriptor is None:
            descriptor = BuiltinDescriptor()
        src = manifest_file(src)
        if not src.exists():
            raise BadInputError(src, "no such training set (give a content index, a manifest, a media folder "
                                     "or a world folder)")
        policy = MotionPolicy(fps=float(fps), max_frames=int(motion_frames) if motion_frames else None)
        key = _fingerprint({"source": str(src.resolve()), "mtime": (src / "index.json").stat().st_mtime
                            if (src / "index.json").is_file() else src.stat().st_mtime,
                            "descriptor": descriptor.fingerprint, "motion": policy.fingerprint, "size": size,
                            "dup": dup_threshold, "version": 3})
        cache = Path(cache) if cache else Path(tempfile.mkdtemp(prefix="diffmem-amg-"))
        if items is None:
            man = load_manifest(src)
            items, skipped = man.items, list(man.skipped)
        motion_index, _ = build_motion_index(items, Path(motion_index) if motion_index else cache / f"motion-{key}",
                                             policy, progress=progress)
        cache_file = cache / f"training-{key}.npz"
        if cache_file.is_file():
            return cls._load(cache_file, descriptor, motion_index, fps, neighbours)
        ids, fidx, caps, vecs, item_ids, item_caps, item_means, fd = [], [], [], [], [], [], [], []
        def prepare(it):  # in a worker thread (decoding and the descriptor's kernels release the GIL)
            try:
                fr = read_frames(it.path, fps=fps if it.kind == "video" else None).array
            except BadInputError as e:
                return e
            v = known.get(it.id)
            if v is None or len(v) != len(fr):
                v = descriptor.encode(fr)
            return v, (resize_frames(fr, (size, size)) if size else fr)

        for it, res in tqdm(map_items(items, prepare, workers=item_workers()), total=len(items),
                            desc="training reference", unit="item", disable=not progress):
            if isinstance(res, BadInputError):
                skipped.append(Skipped(it.id, str(it.path), res.reason))
                continue
            v, small = res
            ids += [it.id] * len(v)
            fidx += list(range(len(v)))
            caps += [it.caption] * len(v)
            vecs.append(v)
            item_ids.append(it.id)
            item_caps.append(it.caption)
            m = v.mean(0)
            item_means.append(m / max(float(np.linalg.norm(m)), 1e-12))
            fd.append(small)
        if not vecs:
            raise DiffmemError(f"{source}: no readable training item")
        groups = duplicate_groups(item_ids, np.stack(item_means), dup_threshold)
        if fd and len({f.shape[1:] for f in fd}) > 1:  # mixed sizes: bring all to the first one's
            fd = [resize_frames(f, (fd[0].shape[1],) * 2) for f in fd]
        ref = cls(ids=ids, frames_idx=fidx, captions=caps, vectors=np.concatenate(vecs), item_ids=item_ids,
                  item_captions=item_caps, groups=groups, motion_index=motion_index, fd_frames=np.concatenate(fd),
                  descriptor=descriptor, fps=fps, skipped=skipped, source=src, neighbours=neighbours)
        ref._save(cache_file)
        return ref

    def _save(self, path: Path) -> None:
        meta = {"ids": self.ids, "frames_idx": self.frames_idx, "captions": self.captions,
                "item_captions": self.item_captions, "groups": self.groups,
                "skipped": [s.as_dict() for s in self.skipped], "source": self.source}
        buf = io.BytesIO()
        np.savez_compressed(buf, vectors=self.vectors, fd_frames=self.fd_frames,
                            meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
        with atomic_output(path, suffix=".npz") as tmp:
            Path(tmp).write_bytes(buf.getvalue())

    @classmethod
    def _load(cls, path: Path, descriptor, motion_index, fps, neighbours) -> "TrainingReference":
        z = np.load(path, allow_pickle=False)
        meta = json.loads(bytes(z["meta"]).decode())
        return cls(ids=meta["ids"], frames_idx=meta["frames_idx"], captions=meta["captions"], vectors=z["vectors"],
                   item_ids=list(meta["item_captions"]), item_captions=list(meta["item_captions"].values()),
                   groups=meta["groups"], motion_index=motion_index, fd_frames=z["fd_frames"], descriptor=descriptor,
                   fps=fps, skipped=[Skipped(**s) for s in meta["skipped"]], source=meta["source"],
                   neighbours=neighbours)

    # ---- what AMG's similarities need
    def content_similarity(self, config: AMGConfig) -> ContentSimilarity:
        return ContentSimilarity(self.descriptor, self.neighbours, caption_mode=config.caption_mode,
                                 caption_top=config.caption_top)

    def _all_motion_windows(self):
        """Every training window of the motion index: vectors (N, D) and (train_id, start, motion) rows."""
        idx = self.motion_index.index
        mat = np.asarray(idx.vectors(), np.float32)
        meta = idx.metadata
        if not len(mat):
            return np.zeros((0, self.motion_index.dim), np.float32), []
        rows = list(zip(meta["item_id"].astype(str), meta["start"].astype(int), meta["motion"].astype(float)))
        return mat, rows

    def motion_windows(self, nmf: NMFConfig | None = None) -> tuple[np.ndarray, list[tuple[str, int, str]]]:
        """Training windows a copied motion can match: moving, and not natural (fewer than
        `natural_groups` distinct duplicate groups share the motion above tau_m) -- NMF's rules,
        applied to the training side so that sigma_t only rises for motion specific to one source."""
        nmf = nmf or NMFConfig()
        mat, meta = self._all_motion_windows()
        if not len(mat):
            return mat, []
        moving = np.array([m[2] >= nmf.static_px for m in meta])
        keep = []
        for i0 in range(0, len(mat), 4096):  # blocks: memory stays O(4096 N)
            sims = mat[i0:i0 + 4096] @ mat.T
            for r, row in enumerate(sims):
                i = i0 + r
                if not moving[i]:
                    continue
                near = np.nonzero((row > nmf.tau_m) & moving)[0]
                if len({self.groups.get(meta[j][0], meta[j][0]) for j in near}) < nmf.natural_groups:
                    keep.append(i)
        return mat[keep], [(meta[i][0], int(meta[i][1]), self.item_captions.get(meta[i][0], "")) for i in keep]

    def motion_similarity(self, config: AMGConfig, nmf: NMFConfig | None = None) -> MotionSimilarity:
        nmf = nmf or NMFConfig()
        wins, meta = self.motion_windows(nmf)
        pol = self.motion_index.policy
        proxy = MotionProxyPolicy(grid=pol.grid, k=pol.k, ref_side=pol.flow.short_side or 128)
        return MotionSimilarity(wins, meta, policy=proxy, threshold=nmf.tau_m, caption_mode=config.caption_mode,
                                caption_top=config.caption_top)

    # ---- evaluation
    def content_score(self, frames_uint8: np.ndarray) -> dict:
        """DESIGN.md's content score (`metrics.content`): max over frames of the nearest training frame's
        similarity, its frame and training item, and the coverage above tau_c."""
        sims, rows = nearest_training_frames(self.descriptor.encode(np.asarray(frames_uint8)), self.neighbours)
        score, coverage, i = content_scores(sims, self.tau_c)
        item, frame, cap = self.neighbours.meta(int(rows[i]))
        return {"content_score": score, "content_frame": i, "content_item": item,
                "content_item_frame": frame, "content_item_caption": cap, "coverage": coverage}


def _fingerprint(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def build_amg_hook(training: TrainingReference, config: AMGConfig = AMGConfig(), *, kind: str = "video",
                   pre_switch=None, preset: str | None = None, adapter=None) -> AMGHook:
    """An `AMGHook` with the content channel, plus the motion channel for video models (when `config.motion`
    and the training set has motion windows); thresholds relative to the reference's tau_c and NMF's tau_m.
    preset "amg-sd-2024": the authors' Stable Diffusion step instead (`guidance.authors`; content only,
    its own constants: `config` is not used); "amg-iddpm-2024": their CIFAR-10 step (pixel nL2 on x_t,
    DDPM's posterior mean), on the training set in `adapter`'s sample space (`sample_space_training`)."""
    if preset is not None:
        if preset not in PRESETS:
            raise DiffmemError(f"unknown AMG preset {preset!r}; choose from {', '.join(PRESETS)}")
        if pre_switch is not None:
            raise DiffmemError(f"the {preset} preset measures sigma at every step, as its authors did: it takes no guard")
        if preset == "amg-iddpm-2024":
            if adapter is None:
                raise DiffmemError("the amg-iddpm-2024 preset needs the model (its training set is compared in the "
                                   "model's own sample space)")
            return AuthorsIDDPMHook(*sample_space_training(training.source, adapter, training.groups))
        return AuthorsSDHook(training.content_similarity(config))
    sims = [training.content_similarity(config)]
    if config.motion and kind == "video" and training.n_motion_windows:
        sims.append(training.motion_similarity(config))
    return AMGHook(sims, config, thresholds={"content": training.tau_c, "motion": NMFConfig().tau_m},
                   pre_switch=pre_switch)


def sample_space_training(source, adapter, groups=None, *, progress: bool = False, batch: int = 64):
    """(samples (N, ...) in the model's sample space, their ids): every training item at the model's size,
    frames and rate (`models.train.load_training_data`, as the model was trained), encoded by the model,
    one per group of copies (`groups`: item id -> group id), as the "amg-iddpm-2024" preset's deduplicated
    neighbours. Needs a model diffmem can encode frames for (the built-in models)."""
    if not hasattr(adapter, "encode_frames") or not hasattr(adapter, "cfg"):
        name = getattr(adapter, "name", None) or "this model"
        raise DiffmemError(f"the amg-iddpm-2024 preset compares x_t with noised training samples in the model's "
                           f"own space: diffmem cannot encode training items for {name} (the built-in models it can)")
    data = load_training_data(source, adapter.cfg, progress=progress)
    groups = dict(groups or {})
    seen, keep = set(), []
    for i, item in enumerate(data.ids):
        g = groups.get(item, item)
        if g not in seen:
            seen.add(g)
            keep.append(i)
    with torch.no_grad():
        lat = torch.cat([adapter.encode_frames(torch.as_tensor(data.frames[keep[j:j + batch]])).float().cpu()
                         for j in range(0, len(keep), batch)])
    return lat, [data.ids[i] for i in keep]


def _vectors_by_item(index) -> dict:
    """{item id: its frame vectors in frame order} of a content index: the vectors its build computed with
    this descriptor at this frame rate (the same arithmetic as describing the frames again, without the
    cost, the larger part of building the reference)."""
    meta = index.metadata
    if not len(meta):
        return {}
    vecs, frame = index.vectors(), meta["frame"].to_numpy()
    return {str(item_id): vecs[rows[np.argsort(frame[rows], kind="stable")]]
            for item_id, rows in meta.groupby("item_id", sort=False).indices.items()}
