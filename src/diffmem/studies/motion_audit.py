"""The motion part of an audit: index the training windows, score generated items, filter natural motion.

    index, skipped = build_motion_index(train_items, "runs/motion-index", MotionPolicy())
    results, skipped = audit_motion(generated_items, index, MotionAuditConfig(), groups=groups)
    results["gen-003"].motion_memorized, results["gen-003"].motion_match

In `diffmem audit` it is one `AuditPart` (`MotionPart`, made by `motion_part(content_index, out)`):
it adds motion_score, motion_match, natural_motion, motion_memorized and the per-window reports to
each item's record, and the audit's verdict combines its flag with the content flag.

Training windows Phi_k go into their own index (its policy fingerprint names flow backend,
resolution, grid, k and frame rate) so motion search scales like content search. For each
generated window the search returns every training window above tau_m (widening the search
until the count of distinct training groups reaches `natural_groups` or the scores fall below
tau_m), which is all NMF needs. Training items that are near-duplicates in *content* count once:
pass `groups` (train_id -> group id), e.g. from `content_duplicate_groups`.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
from tqdm.auto import tqdm

from ..errors import BadInputError, Skipped
from ..features.motion import MotionPolicy, VideoMotion, describe_motion, read_motion_frames, repeated_pairs
from ..flow import get_estimator, to_common_resolution
from ..flow.visualize import colour_wheel, flow_to_rgb
from ..index.content import content_items, item_workers, map_items
from ..index.motion import MOTION_SUBFOLDER, MotionIndex, build_motion_index, check_motion_policy, prebuilt_motion_index
from ..io.embed import gif_data_uri, png_data_uri
from ..io.html import esc, img
from ..io.video import probe
from ..metrics.motion import MotionMatch, MotionResult, NMFConfig, assess_window, duplicate_groups, summarize


@dataclass(frozen=True)
class MotionAuditConfig:
    """Everything the motion audit needs besides its inputs. Stored with every result.

    dup_threshold: content similarity above which two training items are near-duplicates (for
    NMF's group count), with the content descriptor used by `content_duplicate_groups`.
    search_k: neighbours fetched per generated window at first (the search widens as needed).
    """

    policy: MotionPolicy = field(default_factory=MotionPolicy)
    nmf: NMFConfig = field(default_factory=NMFConfig)
    dup_threshold: float = 0.95
    search_k: int = 64

    def as_dict(self) -> dict:
        return {"policy": self.policy.as_dict(), "policy_name": self.policy.name,
                "policy_fingerprint": self.policy.fingerprint, "nmf": self.nmf.as_dict(),
                "dup_threshold": self.dup_threshold, "search_k": self.search_k}


# ----------------------------------------------------------------------------- scoring


class MotionAuditor:
    """Scores generated videos against a MotionIndex with natural motion filtering."""

    def __init__(self, index: MotionIndex, config: MotionAuditConfig | None = None,
                 groups: Mapping[str, str] | None = None, estimator=None):
        self.config = config or MotionAuditConfig(policy=index.policy)
        check_motion_policy(index.policy, self.config.policy, "motion index")
        self.index, self.groups = index, dict(groups or {})
        self._estimator = estimator

    @property
    def estimator(self):
        if self._estimator is None:

            self._estimator = get_estimator(self.config.policy.flow.backend)
        return self._estimator

    def score_motion(self, item_id: str, motion: VideoMotion) -> MotionResult:
        nmf = self.config.nmf
        nbs = self.index.neighbours(motion.windows, tau=nmf.tau_m, static_px=nmf.static_px,
                                    enough_groups=nmf.natural_groups, groups=self.groups, start_k=self.config.search_k)
        reports = [assess_window(j, float(motion.motion[j]), nb, nmf, self.groups) for j, nb in enumerate(nbs)]
        return summarize(item_id, reports, nmf, motion.n_flows, nbs)

    def score_frames(self, item_id: str, frames: np.ndarray) -> MotionResult:
        """uint8 (T, H, W, 3) frames sampled at the policy's fps."""
        return self.score_motion(item_id, describe_motion(frames, self.config.policy, self.estimator))

    def score_item(self, item) -> MotionResult:
        """A manifest Item; raises BadInputError for a file that cannot be read."""
        return self.score_frames(item.id, read_motion_frames(item.path, self.config.policy))


def audit_motion(generated: Iterable, index: MotionIndex, config: MotionAuditConfig | None = None, *,
                 groups: Mapping[str, str] | None = None, progress: bool = False
                 ) -> tuple[dict[str, MotionResult], list[Skipped]]:
    """Motion results for every generated item (manifest `Item`s); unreadable ones are skipped and reported.
    An image gets a result too (no flow: 'too short'), so every item has a motion verdict."""
    auditor = MotionAuditor(index, config, groups)
    results, skipped = {}, []
    for it in tqdm(list(generated), desc="motion audit", unit="item", disable=not progress):
        try:
            results[it.id] = auditor.score_item(it)
        except BadInputError as e:
            skipped.append(Skipped(it.id, str(it.path), e.reason))
    return results, skipped


def content_duplicate_groups(content_index, threshold: float = 0.95) -> dict[str, str]:
    """Group training items whose content is near-duplicate (NMF counts a group once), from a content
    index (`diffmem.index.build_content_index`): each item is the L2-normalised mean of its frame
    descriptors; items above `threshold` cosine similarity are linked; groups are the connected
    components (train_id -> the group's first id in index order).

    threshold 0.95 was measured with the builtin descriptor on the small world: byte-identical copies
    >= 0.9999, distinct sources at most 0.94 (99.9 % of pairs below 0.85).
    """
    meta = content_index.metadata
    if not len(meta):
        return {}
    ids = meta["item_id"].to_numpy(object)
    uniq, inv = np.unique(ids, return_inverse=True)
    # per-item sums by one sorted reduce (np.add.at over 21 k frames was 0.5 s of a 7 s audit)
    by_item = np.argsort(inv, kind="stable")
    starts = np.searchsorted(inv[by_item], np.arange(len(uniq)))
    first = by_item[starts]  # each item's first row in index order (stable sort)
    vecs = np.add.reduceat(content_index.vectors()[by_item].astype(np.float64), starts, axis=0)
    vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    order = np.argsort(first, kind="stable")  # index order, so group ids do not depend on sorting of ids
    return duplicate_groups([str(uniq[i]) for i in order], vecs[order].astype(np.float32), threshold)


# ----------------------------------------------------------------------------- the audit part


def motion_record(result: MotionResult) -> dict:
    """The fields the motion part adds to an audit record (audit.json / audit.parquet)."""
    d = result.as_dict()
    return {"motion_score": d["motion_score"], "motion_raw_score": d["raw_score"], "motion_match": d["motion_match"],
            "natural_motion": d["natural_motion"], "motion_memorized": d["motion_memorized"],
            "motion_n_flows": d["n_flows"], "motion_windows": d["windows"]}


class MotionPart:
    """The motion part of `diffmem audit` (a `diffmem.studies.audit.AuditPart`).

    fps: the rate at which the audit samples the frames it passes to `score`; when it differs from the
    motion policy's, the item is read again at the policy's rate.
    """

    name = "motion"

    def __init__(self, index: MotionIndex, config: MotionAuditConfig | None = None,
                 groups: Mapping[str, str] | None = None, fps: float | None = None,
                 paths: Mapping[str, str] | None = None):
        self.auditor = MotionAuditor(index, config, groups)
        self.index, self.fps, self.paths = index, fps, dict(paths or {})

    @property
    def policy(self) -> MotionPolicy:
        return self.auditor.config.policy

    def config(self) -> dict:
        g = self.auditor.groups
        return {**self.auditor.config.as_dict(), "index": str(self.index.folder), "index_windows": len(self.index),
                "n_duplicate_groups": len(set(g.values())), "n_grouped_items": len(g)}

    def key(self) -> str:

        groups = hashlib.sha256(json.dumps(sorted(self.auditor.groups.items())).encode()).hexdigest()[:16]
        return json.dumps([self.auditor.config.as_dict(), self.index.index.fingerprint, len(self.index), groups])

    def score(self, item, frames) -> dict:
        return self.score_many([item], [frames])[0]

    def score_many(self, items, frames) -> list[dict]:
        """`score` for several items: their flow in parallel threads (`index.content.item_workers`; flow is
        most of an audit, and an item's flow does not depend on which thread computes it), then the motion
        searches in item order."""
        same_rate = self.fps == self.policy.fps and self.policy.max_frames is None
        estimator = self.auditor.estimator

        def describe(pair):
            item, fr = pair
            arr, idx = (fr.array, fr.indices) if same_rate else read_motion_frames(item.path, self.policy,
                                                                                   with_indices=True)
            # repeated frames counted, so that an audit shows it compared no frame with itself (motion is
            # sampled at the clip's own rate when it is lower than the policy's: `at_rate`)
            return describe_motion(arr, self.policy, estimator), repeated_pairs(idx)

        workers = 1 if estimator.name == "raft" else item_workers()  # RAFT: one model, its own threads
        described = [got for _, got in map_items(list(zip(items, frames)), describe, workers=workers,
                                                  ahead=2 * workers)]
        return [{**motion_record(self.auditor.score_motion(it.id, motion)), "motion_repeated_pairs": rep}
                for it, (motion, rep) in zip(items, described)]

    def flagged(self, record: dict) -> bool:
        return bool(record.get("motion_memorized"))

    def html(self, record: dict) -> str:
        """The report's motion block for a flagged item: both matched clips and their flow, side by side.
        `paths` (train_id -> file) says where the training videos are; unreadable files are said so."""

        if not self.flagged(record):
            return ""
        tid = (record.get("motion_match") or {}).get("train_id")
        try:
            gen = read_motion_frames(record["path"], self.policy)
            train = read_motion_frames(self.paths[tid], self.policy)
        except (BadInputError, KeyError, OSError) as e:
            return f"<p>motion match with {esc(tid)}: clips not readable ({esc(e)})</p>"
        return motion_match_html(record, gen, train, self.policy)


def at_rate(config: MotionAuditConfig, fps: float | None) -> MotionAuditConfig:
    """The config for generated videos of `fps` frames per second: motion is compared at the lower of the
    policy's rate and theirs. Sampling a 4 fps video at 8 fps repeats every frame, so every other flow would
    be zero and no window could match a training window, however exact the copy."""
    if fps and config.policy.fps and fps < config.policy.fps:
        return replace(config, policy=replace(config.policy, fps=float(fps)))
    return config


def lowest_rate(items) -> float | None:
    """The lowest frame rate among the video items (read from their headers); None if there is none."""
    rates = []
    for it in items:
        if it.kind != "video":
            continue
        try:
            rates.append(float(probe(it.path).fps))
        except BadInputError:
            continue  # the audit reports it when it reads it
    return min((r for r in rates if r > 0), default=None)


def motion_part(content_index, out: str | Path, config: MotionAuditConfig | None = None, *,
                motion_index: str | Path | None = None, gen_fps: float | None = None,
                progress: bool = False) -> MotionPart:
    """The motion part for an audit against `content_index`, at the generated videos' rate `gen_fps` when
    it is lower than the policy's (`at_rate`), with the training videos grouped by content near-duplication
    (`content_duplicate_groups`). Its motion index, first that applies:

    - `motion_index` given: used read-only if it holds every training video with this policy, else built,
      resumed or extended there (another policy is an error);
    - the content index's own INDEX/motion_index (`diffmem index build --motion`) when it has this policy and
      every training video: used read-only, so the audit decodes no training video;
    - else OUT/motion_index (OUT/motion_index_<policy fingerprint> at another rate), built or resumed."""
    given = config or MotionAuditConfig()
    config = at_rate(given, gen_fps)
    items = content_items(content_index)
    index = None
    if motion_index is None:
        index, why = prebuilt_motion_index(Path(content_index.folder) / MOTION_SUBFOLDER, config.policy, items)
        if index is None and (Path(content_index.folder) / MOTION_SUBFOLDER).exists():
            warnings.warn(f"not using the content index's motion index: {why}; building one in {out}", stacklevel=2)
        default = "motion_index" if config == given else f"motion_index_{config.policy.fingerprint}"
        folder = Path(out) / default
    else:
        folder = Path(motion_index)
        if (folder / "index.json").is_file():
            index, _ = prebuilt_motion_index(folder, config.policy, items)
    if index is None:
        index, _ = build_motion_index(items, folder, config.policy, progress=progress)
    groups = content_duplicate_groups(content_index, config.dup_threshold)
    return MotionPart(index, config, groups, fps=content_index.config.get("fps"),
                      paths={it.id: str(it.path) for it in items})


# ----------------------------------------------------------------------------- report fragment


def motion_match_html(result: MotionResult | Mapping, gen_frames: np.ndarray, train_frames: np.ndarray,
                      policy: MotionPolicy | None = None, fps: float | None = None, height: int = 128) -> str:
    """HTML for one motion match: both matched clips as animations and their colour-coded flow fields
    side by side (one saturation for both, so colours compare), with the colour wheel as legend.

    result: a MotionResult, or an audit record holding the fields of `motion_record` (and `id`).
    gen_frames / train_frames: the two videos sampled at the policy's fps (as the audit read them).
    """

    if isinstance(result, MotionResult):
        item_id, natural, memorized = result.item_id, result.natural_motion, result.motion_memorized
        m = result.motion_match or result.raw_match
    else:
        item_id, natural = result.get("id"), result.get("natural_motion") or {}
        memorized, md = bool(result.get("motion_memorized")), result.get("motion_match")
        m = MotionMatch(**md) if md else None
    if m is None:
        return ""
    policy = policy or MotionPolicy()
    fps = fps or policy.fps or 8.0
    k = policy.k
    est = get_estimator(policy.flow.backend)
    segs = [(f"generated {item_id}", gen_frames[m.gen_start: m.gen_start + k + 1]),
            (f"training {m.train_id}", train_frames[m.train_start: m.train_start + k + 1])]
    flows = [est.video(to_common_resolution(f, policy.flow.short_side)) for _, f in segs]
    mags = np.concatenate([np.hypot(f[..., 0], f[..., 1]).ravel() for f in flows if f.size] or [np.zeros(1)])
    sat = float(np.percentile(mags, 99)) or 1.0
    rows = []
    for (title, frames), flow in zip(segs, flows):
        colours = flow_to_rgb(flow, sat)
        strip = "".join(img(png_data_uri(c), f"{title}: flow {i}", height) for i, c in enumerate(colours))
        anim = img(gif_data_uri(to_common_resolution(frames, policy.flow.short_side), fps), f"{title}: clip", height)
        fanim = img(gif_data_uri(colours, fps), f"{title}: flow", height) if len(colours) else ""
        rows.append(f"<tr><th>{esc(title)}</th><td>{anim}</td><td>{fanim}</td><td class='strip'>{strip}</td></tr>")
    status = "motion-memorized" if memorized else "not memorized"
    head = (f"<p>motion: {esc(item_id)} &harr; {esc(m.train_id)}: OFS-{k} = {m.similarity:.3f} "
            f"(generated window at frame {m.gen_start}, training window at frame {m.train_start}, "
            f"alignment offset {m.offset:+d}; {esc(status)}"
            + (f"; natural motion: {esc(natural.get('reason'))}" if natural.get("natural") else "") + ")</p>")
    legend = img(png_data_uri(colour_wheel(48)), "flow colours: hue = direction, saturation = speed", 48)
    return (f"<div class='motion-match'>{head}<table><tr><th></th><th>clip</th><th>flow</th>"
            f"<th>flow, step by step (saturated at {sat:.1f} px/frame) {legend}</th></tr>{''.join(rows)}</table></div>")


__all__ = ["MotionAuditConfig", "MotionIndex", "build_motion_index", "MotionAuditor", "audit_motion",
           "content_duplicate_groups", "motion_record", "MotionPart", "motion_part", "motion_match_html",
           "read_motion_frames"]
