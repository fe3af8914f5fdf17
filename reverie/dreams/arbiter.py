"""Arbitration: score rollouts, group them by the answer they reach, rank the answers.

An answer's score mixes three things, each in [0, 1]:
- agreement: the share of rollouts that reach it, so a well-supported answer beats a lone lucky walk;
- path: the probability of its best path (exp of the mean log-probability per decision);
- relevance: how well the relation of the chain's last hop matches the question, since the last
  hop is the one that produces the answer ("when dropped on a hard floor" for a question about
  dropping), so a walk that merely ran out of edges at "container" does not win on numbers alone.
"""
from __future__ import annotations

import numpy as np

from reverie.dreams.walker import Rollouts
from reverie.graph_store.subgraph import Subgraph
from reverie.schemas import Candidate, Chain, Step


class Arbiter:
    def __init__(self, agreement: float = 0.2, path: float = 0.2, relevance: float = 0.6):
        weights = np.array([agreement, path, relevance], np.float64)
        if (weights < 0).any() or weights.sum() <= 0:
            raise ValueError("arbiter weights must be >= 0 and not all 0")
        self.weights = weights / weights.sum()

    def rank(self, sub: Subgraph, rollouts: Rollouts, question_vec: np.ndarray, limit: int = 10) -> list[Candidate]:
        """Ranked answers, best first. Walks that stayed at a seed propose nothing."""
        answers = rollouts.answers
        valid = (rollouts.length > 0) & ~np.isin(answers, sub.seeds)
        if not valid.any():
            return []
        idx = np.flatnonzero(valid)
        last_edge = rollouts.edges[idx, rollouts.length[idx] - 1]
        relevance = np.clip(sub.rel_vecs[sub.relations[last_edge]] @ np.asarray(question_vec, np.float32), 0.0, 1.0)
        rollout_score = self.weights[1] * np.exp(rollouts.path_score[idx]) + self.weights[2] * relevance
        candidates = []
        for answer in np.unique(answers[idx]):
            member = answers[idx] == answer
            best = np.argmax(np.where(member, rollout_score, -np.inf))
            score = self.weights[0] * member.sum() / idx.size + float(rollout_score[best])
            best = idx[best]
            members = idx[member]
            candidates.append(
                Candidate(answer=sub.node_names[answer], score=score, votes=int(members.size), best_chain=self.chain(sub, rollouts, int(best)))
            )
        candidates.sort(key=lambda c: (-c.score, c.answer))
        return candidates[:limit]

    @staticmethod
    def chain(sub: Subgraph, rollouts: Rollouts, index: int) -> Chain:
        steps = []
        for hop in range(int(rollouts.length[index])):
            edge = int(rollouts.edges[index, hop])
            relation = int(sub.relations[edge])
            ref = int(sub.edge_refs[edge])
            steps.append(
                Step(
                    what=sub.node_names[rollouts.nodes[index, hop]],
                    action=sub.relation_label(relation),
                    result=sub.node_names[rollouts.nodes[index, hop + 1]],
                    edge_id=sub.edge_ids[ref],
                    source=sub.edge_sources[ref],
                    inverse=bool(relation >= sub.num_relations),
                )
            )
        return Chain(
            steps=steps,
            answer=sub.node_names[rollouts.answers[index]],
            score=float(rollouts.path_score[index]),
            expert=rollouts.expert,
        )
