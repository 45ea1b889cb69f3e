"""Duplicate grouping: which captions, and which items' contents, are (near-)duplicates of each other.

- `normalize_caption`: unicode NFKC, HTML-like tags and punctuation to spaces, lowercase, whitespace
  collapsed; `caption_similarity`: Jaccard similarity of the character n-gram sets of two normalised
  captions;
- `caption_clusters`: captions equal after normalisation, joined with near-duplicates (n-gram Jaccard
  >= threshold), found with MinHash LSH (`minhash`) and then checked exactly, so it scales to millions
  of captions; its steps (`caption_signatures`, `band_keys`, `bucket_candidates`, `agreement_needed`,
  `ngram_jaccard_at_least`) are also what the sharded curation (`metrics.caption_shards`) runs per shard;
- `content_clusters`: connected components of "inner product > threshold" of unit content vectors
  (single linkage); `metrics.motion.duplicate_groups` and the prompt curation both group by it.

Every grouping is one `UnionFind` whose root is the smallest index, so a cluster's label is the index
of its first member whatever order the links are found in.
"""
from __future__ import annotations

import math
import re
import unicodedata
from typing import Sequence

import numpy as np

__all__ = ["UnionFind", "normalize_caption", "caption_similarity", "shingles", "minhash", "caption_signatures",
           "caption_clusters", "normalized_caption_clusters", "band_keys", "bucket_candidates", "agreement_needed",
           "ngram_jaccard_at_least", "content_clusters"]


class UnionFind:
    """Disjoint sets over 0..n-1; the root of a set is always its smallest member."""

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
        """The root (smallest member) of every element's set (pointer jumping: a root is its own parent)."""
        lab = self.parent.astype(np.int64)
        while True:
            nxt = lab[lab]
            if np.array_equal(nxt, lab):
                return lab
            lab = nxt


# --------------------------------------------------------------------------------------------
# Captions


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


def shingles(norm: str, n: int) -> set[str]:
    """Character n-grams of a normalised caption (padded so short words count)."""
    s = f" {norm} "
    if len(s) <= n:
        return {s}
    return {s[i:i + n] for i in range(len(s) - n + 1)}


def caption_similarity(a: str, b: str, ngram: int = 4) -> float:
    """Jaccard similarity of the character n-gram sets of the two *normalised* captions."""
    sa, sb = shingles(normalize_caption(a), ngram), shingles(normalize_caption(b), ngram)
    return len(sa & sb) / len(sa | sb) if sa or sb else 1.0


_MIX1, _MIX2, _GOLDEN = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


def _mix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijection of uint64 that spreads every input bit over every output bit
    (multiplications wrap mod 2^64, as the finaliser intends)."""
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


#: pads a caption shorter than n to one n-gram (normalised captions never hold it: it is not \\w or \\s)
_PAD = "\x00"
#: captions per block of the vectorised MinHash (bounds its memory: about 5 MB per 1000 captions)
SIGNATURE_BLOCK = 4096


def _salt(i: int) -> np.uint64:
    """i times the golden-ratio constant, mod 2^64 (a distinct odd-looking constant per position)."""
    return np.uint64((i * int(_GOLDEN)) & 0xFFFFFFFFFFFFFFFF)


def _gram_hashes(codepoints: np.ndarray, starts: np.ndarray, n: int) -> np.ndarray:
    """64-bit hash of the n code points from each start: folded three code points (< 2^21 each) at a time
    through mix64, so equal n-grams get equal hashes on every run and machine."""
    h = np.zeros(len(starts), np.uint64)
    for j in range(0, n, 3):
        packed = np.zeros(len(starts), np.uint64)
        for i in range(j, min(j + 3, n)):
            packed |= codepoints[starts + i].astype(np.uint64) << np.uint64(21 * (i - j))
        h = _mix64(h ^ packed ^ _salt(j // 3 + 1))
    return h


def _perm_keys(num_perm: int, seed: int) -> np.ndarray:
    return _mix64(np.arange(1, num_perm + 1, dtype=np.uint64) + np.uint64(seed) * _GOLDEN)


def _signature_block(texts: Sequence[str], n: int, keys: np.ndarray) -> np.ndarray:
    """(len(texts), num_perm) uint32 MinHash signatures of the character n-gram sets of `texts` (each
    already padded with a space on both sides). A text shorter than n is one n-gram, padded with _PAD."""
    texts = [t if len(t) >= n else t + _PAD * (n - len(t)) for t in texts]
    lens = np.fromiter(map(len, texts), np.int64, count=len(texts))
    cp = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32)
    offsets = np.concatenate([[0], np.cumsum(lens)[:-1]])
    grams = lens - n + 1                                   # n-grams per text (>= 1)
    first = np.concatenate([[0], np.cumsum(grams)[:-1]])   # row of each text's first n-gram
    starts = np.repeat(offsets - first, grams) + np.arange(int(grams.sum()))
    uniq, inv = np.unique(_gram_hashes(cp, starts, n), return_inverse=True)
    # each distinct n-gram under every permutation (mix64(h XOR key_k)), its top 32 bits kept: the minimum
    # over a text's n-grams is its signature; 32 bits make a false equal position a 2^-32 event
    inv = inv.ravel()
    out = np.empty((len(texts), len(keys)), np.uint32)
    for k, key in enumerate(keys):  # one permutation at a time: its row of values stays in cache for the gather
        perm = (_mix64(uniq ^ key) >> np.uint64(32)).astype(np.uint32)
        out[:, k] = np.minimum.reduceat(perm[inv], first)
    return out


def minhash(shingle_sets: Sequence[set[str]], num_perm: int, seed: int = 0, ngram: int | None = None) -> np.ndarray:
    """(n, num_perm) uint32 MinHash signatures of sets of n-gram strings: permutation k sends an n-gram
    with 64-bit hash h to the top 32 bits of mix64(h XOR key_k), keys mixed from k and the seed. The
    fraction of equal positions of two signatures estimates the Jaccard similarity of the two sets without
    bias. With `ngram` (n-grams shorter than it padded as `caption_signatures` pads a short caption), the
    same values as `caption_signatures` gives for the captions the sets came from.

    (The family used before, (a h + b) mod 2^61-1 with a, b < 2^31 and 32-bit crc32 values, hardly ever
    wrapped: its "permutations" kept the order of the raw hashes, so the estimates were poor -- mean
    absolute error 0.16 against 0.04 now on the test's caption pairs -- and LSH missed close pairs.)"""
    keys = _perm_keys(num_perm, seed)
    sig = np.empty((len(shingle_sets), num_perm), np.uint32)
    for i, sh in enumerate(shingle_sets):
        grams = sorted(sh)
        n = max(max(map(len, grams)), ngram or 0)
        padded = [g + _PAD * (n - len(g)) for g in grams]
        cp = np.frombuffer("".join(padded).encode("utf-32-le"), dtype=np.uint32)
        h = _gram_hashes(cp, np.arange(len(padded), dtype=np.int64) * n, n)
        sig[i] = (_mix64(h[:, None] ^ keys[None, :]) >> np.uint64(32)).astype(np.uint32).min(0)
    return sig


def caption_signatures(norms: Sequence[str], ngram: int, num_perm: int, seed: int = 0,
                       block: int = SIGNATURE_BLOCK) -> np.ndarray:
    """(len(norms), num_perm) uint32 MinHash signatures of the character n-gram sets (`shingles`) of
    normalised captions, computed a block of captions at a time with numpy: every n-gram is hashed and
    permuted once per block, so a million captions take seconds and memory does not grow with their number
    beyond the signatures themselves (4 bytes x num_perm per caption)."""
    keys = _perm_keys(num_perm, seed)
    out = np.empty((len(norms), num_perm), np.uint32)
    for b in range(0, len(norms), block):
        out[b:b + block] = _signature_block([f" {t} " for t in norms[b:b + block]], ngram, keys)
    return out


def band_keys(sig: np.ndarray, band: int, rows: int) -> np.ndarray:
    """One uint64 per caption naming its `band`-th block of `rows` signature values (equal blocks, equal keys;
    different blocks collide with probability about 2^-64). The keys are well mixed: any of their bits can
    pick a partition."""
    key = np.zeros(len(sig), np.uint64)
    for r in range(band * rows, (band + 1) * rows):
        key = _mix64(key ^ sig[:, r].astype(np.uint64) ^ _salt(r + 1))
    return key


def agreement_needed(threshold: float, num_perm: int, miss: float = 1e-6) -> int:
    """The most signature agreements a pair of Jaccard `threshold` falls short of with probability at most
    `miss` (agreements are Binomial(num_perm, J), least likely to be low at J = threshold)."""
    need, tail = 0, 0.0
    for k in range(num_perm + 1):
        tail += math.comb(num_perm, k) * threshold ** k * (1 - threshold) ** (num_perm - k)
        if tail > miss:
            return need
        need = k + 1
    return need


def bucket_candidates(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs (u, v) of positions with equal keys (one LSH band's buckets: runs of equal keys after
    a stable sort, so u < v within a bucket): every pair of a bucket of up to 64, and each member against
    the first 8 of a bigger bucket (a caption template shared by thousands)."""
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    cut = np.flatnonzero(sk[1:] != sk[:-1]) + 1
    lo, hi = np.concatenate([[0], cut]), np.concatenate([cut, [len(sk)]])
    size = hi - lo
    us, vs = [order[lo[size == 2]]], [order[lo[size == 2] + 1]]
    for a, b in zip(lo[size > 2].tolist(), hi[size > 2].tolist()):
        m = order[a:b]
        if len(m) <= 64:
            x, y = np.triu_indices(len(m), 1)
        else:
            x = np.repeat(np.arange(8), len(m))
            y = np.tile(np.arange(len(m)), 8)
            x, y = x[x < y], y[x < y]
        us.append(m[x])
        vs.append(m[y])
    return np.concatenate(us), np.concatenate(vs)


def ngram_jaccard_at_least(a: str, b: str, ngram: int, threshold: float) -> bool:
    """Whether two normalised captions' n-gram sets (`shingles`) have Jaccard similarity >= threshold: the
    exact check every candidate pair passes before it is joined."""
    sa, sb = shingles(a, ngram), shingles(b, ngram)
    return len(sa & sb) >= threshold * len(sa | sb)


def caption_clusters(captions: Sequence[str], *, threshold: float = 0.8, ngram: int = 4,
                     bands: int = 16, rows: int = 4) -> np.ndarray:
    """Cluster label per caption: equal normalised text, or linked by n-gram Jaccard >= threshold.

    Labels are the index of the cluster's first caption. Candidates come from MinHash LSH
    (`bands` x `rows` permutations; with the defaults a pair at Jaccard 0.8 is a candidate with
    probability 0.9998, at 0.5 with 0.64), and every candidate pair is checked exactly, so no
    pair below the threshold is ever joined. Clusters are connected components (single linkage).
    `threshold >= 1` clusters exact normalised duplicates only.

    Scales to millions of captions: signatures are numpy arrays (`caption_signatures`), each band's
    buckets are runs of equal keys after a sort, and a candidate pair already in one cluster is not
    checked again (no set of checked pairs is kept).
    """
    exact, near = normalized_caption_clusters([normalize_caption(c) for c in captions], threshold=threshold,
                                              ngram=ngram, bands=bands, rows=rows)
    return exact if threshold >= 1.0 else near


def normalized_caption_clusters(norms: Sequence[str], *, threshold: float = 0.8, ngram: int = 4,
                                bands: int = 16, rows: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(exact labels, near labels) of already normalised captions: `caption_clusters` at threshold 1 and at
    `threshold`, from one pass (the near clusters are unions of the exact ones)."""
    n = len(norms)
    uf = UnionFind(n)
    first: dict[str, int] = {}
    uniq: list[int] = []  # index of the first caption of each distinct normalised text
    for i, s in enumerate(norms):
        j = first.setdefault(s, i)
        if j != i:
            uf.union(j, i)
        else:
            uniq.append(i)
    del first
    exact = uf.labels()
    if threshold >= 1.0 or len(uniq) < 2:
        return exact, exact.copy()

    texts = [norms[i] for i in uniq]
    num_perm = bands * rows
    sig = caption_signatures(texts, ngram, num_perm)
    need = agreement_needed(threshold, num_perm)

    for band in range(bands):
        u, v = bucket_candidates(band_keys(sig, band, rows))
        # a pair whose signatures agree in fewer than `need` places is below the threshold but for a
        # one-in-a-million chance (`agreement_needed`): only the others are checked exactly
        keep = (sig[u] == sig[v]).sum(1) >= need
        for a, b in zip(u[keep].tolist(), v[keep].tolist()):
            x, y = uniq[a], uniq[b]
            if uf.find(x) != uf.find(y) and ngram_jaccard_at_least(texts[a], texts[b], ngram, threshold):
                uf.union(x, y)
    return exact, uf.labels()


# --------------------------------------------------------------------------------------------
# Content


def content_clusters(vectors: np.ndarray, threshold: float, *, block: int = 1024) -> np.ndarray:
    """Cluster label per item: connected components of `<v_i, v_j> > threshold` (single linkage).

    vectors: (N, D) unit content vectors. Labels are the index of the cluster's first item. Exact: the
    inner products are computed `block` rows at a time (fewer for a very large N, so one block holds
    at most 2^26 of them); all-zero vectors (unreadable items) are singletons.
    """
    x = np.asarray(vectors, np.float32)
    n = len(x)
    uf = UnionFind(n)
    valid = np.flatnonzero(np.linalg.norm(x, axis=1) > 0) if n else np.zeros(0, np.int64)
    if len(valid) < 2:
        return uf.labels()
    xv = x[valid]
    rows = max(1, min(block, (1 << 26) // len(valid)))
    for start in range(0, len(valid), rows):
        sims = xv[start:start + rows] @ xv.T
        for a, b in zip(*np.nonzero(sims > threshold)):
            if start + a != b:
                uf.union(int(valid[start + a]), int(valid[b]))
    return uf.labels()
