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


def _edited_pairs(n=300, seed=0):
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(300)]
    pairs = []
    for _ in range(n):
        a = list(rng.choice(words, rng.integers(6, 12)))
        b = list(a)
        for _ in range(rng.integers(0, 4)):  # 0-3 words replaced: Jaccard from 1 down to about 0.2
            b[rng.integers(len(b))] = str(rng.choice(words))
        pairs.append((" ".join(a), " ".join(b)))
    return pairs


def test_minhash_estimates_jaccard_without_bias():
    """The share of equal signature positions estimates Jaccard: with 64 permutations its standard error is
    at most sqrt(0.25 / 64) = 0.0625, so the mean absolute error over 300 pairs stays well under 0.07.
    (The old family (a h + b) mod 2^61-1 with a, b < 2^31 gave 0.16 here: its permutations barely mixed.)"""
    from diffmem.metrics.duplicates import minhash, shingles

    err = []
    for a, b in _edited_pairs():
        sa, sb = shingles(normalize_caption(a), 4), shingles(normalize_caption(b), 4)
        sig = minhash([sa, sb], 64)
        err.append((sig[0] == sig[1]).mean() - len(sa & sb) / len(sa | sb))
    err = np.array(err)
    assert np.abs(err).mean() < 0.07 and abs(err.mean()) < 0.02
    assert (minhash([sa], 64, seed=0) == minhash([sa], 64, seed=0)).all()  # deterministic
    assert (minhash([sa], 64, seed=1) != minhash([sa], 64, seed=0)).any()


def test_every_pair_at_jaccard_0_8_or_more_is_clustered_on_a_larger_sample():
    """Recall of Jaccard >= 0.8 pairs against exact all-pairs, on 600 captions that include near copies."""
    from diffmem.metrics.duplicates import shingles

    captions = [c for pair in _edited_pairs(300, seed=1) for c in pair]
    labels = caption_clusters(captions, threshold=0.8, ngram=4)
    sets = [shingles(normalize_caption(c), 4) for c in captions]
    close = [(i, j) for i, j in itertools.combinations(range(len(captions)), 2)
             if len(sets[i] & sets[j]) >= 0.8 * len(sets[i] | sets[j])]
    assert len(close) >= 50  # the sample has such pairs
    found = sum(labels[i] == labels[j] for i, j in close)
    assert found == len(close)


def test_block_signatures_equal_minhash_of_the_shingle_sets():
    """The vectorised signatures (n-grams cut from one code-point array, blocks of captions) equal MinHash of
    each caption's explicit n-gram set, short captions (one padded n-gram) included."""
    from diffmem.metrics.duplicates import caption_signatures, minhash, shingles

    norms = [normalize_caption(c) for c in ["", "a", "ab", "a cat", "Ünïcode café 東京", "red car on a road"] * 2]
    norms += [normalize_caption(a) for a, _ in _edited_pairs(40)]
    for n in (3, 4, 5):
        got = caption_signatures(norms, n, 64, block=5)
        want = minhash([shingles(t, n) for t in norms], 64, ngram=n)
        assert got.dtype == np.uint32 and (got == want).all()


def test_candidate_pairs_are_dropped_only_below_a_one_in_a_million_agreement():
    from scipy.stats import binom

    from diffmem.metrics.duplicates import agreement_needed

    for t, m in ((0.8, 64), (0.6, 64), (0.9, 32)):
        need = agreement_needed(t, m)
        # a pair at exactly the threshold agrees in fewer places with probability <= 1e-6, and one more
        # agreement would cut it above 1e-6
        assert binom.cdf(need - 1, m, t) <= 1e-6 < binom.cdf(need, m, t)


def test_union_find_labels_are_each_elements_smallest_member():
    rng = np.random.default_rng(0)
    uf = UnionFind(500)
    for a, b in rng.integers(0, 500, size=(300, 2)):
        uf.union(int(a), int(b))
    assert list(uf.labels()) == [uf.find(i) for i in range(500)]
