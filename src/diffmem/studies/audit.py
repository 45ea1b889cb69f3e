"""`diffmem audit`: did the model copy its training data, which items, how much?

    result = audit("generated/", "train.parquet", "out/")        # builds out/train_index/ first
    result = audit("generated/", "INDEX/", "out/")               # or searches a saved content index

For every generated item: its frames sampled at the index's rate, each frame's nearest training frame,
the content score, coverage and best match (DESIGN.md, "Content memorization"), and a verdict.
Writes, atomically:

    OUT/audit.parquet    one row per audited generated item (nested values as JSON text; read it
                         with `diffmem.io.results.read_table` or `Result.to_pandas` to get them nested)
    OUT/audit.json       {"config", "summary", "items": [...], "skipped": [...]}
    OUT/report.html      flagged items (their frames beside the matched training frames), the score
                         distribution, every item, the configuration; self-contained, all text escaped
    OUT/items/           one JSON per finished item: a killed audit resumes from them
    OUT/train_index/     the content index, when TRAIN_OR_INDEX is a training set (reusable, resumable)

A generated or training item that cannot be read is listed in `skipped` (with "set": "generated" or
"train") and the rest completes.

Parts. The audit is a list of parts, each scoring an item from its frames; `ContentPart` is always
there, a motion part plugs in with the same interface (`AuditPart`). Each part adds its fields to the
item's record and says whether it flags the item; `verdict(content, motion)` combines the flags.
`motion=MotionAuditConfig()` adds the motion part (`diffmem.studies.motion_audit`): the training videos
are indexed into OUT/motion_index and each item gains motion_score, motion_match, natural_motion,
motion_memorized; a part with an `html(record)` method adds its block to a flagged item in report.html.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..data.manifest import load_manifest
from ..errors import BadInputError, DiffmemError, Skipped
from ..index.content import DEFAULT_FPS, ItemFrames, build_content_index, open_content_index, prefetch_frames
from ..io.lock import writes_folder
from ..io.results import environment, read_json, write_json, write_parquet, write_text
from ..metrics.content import copy_table, score_items
from .audit_report import render_report
from .motion_audit import MotionAuditConfig, lowest_rate, motion_part

VERDICTS = ("content", "motion", "both", "none")
#: generated items scored together (one content search), and at most lost when an audit is killed
AUDIT_CHUNK = 32


def verdict(content: bool, motion: bool | None = None) -> str:
    """The item's verdict from the content flag and the motion flag (None: motion not audited)."""
    m = bool(motion)
    if content and m:
        return "both"
    if content:
        return "content"
    if m:
        return "motion"
    return "none"


class AuditPart(Protocol):
    """One kind of evidence. `score` returns the fields it adds to the item's record; `flagged` reads
    its own flag from those fields. `key` changes whenever a stored result would no longer be valid. A part
    may also have `score_many(items, frames) -> list of fields`, which the audit calls with a chunk of items
    (the content part searches once per chunk, the motion part computes flow in parallel)."""

    name: str

    def config(self) -> dict: ...

    def key(self) -> str: ...

    def score(self, item, frames: ItemFrames) -> dict: ...

    def flagged(self, record: dict) -> bool: ...


class ContentPart:
    """Content memorization against a content index (DESIGN.md, "Content memorization")."""

    name = "content"

    def __init__(self, index, descriptor, threshold: float, batch_size: int = 64):
        if threshold is None:
            raise DiffmemError(f"descriptor {descriptor.policy.name!r} has no calibrated tau_c; pass a threshold "
                               "(calibrate one with diffmem.metrics.calibrate.calibrate_threshold)")
        self.index, self.descriptor, self.threshold, self.batch_size = index, descriptor, float(threshold), batch_size

    def config(self) -> dict:
        p = self.descriptor.policy
        return {"descriptor_policy": p.as_dict(), "fingerprint": p.fingerprint, "threshold": self.threshold,
                "threshold_source": p.threshold_source if self.threshold == p.threshold else "given by the user",
                "index": str(self.index.folder), "index_factory": self.index.factory,
                "index_search_params": self.index.meta.get("search_params", ""), "index_vectors": len(self.index),
                "table_thresholds": [0.5, 0.4]}

    def key(self) -> str:
        return json.dumps([self.descriptor.policy.fingerprint, self.threshold, self.index.fingerprint,
                           len(self.index), self.index.factory, self.index.meta.get("search_params", "")])

    def score(self, item, frames: ItemFrames) -> dict:
        return self.score_many([item], [frames])[0]

    def score_many(self, items, frames: Sequence[ItemFrames]) -> list[dict]:
        """`score` for several items, with one index search for all their frames (`metrics.content.score_items`);
        each item's frames are described on their own, so its descriptors do not depend on its neighbours."""
        descs = [self.descriptor.encode(f.array, batch_size=self.batch_size) for f in frames]
        results = score_items([(it.id, d) for it, d in zip(items, descs)], self.index, self.threshold)
        return [self._fields(r, f) for r, f in zip(results, frames)]

    @staticmethod
    def _fields(r, frames: ItemFrames) -> dict:
        m = r.match
        return {
            "content_score": r.content_score, "coverage": r.coverage, "content_memorized": r.memorized,
            "content_match": {"train_id": m["train_id"], "frame": m["frame"], "similarity": m["similarity"],
                              "timestamp": m["timestamp"], "path": m["path"], "caption": m["caption"]},
            "best_frame": r.best_frame,
            "frames": [{"frame": f.frame, "timestamp": float(frames.timestamps[f.frame]), "similarity": f.similarity,
                        "train_id": f.train_id, "train_frame": f.train_frame} for f in r.frames],
        }

    def flagged(self, record: dict) -> bool:
        return bool(record.get("content_memorized"))


@dataclass
class AuditResult:
    out: Path
    config: dict
    summary: dict
    items: list[dict]
    skipped: list[dict] = field(default_factory=list)

    @property
    def flagged(self) -> list[dict]:
        return [it for it in self.items if it["verdict"] != "none"]


def resolve_reference(train_or_index, out: Path, *, descriptor=None, policy=None, sha256=None, threshold=None,
                      fps=None, factory="Flat", device="cpu", batch_size=64, progress=True, root=None,
                      columns=None):
    """(index, descriptor, fps, kind): open a saved content index, or build one from a training set into
    OUT/train_index (resumable). columns: the training manifest's `ColumnMap` or preset name."""
    ref = Path(train_or_index)
    if (ref / "index.json").is_file():
        if columns is not None:
            raise DiffmemError(f"{ref}: is a content index; the preset and column options apply to a training "
                               "manifest (give them to `diffmem index build`)")
        index, desc = open_content_index(ref, descriptor, policy=policy, sha256=sha256, threshold=threshold,
                                         device=device)
        idx_fps = index.config.get("fps")
        if fps is not None and fps != idx_fps:
            raise DiffmemError(f"{ref}: the index samples frames at fps={idx_fps}; audit with the same rate "
                               f"(got --fps {fps}) or build a new index")
        return index, desc, idx_fps, "index"
    train = load_manifest(ref, root=root, columns=columns) if root is not None or columns is not None else ref
    rep = build_content_index(train, out / "train_index", descriptor=descriptor or "builtin", policy=policy,
                              sha256=sha256, fps=DEFAULT_FPS if fps is None else fps, factory=factory,
                              device=device, batch_size=batch_size, progress=progress)
    index, desc = open_content_index(rep.index.folder, descriptor or "builtin", policy=policy, sha256=sha256,
                                     threshold=threshold, device=device)
    return index, desc, index.config.get("fps"), "train"


@writes_folder("audit")
def audit(generated, train_or_index, out, *, descriptor: Any = None, policy: str | None = None,
          sha256: str | None = None, threshold: float | None = None, fps: float | None = None,
          factory: str = "Flat", device: Any = "cpu", batch_size: int = 64, progress: bool = True,
          parts: Sequence[AuditPart] = (), report: bool = True, motion: MotionAuditConfig | bool = True,
          motion_index: str | Path | None = None, root: str | Path | None = None, columns=None) -> AuditResult:
    """Audit generated items against a training set or a saved content index; see the module docstring.

    descriptor/policy/sha256: as `diffmem.features.load_descriptor` (default: the index's own, or builtin).
    threshold: tau_c (default: the descriptor policy's). fps: frame rate for sampling (default: the
    index's; 8 when building). parts: extra `AuditPart`s after the content part. motion: the motion
    part's `MotionAuditConfig` (True, the default as in the CLI: the default config; False: content only);
    motion_index: its folder (default OUT/motion_index). root: where the manifests' relative media paths
    resolve (GENERATED's, and TRAIN's when it is a manifest to index; default: each manifest's folder).
    columns: TRAIN's `ColumnMap` (or preset name) when it is a manifest table in another layout."""
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = load_manifest(generated, root=root)  # first: a bad GENERATED fails before any index is built
    if not manifest.items:
        why = f"; {len(manifest.skipped)} skipped, e.g. {manifest.skipped[0].reason}" if manifest.skipped else ""
        raise BadInputError(generated, f"no generated media item to audit{why}")
    index, desc, fps, ref_kind = resolve_reference(
        train_or_index, out, descriptor=descriptor, policy=policy, sha256=sha256, threshold=threshold, fps=fps,
        factory=factory, device=device, batch_size=batch_size, progress=progress, root=root, columns=columns)
    content = ContentPart(index, desc, desc.threshold if threshold is None else threshold, batch_size)
    if motion is True:
        motion = MotionAuditConfig()
    if motion:
        parts = [motion_part(index, out, motion, motion_index=motion_index, gen_fps=lowest_rate(manifest.items),
                             progress=progress), *parts]
    all_parts: list[AuditPart] = [content, *parts]

    config = {
        "generated": str(Path(generated)), "reference": str(Path(train_or_index)), "reference_kind": ref_kind,
        "fps": fps, "content": content.config(),
        **{p.name: p.config() for p in parts},
        "verdicts": list(VERDICTS), "environment": environment(),
    }
    key = hashlib.sha256(json.dumps([fps, [p.key() for p in all_parts]]).encode()).hexdigest()[:16]
    config["audit_key"] = key

    skipped = [{**s.as_dict(), "set": "generated"} for s in manifest.skipped]
    skipped += [{**dict(s), "set": "train"} for s in index.skipped]
    items_dir = out / "items"
    done: dict[str, dict] = {}  # item id -> its record, or {"skipped": ...}
    todo = []
    for it in manifest.items:
        rec_path = items_dir / f"{hashlib.sha1(it.id.encode()).hexdigest()[:20]}.json"
        if rec_path.exists():
            try:
                stored = read_json(rec_path)
                if stored.get("audit_key") == key and stored.get("id") == it.id:
                    done[it.id] = stored
                    continue
            except (OSError, ValueError):
                pass  # a damaged record is recomputed
        todo.append((it, rec_path))
    bar = tqdm(total=len(manifest.items), initial=len(done), desc="auditing", unit="item", leave=False,
               disable=not progress)
    # Items go through in chunks: decoded ahead in a thread (`prefetch_frames`), then each part scores the
    # chunk (the content part with one index search for all its frames); every record is written as soon as
    # its chunk is done, so a killed audit loses at most one chunk.
    for lo in range(0, len(todo), AUDIT_CHUNK):
        chunk = todo[lo:lo + AUDIT_CHUNK]
        paths = {it.id: rec_path for it, rec_path in chunk}
        ready = []
        for it, frames in prefetch_frames([it for it, _ in chunk], fps):
            if isinstance(frames, BadInputError):
                sk = {**Skipped(it.id, str(it.path), frames.reason).as_dict(), "set": "generated"}
                done[it.id] = {"audit_key": key, "id": it.id, "skipped": sk}
                write_json(paths[it.id], done[it.id])
                bar.update(1)
            else:
                ready.append((it, frames))
        recs = [{"id": it.id, "path": str(it.path), "caption": it.caption, "kind": it.kind,
                 "n_frames": int(len(frames.array)), "truncated": frames.truncated} for it, frames in ready]
        for p in all_parts:
            fields = (p.score_many([it for it, _ in ready], [f for _, f in ready]) if hasattr(p, "score_many")
                      else [p.score(it, f) for it, f in ready])
            for rec, f in zip(recs, fields):
                rec.update(f)
        for rec in recs:
            flags = {p.name: p.flagged(rec) for p in all_parts}
            rec["verdict"] = verdict(flags.get("content", False), flags.get("motion"))
            done[rec["id"]] = {**rec, "audit_key": key}
            write_json(paths[rec["id"]], done[rec["id"]])
            bar.update(1)
    bar.close()
    records: list[dict] = []
    for it in manifest.items:  # manifest order, whatever was resumed
        r = done[it.id]
        if "skipped" in r:
            skipped.append(r["skipped"])
        else:
            records.append(r)

    items = [{k: v for k, v in r.items() if k != "audit_key"} for r in records]
    summary = _summary(items, content.threshold, manifest, skipped, time.perf_counter() - t0)
    if items:
        write_parquet(out / "audit.parquet", [_parquet_row(r) for r in items])
    else:  # an empty table still has the columns
        write_parquet(out / "audit.parquet", pd.DataFrame(columns=_COLUMNS))
    write_json(out / "audit.json", {"config": config, "summary": summary, "items": items, "skipped": skipped})
    result = AuditResult(out, config, summary, items, skipped)
    if report:
        write_text(out / "report.html", render_report(result, index=index, fps=fps, audit_parts=all_parts))
    return result


def _summary(items: list[dict], tau: float, manifest, skipped, seconds: float) -> dict:
    scores = np.array([it["content_score"] for it in items], dtype=np.float64)
    counts = {v: sum(it["verdict"] == v for it in items) for v in VERDICTS}
    motion = any("motion_n_flows" in it for it in items)
    return {
        "n_generated": len(manifest.items) + len(manifest.skipped),
        "n_audited": len(items),
        "n_skipped_generated": sum(s.get("set") == "generated" for s in skipped),
        "n_skipped_train": sum(s.get("set") == "train" for s in skipped),
        "threshold": tau,
        "n_content_memorized": int(sum(it["content_memorized"] for it in items)),
        "fraction_content_memorized": float(np.mean([it["content_memorized"] for it in items])) if items else 0.0,
        "verdicts": counts,
        "table": copy_table(scores, extra_thresholds=(tau,)),
        "mean_coverage": float(np.mean([it["coverage"] for it in items])) if items else 0.0,
        "n_truncated": int(sum(bool(it.get("truncated")) for it in items)),  # scored from the frames that decoded
        # motion part: flows computed, and how many of them were between a frame and itself (should be 0)
        "motion_flow_pairs": int(sum(it.get("motion_n_flows") or 0 for it in items)) if motion else None,
        "motion_repeated_pairs": int(sum(it.get("motion_repeated_pairs") or 0 for it in items)) if motion else None,
        "seconds": round(seconds, 2),
    }


def _parquet_row(r: dict) -> dict:
    m = r.get("content_match") or {}
    row = {k: v for k, v in r.items() if k not in ("frames", "content_match")}
    row.update({"match_train_id": m.get("train_id"), "match_frame": m.get("frame"),
                "match_similarity": m.get("similarity"), "match_timestamp": m.get("timestamp"),
                "match_path": m.get("path")})
    row["frame_similarities"] = [f["similarity"] for f in r.get("frames", [])]
    return row


_COLUMNS = ["id", "path", "caption", "kind", "n_frames", "truncated", "content_score", "coverage",
            "content_memorized", "best_frame", "verdict", "match_train_id", "match_frame", "match_similarity",
            "match_timestamp", "match_path", "frame_similarities"]
