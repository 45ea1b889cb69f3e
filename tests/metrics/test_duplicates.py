"""Duplicate grouping: caption normalisation and similarity, caption clusters (MinHash LSH checked exactly)
against an all-pairs reference, content clusters on a known construction, and the one union-find."""
import itertools

import numpy as np
import pytest

from diffmem.metrics.duplicates import (UnionFind, caption_clusters, caption_similarity, content_clusters,
                                        normalize_caption)


# ---------------------------------------------------------------------------------------------- text

@pytest.mark.parametrize("raw, expected", [
    ("<i>The Interview</i>, on VOD!", "the interview on vod"),
    ("  A  cat\twalking.\n", "a cat walking"),
    ("ｆｕｌｌ　ｗｉｄｔｈ", "full width"),                 # NFKC folds full-width letters and space
    ("Cafe\u0301 au lait", "café au lait"),             # combining accent == precomposed
    ("Caf\u00e9 au lait", "café au lait"),
    ("Shaw_Floors 00205-19829", "shaw floors 00205 19829"),
    ("", ""),
])
def test_normalize_caption(raw, expected):
    assert normalize_caption(raw) == expected


def test_caption_similarity_by_hand():
    # " abc " -> { " a", "ab", "bc", "c " }; " abd " -> { " a", "ab", "bd", "d " }: 2 shared of 6
    assert caption_similarity("abc", "abd", ngram=2) == pytest.approx(2 / 6)
    assert caption_similarity("A cat!", "a cat", ngram=3) == 1.0
    assert caption_similarity("abc", "xyz", ngram=2) == 0.0


def _brute_force_clusters(captions, threshold, ngram):
    norms = [normalize_caption(c) for c in captions]
    n = len(norms)
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for i, j in itertools.combinations(range(n), 2):
        if norms[i] == norms[j] or caption_similarity(captions[i], captions[j], ngram) >= threshold:
            a, b = find(i), find(j)
            parent[max(a, b)] = min(a, b)
    return [find(i) for i in range(n)]


def test_caption_clusters_match_all_pairs_reference():
    rng = np.random.default_rng(3)
    words = "red blue green cat dog car road tree house river walking running slowly fast big small".split()
    base = [" ".join(rng.choice(words, size=6)) for _ in range(30)]
    captions = []
    for b in base:
        captions.append(b)
        if rng.random() < 0.5:  # a light edit: punctuation/case (exact after normalising)
            captions.append(b.upper() + ".")
        if rng.random() < 0.5:  # a near duplicate: one word appended
            captions.append(b + " " + rng.choice(words))
    for t in (0.6, 0.8):
        got = caption_clusters(captions, threshold=t, ngram=4)
        want = _brute_force_clusters(captions, t, 4)
        # same partition (labels may differ only by name; both use the first index, so they are equal)
        assert list(got) == want, t


def test_caption_clusters_exact_only_and_labels_are_first_index():
    caps = ["A dog.", "a cat", "a dog", "A DOG!!", "a cats"]
    assert list(caption_clusters(caps, threshold=1.0)) == [0, 1, 0, 0, 4]


# ---------------------------------------------------------------------------------------------- content

def _unit(v):
    return v / np.linalg.norm(v)


def test_content_clusters_known_construction():
    rng = np.random.default_rng(0)
    d = 32
    basis = np.linalg.qr(rng.normal(size=(d, d)))[0]  # orthonormal: distinct items have similarity 0
    v = [basis[0], basis[0] + 0.05 * basis[5], basis[1], basis[2], basis[1] + 0.1 * basis[6], np.zeros(d), basis[0]]
    vecs = np.stack([_unit(x) if np.linalg.norm(x) else x for x in v]).astype(np.float32)
    labels = content_clusters(vecs, threshold=0.9)
    assert list(labels) == [0, 0, 2, 3, 2, 5, 0]


def test_content_clusters_skip_self_links_and_link_chains_in_blocks():
    # a chain 0~1~2 whose ends are not similar, found across row blocks of one vector each
    e = np.eye(3, dtype=np.float32)
    v = np.stack([e[0], e[0] + e[1], e[1] + 0.01 * e[2], e[2]])
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    assert list(content_clusters(v, threshold=0.7, block=1)) == [0, 0, 0, 3]
    assert list(content_clusters(v, threshold=0.7)) == [0, 0, 0, 3]


def test_union_find_root_is_the_smallest_member():
    uf = UnionFind(6)
    for i, j in [(5, 3), (4, 5), (2, 1)]:
        uf.union(i, j)
    assert list(uf.labels()) == [0, 1, 1, 3, 3, 3]
