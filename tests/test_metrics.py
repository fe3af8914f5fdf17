"""Filtered ranks, Hits@k / MRR and average precision on hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reverie.ranking import auc_pr, filtered_rank, filtered_ranks, ranking_metrics


def test_filtered_versus_raw_rank():
    #                 0    1    2    3    4    5
    scores = np.array([0.9, 0.8, 0.7, 0.1, 0.95, 0.2])
    # Answer 2 (0.7): raw, entities 4, 0, 1 score higher -> rank 4.
    assert filtered_rank(scores, 2) == 4.0
    assert filtered_rank(scores, 2, known=set()) == 4.0
    # Other known answers 4 and 0 are filtered out -> rank 2; the answer itself in `known` is kept.
    assert filtered_rank(scores, 2, known={0, 2, 4}) == 2.0
    # Filtering lower-scored entities changes nothing.
    assert filtered_rank(scores, 2, known={3, 5}) == 4.0
    assert filtered_rank(scores, 4) == 1.0


def test_ties_take_the_mean_rank():
    scores = np.array([0.5, 0.5, 0.5, 0.9])
    # One better (3), two tied others: rank 1 + 1 + 2/2 = 3, the mean of ranks 2, 3, 4.
    assert filtered_rank(scores, 0) == 3.0
    assert filtered_rank(scores, 0, known={1}) == 2.5
    assert filtered_rank(np.zeros(5), 2) == 3.0
    with pytest.raises(IndexError):
        filtered_rank(scores, 4)


def test_batched_ranks_filter_each_row_by_its_own_answers():
    scores = np.array([[0.9, 0.8, 0.7, 0.1], [0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.5, 0.5]])
    ranks = filtered_ranks(scores, [2, 0, 1], [{0}, {3, 0}, ()])
    # row 0: 0 filtered, 1 better -> 2; row 1: 3 filtered, 1 and 2 better -> 3; row 2: three ties -> 2.5
    np.testing.assert_array_equal(ranks, [2.0, 3.0, 2.5])
    np.testing.assert_array_equal(filtered_ranks(scores, [2, 0, 1]), [3.0, 4.0, 2.5])
    # many rows are ranked in chunks, with the same result as one at a time
    rng = np.random.default_rng(0)
    big = rng.integers(0, 5, (1500, 30)).astype(float)
    answers = rng.integers(0, 30, 1500)
    np.testing.assert_array_equal(
        filtered_ranks(big, answers), [filtered_rank(big[i], answers[i]) for i in range(1500)]
    )
    with pytest.raises(ValueError):
        filtered_ranks(scores, [0, 1])


def test_ranking_metrics_by_hand():
    ranks = [1, 2, 4, 10, 20]
    m = ranking_metrics(ranks)
    assert m["hits@1"] == pytest.approx(1 / 5)
    assert m["hits@3"] == pytest.approx(2 / 5)
    assert m["hits@10"] == pytest.approx(4 / 5)
    assert m["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 4 + 1 / 10 + 1 / 20) / 5)
    assert ranking_metrics([1.5])["hits@1"] == 0.0 and ranking_metrics([1.5])["mrr"] == pytest.approx(2 / 3)
    assert ranking_metrics([]) == {"hits@1": 0.0, "hits@3": 0.0, "hits@10": 0.0, "mrr": 0.0}


def test_auc_pr_by_hand():
    # Ranked by score: +, -, +, -: precision at the positives 1/1 and 2/3 -> AP = (1 + 2/3) / 2.
    y = [1, 0, 1, 0]
    s = [0.9, 0.8, 0.7, 0.1]
    assert auc_pr(y, s) == pytest.approx((1 + 2 / 3) / 2)
    # Perfect and worst orderings.
    assert auc_pr([0, 1, 1], [0.1, 0.5, 0.6]) == pytest.approx(1.0)
    assert auc_pr([1, 0, 0], [0.1, 0.5, 0.6]) == pytest.approx(1 / 3)
    # Ties form one threshold: {+, -} together at 0.8 then + at 0.5 -> recall 1/2 at precision 1/2, then 1 at 2/3.
    assert auc_pr([1, 0, 1], [0.8, 0.8, 0.5]) == pytest.approx(0.5 * 0.5 + 0.5 * (2 / 3))
    assert math.isnan(auc_pr([0, 0], [0.3, 0.2]))
