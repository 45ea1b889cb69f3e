"""Curate the prompts most prone to trigger memorization (`diffmem prompts`).

Why these prompts: a diffusion model reproduces the training items it saw many times, and it
reproduces them when prompted with the text they were paired with (Carlini et al. 2023; Somepalli
et al. 2023; Webster 2023). So the candidates are the captions of *duplicated* training items
(the groupings are `diffmem.metrics.duplicates`'):

- **caption clusters**: captions that are equal after normalisation (`normalize_caption`: unicode
  NFKC, lowercase, punctuation to spaces, whitespace collapsed), joined with captions that are
  near-duplicates (Jaccard similarity of their character n-gram sets >= `caption_threshold`, found
  with MinHash LSH and then checked exactly, so it scales to millions of captions);
- **content clusters**: items whose content is a near-duplicate, whatever their captions say: the
  item vector is the descriptor of 4 evenly spaced frames, concatenated (`studies.item_vectors`), so two items'
  similarity is the mean similarity of their time-aligned frames; linked above
  `DEFAULT_CONTENT_THRESHOLD` (0.95, a dedup threshold: see there) by single linkage. From a content
  index (`diffmem index build`) the stored frame descriptors are used and no media is read again.

Every cluster with at least `min_count` items proposes its most frequent caption. A prompt's
evidence records its counts, ids, normalised forms, clusters and reasons. Without a model,
prompts are ranked by `(n_both, n_content, n_caption)`:

- `n_both`   training items that are content near-duplicates of an item carrying the prompt *and*
             carry a (near-)duplicate of the prompt: the image-text pair the model saw most often,
             the strongest cause of verbatim copying (Somepalli et al. 2023);
- `n_content` items in the largest content cluster among the prompt's items;
- `n_caption` items whose caption is a (near-)duplicate of the prompt.

With a model (`magnitudes=`), prompts are ranked by the inference-time detection magnitude
instead (Wen et al. 2024: memorized prompts have large text-conditional noise differences;
`diffmem.detect.prompts`), and the duplicate counts stay in the evidence.

The prompt files read and written here are `diffmem.data.prompts`'.
"""
from __future__ import annotations

import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from ..data.manifest import Item, NoPathsError, load_captions, load_manifest
from ..data.prompts import PromptEntry, read_prompts, write_prompts
from ..detect.prompts import magnitude_function
from ..errors import BadInputError
from ..features import load_descriptor
from ..io.results import environment, write_json
from ..metrics.duplicates import content_clusters, normalize_caption, normalized_caption_clusters
from ..models import load_adapter
from .item_vectors import index_items, item_vectors

__all__ = ["curate_prompts", "duplicate_recall", "run_prompts", "summary_path",
           "DEFAULT_CONTENT_THRESHOLD"]

# Item-level similarity (mean over 4 time-aligned frames) above which two training items are the same
# content. Copies of one clip score > 0.9999 with the built-in descriptor on the embedded world, while
# distinct clips reach 0.92 (two stills on the same star field): a dedup threshold sits well above tau_c,
# which is calibrated for generated-vs-training frames, not for finding copies inside a training set.
DEFAULT_CONTENT_THRESHOLD = 0.95


# --------------------------------------------------------------------------------------------
# Curation


class _Groups(dict):
    """label -> members of the clusters of two or more; any other label is a singleton, its own member (a
    cluster's label is its first member's index). Millions of singletons cost nothing."""

    def __missing__(self, label: int) -> list[int]:
        return [label]


def _groups(labels: np.ndarray) -> _Groups:
    labels = np.asarray(labels)
    order = np.argsort(labels, kind="stable")
    sl = labels[order]
    cut = np.flatnonzero(sl[1:] != sl[:-1]) + 1
    lo, hi = np.concatenate([[0], cut]), np.concatenate([cut, [len(sl)]])
    g = _Groups()
    for a, b in zip(lo[hi - lo > 1].tolist(), hi[hi - lo > 1].tolist()):
        g[int(sl[a])] = order[a:b].tolist()
    return g


def _clusters(labels: np.ndarray, groups: _Groups, singletons: bool):
    """The members of every cluster of two or more, then (singletons=True) of every singleton."""
    yield from groups.values()
    if singletons:
        for i in np.flatnonzero(labels == np.arange(len(labels))).tolist():
            if i not in groups:
                yield [i]


def curate_prompts(ids: Sequence[str], captions: Sequence[str], *, vectors: np.ndarray | None = None,
                   content_threshold: float | None = None, caption_threshold: float = 0.8,
                   ngram: int = 4, min_count: int = 2, top: int | None = None,
                   magnitudes: Callable[[list[str]], Sequence[float]] | Mapping[str, float] | None = None,
                   include_singletons: bool = False, max_ids: int = 1000,
                   caption_labels: tuple[np.ndarray, np.ndarray] | None = None) -> list[PromptEntry]:
    """Rank prompts by how prone they are to trigger memorization (see the module docstring).

    ids, captions: the training set. vectors: optional (n, D) unit content vectors, with
    content_threshold (tau_c of their descriptor). magnitudes: a function from a list of
    prompts to their detection magnitudes, or a prompt->magnitude mapping; when given, prompts
    are ranked by it (largest first). include_singletons: also propose the caption of every
    non-duplicated item (useful only with magnitudes, to let the model rank everything). max_ids: the
    evidence lists at most this many ids per list (the counts are always exact). caption_labels: the
    (exact, near) caption cluster labels when they are already known (`studies.caption_shards`), as
    `normalized_caption_clusters` gives them: a cluster's label is its first item's index.
    """
    n = len(ids)
    if len(captions) != n:
        raise ValueError("ids and captions must have the same length")
    ids = [str(i) for i in ids]
    captions = [str(c or "") for c in captions]
    norms = [normalize_caption(c) for c in captions]
    if caption_labels is None:
        exact_lab, cap_lab = normalized_caption_clusters(norms, threshold=caption_threshold, ngram=ngram)
    else:
        exact_lab, cap_lab = (np.asarray(x, np.int64) for x in caption_labels)
        if len(exact_lab) != n or len(cap_lab) != n:
            raise ValueError(f"caption_labels must have one label per item ({n})")
    if vectors is not None:
        if content_threshold is None:
            raise ValueError("content_threshold is required with vectors")
        if len(vectors) != n:
            raise ValueError(f"vectors has {len(vectors)} rows for {n} items")
        con_lab = content_clusters(vectors, content_threshold)
    else:
        con_lab = np.arange(n)
    cap_groups, con_groups, exact_groups = _groups(cap_lab), _groups(con_lab), _groups(exact_lab)

    # Candidate prompts: the most frequent original caption of each big enough cluster.
    def mode_caption(members: list[int]) -> int:
        counts: Counter = Counter()
        first_seen: dict[str, int] = {}
        for i in sorted(members):
            if norms[i]:
                counts[norms[i]] += 1
                first_seen.setdefault(norms[i], i)
        if not counts:
            return -1
        # most frequent; ties go to the earliest item, so the choice is stable
        best = max(counts, key=lambda s: (counts[s], -first_seen[s]))
        return first_seen[best]

    candidates: dict[str, dict] = {}  # normalised prompt -> {"rep": item index, "why": set}
    for kind, labels, groups in (("caption", cap_lab, cap_groups), ("content", con_lab, con_groups)):
        for members in _clusters(labels, groups, include_singletons):
            if len(members) < min_count and not include_singletons:
                continue
            rep = mode_caption(members)
            if rep < 0:
                continue  # a cluster of uncaptioned items proposes nothing
            c = candidates.setdefault(norms[rep], {"rep": rep, "from": set()})
            c["from"].add(kind)

    entries: list[PromptEntry] = []
    for norm, c in candidates.items():
        rep = c["rep"]
        cap_members = cap_groups[int(cap_lab[rep])]
        exact_members = exact_groups[int(exact_lab[rep])]
        carrying = set(cap_members)  # items whose caption is a (near-)duplicate of the prompt
        con_ids = {int(con_lab[i]) for i in carrying}
        content_members = sorted({j for cid in con_ids for j in con_groups[cid]})
        largest = max((con_groups[cid] for cid in con_ids), key=len)
        n_both = max(len(carrying & set(con_groups[cid])) for cid in con_ids)
        reasons = []
        if len(exact_members) >= 2:
            reasons.append("exact_duplicate_caption")
        if len(cap_members) > len(exact_members):
            reasons.append("near_duplicate_caption")
        if len(largest) >= 2:
            reasons.append("duplicate_content")
        if not reasons:
            reasons.append("singleton")
        if max(len(cap_members), len(content_members)) > max_ids:
            reasons_note = f"id lists cut at {max_ids}"
        else:
            reasons_note = None
        forms = Counter(norms[i] for i in cap_members)
        evidence = {
            "reasons": reasons,
            "n_both": int(n_both),
            "n_content": int(len(largest)),
            "n_caption": int(len(cap_members)),
            "n_exact": int(len(exact_members)),
            "caption_ids": [ids[i] for i in sorted(cap_members)[:max_ids]],
            "content_ids": [ids[i] for i in content_members[:max_ids]],
            "normalized_forms": dict(forms.most_common()),
            "caption_cluster": ids[int(cap_lab[rep])],
            "content_clusters": sorted(ids[cid] for cid in con_ids if len(con_groups[cid]) >= 2),
            "normalized": norm,
        }
        if reasons_note:
            evidence["note"] = reasons_note
        entries.append(PromptEntry(id="", prompt=captions[rep], evidence=evidence, source="curated"))

    if magnitudes is not None and entries:
        texts = [e.prompt for e in entries]
        if callable(magnitudes):
            mags = list(magnitudes(texts))
        else:
            mags = [magnitudes.get(t) for t in texts]
        for e, m in zip(entries, mags):
            if isinstance(m, Mapping):  # several magnitudes (content, motion, total): rank by total
                e.evidence["magnitudes"] = {k: float(v) for k, v in m.items() if k != "count"}
                m = m.get("total")
            e.evidence["magnitude"] = None if m is None else float(m)
        entries.sort(key=lambda e: (-(e.evidence["magnitude"] if e.evidence["magnitude"] is not None else -np.inf),
                                    e.evidence["normalized"]))
    else:
        entries.sort(key=lambda e: (-e.evidence["n_both"], -e.evidence["n_content"], -e.evidence["n_caption"],
                                    e.evidence["normalized"]))
    if top is not None:
        entries = entries[:top]
    for r, e in enumerate(entries, 1):
        e.id = f"p{r:05d}"
        e.evidence["rank"] = r
        e.evidence["score"] = (e.evidence["magnitude"] if "magnitude" in e.evidence
                               else float(e.evidence["n_both"] + e.evidence["n_content"] + e.evidence["n_caption"]))
    return entries


def duplicate_recall(entries: Sequence[PromptEntry], duplicated: Iterable[Iterable[str]],
                     top: int | None = None) -> dict:
    """How many known duplicate groups the top curated prompts cover.

    duplicated: groups of training ids known to be duplicates of each other (ground truth).
    A group is recalled when one of the `top` prompts has evidence (caption_ids or content_ids)
    that contains one of its ids. Returns groups, recalled, recall, and the item-level recall.
    """
    chosen = list(entries)[:top] if top is not None else list(entries)
    covered: set[str] = set()
    for e in chosen:
        covered.update(e.evidence.get("caption_ids", []))
        covered.update(e.evidence.get("content_ids", []))
    groups = [set(map(str, g)) for g in duplicated]
    hit = [bool(g & covered) for g in groups]
    items = set().union(*groups) if groups else set()
    return {
        "top": top if top is not None else len(chosen),
        "groups": len(groups),
        "recalled": int(sum(hit)),
        "recall": (sum(hit) / len(groups)) if groups else None,
        "items": len(items),
        "items_recalled": len(items & covered),
        "item_recall": (len(items & covered) / len(items)) if items else None,
    }


# --------------------------------------------------------------------------------------------
# The study step behind `diffmem prompts`


def run_prompts(train: str | Path, out: str | Path, *, content: bool = True, descriptor: str = "builtin",
                caption_threshold: float = 0.8, content_threshold: float | None = None, ngram: int = 4,
                min_count: int = 2, top: int | None = None, model=None, detect_seeds: int = 2,
                detect_steps: int = 1, include_singletons: bool = False, device: str | None = None,
                root: str | Path | None = None, progress: bool = True, columns=None) -> dict:
    """Curate prompts from the captioned training set `train` and write them to `out` (JSONL).

    Also writes `<out stem>.summary.json` (configuration, counts, environment). Returns the summary.
    content: also cluster items by content (reads every item once). model: a model spec or
    `DenoiserAdapter`; rank by the detection magnitude of that model (`diffmem.detect`), averaged over `detect_seeds` seeds and `detect_steps`.
    columns: a manifest table's `ColumnMap` or preset name (`diffmem.data.manifest.PRESETS`).
    Captions are required: media is not (a table whose files are absent, or that names none, is curated from
    its captions with content off); a set whose captions are all empty is refused.
    """
    t0 = time.perf_counter()
    out = Path(out)
    vectors, policy = None, None
    if (Path(train) / "index.json").is_file():  # a content index: its items and stored frame descriptors
        items, skipped, vectors, policy = index_items(train, with_vectors=content)
        if content:
            descriptor = policy.get("name", descriptor)
    else:
        try:
            # caption-only curation (content off) reads no media: its paths are not even looked at
            manifest = load_manifest(train, root=root, columns=columns, check_files=content)
            items, skipped = list(manifest.items), list(manifest.skipped)
            if content and not items and skipped and manifest.source is not None and manifest.source.is_file():
                # no file of the table is here (a WebVid CSV or LAION parquet whose media was not downloaded):
                # curation needs only the captions, so the rows are read as listed, and content is off
                listed = load_manifest(train, root=root, columns=columns, check_files=False)
                if listed.items:
                    warnings.warn(f"{train}: none of its {len(skipped)} media files is under {manifest.root} "
                                  f"(e.g. {skipped[0].path}: {skipped[0].reason}); curating from the captions only",
                                  stacklevel=2)
                    items, skipped, content = list(listed.items), list(listed.skipped), False
        except NoPathsError:
            # caption-only metadata (Wen et al.'s prompt JSONL, a LAION parquet of url, caption, key):
            # curation needs no media, so the captions are read as a prompt file (or through the
            # column map given), and content is off
            items = ([Item(e.id, Path(), e.prompt, "image") for e in read_prompts(train)] if columns is None
                     else load_captions(train, columns=columns))
            skipped, content = [], False
        if content:
            desc = load_descriptor(descriptor)
            vectors = item_vectors(items, desc, progress=progress)
            policy = desc.policy.as_dict()
    if not items:
        raise BadInputError(train, "no usable items")
    if not any(it.caption.strip() for it in items):  # prompts are captions: none means a caption column was missed
        raise BadInputError(train, "every caption is empty: nothing to curate prompts from (a table needs a "
                                   "'caption' column, or name its caption column with --caption-column / --preset)")
    if content and content_threshold is None:
        content_threshold = DEFAULT_CONTENT_THRESHOLD
    mags = None
    if model is not None:
        adapter = load_adapter(model, device=device)
        mags = magnitude_function(adapter, seeds=detect_seeds, steps=detect_steps, progress=progress)
    entries = curate_prompts([it.id for it in items], [it.caption for it in items], vectors=vectors,
                             content_threshold=content_threshold, caption_threshold=caption_threshold,
                             ngram=ngram, min_count=min_count, top=top, magnitudes=mags,
                             include_singletons=include_singletons)
    write_prompts(out, entries)
    reasons = Counter(r for e in entries for r in e.evidence["reasons"])
    summary = {
        "command": "prompts",
        "train": str(train),
        "out": str(out),
        "n_items": len(items),
        "n_skipped": len(skipped),
        "skipped": [s if isinstance(s, dict) else s.as_dict() for s in skipped],
        "n_prompts": len(entries),
        "reasons": dict(reasons),
        "ranking": "detection magnitude" if model else "(n_both, n_content, n_caption)",
        "config": {"content": content, "descriptor": descriptor if content else None, "descriptor_policy": policy,
                   "caption_threshold": caption_threshold, "content_threshold": content_threshold, "ngram": ngram,
                   "min_count": min_count, "top": top,
                   "model": model if model is None or isinstance(model, str) else getattr(model, "name", str(model)),
                   "detect_seeds": detect_seeds,
                   "detect_steps": detect_steps, "include_singletons": include_singletons},
        "seconds": round(time.perf_counter() - t0, 2),
        "environment": environment(),
    }
    write_json(summary_path(out), summary)
    return summary


def summary_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".summary.json")
