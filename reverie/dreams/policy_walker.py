"""Dreams walked by a trained path policy over the graph it was trained on, and their ranking. No Ray.

`PolicyWalker.pose` turns a question into a query for the policy: the relation it asks (the policy
relation whose text is nearest the question) and the linked entities the policy knows. `walk`
samples the policy's walks of `bundle.hops` steps, recording for each which expert most likely
produced it (the largest posterior gate_k * prod_t pi_k(a_t)); stays (NO_OP) are not hops. `rank`
groups walks by the entity they end at and ranks answers the way `reverie eval` does
(PolicyBundle.answer_scores: the graph reasoner's and the world model's beliefs times the path
evidence), so the CLI, HTTP and the benchmark rank alike. With a reasoner, the reasoner's top answers
are candidates even where no walk ended, and each candidate's chain is a walk the reasoner itself
ranks among its top paths to that answer, else the reasoner's best path: the chain shown is a reason
for the answer. Every candidate carries its calibrated confidence.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from reverie.agents.path_policy.bundle import PolicyBundle
from reverie.agents.path_policy.net import expert_name
from reverie.dreams.arbiter import content_words, relation_match
from reverie.dreams.rollouts import Rollouts, WalkQuery, build_chain
from reverie.edges import edge_id
from reverie.errors import NoMatchError
from reverie.graph_store.subgraph import Subgraph
from reverie.schemas import Candidate, Chain, LinkedEntity

INVERSE_MARGIN = 0.1
"""Cosine margin an inverse relation's text needs over the best forward one to be the one asked."""


class PolicyWalker:
    """The trained policy of one graph, as a walker."""

    kind = "path-policy"
    walks_retrieved = False  # it walks its own WalkGraph: its action tables are the ones it was trained on

    def __init__(self, bundle: PolicyBundle):
        self.bundle = bundle
        self.name = f"path-policy:{bundle.meta.dataset}"
        self.version = bundle.meta.version
        experts = bundle.net.config["experts"]
        self.expert_names = tuple(expert_name(k, experts) for k in range(experts))
        self._names = bundle.graph.id2entity

    def for_rollouts(self) -> "PolicyWalker":
        """The walker without its world model and reasoner: walks need neither, and unpickling a world
        model imports PyKEEN (seconds per Ray worker)."""
        return PolicyWalker(dataclasses.replace(self.bundle, world_model=None, reasoner=None))

    def asked(self, query: WalkQuery) -> str | None:
        return None if query.relation is None else self.bundle.graph.relation_names[int(query.relation)]

    def knows(self, entity_names: list[str]) -> int:
        """How many of `entity_names` the policy's graph holds."""
        return sum(name in self.bundle.graph.entity2id for name in entity_names)

    # ------------------------------------------------------------------ pose
    def pose(
        self, sub: Subgraph, question_vec: np.ndarray, anchors: list[LinkedEntity], hops: int, question: str = ""
    ) -> WalkQuery:
        """Walks start at the linked entities the policy knows, by link score, and walk the policy's
        own number of hops (`hops` is the embedding walker's setting)."""
        e2i = self.bundle.graph.entity2id
        known = [e for e in anchors if e.name in e2i]
        if not known:
            raise NoMatchError("the trained policy's graph holds none of the linked entities")
        weights = np.array([max(e.score, 1e-6) for e in known])
        words = content_words(question) - frozenset().union(*(content_words(e.name) for e in anchors))
        return WalkQuery(
            question_vec=np.asarray(question_vec, np.float32),
            starts=np.array([e2i[e.name] for e in known], np.int64),
            start_weights=weights / weights.sum(),
            hops=self.bundle.hops,
            relation=self.query_relation(sub, question_vec, words),
            words=words,
        )

    def query_relation(self, sub: Subgraph, question_vec: np.ndarray, words: frozenset[str] = frozenset()) -> int:
        """The relation the question asks: the policy relation (forward or inverse) whose text is
        nearest the question among those the retrieved neighbourhood holds. The linked entities are
        projected out of the question first ("what does a steroid interact with" should match
        "interacts with", not whatever steroids mostly do). The sentence encoder hardly tells
        "X interacts with ?" from "? interacts with X", so the stored direction wins unless the
        inverse's text ("inverse of ...") is clearly nearer. The question's
        own words count too, as for the embedding walker (arbiter.asked_relations)."""
        graph = self.bundle.graph
        known = [i for i, name in enumerate(sub.rel_names) if name in graph.relation2id]
        if not known:
            raise NoMatchError("the question's neighbourhood has no relation the trained policy knows")
        R_sub, R = sub.num_relations, graph.num_relations
        sims = relation_match(sub, question_vec, words)
        forward = max((float(sims[i]), graph.relation2id[sub.rel_names[i]]) for i in known)
        inverse = max((float(sims[R_sub + i]), graph.relation2id[sub.rel_names[i]] + R) for i in known)
        return inverse[1] if inverse[0] > forward[0] + INVERSE_MARGIN else forward[1]

    # ------------------------------------------------------------------ walk
    @torch.no_grad()
    def walk(self, sub: Subgraph | None, query: WalkQuery, count: int, rng: np.random.Generator) -> Rollouts:
        """One sampled walk of the policy's hops from each of `count` start entities."""
        graph, net = self.bundle.graph, self.bundle.net
        assert query.relation is not None  # pose asks every policy query a relation
        relation = int(query.relation)
        if not 0 <= relation < 2 * graph.num_relations:
            raise ValueError(f"query relation id {relation} is outside 0..{2 * graph.num_relations - 1}")
        src = query.sample_starts(count, rng)
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        hops = query.hops
        entities = np.repeat(src[:, None], hops + 1, axis=1)
        taken = np.full((count, hops), graph.no_op, np.int64)
        logp = torch.zeros(count, dtype=torch.float64)
        expert_logp = None
        qrel = np.full(count, relation, np.int64)
        hide = self.bundle.mask_source_query_edges
        for step in range(hops):
            cur = entities[:, step]
            allowed = graph.allowed_actions(cur, src if hide else None, qrel if hide else None)
            obs = graph.observation(src, qrel, cur, step, taken, entities[:, 1:], allowed)
            mixed, per_expert, log_gate = net.expert_log_probs({k: torch.as_tensor(v) for k, v in obs.items()})
            if expert_logp is None:
                expert_logp = log_gate.double().clone()
            action = torch.multinomial(mixed.exp(), 1, generator=generator).squeeze(-1)
            logp += mixed[torch.arange(count), action].double()
            expert_logp += per_expert[torch.arange(count), :, action].double()
            a = action.numpy()
            taken[:, step] = graph.action_relations[cur, a]
            entities[:, step + 1] = graph.action_entities[cur, a]  # later columns stay the source: the env's padding
        assert expert_logp is not None  # set by the first step: a policy walks hops >= 1 steps
        return self.from_steps(entities, taken, logp.numpy(), expert_logp.argmax(dim=1).numpy())

    def from_steps(self, entities: np.ndarray, taken: np.ndarray, logp: np.ndarray, expert: np.ndarray) -> Rollouts:
        """Fixed-length walks (entities [B, H + 1] after each step, relation ids `taken` [B, H], NO_OP
        for a stay) as Rollouts: stays are decisions but not hops."""
        graph = self.bundle.graph
        count, hops = taken.shape
        moved = taken != graph.no_op
        length = moved.sum(axis=1)
        col = np.cumsum(moved, axis=1) - 1  # where each real hop goes
        rows, steps = np.nonzero(moved)
        nodes = np.full((count, hops + 1), -1, np.int64)
        nodes[:, 0] = entities[:, 0]
        nodes[rows, col[rows, steps] + 1] = entities[rows, steps + 1]
        relations = np.full((count, hops), -1, np.int64)
        relations[rows, col[rows, steps]] = graph.stored_relation(taken[rows, steps])
        imagined = np.zeros((count, hops), bool)
        imagined[rows, col[rows, steps]] = graph.is_imagined(taken[rows, steps])
        return Rollouts(
            nodes=nodes,
            relations=relations,
            edge_refs=np.full((count, hops), -1, np.int64),
            imagined=imagined,
            logp=np.asarray(logp, np.float64),
            decisions=np.full(count, hops, np.int64),
            length=length,
            expert=np.asarray(expert, np.int64),
        )

    # ------------------------------------------------------------------ rank
    def rank(self, sub: Subgraph | None, query: WalkQuery, rollouts: Rollouts, limit: int = 10) -> list[Candidate]:
        """Ranked answers, best first; walks that end where they started propose nothing."""
        graph, bundle = self.bundle.graph, self.bundle
        relation = query.relation
        assert relation is not None  # pose asks every policy query a relation
        ends, starts = rollouts.answers, rollouts.nodes[:, 0]
        valid = ends != starts
        if not valid.any():
            return []
        idx = np.flatnonzero(valid)
        start = int(starts[idx[0]])
        path_logp = np.full((1, graph.num_entities), -np.inf)
        np.maximum.at(path_logp[0], ends[idx], rollouts.logp[idx])
        arbiter = bundle.answer_scores(path_logp, np.array([start]), np.array([relation]))["arbiter"]
        assert arbiter is not None  # only the world model's and the reasoner's scores may be None
        score, confidence = arbiter[0], bundle.confidence(arbiter)[0]
        answers = set(np.unique(ends[idx]).tolist())
        if bundle.reasoner is not None:  # the reasoner's own best answers compete even where no walk ended
            top = np.argsort(-score)[: limit + 1]
            answers |= {int(a) for a in top if a != start}
        ranked = sorted(answers, key=lambda a: (-score[a], self._names[a]))[:limit]
        candidates = []
        for answer in ranked:
            members = idx[ends[idx] == answer]
            chain = (
                self.chain(None, rollouts, int(members[np.argmax(rollouts.logp[members])])) if members.size else None
            )
            if bundle.reasoner is not None:
                chain = self.reasoned_chain(start, relation, answer, rollouts, members) or chain
            if chain is None:
                continue
            candidates.append(
                Candidate(
                    answer=self._names[answer],
                    score=float(score[answer]),
                    votes=int(members.size),
                    best_chain=chain,
                    confidence=float(confidence[answer]),
                    subjects=[self._names[start]],
                )
            )
        return candidates

    def reasoned_chain(
        self, head: int, relation: int, answer: int, rollouts: Rollouts, members: np.ndarray, top: int = 5
    ) -> Chain | None:
        """The most probable walk to `answer` that is among the reasoner's `top` paths to it, else the
        reasoner's best path (expert "reasoner"); None when the reasoner finds no path."""
        reasoner = self.bundle.reasoner
        assert reasoner is not None  # asked only of a bundle with a reasoner
        paths = reasoner.explain(head, relation, answer, top=top)
        if not paths:
            return None
        reasons = {tuple((s.what, s.action, s.result) for s in p.steps) for p in paths}
        for index in members[np.argsort(-rollouts.logp[members])].tolist():
            chain = self.chain(None, rollouts, index)
            if tuple((s.what, s.action, s.result) for s in chain.steps) in reasons:
                return chain
        best = paths[0]
        return Chain(steps=best.steps, answer=self._names[answer], score=float(best.importance), expert="reasoner")

    def chain(self, graph: Subgraph | None, rollouts: Rollouts, index: int) -> Chain:
        """Walk `index` as a chain; it walks its own graph, so `graph` is unused."""
        source = self.bundle.meta.dataset
        return build_chain(
            rollouts,
            index,
            self._names,
            self.bundle.graph.id2relation,
            lambda _ref, head, relation, tail: (edge_id(head, relation, tail), source),
            self.expert_names[int(rollouts.expert[index])],
        )
