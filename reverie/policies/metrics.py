"""Link-prediction metrics: filtered ranks, Hits@k / MRR, and average precision (AUC-PR), numpy only.

Tie handling:
- `filtered_rank` gives an answer tied with other candidates the MEAN of the ranks the tied group
  spans (rank = 1 + #strictly better + #tied others / 2), so a constant scorer earns no credit
  for luck; it can be a half-integer.
- `auc_pr` treats equal scores as one threshold (all tied items enter together), the same
  convention as scikit-learn's `average_precision_score`, which MINERVA reports for Countries.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def filtered_rank(scores: np.ndarray, answer: int, known: Iterable[int] = ()) -> float:
    """Rank of `answer` (1 = best, higher score = better) among all entities except the other
    known answers (`known` minus `answer`); pass `known=()` for the raw rank.

    Ties count as the mean rank of the tied group. NaN scores of other entities never outrank
    the answer; a NaN answer score ranks last among the candidates.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    answer = int(answer)
    if not 0 <= answer < scores.size:
        raise IndexError(f"answer {answer} outside the {scores.size} scored entities")
    keep = np.ones(scores.size, dtype=bool)
    drop = np.fromiter((int(k) for k in known if int(k) != answer), dtype=np.int64)
    if drop.size:
        keep[drop[(drop >= 0) & (drop < scores.size)]] = False
    keep[answer] = False  # the others
    others = scores[keep]
    target = scores[answer]
    if np.isnan(target):
        return float(others.size + 1)
    better = int(np.count_nonzero(others > target))
    ties = int(np.count_nonzero(others == target))
    return 1.0 + better + ties / 2.0


def ranking_metrics(ranks: Iterable[float]) -> dict[str, float]:
    """{"hits@1", "hits@3", "hits@10", "mrr"} as fractions in [0, 1] (all 0.0 for no ranks).

    hits@k counts ranks <= k, so a mean rank of 1.5 from a tie is not a hit@1.
    """
    r = np.asarray(list(ranks), dtype=np.float64)
    if r.size == 0:
        return {"hits@1": 0.0, "hits@3": 0.0, "hits@10": 0.0, "mrr": 0.0}
    if np.any(r < 1):
        raise ValueError("ranks start at 1")
    return {
        "hits@1": float(np.mean(r <= 1)),
        "hits@3": float(np.mean(r <= 3)),
        "hits@10": float(np.mean(r <= 10)),
        "mrr": float(np.mean(1.0 / r)),
    }


def auc_pr(y_true, y_score) -> float:
    """Average precision: sum over distinct score thresholds (descending) of
    (recall_k - recall_{k-1}) * precision_k. Equal scores form one threshold.

    Returns nan when there is no positive label.
    """
    y = np.asarray(y_true).ravel().astype(bool)
    s = np.asarray(y_score, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"y_true has {y.size} items, y_score {s.size}")
    positives = int(np.count_nonzero(y))
    if positives == 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    # Last index of each group of equal scores.
    ends = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]
    tp = np.cumsum(y)[ends].astype(np.float64)
    fp = (ends + 1) - tp
    precision = tp / (tp + fp)
    recall = tp / positives
    delta = np.diff(np.r_[0.0, recall])
    return float(np.sum(delta * precision))
