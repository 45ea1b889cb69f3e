"""Natural motion filtering and the item verdict, on hand-made neighbour lists."""
import numpy as np

from diffmem.index.motion import Neighbour
from diffmem.metrics.motion import (NMFConfig, WindowReport, assess_window, duplicate_groups, search_windows_bruteforce,
                                    summarize)

CFG = NMFConfig(tau_m=0.8, static_px=0.5, natural_groups=3)


def nb(sim, tid, start=0, motion=2.0):
    return Neighbour(sim, tid, start, motion)


def test_static_window_is_natural_whatever_it_matches():
    r = assess_window(0, 0.2, [nb(0.99, "a")], CFG)
    assert not r.kept and r.reason.startswith("static") and r.similarity == 0.99 and r.train_id == "a"


def test_window_shared_by_many_groups_is_natural():
    r = assess_window(1, 3.0, [nb(0.95, "a"), nb(0.9, "b"), nb(0.85, "c"), nb(0.7, "d")], CFG)
    assert not r.kept and r.n_groups == 3 and "shared: matches 3 distinct" in r.reason


def test_duplicates_count_once():
    nbs = [nb(0.95, "a"), nb(0.95, "a_copy1"), nb(0.95, "a_copy2"), nb(0.9, "b")]
    assert not assess_window(0, 3.0, nbs, CFG).kept  # without grouping: 4 items >= 3
    groups = {"a": "a", "a_copy1": "a", "a_copy2": "a", "b": "b"}
    r = assess_window(0, 3.0, nbs, CFG, groups)
    assert r.kept and r.n_groups == 2 and r.reason is None and r.train_id == "a"


def test_static_training_windows_never_match():
    r = assess_window(0, 3.0, [nb(0.99, "still", motion=0.1), nb(0.6, "moving")], CFG)
    assert r.kept and r.train_id == "moving" and r.similarity == 0.6 and r.n_groups == 0
    r = assess_window(0, 3.0, [nb(0.99, "still", motion=0.1)], CFG)
    assert r.similarity is None and r.train_id is None


def test_threshold_is_strict():
    r = assess_window(0, 3.0, [nb(0.8, "a")] * 5, CFG)
    assert r.kept and r.n_groups == 0


def rep(start, sim, tid, tstart, kept=True, reason=None, motion=3.0):
    return WindowReport(start, motion, sim, tid, tstart, 1, kept, reason)


def test_summary_uses_kept_windows_and_reports_natural_raw_match():
    windows = [rep(0, 0.99, "pan", 4, kept=False, reason="shared: ..."), rep(1, 0.85, "x", 3), rep(2, 0.6, "y", 0)]
    res = summarize("g", windows, CFG, n_flows=6)
    assert res.raw_score == 0.99 and res.raw_match.train_id == "pan"
    assert res.natural_motion == {"natural": True, "reason": "shared: ..."}
    assert res.motion_score == 0.85 and res.motion_match.train_id == "x" and res.motion_memorized
    assert (res.motion_match.gen_start, res.motion_match.train_start) == (1, 3)


def test_summary_not_memorized_below_tau_and_too_short():
    res = summarize("g", [rep(0, 0.79, "x", 0)], CFG, n_flows=4)
    assert not res.motion_memorized and res.motion_score == 0.79 and res.natural_motion["natural"] is False
    short = summarize("g", [], CFG, n_flows=2)
    assert short.motion_score is None and not short.motion_memorized and "too short" in short.natural_motion["reason"]
    still = summarize("g", [rep(0, None, None, None, kept=False, reason="static: ...", motion=0.1)], CFG, 4)
    assert still.natural_motion == {"natural": True, "reason": "static: ..."} and still.motion_score is None


def test_offset_is_the_best_supported_diagonal():
    # Window 0's best pair says offset +1 (a tie between neighbouring windows), but windows 0..3 all
    # align at offset +2: the reported offset follows the evidence of the whole clip.
    windows = [rep(j, s, "x", j + d) for j, (s, d) in enumerate([(0.97, 1), (0.95, 2), (0.94, 2), (0.93, 2)])]
    nbs = [[nb(0.97, "x", 1), nb(0.96, "x", 2)], [nb(0.95, "x", 3)], [nb(0.94, "x", 4)], [nb(0.93, "x", 5)]]
    res = summarize("g", windows, CFG, n_flows=7, neighbours=nbs)
    assert res.motion_match.offset == 2
    assert (res.motion_match.gen_start, res.motion_match.train_start, res.motion_match.similarity) == (0, 1, 0.97)
    assert summarize("g", windows, CFG, n_flows=7).motion_match.offset == 1  # no neighbour lists: the best pair's


def test_bruteforce_search_returns_everything_above_tau():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(20, 6))
    train /= np.linalg.norm(train, axis=1, keepdims=True)
    meta = [(f"t{i // 4}", i % 4, 1.0) for i in range(20)]
    q = train[[3, 7]] * 0.999
    out = search_windows_bruteforce(q, train, meta, tau=0.5, min_keep=2)
    sims = q @ train.T
    for row, s in zip(out, sims):
        assert len(row) == max((s > 0.5).sum(), 2)
        assert [n.similarity for n in row] == sorted([n.similarity for n in row], reverse=True)
    assert (out[0][0].train_id, out[0][0].train_start) == ("t0", 3)


def test_duplicate_groups_are_connected_components():
    e = np.eye(4, dtype=np.float32)
    v = {"a": e[0], "b": (e[0] + 0.1 * e[1]), "c": (e[0] + 0.1 * e[1] + 0.1 * e[2]), "d": e[3], "f": e[1]}
    v = {k: x / np.linalg.norm(x) for k, x in v.items()}
    # a~b 0.9950, b~c 0.9951, a~c 0.9901: above 0.993 only through b -- a chain is one group; d, f alone.
    ids = ["c", "a", "b", "d", "f"]
    groups = duplicate_groups(ids, np.stack([v[i] for i in ids]), threshold=0.993)
    assert groups == {"c": "c", "a": "c", "b": "c", "d": "d", "f": "f"}
    assert duplicate_groups(ids, np.stack([v[i] for i in ids]), threshold=0.9999) == {i: i for i in ids}
