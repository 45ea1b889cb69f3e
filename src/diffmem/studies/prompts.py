"""Curate the prompts most prone to trigger memorization, and read the public prompt lists.

Why these prompts: a diffusion model reproduces the training items it saw many times, and it
reproduces them when prompted with the text they were paired with (Carlini et al. 2023; Somepalli
et al. 2023; Webster 2023). So the candidates are the captions of *duplicated* training items:

- **caption clusters**: captions that are equal after normalisation (`normalize_caption`: unicode
  NFKC, lowercase, punctuation to spaces, whitespace collapsed), joined with captions that are
  near-duplicates (Jaccard similarity of their character n-gram sets >= `caption_threshold`, found
  with MinHash LSH and then checked exactly, so it scales to millions of captions);
- **content clusters**: items whose content is a near-duplicate, whatever their captions say: the
  item vector is the descriptor of 4 evenly spaced frames, concatenated (`item_vectors`), so two items'
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
instead (Wen et al. 2024: memorized prompts have large text-conditional noise differences), and
the duplicate counts stay in the evidence.

Readers (`read_prompts`) accept, by file type:

- `.jsonl`: one JSON object per line with the text in `prompt`, `caption` or `text`; optional
  `id` (or `index`, `key`), `group`, `label`/`memorized` (bool), `overfit_type`, `evidence`; any
  other field is kept in the entry's evidence.
  This covers the JSONL of 500 memorized Stable Diffusion prompts of Wen et al. (ICLR 2024;
  fields `caption`, `index`, `url`: every line is memorized), the embedded world's
  `prompts.jsonl`, and the files `diffmem prompts` writes.
- `.parquet` / `.csv`: the same columns. Webster's ground-truth parquets (arXiv 2305.08694,
  `*_groundtruth.parquet`) have `caption` and `overfit_type` in {MV (matching verbatim), RV
  (retrieved verbatim), TV (template verbatim), N (none)}: MV/RV/TV are labelled memorized, N not.
- anything else (`.txt`): one prompt per non-empty line.
"""
from __future__ import annotations

import json
import re
import unicodedata
import zlib
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from ..errors import BadInputError

__all__ = [
    "PromptEntry", "normalize_caption", "caption_similarity", "caption_clusters", "content_clusters",
    "item_vectors", "curate_prompts", "write_prompts", "read_prompts", "duplicate_recall", "run_prompts",
    "WEBSTER_MEMORIZED_TYPES", "DEFAULT_CONTENT_THRESHOLD",
]

# Item-level similarity (mean over 4 time-aligned frames) above which two training items are the same
# content. Copies of one clip score > 0.9999 with the built-in descriptor on the embedded world, while
# distinct clips reach 0.92 (two stills on the same star field): a dedup threshold sits well above tau_c,
# which is calibrated for generated-vs-training frames, not for finding copies inside a training set.
DEFAULT_CONTENT_THRESHOLD = 0.95

# Webster (2023) labels: matching verbatim, retrieved verbatim, template verbatim; "N" is none.
WEBSTER_MEMORIZED_TYPES = frozenset({"MV", "RV", "TV"})

_TEXT_FIELDS = ("prompt", "caption", "text")
_ID_FIELDS = ("id", "index", "key", "uid")


# --------------------------------------------------------------------------------------------
# The record every reader returns and every writer writes


@dataclass
class PromptEntry:
    """One prompt. `label`: True = known memorized, False = known novel, None = unknown."""

    id: str
    prompt: str
    group: str | None = None
    label: bool | None = None
    evidence: dict = field(default_factory=dict)
    source: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------------
# Text


_PUNCT = re.compile(r"[^\w\s]|_", re.UNICODE)
_SPACE = re.compile(r"\s+", re.UNICODE)
_TAG = re.compile(r"<[^<>]{1,20}>")


def normalize_caption(text: str) -> str:
    """NFKC, lowercase (casefold), HTML-like tags and punctuation to spaces, whitespace collapsed.

    "<i>The Interview</i>, on VOD!" and "the interview on vod" normalise to the same string.
    """
    s = unicodedata.normalize("NFKC", str(text or ""))
    s = _TAG.sub(" ", s)
    s = s.casefold()
    s = _PUNCT.sub(" ", s)
    return _SPACE.sub(" ", s).strip()


def _shingles(norm: str, n: int) -> set[str]:
    """Character n-grams of a normalised caption (padded so short words count)."""
    s = f" {norm} "
    if len(s) <= n:
        return {s}
    return {s[i:i + n] for i in range(len(s) - n + 1)}


def caption_similarity(a: str, b: str, ngram: int = 4) -> float:
    """Jaccard similarity of the character n-gram sets of the two *normalised* captions."""
    sa, sb = _shingles(normalize_caption(a), ngram), _shingles(normalize_caption(b), ngram)
    return len(sa & sb) / len(sa | sb) if sa or sb else 1.0


class _UnionFind:
    def __init__(self, n: int):
        self.parent = np.arange(n)

    def find(self, i: int) -> int:
        p = self.parent
        root = i
        while p[root] != root:
            root = p[root]
        while p[i] != root:  # path compression
            p[i], i = root, p[i]
        return int(root)

    def union(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            self.parent[max(ri, rj)] = min(ri, rj)

    def labels(self) -> np.ndarray:
        return np.array([self.find(i) for i in range(len(self.parent))], dtype=np.int64)


_MERSENNE = (1 << 61) - 1


def _minhash(shingle_sets: Sequence[set[str]], num_perm: int, seed: int = 0) -> np.ndarray:
    """(n, num_perm) MinHash signatures; crc32 makes them identical across runs and machines."""
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 1 << 31, size=num_perm, dtype=np.uint64)
    b = rng.integers(0, 1 << 31, size=num_perm, dtype=np.uint64)
    sig = np.empty((len(shingle_sets), num_perm), dtype=np.uint64)
    for i, sh in enumerate(shingle_sets):
        h = np.fromiter((zlib.crc32(x.encode("utf-8")) for x in sh), dtype=np.uint64, count=len(sh))
        # (a*h + b) mod 2^61-1 with h < 2^32, a, b < 2^31: the product fits in 63 bits.
        sig[i] = ((h[:, None] * a[None, :] + b[None, :]) % np.uint64(_MERSENNE)).min(0)
    return sig


def caption_clusters(captions: Sequence[str], *, threshold: float = 0.8, ngram: int = 4,
                     bands: int = 16, rows: int = 4) -> np.ndarray:
    """Cluster label per caption: equal normalised text, or linked by n-gram Jaccard >= threshold.

    Labels are the index of the cluster's first caption. Candidates come from MinHash LSH
    (`bands` x `rows` permutations; with the defaults a pair at Jaccard 0.8 is a candidate with
    probability 0.9998, at 0.5 with 0.64), and every candidate pair is checked exactly, so no
    pair below the threshold is ever joined. Clusters are connected components (single linkage).
    `threshold >= 1` clusters exact normalised duplicates only.
    """
    norms = [normalize_caption(c) for c in captions]
    n = len(norms)
    uf = _UnionFind(n)
    first: dict[str, int] = {}
    uniq: list[int] = []  # index of the first caption of each distinct normalised text
    for i, s in enumerate(norms):
        if s in first:
            uf.union(first[s], i)
        else:
            first[s] = i
            uniq.append(i)
    if threshold >= 1.0 or len(uniq) < 2:
        return uf.labels()

    sets = [_shingles(norms[i], ngram) for i in uniq]
    sig = _minhash(sets, bands * rows)
    checked: set[tuple[int, int]] = set()

    def link(u: int, v: int) -> None:
        key = (u, v) if u < v else (v, u)
        if key in checked:
            return
        checked.add(key)
        su, sv = sets[u], sets[v]
        if len(su & sv) >= threshold * len(su | sv):
            uf.union(uniq[u], uniq[v])

    for band in range(bands):
        buckets: dict[bytes, list[int]] = defaultdict(list)
        block = np.ascontiguousarray(sig[:, band * rows:(band + 1) * rows])
        for u in range(len(uniq)):
            buckets[block[u].tobytes()].append(u)
        for members in buckets.values():
            if len(members) < 2:
                continue
            if len(members) <= 64:
                for x in range(len(members)):
                    for y in range(x + 1, len(members)):
                        link(members[x], members[y])
            else:  # a huge bucket (a caption template): check against a few anchors, not all pairs
                for anchor in members[:8]:
                    for v in members:
                        if v != anchor:
                            link(anchor, v)
    return uf.labels()


# --------------------------------------------------------------------------------------------
# Content


def item_vectors(items, descriptor=None, *, frames: int = 4, chunk: int = 64, progress: bool = True) -> np.ndarray:
    """One unit content vector per item: its descriptors at `frames` evenly spaced frames, concatenated.

    The dot product of two such vectors is the mean similarity of their time-aligned frames, so two
    copies of a clip score ~1 while two clips that only share a background or a sprite do not (an
    image is its one frame repeated). Items that cannot be read get a zero vector and join no
    content cluster. Frames of `chunk` items are encoded in one batch. Default descriptor: builtin.
    """
    from ..features.builtin import BuiltinDescriptor
    from ..io.video import read_frames

    descriptor = descriptor or BuiltinDescriptor()
    out = np.zeros((len(items), frames * descriptor.dim), np.float32)
    try:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(items), desc="content vectors", unit="item", disable=not progress, leave=False)
    except ImportError:  # pragma: no cover
        bar = None
    for start in range(0, len(items), chunk):
        batch, rows = [], []
        for k in range(start, min(start + chunk, len(items))):
            try:
                arr = read_frames(items[k].path).array
            except Exception:  # unreadable media: no content evidence for this item
                continue
            idx = np.linspace(0, len(arr) - 1, num=frames).round().astype(int)
            batch.append(arr[idx])
            rows.append(k)
        if batch:
            shapes = {b.shape[1:] for b in batch}
            if len(shapes) == 1:
                enc = descriptor.encode(np.concatenate(batch))
            else:  # mixed resolutions: encode item by item
                enc = np.concatenate([descriptor.encode(b) for b in batch])
            enc = enc.reshape(len(rows), frames * descriptor.dim) / np.sqrt(frames)
            out[rows] = enc
        if bar is not None:
            bar.update(min(chunk, len(items) - start))
    if bar is not None:
        bar.close()
    return out


def content_clusters(vectors: np.ndarray, threshold: float) -> np.ndarray:
    """Cluster label per item: connected components of `<v_i, v_j> > threshold` (single linkage).

    Exact range search with FAISS (inner product), so it stays fast for large sets; all-zero
    vectors (unreadable items) are singletons.
    """
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(x)
    uf = _UnionFind(n)
    if n < 2:
        return uf.labels()
    valid = np.flatnonzero(np.linalg.norm(x, axis=1) > 0)
    if len(valid) < 2:
        return uf.labels()
    import faiss

    xv = x[valid]
    index = faiss.IndexFlatIP(xv.shape[1])
    index.add(xv)
    lims, _, nbrs = index.range_search(xv, float(threshold))
    for q in range(len(valid)):
        for j in nbrs[lims[q]:lims[q + 1]]:
            if j != q:
                uf.union(int(valid[q]), int(valid[j]))
    return uf.labels()


# --------------------------------------------------------------------------------------------
# Curation


def _groups(labels: np.ndarray) -> dict[int, list[int]]:
    g: dict[int, list[int]] = defaultdict(list)
    for i, lab in enumerate(labels):
        g[int(lab)].append(i)
    return g


def curate_prompts(ids: Sequence[str], captions: Sequence[str], *, vectors: np.ndarray | None = None,
                   content_threshold: float | None = None, caption_threshold: float = 0.8,
                   ngram: int = 4, min_count: int = 2, top: int | None = None,
                   magnitudes: Callable[[list[str]], Sequence[float]] | Mapping[str, float] | None = None,
                   include_singletons: bool = False, max_ids: int = 1000) -> list[PromptEntry]:
    """Rank prompts by how prone they are to trigger memorization (see the module docstring).

    ids, captions: the training set. vectors: optional (n, D) unit content vectors, with
    content_threshold (tau_c of their descriptor). magnitudes: a function from a list of
    prompts to their detection magnitudes, or a prompt->magnitude mapping; when given, prompts
    are ranked by it (largest first). include_singletons: also propose the caption of every
    non-duplicated item (useful only with magnitudes, to let the model rank everything). max_ids: the
    evidence lists at most this many ids per list (the counts are always exact).
    """
    n = len(ids)
    if len(captions) != n:
        raise ValueError("ids and captions must have the same length")
    ids = [str(i) for i in ids]
    captions = [str(c or "") for c in captions]
    norms = [normalize_caption(c) for c in captions]
    cap_lab = caption_clusters(captions, threshold=caption_threshold, ngram=ngram)
    exact_lab = caption_clusters(captions, threshold=1.0)
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
    for kind, groups in (("caption", cap_groups), ("content", con_groups)):
        for members in groups.values():
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
# Files


def write_prompts(path: str | Path, entries: Sequence[PromptEntry]) -> Path:
    """One JSON object per line: id, prompt, group, label, evidence (read back by read_prompts)."""
    from ..io.results import to_jsonable, write_text

    lines = []
    for e in entries:
        d = {"id": e.id, "prompt": e.prompt}
        if e.group is not None:
            d["group"] = e.group
        if e.label is not None:
            d["label"] = e.label
        if e.evidence:
            d["evidence"] = e.evidence
        lines.append(json.dumps(to_jsonable(d), ensure_ascii=False))
    return write_text(path, "\n".join(lines) + ("\n" if lines else ""))


def _as_bool(v, path: Path, where: str) -> bool | None:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in ("true", "false", "1", "0", "yes", "no", "memorized", "novel"):
        return v.strip().lower() in ("true", "1", "yes", "memorized")
    raise BadInputError(path, f"{where}: label {v!r} is not a boolean (true/false, 1/0, memorized/novel)")


def _entry_from_record(rec: Mapping, k: int, path: Path, where: str, default_label: bool | None) -> PromptEntry:
    text = next((rec[f] for f in _TEXT_FIELDS if f in rec and rec[f] is not None), None)
    if text is None or not isinstance(text, str):
        raise BadInputError(path, f"{where}: no text field (one of {', '.join(_TEXT_FIELDS)})")
    pid = next((rec[f] for f in _ID_FIELDS if f in rec and rec[f] is not None), None)
    label = default_label
    for f in ("label", "memorized"):
        if f in rec:
            label = _as_bool(rec[f], path, where)
            break
    else:
        ot = rec.get("overfit_type")
        if isinstance(ot, str) and ot.strip():
            label = ot.strip().upper() in WEBSTER_MEMORIZED_TYPES
    evidence = rec.get("evidence") or {}
    if isinstance(evidence, str):
        try:
            evidence = json.loads(evidence)
        except json.JSONDecodeError:
            evidence = {"note": evidence}
    # every other field (url, overfit_type, the world's train_ids ...) is kept as evidence
    known = set(_TEXT_FIELDS) | set(_ID_FIELDS) | {"label", "memorized", "evidence", "group"}
    for f, v in rec.items():
        if f not in known and v is not None and f not in evidence:
            evidence[f] = v.tolist() if isinstance(v, np.ndarray) else v
    group = rec.get("group")
    return PromptEntry(id=str(pid) if pid is not None else f"p{k:05d}", prompt=text,
                       group=str(group) if group is not None else None, label=label,
                       evidence=dict(evidence), source=path.name)


def _known_memorized_list(path: Path, first: Mapping) -> bool:
    """The JSONL of Wen et al. lists memorized prompts only (caption, index, url, no label)."""
    return "caption" in first and "url" in first and not ({"label", "memorized", "overfit_type"} & set(first))


def read_prompts(path: str | Path) -> list[PromptEntry]:
    """Read a prompt list (format by extension; see the module docstring). Empty prompts are errors."""
    path = Path(path)
    if not path.exists():
        raise BadInputError(path, "no such file")
    if path.is_dir():
        raise BadInputError(path, "is a folder, expected a prompt file (.jsonl, .parquet, .csv or .txt)")
    suffix = path.suffix.lower()
    entries: list[PromptEntry] = []
    if suffix in (".jsonl", ".ndjson"):
        records = []
        with open(path, encoding="utf-8") as f:
            for ln, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise BadInputError(path, f"line {ln}: not JSON ({e.msg})") from None
                if isinstance(rec, str):
                    rec = {"prompt": rec}
                if not isinstance(rec, dict):
                    raise BadInputError(path, f"line {ln}: expected a JSON object")
                records.append((ln, rec))
        default = True if records and _known_memorized_list(path, records[0][1]) else None
        for k, (ln, rec) in enumerate(records):
            entries.append(_entry_from_record(rec, k, path, f"line {ln}", default))
    elif suffix in (".parquet", ".csv"):
        import pandas as pd

        try:
            df = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path, keep_default_na=False)
        except Exception as e:  # pyarrow / pandas raise many types for a bad file
            raise BadInputError(path, f"cannot read as {suffix[1:]}: {e}") from None
        if not any(f in df.columns for f in _TEXT_FIELDS):
            raise BadInputError(path, f"no text column (one of {', '.join(_TEXT_FIELDS)}); columns are {list(df.columns)}")
        for k, rec in enumerate(df.to_dict("records")):
            entries.append(_entry_from_record(rec, k, path, f"row {k + 1}", None))
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise BadInputError(path, "not UTF-8 text") from None
        for k, line in enumerate(l.strip() for l in text.splitlines()):
            if line:
                entries.append(PromptEntry(id=f"p{len(entries):05d}", prompt=line, source=path.name))
    for e in entries:
        if not e.prompt.strip():
            raise BadInputError(path, f"prompt {e.id} is empty")
    seen: Counter = Counter(e.id for e in entries)
    dups = [i for i, c in seen.items() if c > 1]
    if dups:  # ids name output folders: make them unique rather than refuse a public list
        counter: Counter = Counter()
        for e in entries:
            if seen[e.id] > 1:
                counter[e.id] += 1
                e.id = f"{e.id}-{counter[e.id]}"
    if not entries:
        raise BadInputError(path, "no prompts")
    return entries


# --------------------------------------------------------------------------------------------
# The study step behind `diffmem prompts`


def run_prompts(train: str | Path, out: str | Path, *, content: bool = True, descriptor: str = "builtin",
                caption_threshold: float = 0.8, content_threshold: float | None = None, ngram: int = 4,
                min_count: int = 2, top: int | None = None, model=None, detect_seeds: int = 2,
                detect_steps: int = 1, include_singletons: bool = False, device: str | None = None,
                progress: bool = True) -> dict:
    """Curate prompts from the captioned training set `train` and write them to `out` (JSONL).

    Also writes `<out stem>.summary.json` (configuration, counts, environment). Returns the summary.
    content: also cluster items by content (reads every item once). model: a model spec or
    `DenoiserAdapter`; rank by the detection magnitude of that model (`diffmem.detect`), averaged over `detect_seeds` seeds and `detect_steps`.
    """
    import time

    from ..data.manifest import load_manifest
    from ..io.results import environment, write_json

    t0 = time.perf_counter()
    out = Path(out)
    vectors, policy = None, None
    if (Path(train) / "index.json").is_file():  # a content index: its items and stored frame descriptors
        items, skipped, vectors, policy = _from_index(train, with_vectors=content)
        if content:
            descriptor = policy.get("name", descriptor)
    else:
        manifest = load_manifest(train)
        items, skipped = list(manifest.items), list(manifest.skipped)
        if content:
            desc = _descriptor(descriptor)
            vectors = item_vectors(items, desc, progress=progress)
            policy = desc.policy.as_dict()
    if not items:
        raise BadInputError(train, "no usable items")
    if content and content_threshold is None:
        content_threshold = DEFAULT_CONTENT_THRESHOLD
    mags = None
    if model is not None:
        mags = _magnitude_function(model, seeds=detect_seeds, steps=detect_steps, device=device, progress=progress)
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


def _from_index(folder, *, with_vectors: bool, frames: int = 4):
    """Items (id, caption, path) of a content index, and their `item_vectors` from the stored frame
    descriptors (the same time-aligned frames, without reading any media again)."""
    from types import SimpleNamespace

    from ..index import VectorIndex

    index = VectorIndex.open(folder)
    meta = index.metadata.reset_index(drop=True)
    meta["_row"] = np.arange(len(meta))
    items, rows = [], []
    for item_id, g in meta.groupby("item_id", sort=True):
        g = g.sort_values("frame")
        first = g.iloc[0]
        items.append(SimpleNamespace(id=str(item_id), caption=str(first.get("caption") or ""),
                                     path=Path(str(first.get("path") or "")), kind=first.get("kind")))
        sel = np.linspace(0, len(g) - 1, num=frames).round().astype(int)
        rows.append(g["_row"].to_numpy()[sel])
    vectors = None
    if with_vectors and items:
        v = index.vectors(np.stack(rows))  # (n_items, frames, dim)
        vectors = v.reshape(len(items), -1).astype(np.float32) / np.sqrt(frames)
    return items, list(index.skipped), vectors, dict(index.policy)


def summary_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".summary.json")


def _descriptor(name: str):
    """A descriptor by name. Only the weight-free built-in one is constructed here."""
    try:
        from ..features import load_descriptor  # the features helper's loader, when it exists
    except ImportError:
        load_descriptor = None
    if load_descriptor is not None:
        return load_descriptor(name)
    if name != "builtin":
        raise BadInputError(name, "unknown descriptor (available here: builtin)")
    from ..features.builtin import BuiltinDescriptor
    return BuiltinDescriptor()


def _magnitude_function(model, *, seeds: int, steps: int, device: str | None, progress: bool = True):
    """prompts -> {content, motion, total} detection magnitudes of `model` (a spec or `DenoiserAdapter`),
    from the detection study's `prompt_scores`; `curate_prompts` ranks by total and keeps all three."""
    from ..detect.calibrate import DetectSettings
    from .detect import load_model, prompt_scores

    adapter = load_model(model, device)
    settings = DetectSettings(seeds=seeds, steps=steps)

    def score(prompts: list[str]) -> list[dict]:
        s = prompt_scores(adapter, prompts, settings, progress=progress)
        return [s[p] for p in prompts]

    return score
