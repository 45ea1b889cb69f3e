"""ROC AUC against sklearn and hand counts; TPR at a fixed FPR on hand-made examples."""
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from diffmem.detect.evaluate import evaluate_scores, roc_auc, roc_curve, roc_curves, threshold_at_fpr, tpr_at_fpr
from diffmem.errors import DiffmemError


def test_auc_by_hand_with_a_tie():
    # pos {3, 1}, neg {2, 1}: pairs (3,2)=1 (3,1)=1 (1,2)=0 (1,1)=0.5 -> 2.5 / 4
    assert roc_auc([3, 1, 2, 1], [1, 1, 0, 0]) == pytest.approx(0.625)


def test_perfect_and_inverted_separation():
    assert roc_auc([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0]) == 1.0
    assert roc_auc([0.1, 0.2, 0.9, 0.8], [1, 1, 0, 0]) == 0.0


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.random(300) < 0.3
    s = np.round(rng.normal(size=300) + y * 0.8, 1)  # rounding makes many ties
    assert roc_auc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_tpr_at_fpr_is_the_best_roc_point_within_the_budget(seed):
    # second method: the largest sklearn ROC tpr among points with fpr <= the target
    rng = np.random.default_rng(seed)
    y = rng.random(400) < 0.4
    s = np.round(rng.normal(size=400) + y * 1.5, 2)
    fpr, tpr, _ = sk_roc_curve(y, s)
    for target in (0.01, 0.03, 0.1, 0.05):  # where target x N_neg is a whole number the two rules differ
        assert tpr_at_fpr(s, y, target, "at-most") == pytest.approx(tpr[fpr <= target + 1e-12].max())
        assert tpr_at_fpr(s, y, target) == pytest.approx(tpr[fpr < target - 1e-12].max())  # strict, the default


def test_tpr_at_fpr_hand_made():
    # 100 novel scores 0..99, positives 98.5, 97.5, 50: at 1 % FPR one novel (99) may be above the
    # threshold -> threshold 98 -> only 98.5 passes; at 3 %: threshold 96 -> 98.5, 97.5 pass.
    neg = np.arange(100.0)
    pos = np.array([98.5, 97.5, 50.0])
    s = np.concatenate([neg, pos])
    y = np.r_[np.zeros(100), np.ones(3)]
    assert threshold_at_fpr(neg, 0.01, "at-most") == 98.0
    assert tpr_at_fpr(s, y, 0.01, "at-most") == pytest.approx(1 / 3)
    assert tpr_at_fpr(s, y, 0.03, "at-most") == pytest.approx(2 / 3)
    assert tpr_at_fpr(s, y, 0.0) == pytest.approx(0.0)
    # strict (Wen et al.): FPR < 1 % of 100 allows no false positive -> threshold 99, nothing passes;
    # FPR < 3 % allows 2 -> threshold 97 -> 98.5 and 97.5 pass
    assert threshold_at_fpr(neg, 0.01) == 99.0 and tpr_at_fpr(s, y, 0.01) == 0.0
    assert threshold_at_fpr(neg, 0.03) == 97.0 and tpr_at_fpr(s, y, 0.03) == pytest.approx(2 / 3)


def test_wen_rule_with_500_novel_prompts_allows_4_false_positives():
    neg = np.arange(1.0, 501.0)  # top five: 500 .. 496; the sixth 495
    pos = np.array([495.5])      # above the sixth novel score, below the fifth
    s, y = np.r_[neg, pos], np.r_[np.zeros(500), np.ones(1)]
    assert threshold_at_fpr(neg, 0.01) == 496.0 and tpr_at_fpr(s, y, 0.01) == 0.0       # 4 may pass
    assert threshold_at_fpr(neg, 0.01, "at-most") == 495.0 and tpr_at_fpr(s, y, 0.01, "at-most") == 1.0  # 5


def test_auc_interval_matches_the_hanley_mcneil_standard_error():
    from diffmem.detect.evaluate import auc_interval

    rng = np.random.default_rng(0)
    n1 = n2 = 150
    s = np.r_[rng.normal(1.0, 1, n1), rng.normal(0.0, 1, n2)]
    y = np.r_[np.ones(n1, bool), np.zeros(n2, bool)]
    a = roc_auc(s, y)
    # Hanley & McNeil (1982): SE^2 = (A(1-A) + (n1-1)(Q1-A^2) + (n2-1)(Q2-A^2)) / (n1 n2), Q1 = A/(2-A), Q2 = 2A^2/(1+A)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    se = np.sqrt((a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n2 - 1) * (q2 - a * a)) / (n1 * n2))
    lo, hi = auc_interval(s, y, n_boot=2000)
    assert lo < a < hi
    assert (hi - lo) == pytest.approx(2 * 1.96 * se, rel=0.2)
    assert auc_interval([3, 2, 1, 0], [1, 1, 0, 0], n_boot=200) == (1.0, 1.0)


def test_threshold_with_fewer_negatives_than_the_fpr_resolves_is_their_max():
    assert threshold_at_fpr([0.1, 0.5, 0.3], 0.01) == 0.5


def test_roc_curve_points_match_sklearn():
    rng = np.random.default_rng(0)
    y = rng.random(50) < 0.5
    s = np.round(rng.normal(size=50) + y, 1)
    fpr, tpr, thr = roc_curve(s, y)
    sk_fpr, sk_tpr, _ = sk_roc_curve(y, s, drop_intermediate=False)
    assert np.allclose(fpr, sk_fpr) and np.allclose(tpr, sk_tpr)
    assert fpr[0] == 0 and tpr[-1] == 1 and fpr[-1] == 1


def test_evaluate_scores_per_magnitude():
    y = [1, 1, 0, 0, 0]
    res = evaluate_scores({"content": [5, 4, 1, 2, 3], "motion": [1, 2, 5, 4, 3]}, y)
    assert res["content"]["auc"] == 1.0 and res["motion"]["auc"] == 0.0
    assert res["content"]["tpr@1%fpr"] == 1.0
    assert res["content"]["n_memorized"] == 2 and res["content"]["n_novel"] == 3


def test_single_class_and_bad_values_are_errors():
    with pytest.raises(DiffmemError, match="both"):
        roc_auc([1, 2], [1, 1])
    with pytest.raises(DiffmemError, match="NaN"):
        roc_auc([1, float("nan")], [1, 0])
    with pytest.raises(DiffmemError, match="labels"):
        roc_auc([1, 2, 3], [1, 0])


def test_roc_curves_are_the_curve_and_the_auc_of_each_score():
    y = [1, 1, 0, 0, 1]
    got = roc_curves({"a": [3, 2, 1, 0, 2], "b": [0, 1, 2, 3, 1]}, y)
    for name, sc in (("a", [3, 2, 1, 0, 2]), ("b", [0, 1, 2, 3, 1])):
        fpr, tpr, _ = roc_curve(sc, y)
        assert np.array_equal(got[name][0], fpr) and np.array_equal(got[name][1], tpr)
        assert got[name][2] == roc_auc(sc, y)
    assert got["a"][2] == 1.0 and got["b"][2] == 0.0
