"""From answer scores to ranks, metrics and calibrated probabilities: the one module of each. numpy
only (fit_temperature imports torch when called).

- Scores: softmax and log_softmax over entities, and arbiter_scores, the one formula `reverie eval`,
  `reverie ask` and /v1/query rank a path policy's answers by.
- Ranking: filtered ranks, Hits@k / MRR, and average precision (AUC-PR).
- Calibration: fit_temperature (temperature scaling on dev), the expected calibration error (ECE) of
  confidences, of scores' top answers (top_answer_confidence) and of probabilities' top answers
  (filtered_calibration_error).

Tie handling:
- a rank tied with other candidates is the MEAN of the ranks the tied group spans
  (rank = 1 + #strictly better + #tied others / 2), so a constant scorer earns no credit
  for luck; it can be a half-integer.
- `auc_pr` treats equal scores as one threshold (all tied items enter together), the same
  convention as scikit-learn's `average_precision_score`, which MINERVA reports for Countries.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import numpy.typing as npt

# ---------------------------------------------------------------------------------- scores


def softmax(scores: np.ndarray) -> np.ndarray:
    z = scores - np.max(scores, axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(scores: np.ndarray) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    top = s.max(axis=1, keepdims=True)
    return s - top - np.log(np.exp(s - top).sum(axis=1, keepdims=True))


def arbiter_scores(
    path_logp: np.ndarray,
    world_scores: np.ndarray | None,
    weight: float = 1.0,
    reasoner_scores: np.ndarray | None = None,
    world_weight: float = 1.0,
    floor: float = -10.0,
) -> np.ndarray:
    """Answer scores [Q, E]: the one formula `reverie eval`, `reverie ask` and /v1/query rank by.

    A product of experts: log p_reasoner(e) + world_weight * log p_world(e) + weight * log(p_paths(e) + e^floor),
    where p_reasoner and p_world are the reasoner's and the world model's softmax over entities and p_paths
    the best path's probability (0 when no rollout reached e). Without a reasoner the world model's weight
    is 1. Path evidence reorders what the models believe; an entity no path reaches is not ruled out,
    only pushed down. With neither model, the path scores alone.
    """
    paths = np.logaddexp(np.where(np.isfinite(path_logp), path_logp, -np.inf), floor)
    if world_scores is None and reasoner_scores is None:
        return np.where(np.isfinite(path_logp), path_logp, -np.inf)
    total = weight * paths
    if reasoner_scores is not None:
        total = total + log_softmax(reasoner_scores)
    if world_scores is not None:
        total = total + (world_weight if reasoner_scores is not None else 1.0) * log_softmax(world_scores)
    return total


# ---------------------------------------------------------------------------------- ranking


def filtered_ranks(
    scores: np.ndarray, answers: npt.ArrayLike, known: Sequence[Iterable[int]] | None = None
) -> np.ndarray:
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
    return (
        np.concatenate(
            [
                _ranks(
                    scores[i : i + _CHUNK].astype(np.float64),
                    answers[i : i + _CHUNK],
                    known[i : i + _CHUNK] if known is not None else None,
                )
                for i in range(0, len(answers), _CHUNK)
            ]
        )
        if len(answers)
        else np.zeros(0)
    )


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


# ---------------------------------------------------------------------------------- calibration


def fit_temperature(scores: np.ndarray, answers: np.ndarray, others: Sequence[set[int]] | None = None) -> float:
    """The temperature T that minimises the dev split's negative log-likelihood of softmax(scores / T), the
    other known answers of each query masked (temperature scaling, Guo et al. 2017). A 1-d search over log T."""
    import torch

    scores = _mask_other_answers(scores, answers, others)
    # shifted by each row's best, float32 and torch's threads: dev x 40k entities (WN18RR) stays quick
    shifted = torch.from_numpy((scores - scores.max(axis=1, keepdims=True)).astype(np.float32))
    right = shifted[torch.arange(len(answers)), torch.from_numpy(np.asarray(answers, np.int64))]

    def nll(log_t: float) -> float:
        t = math.exp(log_t)
        return float((torch.logsumexp(shifted / t, dim=1) - right / t).mean())

    # the NLL is convex in 1/T, unimodal in log T
    return float(math.exp(golden_section_min(nll, math.log(1e-2), math.log(1e2), 40)))


def golden_section_min(f: Callable[[float], float], lo: float, hi: float, steps: int) -> float:
    """The x in [lo, hi] that minimises a unimodal f, by golden-section search: one new point per step."""
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = f(a), f(b)
    for _ in range(steps):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = f(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = f(b)
    return (lo + hi) / 2


def _mask_other_answers(scores: np.ndarray, answers: np.ndarray, others: Sequence[set[int]] | None) -> np.ndarray:
    scores = np.array(scores, dtype=np.float64)
    if others is not None:
        for i, drop in enumerate(others):
            idx = [k for k in drop if k != answers[i]]
            scores[i, idx] = -np.inf
    return scores


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """ECE: the mean |accuracy - confidence| over equal-width confidence bins, weighted by their size."""
    confidence, correct = np.asarray(confidence, np.float64), np.asarray(correct, np.float64)
    if confidence.shape != correct.shape or not confidence.size:
        raise ValueError("confidence and correct must be non-empty and of one shape")
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        member = which == b
        if member.any():
            total += member.mean() * abs(correct[member].mean() - confidence[member].mean())
    return float(total)


def top_answer_confidence(
    scores: np.ndarray, answers: np.ndarray, temperature: float, others: Sequence[set[int]] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(confidence of each row's top answer, whether it is the right one), the other known answers masked."""
    probs = softmax(_mask_other_answers(scores, answers, others) / temperature)
    top = probs.argmax(axis=1)
    return probs[np.arange(len(top)), top], top == np.asarray(answers)


def filtered_calibration_error(probabilities: np.ndarray, answers: np.ndarray, known) -> float:
    """The expected calibration error of each row's top answer (the other known answers masked, renormalised)."""
    probs = np.array(probabilities, np.float64)
    for i, others in enumerate(known):
        drop = [k for k in others if k != answers[i]]
        probs[i, drop] = 0.0
    probs /= np.clip(probs.sum(axis=1, keepdims=True), 1e-300, None)
    top = probs.argmax(axis=1)
    return expected_calibration_error(probs[np.arange(len(top)), top], top == np.asarray(answers))
