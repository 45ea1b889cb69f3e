"""Anti-Memorization Guidance end to end: the training reference, the hook, the evaluation table, the report.

    training = TrainingReference.build("world/train.parquet", fps=4.0, cache="runs/amg/cache")
    hook = build_amg_hook(training, AMGSettings(), kind="video")
    generate("builtin:tiny-t2v", prompts, out, settings, hooks=[hook])          # `diffmem generate --amg`
    evaluate_amg("builtin:tiny-t2v", "world/prompts.jsonl", "world/train.parquet", "runs/amg")  # `diffmem amg evaluate`

The training reference holds what sigma_t and the evaluation need from the training set: one
descriptor vector per training frame (content neighbours, exact search in memory), the motion index
of training windows (the motion audit's `MotionIndex`, DIS flow at the model's frame rate), content
duplicate groups, and training frames for the quality distance. It is cached on disk.

The evaluation runs the same prompts and seeds through every variant (baseline = plain CFG; "spe",
"dup", "sim" = one term alone; "full" = all three; "always" = all three with the switch always on),
each through `studies.generate.generate` (so resumable), and measures per sample: content score
(max over frames of the nearest training-frame similarity), motion score and verdict (the motion
audit with natural motion filtering), and alignment; per variant: Top-5 % (95th percentile of the
content scores), Top-1 (max), % above tau_c, % content- and motion-memorized among the duplicated
prompts, the quality distance to the training frames, alignment, frame-to-frame change (`flicker`), and wall time.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import BadInputError, DiffmemError, Skipped
from ..io.results import environment, read_json, to_jsonable, write_json, write_parquet, write_text
from ..io.video import resize_frames

VARIANTS = {
    "baseline": None,
    "spe": (("spe",), "threshold"),
    "dup": (("dup",), "threshold"),
    "sim": (("sim",), "threshold"),
    "full": (("spe", "dup", "sim"), "threshold"),
    "always": (("spe", "dup", "sim"), "always"),
}
DEFAULT_VARIANTS = ("baseline", "spe", "dup", "sim", "full")
#: prompt groups whose samples count as "duplicated prompts" in the table (the world's names)
DUPLICATED_GROUPS = ("duplicated_video", "duplicated_image", "duplicated_caption")


# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class AMGSettings:
    """AMG's knobs with the defaults diffmem uses (how they were chosen: README, "AMG").

    Content thresholds are fractions of tau_c (the content verdict's threshold): lambda runs from
    `content_lo` * tau_c (t = T) up to `content_hi` * tau_c (t = 0). The authors' SSCD values are
    0.3 / 0.4 (SSCD's copy threshold is 0.5); diffmem's 0.97 / 1.0 and c3 = 200 were measured on the
    committed tiny model with the built-in descriptor, on prompts and seeds outside the evaluation set
    (README, "Defaults and how they were chosen"). c3 scales a gradient whose size depends on the
    descriptor and the resolution: calibrate it for another model (`diffmem amg evaluate --c3`).
    `content_lambda` = (lo, hi) sets absolute values. Motion thresholds are fractions of tau_m.
    `motion`: add the motion channel (video models). `check_every`: see `guidance.hook.AMGConfig`.
    """

    c1: float = 13.0
    c2: float = 13.0
    c3: float = 200.0
    schedule: str = "exponential"
    content_lo: float = 0.97
    content_hi: float = 1.0
    content_lambda: tuple[float, float] | None = None
    motion: bool = True
    motion_lo: float = 0.75
    motion_hi: float = 0.9
    motion_weight: float = 1.0
    caption_mode: str = "frequent"
    caption_top: int = 10
    check_every: int = 1

    def as_dict(self) -> dict:
        return asdict(self)


def amg_config(settings: AMGSettings, content_range: tuple[float, float], tau_m: float,
               terms=("spe", "dup", "sim"), switch: str = "threshold", kinds: Sequence[str] = ("content",)):
    """The hook's `AMGConfig`: content (and pixel) thresholds from lo to hi, motion from fractions of tau_m."""
    from ..guidance.hook import AMGConfig
    from ..guidance.schedules import make_schedule

    def sched(lo, hi):
        if settings.schedule == "constant":
            return make_schedule("constant", value=hi)
        return make_schedule(settings.schedule, lo=lo, hi=hi)

    lo, hi = content_range
    scheds = {"content": sched(lo, hi), "pixel": sched(lo, hi),
              "motion": sched(settings.motion_lo * tau_m, settings.motion_hi * tau_m)}
    return AMGConfig(terms=tuple(terms), c1=settings.c1, c2=settings.c2, c3=settings.c3, switch=switch,
                     schedules=tuple((k, scheds[k]) for k in kinds),
                     weights=(("motion", settings.motion_weight),), check_every=settings.check_every)


# ----------------------------------------------------------------------------- training reference


class TrainingReference:
    """Descriptor vectors of every training frame, the motion index, groups, frames for FD (see module doc)."""

    def __init__(self, *, ids, frames_idx, captions, vectors, item_ids, item_captions, groups, motion_index,
                 fd_frames, descriptor, fps, skipped=(), source="", neighbours=None):
        from ..guidance.similarity import MemoryNeighbours

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
              progress: bool = False) -> "TrainingReference":
        """From a training manifest (file or folder, or a world folder with train.parquet).

        fps: the model's frame rate (training videos are sampled at it, so motion compares step for
        step). size: side of the frames kept for the quality distance (default: native). cache: folder
        for the descriptor cache and the motion index (both reused, the index resumes a killed build);
        without it the motion index goes to a temporary folder. content_index: a prebuilt content
        index folder (`index.VectorIndex` with the same descriptor policy) for the neighbours.
        """
        import tempfile

        from ..data.manifest import load_manifest
        from ..io.video import read_frames
        from ..features.motion import MotionPolicy
        from ..index.motion import build_motion_index
        from ..metrics.motion import duplicate_groups

        src = Path(source)
        neighbours, items_from_index = None, None
        if content_index is None and (src / "index.json").is_file():
            content_index = src  # --index is a content index folder: its items are the training set
        if content_index is not None:
            from ..index import open_content_index

            cidx, cdesc = open_content_index(content_index, descriptor)
            descriptor = descriptor or cdesc
            neighbours = IndexNeighbours(cidx)
            if content_index == src:
                items_from_index = _items_of_index(cidx)
        if descriptor is None:
            from ..features.builtin import BuiltinDescriptor

            descriptor = BuiltinDescriptor()
        if src.is_dir() and (src / "train.parquet").is_file():
            src = src / "train.parquet"
        if not src.exists():
            raise BadInputError(src, "no such training set (give a content index, a manifest, a media folder "
                                     "or a world folder)")
        policy = MotionPolicy(fps=float(fps))
        key = _fingerprint({"source": str(src.resolve()), "mtime": (src / "index.json").stat().st_mtime
                            if (src / "index.json").is_file() else src.stat().st_mtime,
                            "descriptor": descriptor.fingerprint, "motion": policy.fingerprint, "size": size,
                            "dup": dup_threshold, "version": 3})
        cache = Path(cache) if cache else Path(tempfile.mkdtemp(prefix="diffmem-amg-"))
        man = items_from_index if items_from_index is not None else load_manifest(src)
        motion_index, mskipped = build_motion_index(man.items, cache / f"motion-{key}", policy, progress=progress)
        cache_file = cache / f"training-{key}.npz"
        if cache_file.is_file():
            return cls._load(cache_file, descriptor, motion_index, fps, neighbours)
        from tqdm.auto import tqdm

        ids, fidx, caps, vecs, item_ids, item_caps, item_means, fd = [], [], [], [], [], [], [], []
        skipped = list(man.skipped)
        for it in tqdm(man.items, desc="training reference", unit="item", disable=not progress):
            try:
                fr = read_frames(it.path, fps=fps if it.kind == "video" else None).array
            except BadInputError as e:
                skipped.append(Skipped(it.id, str(it.path), e.reason))
                continue
            v = descriptor.encode(fr)
            ids += [it.id] * len(v)
            fidx += list(range(len(v)))
            caps += [it.caption] * len(v)
            vecs.append(v)
            item_ids.append(it.id)
            item_caps.append(it.caption)
            m = v.mean(0)
            item_means.append(m / max(float(np.linalg.norm(m)), 1e-12))
            fd.append(resize_frames(fr, (size, size)) if size else fr)
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
        import io as _io
        import os
        import tempfile

        meta = {"ids": self.ids, "frames_idx": self.frames_idx, "captions": self.captions,
                "item_captions": self.item_captions, "groups": self.groups,
                "skipped": [s.as_dict() for s in self.skipped], "source": self.source}
        buf = _io.BytesIO()
        np.savez_compressed(buf, vectors=self.vectors, fd_frames=self.fd_frames,
                            meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(buf.getvalue())
        os.replace(tmp, path)

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
    def content_similarity(self, settings: AMGSettings):
        from ..guidance.similarity import ContentSimilarity

        return ContentSimilarity(self.descriptor, self.neighbours, caption_mode=settings.caption_mode,
                                 caption_top=settings.caption_top)

    def _all_motion_windows(self):
        """Every training window of the motion index: vectors (N, D) and (train_id, start, motion) rows."""
        idx = self.motion_index.index
        mat = np.asarray(idx.vectors(), np.float32)
        meta = idx.metadata
        if not len(mat):
            return np.zeros((0, self.motion_index.dim), np.float32), []
        rows = list(zip(meta["item_id"].astype(str), meta["start"].astype(int), meta["motion"].astype(float)))
        return mat, rows

    def motion_windows(self, nmf=None) -> tuple[np.ndarray, list[tuple[str, int, str]]]:
        """Training windows a copied motion can match: moving, and not natural (fewer than
        `natural_groups` distinct duplicate groups share the motion above tau_m) -- NMF's rules,
        applied to the training side so that sigma_t only rises for motion specific to one source."""
        from ..metrics.motion import NMFConfig

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

    def motion_similarity(self, settings: AMGSettings, nmf=None):
        from ..guidance.similarity import MotionProxyPolicy, MotionSimilarity
        from ..metrics.motion import NMFConfig

        nmf = nmf or NMFConfig()
        wins, meta = self.motion_windows(nmf)
        pol = self.motion_index.policy
        proxy = MotionProxyPolicy(grid=pol.grid, k=pol.k, ref_side=pol.flow.short_side or 128)
        return MotionSimilarity(wins, meta, policy=proxy, threshold=nmf.tau_m, caption_mode=settings.caption_mode,
                                caption_top=settings.caption_top)

    # ---- evaluation
    def content_score(self, frames_uint8: np.ndarray) -> dict:
        """DESIGN.md's content score: max over frames of the nearest training frame's similarity."""
        v = self.descriptor.encode(np.asarray(frames_uint8))
        s, r = self.neighbours.search(v, 1)
        i = int(np.argmax(s[:, 0]))
        item, frame, cap = self.neighbours.meta(int(r[i, 0]))
        return {"content_score": float(s[i, 0]), "content_frame": i, "content_item": item,
                "content_item_frame": frame, "content_item_caption": cap,
                "coverage": float((s[:, 0] > self.tau_c).mean())}


class IndexNeighbours:
    """`NeighbourSource` over a content index (`index.VectorIndex`, metadata item_id / frame / caption)."""

    def __init__(self, index):
        self.index = index
        meta = index.metadata
        missing = [c for c in ("item_id", "caption") if c not in meta.columns]
        if missing:
            raise DiffmemError(f"{index.folder}: content index metadata lacks {missing}; AMG needs item ids and captions")
        self._ids = meta["item_id"].astype(str).to_numpy()
        self._caps = meta["caption"].fillna("").astype(str).to_numpy()
        self._frames = meta["frame"].astype(int).to_numpy() if "frame" in meta.columns else np.zeros(len(meta), int)

    def search(self, queries, k):
        return self.index.search(np.asarray(queries, np.float32), k)

    def vectors(self, rows):
        return self.index.vectors(np.asarray(rows, np.int64))

    def meta(self, row):
        row = int(row)
        return str(self._ids[row]), int(self._frames[row]), str(self._caps[row])


def _items_of_index(index):
    """The training items a content index was built from (one per item_id, with its path and caption)."""
    from ..data.manifest import Item, Manifest

    meta = index.metadata
    first = meta.drop_duplicates("item_id")
    items = [Item(str(r.item_id), Path(str(r.path)), str(r.caption or ""), str(getattr(r, "kind", "video") or "video"))
             for r in first.itertuples()]
    return Manifest(items=items, skipped=[], root=Path(index.folder))


def _fingerprint(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- the hook


def build_amg_hook(training: TrainingReference, settings: AMGSettings = AMGSettings(), *, kind: str = "video",
                   terms=("spe", "dup", "sim"), switch: str = "threshold", pre_switch=None):
    """An `AMGHook` with the content channel, plus the motion channel for video models."""
    from ..guidance.hook import AMGHook
    from ..metrics.motion import NMFConfig

    sims = [training.content_similarity(settings)]
    if settings.motion and kind == "video" and training.n_motion_windows:
        sims.append(training.motion_similarity(settings))
    rng = settings.content_lambda or (settings.content_lo * training.tau_c, settings.content_hi * training.tau_c)
    cfg = amg_config(settings, tuple(rng), NMFConfig().tau_m, terms, switch, [s.kind for s in sims])
    hook = AMGHook(sims, cfg, pre_switch=pre_switch)
    return hook


# ----------------------------------------------------------------------------- evaluation


@dataclass
class EvalConfig:
    n: int = 2
    seed: int = 0
    steps: int = 25
    guidance: float = 7.5
    variants: tuple[str, ...] = DEFAULT_VARIANTS
    batch_size: int = 8
    amg: AMGSettings = field(default_factory=AMGSettings)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["amg"] = self.amg.as_dict()
        return d


def evaluate_amg(model, prompts, index, out: str | Path, config: EvalConfig = EvalConfig(), *,
                 inception: str | Path | None = None, clip: str | Path | None = None, device="cpu",
                 progress: bool = False, log=None) -> dict:
    """Run every variant on the same prompts and seeds; write DIR/amg_table.{parquet,json}, the per-sample
    rows DIR/amg_samples.parquet and DIR/amg_report.html. Returns the summary (the table + settings)."""
    from ..metrics.motion import NMFConfig
    from ..models.adapter import DenoiserAdapter
    from ..models.registry import load_adapter
    from .generate import GenerateSettings, generate
    from .motion_audit import MotionAuditConfig, MotionAuditor
    from .prompts import read_prompts

    log = log or (lambda m: None)
    unknown = [v for v in config.variants if v not in VARIANTS]
    if unknown:
        raise DiffmemError(f"unknown AMG variants {unknown}; choose from {', '.join(VARIANTS)}")
    out = Path(out)
    adapter = model if isinstance(model, DenoiserAdapter) else load_adapter(model, device)
    entries = read_prompts(prompts) if isinstance(prompts, (str, Path)) else list(prompts)
    fps = float(getattr(adapter, "fps", 8.0))
    probe = adapter.decode(_zeros_latents(adapter))
    size = int(probe.shape[-2])
    log(f"training reference from {index} (cached in {out / 'cache'})")
    training = TrainingReference.build(index, fps=fps, size=size, cache=out / "cache", progress=progress)
    settings = GenerateSettings(n=config.n, seed=config.seed, steps=config.steps, guidance=config.guidance)
    specs = [{"id": e.id, "prompt": e.prompt, "group": e.group} for e in entries]
    roles = {e.id: (e.evidence or {}).get("role") for e in entries}

    auditor = MotionAuditor(training.motion_index, MotionAuditConfig(policy=training.motion_index.policy),
                            groups=training.groups) if training.n_motion_windows else None
    align = _alignment(entries, adapter, clip, fps, size)
    rows, per_variant = [], {}
    for name in config.variants:
        vdir = out / "variants" / name
        hooks, extra = [], {"variant": name}
        if VARIANTS[name] is not None:
            terms, switch = VARIANTS[name]
            hook = build_amg_hook(training, config.amg, kind=adapter.kind, terms=terms, switch=switch)
            hooks = [hook]
            extra["amg"] = {"settings": config.amg.as_dict(), "config": hook.config.as_dict(),
                            "similarities": [s.kind for s in hook.similarities]}
        log(f"variant {name}: generating {len(specs) * config.n} samples")
        t0 = time.time()
        after = (lambda rows, h=hooks[0], d=vdir: write_traces(h, d, rows)) if hooks else None
        summary = generate(adapter, specs, vdir, settings, batch_size=config.batch_size, hooks=hooks,
                           extra_settings=extra, after_batch=after, progress=progress)
        wall = time.time() - t0
        per_variant[name] = _timing(vdir, summary, wall)
        vrows = _measure_variant(vdir, name, training, auditor, align, roles, log)
        rows += vrows
    write_parquet(out / "amg_samples.parquet", rows)
    table = amg_table(rows, training.tau_c, NMFConfig().tau_m, per_variant)
    q = _quality(out, config.variants, training, inception)
    for r in table:
        r.update(q.get(r["variant"], {}))
    result = {"model": adapter.describe(), "prompts": str(prompts), "index": str(index), "config": config.as_dict(),
              "descriptor": training.descriptor.policy.as_dict(), "tau_c": training.tau_c,
              "tau_c_source": training.tau_c_source,
              "tau_m": NMFConfig().tau_m, "alignment": align.describe() if align else None,
              "training_skipped": [s.as_dict() for s in training.skipped], "table": table,
              "environment": environment()}
    write_json(out / "amg_table.json", result)
    write_parquet(out / "amg_table.parquet", table)
    write_text(out / "amg_report.html", evaluation_html(result, rows, out))
    return result


def _timing(vdir: Path, summary: dict, wall: float) -> dict:
    """Seconds per generated sample of this variant, kept from the run that generated them (a resumed
    run that generates nothing reports the stored figure; a partial one, the samples it made)."""
    path = vdir / "timing.json"
    n = int(summary.get("n_generated") or 0)
    if n:
        t = {"seconds": summary.get("seconds"), "n_generated": n, "wall": round(wall, 2),
             "sec_per_sample": (summary.get("seconds") or 0.0) / n}
        write_json(path, t)
        return t
    return read_json(path) if path.is_file() else {}


def _zeros_latents(adapter):
    import torch

    return torch.zeros(1, *adapter.latent_shape(), device=adapter.device, dtype=adapter.dtype)


def _alignment(entries, adapter, clip, fps, size):
    from ..metrics.quality import CLIPScore
    from ..world.judge import WorldAlignment, parse_world_caption

    if clip:
        return CLIPScore(clip)
    # the world's judge, when the prompts are world captions (those it cannot read get no value)
    if entries and any(parse_world_caption(e.prompt) is not None for e in entries):
        n_frames = int(adapter.decode(_zeros_latents(adapter)).shape[1])
        return WorldAlignment(size=size, n_frames=n_frames, fps=fps)
    return None


def write_traces(hook, out: str | Path, rows: Sequence[dict] | None = None) -> int:
    """DIR/samples/<id>.amg.json (summary + trace) for the samples the hook guided in this run.

    `rows`: generation rows (id, prompt, seed) to write, e.g. one batch from `generate(after_batch=...)`;
    default: every sample of DIR/manifest.parquet. Samples are matched by (prompt, seed), which names a
    sample in a generation folder; samples finished in an earlier run keep the trace written then.
    Returns how many were written.
    """
    out = Path(out)
    if rows is None:
        import pandas as pd

        man = pd.read_parquet(out / "manifest.parquet")
        rows = [{"prompt": p, "seed": s, "id": i} for p, s, i in zip(man["prompt"], man["seed"], man["id"])]
    by_key = {(r["prompt"], int(r["seed"])): r["id"] for r in rows}
    n = 0
    for i, (prompt, seed) in hook.sample_keys.items():
        sid = by_key.get((prompt, int(seed)))
        if sid is not None:
            write_json(out / "samples" / f"{sid}.amg.json",
                       {"summary": hook.summary(i), "trace": hook.trace(i), "config": hook.config.as_dict()})
            n += 1
    return n


def _measure_variant(vdir: Path, name: str, training, auditor, align, roles, log) -> list[dict]:
    import pandas as pd

    from ..io.video import read_frames

    cache = vdir / "measures.json"
    old = read_json(cache) if cache.is_file() else {}
    man = pd.read_parquet(vdir / "manifest.parquet")
    rows = []
    for r in man.to_dict("records"):
        sid = r["id"]
        key = f"{sid}:{(vdir / r['path']).stat().st_mtime_ns if (vdir / r['path']).exists() else 0}"
        if key in old:
            rows.append(old[key])
            continue
        row = {"variant": name, "id": sid, "prompt": r["prompt"], "prompt_id": r["prompt_id"], "group": r["group"],
               "role": roles.get(r["prompt_id"]), "seed": int(r["seed"]), "path": str(vdir / r["path"])}
        try:
            fr = read_frames(vdir / r["path"]).array
        except BadInputError as e:
            row["error"] = e.reason
            rows.append(row)
            continue
        row.update(training.content_score(fr))
        # frame-to-frame change (mean |difference| of consecutive frames, 0-255): damage that a distance
        # in descriptor space can miss, e.g. one frame blown out by too strong a dissimilarity push
        row["flicker"] = float(np.abs(np.diff(fr.astype(np.float32), axis=0)).mean()) if len(fr) >= 2 else None
        row["content_memorized"] = row["content_score"] > training.tau_c
        if auditor is not None and len(fr) >= 2:
            m = auditor.score_frames(sid, fr)
            row["motion_score"] = m.motion_score
            row["motion_raw"] = m.raw_score
            row["motion_memorized"] = bool(m.motion_memorized)
            row["motion_item"] = m.motion_match.train_id if m.motion_match is not None else None
        if align is not None:
            if hasattr(align, "judge"):
                try:
                    a = align.judge(fr, r["prompt"])
                    row.update({"aligned": a["aligned"], "sprite_ok": a["sprite_ok"], "motion_ok": a["motion_ok"]})
                except DiffmemError:
                    pass  # not a caption the world's judge reads (e.g. "a picture of ..."): no alignment value
            else:
                row["clip_score"] = align.clip_score(fr, r["prompt"])
        tr = vdir / "samples" / f"{sid}.amg.json"
        if tr.is_file():
            row.update(read_json(tr)["summary"])
        old[key] = to_jsonable(row)
        rows.append(old[key])
        write_json(cache, old)
    return rows


def amg_table(rows: Sequence[dict], tau_c: float, tau_m: float, timing: dict | None = None) -> list[dict]:
    """One row per variant (see module docstring). Pure: rows in, table out."""
    import pandas as pd

    df = pd.DataFrame(list(rows))
    out = []
    for name in dict.fromkeys(df["variant"]):
        d = df[df["variant"] == name]
        cs = d["content_score"].dropna().to_numpy(float)
        dup = d[d["group"].isin(DUPLICATED_GROUPS)]
        mot = d[(d["group"] == "motion_memorization") & (d["role"] == "memorized")]
        row = {"variant": name, "n": int(len(d)),
               "top5": float(np.percentile(cs, 95)) if len(cs) else None,
               "top1": float(cs.max()) if len(cs) else None,
               "pct_above_tau": float(100 * (cs > tau_c).mean()) if len(cs) else None,
               "dup_content_memorized_pct": _pct(dup.get("content_memorized")),
               "motion_prompts_motion_memorized_pct": _pct(mot.get("motion_memorized")),
               "all_motion_memorized_pct": _pct(d.get("motion_memorized")),
               "aligned_pct": _pct(d.get("aligned")),
               "flicker": float(d["flicker"].mean()) if "flicker" in d and d["flicker"].notna().any() else None,
               "clip_score": float(d["clip_score"].mean()) if "clip_score" in d else None}
        if "amg_triggered_steps" in d and d["amg_triggered_steps"].notna().any():
            row["mean_triggered_steps"] = float(d["amg_triggered_steps"].fillna(0).mean())
            nov = d[d["group"] == "novel"]
            row["novel_triggered_pct"] = _pct(nov["amg_triggered_steps"].fillna(0) > 0) if len(nov) else None
        if timing and name in timing:
            row["sec_per_sample"] = timing[name].get("sec_per_sample")
        out.append(row)
    return out


def _pct(col) -> float | None:
    if col is None:
        return None
    s = col.dropna()
    return float(100 * s.astype(bool).mean()) if len(s) else None


def _quality(out: Path, variants, training, inception) -> dict:
    """Quality distance of every variant's frames to the training frames (FID or FD-<descriptor>)."""
    import pandas as pd

    from ..io.video import read_frames
    from ..metrics.quality import feature_space, quality_distance

    space = feature_space(inception, training.descriptor)
    res = {}
    for name in variants:
        man = pd.read_parquet(out / "variants" / name / "manifest.parquet")
        clips = []
        for p in man["path"]:
            try:
                clips.append(read_frames(out / "variants" / name / p).array)
            except BadInputError:
                continue
        if len(clips) < 1:
            continue
        q = quality_distance(clips, [training.fd_frames], space)
        res[name] = {"quality_metric": q["metric"], "quality": q["value"]}
    return res


# ----------------------------------------------------------------------------- HTML


def evaluation_html(result: dict, rows: Sequence[dict], out: Path) -> str:
    from ..io.html import config_block, esc, page, table

    tab = result["table"]
    cols = [c for c in ("variant", "n", "top5", "top1", "pct_above_tau", "dup_content_memorized_pct",
                        "motion_prompts_motion_memorized_pct", "quality_metric", "quality", "aligned_pct",
                        "clip_score", "flicker", "mean_triggered_steps", "novel_triggered_pct", "sec_per_sample")
            if any(r.get(c) is not None for r in tab)]
    body = [f"<p>tau_c = {result['tau_c']:.3f} ({esc(result['descriptor']['name'])}), tau_m = {result['tau_m']}</p>",
            table(cols, [[_fmt(r.get(c)) for c in cols] for r in tab])]
    body.append("<h2>Memorized samples: baseline vs full AMG (same seed)</h2>")
    body.append(_before_after(rows, out))
    body.append("<h2>Configuration</h2>" + config_block(result["config"]))
    return page("Anti-Memorization Guidance: evaluation", "\n".join(body))


def _fmt(v):
    return f"{v:.3f}" if isinstance(v, float) else v


def _before_after(rows, out: Path, limit: int = 12) -> str:
    from ..io.html import esc, gif_data_uri, img
    from ..io.video import read_frames

    base = {r["id"]: r for r in rows if r["variant"] == "baseline"}
    full = {r["id"]: r for r in rows if r["variant"] == "full"}
    pairs = [(base[i], full[i]) for i in base
             if i in full and (base[i].get("content_memorized") or base[i].get("motion_memorized"))][:limit]
    if not pairs:
        return "<p>No memorized baseline sample (or no baseline/full variant).</p>"
    parts = []
    for b, f in pairs:
        cells = []
        for r in (b, f):
            try:
                fr = read_frames(r["path"]).array
                cells.append(img(gif_data_uri(fr, 4.0), r["variant"], height=96))
            except BadInputError:
                cells.append("(unreadable)")
        parts.append(f"<figure>{cells[0]} {cells[1]}<figcaption>{esc(b['prompt'])} (seed {b['seed']}): content "
                     f"{_fmt(b.get('content_score'))} &rarr; {_fmt(f.get('content_score'))}, motion "
                     f"{_fmt(b.get('motion_score'))} &rarr; {_fmt(f.get('motion_score'))}</figcaption></figure>")
    return "".join(parts)


# ----------------------------------------------------------------------------- `generate --amg-report`


def amg_report(out: str | Path, adapter, settings, *, batch_size: int = 8) -> Path:
    """DIR/amg_report.html for a `generate --amg` folder: per sample the sigma trajectories with their
    thresholds and the steps each term fired, and, for samples AMG changed, the frames without AMG for
    the same seed (regenerated here: untriggered samples are identical by construction)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from ..io.html import esc, figure_png, gif_data_uri, img, page, table
    from ..io.video import read_frames
    from ..models.adapter import frames_to_uint8
    from ..models.sampler import sample

    out = Path(out)
    man = pd.read_parquet(out / "manifest.parquet")
    recs = []
    for r in man.to_dict("records"):
        p = out / "samples" / f"{r['id']}.amg.json"
        recs.append((r, read_json(p) if p.is_file() else None))
    changed = [(r, t) for r, t in recs if t and t["summary"].get("amg_triggered_steps", 0) > 0]
    before = {}
    if changed:
        o = sample(adapter, [r["prompt"] for r, _ in changed], [int(r["seed"]) for r, _ in changed],
                   settings.sampler_config(), batch_size=batch_size, progress=False)
        for (r, _), fr in zip(changed, frames_to_uint8(o.frames)):
            before[r["id"]] = fr
    rows_html, figs = [], []
    for r, t in recs:
        s = (t or {}).get("summary", {})
        rows_html.append([r["id"], r["prompt"], r["seed"], s.get("amg_triggered_steps"), s.get("amg_spe_steps"),
                          s.get("amg_dup_steps"), s.get("amg_sim_steps"),
                          _fmt(s.get("amg_sigma_content_max")), _fmt(s.get("amg_sigma_motion_max"))])
        if not t:
            continue
        tr = t["trace"]
        fig, ax = plt.subplots(figsize=(4.2, 2.4))
        for kind, vals in tr["sigma"].items():
            xs = [i for i, v in enumerate(vals) if v is not None]
            line, = ax.plot(xs, [vals[i] for i in xs], label=f"sigma {kind}")
            ax.plot(range(len(tr["lambda"][kind])), tr["lambda"][kind], "--", color=line.get_color(),
                    label=f"lambda {kind}")
        trig = [i for i, v in enumerate(tr["triggered"]) if v]
        if trig:
            ax.scatter(trig, [ax.get_ylim()[0]] * len(trig), marker="|", color="red", label="triggered")
        ax.set_xlabel("step")
        ax.legend(fontsize=6)
        after = read_frames(out / r["path"]).array
        cells = img(figure_png(fig), "sigma trajectory", height=160)
        if r["id"] in before:
            cells += img(gif_data_uri(before[r["id"]], 4.0), "without AMG", 96) + img(gif_data_uri(after, 4.0), "with AMG", 96)
            cap = "trajectory; without AMG; with AMG (same seed)"
        else:
            cells += img(gif_data_uri(after, 4.0), "with AMG (never triggered: identical without)", 96)
            cap = "trajectory; sample (AMG never triggered)"
        figs.append(f"<figure>{cells}<figcaption>{esc(r['id'])}: {esc(r['prompt'])}. {cap}</figcaption></figure>")
    body = table(["id", "prompt", "seed", "triggered steps", "spe", "dup", "sim", "max sigma content",
                  "max sigma motion"], rows_html) + "".join(figs)
    path = out / "amg_report.html"
    write_text(path, page("AMG generation report", body))
    return path


# ----------------------------------------------------------------------------- motion proxy vs OFS-k


def proxy_agreement(n_per_motion: int = 2, *, size: int = 32, n_frames: int = 8, fps: float = 4.0, seed: int = 0,
                    proxy=None) -> dict:
    """How well the differentiable motion proxy tracks OFS-k, on rendered world clips.

    Renders clips of every world motion (random sprite, background, instance, texture offset), then
    for every ordered pair (G, X) of distinct clips compares OFS-k(G, X) from DIS flow (the motion
    metric) with the proxy's OFS-k, both proxy-vs-DIS-windows (what AMG's sigma_t computes: generated
    side by the proxy, training side from the motion index) and proxy-vs-proxy. Returns Pearson and
    Spearman correlations, the per-flow cosine of the pooled fields, and the counts.
    """
    import torch
    from scipy.stats import pearsonr, spearmanr

    from ..world.clips import BACKGROUNDS, DIRECTIONS, MOTIONS, SPRITES, ClipSpec, render_clip
    from ..guidance.similarity import MotionProxyPolicy, motion_proxy, proxy_windows
    from ..features.motion import MotionPolicy, describe_motion
    from ..metrics.motion import ofs_k_windows

    proxy = proxy or MotionProxyPolicy()
    rng = np.random.default_rng(seed)
    policy = MotionPolicy(fps=fps)
    clips = []
    for m in MOTIONS:
        for j in range(n_per_motion):
            d = DIRECTIONS[m][j % len(DIRECTIONS[m])]
            spec = ClipSpec.make(SPRITES[rng.integers(len(SPRITES))], BACKGROUNDS[rng.integers(len(BACKGROUNDS))], m, d,
                                 n_frames=n_frames, size=size, fps=fps, sprite_instance=int(rng.integers(5)),
                                 bg_x=float(rng.random()), bg_y=float(rng.random()))
            clips.append((f"{m}-{d}-{j}", render_clip(spec)))
    dis = [describe_motion(c, policy) for _, c in clips]
    prox, cos = [], []
    for (_, c), vm in zip(clips, dis):
        with torch.no_grad():
            pooled = motion_proxy(torch.as_tensor(c).float().div(255.0)[None], proxy)
        w, _ = proxy_windows(pooled, proxy.k)
        prox.append(w[0].numpy())
        a, b = pooled[0].reshape(len(vm.pooled), -1).numpy(), vm.pooled.reshape(len(vm.pooled), -1)
        na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
        ok = (na > 1e-6) & (nb > 1e-6)
        if ok.any():
            cos.append(float(((a[ok] * b[ok]).sum(1) / (na[ok] * nb[ok])).mean()))
    ref, pd_, pp = [], [], []
    for i in range(len(clips)):
        for j in range(len(clips)):
            if i == j or not len(dis[i].windows) or not len(dis[j].windows):
                continue
            ref.append(ofs_k_windows(dis[i].windows, dis[j].windows).score)
            pd_.append(ofs_k_windows(prox[i], dis[j].windows).score)
            pp.append(ofs_k_windows(prox[i], prox[j]).score)
    return {"clips": len(clips), "pairs": len(ref), "size": size, "n_frames": n_frames, "fps": fps,
            "proxy": proxy.as_dict(),
            "pearson_proxy_vs_dis": float(pearsonr(ref, pd_)[0]), "spearman_proxy_vs_dis": float(spearmanr(ref, pd_)[0]),
            "pearson_proxy_vs_proxy": float(pearsonr(ref, pp)[0]),
            "spearman_proxy_vs_proxy": float(spearmanr(ref, pp)[0]),
            "mean_flow_cosine": float(np.mean(cos)) if cos else None}


# ----------------------------------------------------------------------------- `diffmem generate --amg`


def generate_with_amg(model, prompts, out: str | Path, settings, index: str | Path, *,
                      amg: AMGSettings = AMGSettings(), report: bool = False, batch_size: int = 8, device="cpu",
                      content_index: str | Path | None = None, progress: bool = False, log=None) -> dict:
    """`studies.generate.generate` with the AMG hook, then DIR/samples/<id>.amg.json per sample (which steps
    triggered which term, the similarity trajectories) and, with `report`, DIR/amg_report.html.

    `index`: the training set AMG compares with (manifest, media folder or world folder); its
    descriptor cache and motion index go to DIR/amg-cache (reused on the next run).
    """
    from ..models.adapter import DenoiserAdapter
    from ..models.registry import load_adapter
    from .generate import generate

    log = log or (lambda m: None)
    out = Path(out)
    adapter = model if isinstance(model, DenoiserAdapter) else load_adapter(model, device)
    size = int(adapter.decode(_zeros_latents(adapter)).shape[-2])
    log(f"AMG: training reference from {index}")
    training = TrainingReference.build(index, fps=float(getattr(adapter, "fps", 8.0)), size=size,
                                       cache=out / "amg-cache", content_index=content_index, progress=progress)
    hook = build_amg_hook(training, amg, kind=adapter.kind)
    extra = {"amg": {"settings": amg.as_dict(), "config": hook.config.as_dict(), "index": str(index),
                     "similarities": [s.kind for s in hook.similarities],
                     "descriptor": training.descriptor.policy.as_dict()}}
    written = []
    summary = generate(adapter, prompts, out, settings, batch_size=batch_size, hooks=[hook], extra_settings=extra,
                       after_batch=lambda rows: written.append(write_traces(hook, out, rows)),
                       progress=progress, log=log)
    summary["amg_traces_written"] = sum(written)
    summary["amg_stats"] = dict(hook.stats)
    if report:
        summary["amg_report"] = str(amg_report(out, adapter, settings, batch_size=batch_size))
    return summary
