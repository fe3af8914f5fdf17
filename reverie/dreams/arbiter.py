"""Arbitration of the embedding walker's rollouts: score them, group them by the answer they reach.

An answer's score mixes three things, each in [0, 1]:
- agreement: the share of rollouts that reach it, so a well-supported answer beats a lone lucky walk;
- path: the probability of its best path (exp of the mean log-probability per decision);
- relevance: how well the relation of the chain's last hop matches the question, since the last
  hop is the one that produces the answer ("when dropped on a hard floor" for a question about
  dropping), so a walk that merely ran out of edges at "container" does not win on numbers alone.

A trained path policy's rollouts are ranked by its own walker (reverie/dreams/policy_walker.py):
the world model's belief times the path evidence.
"""

from __future__ import annotations

import numpy as np

from reverie.dreams.rollouts import Rollouts
from reverie.graph_store.subgraph import Subgraph


class Arbiter:
    def __init__(self, agreement: float = 0.2, path: float = 0.2, relevance: float = 0.6):
        weights = np.array([agreement, path, relevance], np.float64)
        if (weights < 0).any() or weights.sum() <= 0:
            raise ValueError("arbiter weights must be >= 0 and not all 0")
        self.weights = weights / weights.sum()

    def score(self, sub: Subgraph, rollouts: Rollouts, question_vec: np.ndarray) -> list[tuple[int, float, int, int]]:
        """(answer node, score, votes, index of its best rollout) per answer reached. Walks that
        stayed at a seed, or ended at one, propose nothing."""
        answers = rollouts.answers
        valid = (rollouts.length > 0) & ~np.isin(answers, sub.anchors)
        if not valid.any():
            return []
        idx = np.flatnonzero(valid)
        last_relation = rollouts.relations[idx, rollouts.length[idx] - 1]
        relevance = np.clip(sub.rel_vecs[last_relation] @ np.asarray(question_vec, np.float32), 0.0, 1.0)
        rollout_score = self.weights[1] * np.exp(rollouts.path_score[idx]) + self.weights[2] * relevance
        out = []
        for answer in np.unique(answers[idx]):
            member = answers[idx] == answer
            best = int(np.argmax(np.where(member, rollout_score, -np.inf)))
            score = self.weights[0] * member.sum() / idx.size + float(rollout_score[best])
            out.append((int(answer), float(score), int(member.sum()), int(idx[best])))
        return out
