"""Link-prediction metrics: filtered ranks, Hits@k / MRR, and average precision (AUC-PR), numpy only.

Tie handling:
- a rank tied with other candidates is the MEAN of the ranks the tied group spans
  (rank = 1 + #strictly better + #tied others / 2), so a constant scorer earns no credit
  for luck; it can be a half-integer.
- `auc_pr` treats equal scores as one threshold (all tied items enter together), the same
  convention as scikit-learn's `average_precision_score`, which MINERVA reports for Countries.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def filtered_ranks(scores: np.ndarray, answers: np.ndarray, known: Sequence[Iterable[int]] | None = None) -> np.ndarray:
    """Rank of each row's answer (1 = best, higher score = better) among all entities except that
    row's other known answers (`known[i]` minus `answers[i]`); `known=None` gives raw ranks.

    scores [Q, E], answers [Q]. Ties count as the mean rank of the tied group. NaN scores of other
    entities never outrank the answer; a NaN answer score ranks last among the candidates.
    """
    scores = np.asarray(scores)
    scores = scores.reshape(1, -1) if scores.ndim == 1 else scores
    answers = np.asarray(answers, dtype=np.int64).reshape(-1)
    if scores.shape[0] != len(answers):
        raise ValueError(f"{scores.shape[0]} score rows for {len(answers)} answers")
    if answers.size and (answers.min() < 0 or answers.max() >= scores.shape[1]):
        raise IndexError(f"answers must lie within the {scores.shape[1]} scored entities")
    known = list(known) if known is not None else None
    # in row chunks: a large graph's [Q, E] masks would not fit in memory at once
    return np.concatenate([
        _ranks(scores[i : i + _CHUNK].astype(np.float64), answers[i : i + _CHUNK], known[i : i + _CHUNK] if known is not None else None)
        for i in range(0, len(answers), _CHUNK)
    ]) if len(answers) else np.zeros(0)


_CHUNK = 512


def _ranks(scores: np.ndarray, answers: np.ndarray, known) -> np.ndarray:
    rows = np.arange(len(answers))
    target = scores[rows, answers]
    keep = np.ones(scores.shape, dtype=bool)
    if known is not None:
        for i, others in enumerate(known):
            drop = np.fromiter((int(k) for k in others), dtype=np.int64)
            keep[i, drop[(drop >= 0) & (drop < scores.shape[1])]] = False
    keep[rows, answers] = False  # the others
    better = ((scores > target[:, None]) & keep).sum(axis=1)
    ties = ((scores == target[:, None]) & keep).sum(axis=1)
    ranks = 1.0 + better + ties / 2.0
    return np.where(np.isnan(target), keep.sum(axis=1) + 1.0, ranks)


def filtered_rank(scores: np.ndarray, answer: int, known: Iterable[int] = ()) -> float:
    """The filtered rank of one answer: `filtered_ranks` for a single row."""
    return float(filtered_ranks(np.asarray(scores, dtype=np.float64).reshape(1, -1), [answer], [known])[0])


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
