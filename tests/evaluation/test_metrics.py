"""Metric functions against hand-computed values and sklearn as a reference."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from occtool.errors import OcctoolError
from occtool.evaluation import metrics as M


def test_roc_hand_computed():
    gen = [0.9, 0.8, 0.4]
    imp = [0.7, 0.3, 0.2, 0.1]
    roc = M.roc_curve(gen, imp)
    # thresholds: inf, .9, .8, .7, .4, .3, .2, .1
    assert roc.thresholds[0] == np.inf
    np.testing.assert_allclose(roc.thresholds[1:], [0.9, 0.8, 0.7, 0.4, 0.3, 0.2, 0.1])
    np.testing.assert_allclose(roc.tar, [0, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1, 1])
    np.testing.assert_allclose(roc.far, [0, 0, 0, 0.25, 0.25, 0.5, 0.75, 1])
    # AUC = P(gen > imp): pairs lost: 0.4 < 0.7 only -> 11/12
    assert M.auc(gen, imp) == pytest.approx(11 / 12)


def test_ties_are_one_step_and_auc_half():
    gen = [0.5, 0.5]
    imp = [0.5, 0.1]
    roc = M.roc_curve(gen, imp)
    # at 0.5 both genuines and one impostor are accepted together: no point (far 0, tar 1)
    np.testing.assert_allclose(roc.far, [0, 0.5, 1])
    np.testing.assert_allclose(roc.tar, [0, 1, 1])
    assert M.auc(gen, imp) == pytest.approx(0.75)  # (0.5 + 1) / 2 per genuine
    tar, thr = M.tar_at_far(gen, imp, 0.0)
    assert tar == 0.0 and thr == np.inf  # pessimistic: the tie cannot be split


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_and_auc_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    gen = np.round(rng.normal(1, 1, 300), 1)  # rounding creates many ties
    imp = np.round(rng.normal(0, 1, 500), 1)
    y = np.r_[np.ones(gen.size), np.zeros(imp.size)]
    s = np.r_[gen, imp]
    fpr, tpr, thr = sk_roc_curve(y, s, drop_intermediate=False)
    roc = M.roc_curve(gen, imp)
    np.testing.assert_allclose(roc.far, fpr)
    np.testing.assert_allclose(roc.tar, tpr)
    np.testing.assert_allclose(roc.thresholds[1:], thr[1:])
    assert M.auc(gen, imp) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_perfect_and_random_scorers():
    rng = np.random.default_rng(0)
    gen = rng.uniform(0.6, 1.0, 1000)
    imp = rng.uniform(0.0, 0.5, 5000)
    assert M.auc(gen, imp) == 1.0
    assert M.eer(gen, imp)[0] == 0.0
    assert M.tar_at_far(gen, imp, 1e-3)[0] == 1.0
    s = np.r_[gen, imp]
    y = np.r_[np.ones(gen.size, bool), np.zeros(imp.size, bool)]
    thr, acc = M.best_threshold(s, y)
    assert acc == 1.0 and 0.5 < thr < 0.6
    # random scorer: same distribution for both
    gen = rng.uniform(0, 1, 20000)
    imp = rng.uniform(0, 1, 20000)
    assert M.auc(gen, imp) == pytest.approx(0.5, abs=0.01)
    assert M.eer(gen, imp)[0] == pytest.approx(0.5, abs=0.01)
    assert M.tar_at_far(gen, imp, 1e-2)[0] == pytest.approx(0.01, abs=0.005)
    # constant scorer: every probe ties with every gallery entry -> worst rank
    ranks = M.ranks_from_scores(np.zeros((4, 6)), [0, 1, 2, 5])
    np.testing.assert_array_equal(ranks, [6, 6, 6, 6])


def test_eer_hand_computed():
    gen = [0.9, 0.6, 0.4, 0.35]
    imp = [0.5, 0.3, 0.2, 0.1]
    # thr 0.5: far .25, frr .5; thr .4: far .25 frr .25 -> EER .25 exactly
    rate, thr = M.eer(gen, imp)
    assert rate == pytest.approx(0.25)
    assert thr == pytest.approx(0.4)


def test_tar_at_far_hand_computed():
    gen = [0.9, 0.8, 0.7, 0.2]
    imp = [0.85, 0.6, 0.5, 0.4, 0.3, 0.1, 0.05, 0.04, 0.03, 0.02]
    assert M.tar_at_far(gen, imp, 0.0) == (0.25, 0.9)
    assert M.tar_at_far(gen, imp, 0.1) == (0.75, 0.7)
    assert M.tar_at_far(gen, imp, 0.19) == (0.75, 0.7)
    assert M.tar_at_far(gen, imp, 1.0)[0] == 1.0


def test_accuracy_and_best_threshold():
    gen = [0.9, 0.6, 0.4]
    imp = [0.5, 0.3]
    assert M.accuracy_at_threshold(gen, imp, 0.45) == pytest.approx(3 / 5)
    assert M.accuracy_at_threshold(gen, imp, 0.6) == pytest.approx(4 / 5)  # >= accepts
    assert M.accuracy_at_threshold(gen, imp, 0.0) == pytest.approx(3 / 5)
    s = [0.9, 0.6, 0.4, 0.5, 0.3]
    y = [1, 1, 1, 0, 0]
    thr, acc = M.best_threshold(s, y)
    # best accuracy 4/5 at candidates 0.35 (between .3 and .4) and 0.55 (between .5 and .6);
    # the middle of the two (lower index) is taken
    assert acc == pytest.approx(0.8)
    assert thr == pytest.approx(0.35)


def test_kfold_threshold_chosen_on_other_folds():
    # fold 0 would like threshold ~0.5, fold 1 ~0.5 too, fold 2 has its genuine low at 0.45
    s = np.array([0.9, 0.6, 0.1, 0.2, 0.8, 0.7, 0.3, 0.4, 0.45, 0.95, 0.2, 0.1])
    y = np.array([1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0], bool)
    f = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    res = M.kfold_accuracy(s, y, f)
    # for fold 2 the threshold comes from folds 0+1: best interval (0.4, 0.6) -> its genuine 0.45
    # is accepted only if thr <= 0.45
    thr2, _ = M.best_threshold(s[f != 2], y[f != 2])
    assert res.thresholds[2] == thr2
    exp2 = np.mean((s[f == 2] >= thr2) == y[f == 2])
    assert res.fold_accuracies[2] == exp2
    assert res.mean == pytest.approx(np.mean(res.fold_accuracies))
    assert res.std == pytest.approx(np.std(res.fold_accuracies))
    with pytest.raises(OcctoolError):
        M.kfold_accuracy(s, y, np.zeros(12))


def test_ranks_and_cmc_pessimistic_ties():
    scores = np.array(
        [
            [0.9, 0.1, 0.2],  # true 0 -> rank 1
            [0.5, 0.5, 0.1],  # true 1 ties with 0 -> rank 2 (pessimistic)
            [0.9, 0.8, 0.1],  # true 2 -> rank 3
            [0.2, 0.7, 0.7],  # true 2 ties with 1 -> rank 2
        ]
    )
    ranks = M.ranks_from_scores(scores, [0, 1, 2, 2])
    np.testing.assert_array_equal(ranks, [1, 2, 3, 2])
    np.testing.assert_allclose(M.cmc(scores, [0, 1, 2, 2]), [0.25, 0.75, 1.0])
    assert M.rank_k(ranks, 1) == 0.25
    assert M.rank_k(ranks, 5) == 1.0
    with pytest.raises(OcctoolError):
        M.ranks_from_scores(scores, [0, 1, 2, 3])
    with pytest.raises(OcctoolError):
        M.cmc_from_ranks([], 5)


def test_errors_on_empty_and_nonfinite():
    with pytest.raises(OcctoolError, match="genuine and impostor"):
        M.roc_curve([], [0.1])
    with pytest.raises(OcctoolError, match="non-finite"):
        M.auc([np.nan, 0.2], [0.1])


def test_verification_summary_keys():
    out = M.verification_summary([0.9, 0.8], [0.1, 0.2, 0.85], threshold=0.5)
    for k in ("auc", "eer", "tar@far=1e-3", "tar@far=1e-2", "acc_best", "acc@threshold", "n_genuine", "n_impostor"):
        assert k in out
    assert out["acc@threshold"] == pytest.approx(4 / 5)
    assert M.far_key(1e-3) == "tar@far=1e-3"
