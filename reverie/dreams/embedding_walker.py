"""The embedding-guided walker: batched rollouts over a retrieved Subgraph, many walks advanced
together with numpy, steered by how close each hop's relation and target are to the question.

It samples with Gumbel-max at a temperature and may stop once it has taken a step. Every
decision's log-probability is kept, so the arbiter can score whole paths. It needs no training:
it is the walker for any graph without a trained path policy.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from reverie.calibration import DEFAULT_CALIBRATOR, AnswerCalibrator, GraphQuestion
from reverie.dreams.arbiter import Arbiter, asked_relations, content_words, residual
from reverie.dreams.rollouts import Rollouts, WalkQuery, build_chain
from reverie.edges import edge_id
from reverie.graph_store.subgraph import Subgraph
from reverie.schemas import Candidate, Chain, LinkedEntity

DONE_STOP = 1.0
"""Cosine units added to the stop action right after a forward hop of the surely asked relation."""

MIN_CALIBRATION_CASES = 8
"""Right and wrong answers each needed to fit a calibrator on a graph."""


class EmbeddingWalker:
    """Scores a hop by the mean of cosine(question, relation) and cosine(residual question, target).

    Edges walked against their stored direction get `inverse_bias` added: stored facts point the
    way things happen (cup -> material -> property -> result), and a hop back up a fact is a
    sideways move more often than a step of reasoning.
    """

    kind = "embedding"
    name = "embedding-walker"
    walks_retrieved = True
    expert_names: tuple[str, ...] = ("walker",)
    version = None

    def __init__(
        self,
        temperature: float = 0.1,
        stop_bias: float = -0.1,
        inverse_bias: float = -0.3,
        arbiter: Arbiter | None = None,
        calibrator: AnswerCalibrator | None = None,
    ):
        if temperature <= 0:
            raise ValueError("temperature must be > 0")
        self.temperature = temperature
        self.stop_bias = stop_bias
        self.inverse_bias = inverse_bias
        self.arbiter = arbiter or Arbiter()
        self.calibrator = calibrator or DEFAULT_CALIBRATOR

    def asked(self, query: WalkQuery) -> str | None:
        """None: it weighs every relation by how much the question asks it, answer by answer."""
        return None

    def knows(self, entity_names: list[str]) -> int:
        """All of them: it walks the subgraph retrieved around them from the store."""
        return len(entity_names)

    def pose(
        self, sub: Subgraph, question_vec: np.ndarray, anchors: list[LinkedEntity], hops: int, question: str = ""
    ) -> WalkQuery:
        """Walks start at the retrieved anchors, by their link weights."""
        subjects = frozenset().union(*(content_words(sub.node_names[a]) for a in sub.anchors))
        return WalkQuery(
            question_vec=np.asarray(question_vec, np.float32),
            starts=sub.anchors,
            start_weights=sub.anchor_weights,
            hops=hops,
            words=content_words(question) - subjects,
        )

    def for_rollouts(self) -> "EmbeddingWalker":
        return self

    def edge_logits(self, sub: Subgraph, question_vec: np.ndarray) -> np.ndarray:
        q = np.asarray(question_vec, np.float32)
        rel_sim = sub.rel_vecs @ q
        node_sim = sub.node_vecs @ residual(q, sub.node_vecs[sub.anchors])
        score = 0.5 * (rel_sim[sub.relations] + node_sim[sub.targets])
        score = score + self.inverse_bias * sub.is_inverse(sub.relations)
        return (score / self.temperature).astype(np.float64)

    def walk(self, sub: Subgraph | None, query: WalkQuery, count: int, rng: np.random.Generator) -> Rollouts:
        assert sub is not None  # walks_retrieved: it is given the retrieved subgraph
        starts = query.sample_starts(count, rng)
        # a walk that has just done what was asked (a forward hop of the asked relation) stops there,
        # rather than walking on back from the result to another cause
        asked = asked_relations(sub, query.question_vec, self.arbiter.relation_temperature, query.words)
        done = np.where(sub.is_inverse(sub.relations), 0.0, asked[sub.relations]) * DONE_STOP / self.temperature
        return walk(
            sub,
            self.edge_logits(sub, query.question_vec),
            self.stop_bias / self.temperature,
            starts,
            query.hops,
            rng,
            stop_after=done,
        )

    def rank(self, sub: Subgraph | None, query: WalkQuery, rollouts: Rollouts, limit: int = 10) -> list[Candidate]:
        """Answers by the arbiter's agreement, path probability and asked relation, each with its
        calibrated confidence."""
        return [candidate for candidate, _ in self.scored(sub, query, rollouts)[:limit]]

    def scored(self, sub: Subgraph | None, query: WalkQuery, rollouts: Rollouts) -> list[tuple[Candidate, np.ndarray]]:
        """Every answer reached, best first, with the features its confidence is computed from."""
        assert sub is not None  # walks_retrieved: it is given the retrieved subgraph
        scored = sorted(self.arbiter.score(sub, rollouts, query.question_vec, query.words), key=lambda a: -a.score)
        if not scored:
            return []
        scores = np.array([a.score for a in scored])
        margins = scores - np.append(scores[1:], 0.0)
        features = np.array([[a.asked, a.support, m, a.against] for a, m in zip(scored, margins, strict=True)])
        confidence = self.calibrator.confidence(features)
        out = [
            (
                Candidate(
                    answer=sub.node_names[a.answer],
                    score=a.score,
                    votes=a.votes,
                    best_chain=self.chain(sub, rollouts, a.best),
                    confidence=float(c),
                    subjects=[sub.node_names[s] for s in a.starts],
                ),
                f,
            )
            for a, c, f in zip(scored, confidence, features, strict=True)
        ]
        out.sort(key=lambda pair: (-pair[0].score, pair[0].answer))
        return out

    def calibrate(
        self,
        questions: list[GraphQuestion],
        question_vecs: np.ndarray,
        subgraphs: list[Subgraph],
        hops: int,
        rollouts: int,
        seed: int = 0,
    ) -> AnswerCalibrator:
        """Fit its calibrator on questions made from the graph (reverie/calibration.py): each walked
        from its subject over its subgraph, with the held-out facts taken out."""
        features, correct, answerable = [], [], []
        for i, (question, vec, sub) in enumerate(zip(questions, question_vecs, subgraphs, strict=True)):
            if question.held_out:
                sub = sub.without_edges({edge_id(*fact) for fact in question.held_out})
            posed = self.pose(sub, vec, [], hops, question.text)
            ranked = self.scored(sub, posed, self.walk(sub, posed, rollouts, np.random.default_rng(seed + i)))
            if not ranked:
                continue  # nothing reached: no answer to be sure of
            best, best_features = ranked[0]
            features.append(best_features)
            correct.append(best.answer in question.answers)
            answerable.append(bool(question.answers))
        if min(sum(correct), len(correct) - sum(correct)) < MIN_CALIBRATION_CASES:
            return self.calibrator  # too few right or wrong answers to fit a slope on: a tiny graph keeps the default
        fitted = AnswerCalibrator.fit(np.array(features), np.array(correct, np.float64))
        right = [c for c, a in zip(correct, answerable, strict=True) if a]
        accuracy = round(float(np.mean(right)), 4) if right else None
        return replace(fitted, accuracy=accuracy)

    def chain(self, sub: Subgraph | None, rollouts: Rollouts, index: int) -> Chain:
        assert sub is not None  # walks_retrieved: it is given the retrieved subgraph
        return build_chain(
            rollouts,
            index,
            sub.node_names,
            sub.rel_names,
            lambda ref, *_: (sub.edge_ids[ref], sub.edge_sources[ref]),
            self.expert_names[0],
        )


def walk(
    sub: Subgraph,
    logits: np.ndarray,
    stop_logit: float,
    starts: np.ndarray,
    hops: int,
    rng: np.random.Generator,
    stop_after: np.ndarray | None = None,
) -> Rollouts:
    """Advance all walks together over the subgraph's CSR edges, each edge with its logit. A walk
    never revisits a node; it stops when it chooses to (from the second decision on), when it has
    no unvisited neighbour, or after `hops` hops. `stop_after` (per edge) is added to the stop
    logit of the decision right after that edge is taken."""
    batch = len(starts)
    nodes = np.full((batch, hops + 1), -1, np.int64)
    relations = np.full((batch, hops), -1, np.int64)
    edge_refs = np.full((batch, hops), -1, np.int64)
    nodes[:, 0] = starts
    logp = np.zeros(batch)
    decisions = np.zeros(batch, np.int64)
    length = np.zeros(batch, np.int64)
    alive = np.arange(batch)
    last_edge = np.zeros(batch, np.int64)  # the subgraph edge each walk took last
    for t in range(hops):
        if alive.size == 0:
            break
        cur = nodes[alive, t]
        lo, hi = sub.indptr[cur], sub.indptr[cur + 1]
        deg = hi - lo
        owner = np.repeat(np.arange(alive.size), deg)
        edge = np.repeat(hi - deg.cumsum(), deg) + np.arange(deg.sum())
        target = sub.targets[edge]
        revisit = (nodes[alive[owner], : t + 1] == target[:, None]).any(axis=1)
        edge_logit = np.where(revisit, -np.inf, logits[edge])
        stop = np.full(alive.size, stop_logit if t > 0 else -np.inf)
        if stop_after is not None and t > 0:
            stop = stop + stop_after[last_edge[alive]]

        # log-sum-exp per walk over its edges and its stop action
        top = stop.copy()
        np.maximum.at(top, owner, edge_logit)
        has_choice = np.isfinite(top)
        safe_top = np.where(has_choice, top, 0.0)
        total = np.exp(stop - safe_top)
        np.add.at(total, owner, np.exp(edge_logit - safe_top[owner]))
        lse = safe_top + np.log(np.where(has_choice, total, 1.0))

        # Gumbel-max sampling
        edge_g = edge_logit + rng.gumbel(size=edge.size)
        stop_g = stop + rng.gumbel(size=alive.size)
        best = np.full(alive.size, -np.inf)
        np.maximum.at(best, owner, edge_g)
        takes_edge = has_choice & (best > stop_g)
        winners = np.flatnonzero(edge_g == best[owner])
        first_owner, first_pos = np.unique(owner[winners], return_index=True)
        chosen = np.full(alive.size, -1, np.int64)
        chosen[first_owner] = edge[winners[first_pos]]

        stops = has_choice & ~takes_edge
        moved = alive[takes_edge]
        picked = chosen[takes_edge]
        last_edge[moved] = picked
        relations[moved, t] = sub.relations[picked]
        edge_refs[moved, t] = sub.edge_refs[picked]
        nodes[moved, t + 1] = sub.targets[picked]
        length[moved] += 1
        logp[moved] += logits[picked] - lse[takes_edge]
        logp[alive[stops]] += stop[stops] - lse[stops]
        decisions[alive[has_choice]] += 1
        alive = moved
    return Rollouts(
        nodes=nodes,
        relations=relations,
        edge_refs=edge_refs,
        imagined=np.zeros((batch, hops), bool),
        logp=logp,
        decisions=decisions,
        length=length,
        expert=np.zeros(batch, np.int64),
    )
