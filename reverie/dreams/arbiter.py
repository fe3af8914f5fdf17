"""Arbitration of the embedding walker's rollouts: score them, group them by the answer they reach.

An answer's score mixes three things, each in [0, 1]:
- agreement: the share of rollouts that reach it, so a well-supported answer beats a lone lucky walk
  (its `support`, the same share with each walk weighted by its `asked`, feeds the confidence);
- path: the probability of its best path (exp of the mean log-probability per decision);
- asked: how surely the relation of the chain's last hop is the one the question asks about. The
  last hop is the one that produces the answer ("when dropped on a hard floor" for "what happens if
  I drop this?"), so the question with its subjects projected out is matched against every relation
  of the graph, the most likely one scoring 1 and the others less the further they fall behind. A chain that ends in another
  relation ("when set on fire" for a question about heating) scores near 0 there however many walks
  agree on it, and the calibrated confidence (reverie/calibration.py) says the graph does not say.

A trained path policy's rollouts are ranked by its own walker (reverie/dreams/policy_walker.py):
the world model's belief times the path evidence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from reverie.dreams.rollouts import Rollouts
from reverie.graph_store.subgraph import Subgraph


@dataclass(frozen=True)
class AnswerScore:
    answer: int
    """Local node id of the answer."""
    score: float
    votes: int
    best: int
    """Index of its best rollout."""
    asked: float
    """How surely its best chain's last relation is the one the question asks about (1: the most likely)."""
    support: float
    """Share of the proposing rollouts that reach it, each weighted by its own `asked`: agreement among
    the walks that do what was asked."""
    against: float
    """Share of its best chain's hops walked against a fact's stored direction: sideways moves
    (pencil -> used for -> writing <- used for <- notebook) that make its last fact about another subject."""
    starts: tuple[int, ...]
    """Local node ids its rollouts started from."""


def residual(question_vec: np.ndarray, seed_vecs: np.ndarray) -> np.ndarray:
    """The question with the linked entities projected out: what it asks *about* them.

    "What happens when you drop a glass cup?" minus "glass cup" leaves "what happens when you
    drop", so hops toward other glass things stop looking relevant just for sharing a word."""
    q = np.asarray(question_vec, np.float64).copy()
    basis, _ = np.linalg.qr(np.asarray(seed_vecs, np.float64).T)
    q -= basis @ (basis.T @ q)
    norm = np.linalg.norm(q)
    return (q / norm if norm > 1e-6 else np.asarray(question_vec, np.float64)).astype(np.float32)


_NOT_CONTENT = frozenset(
    "a an the and or of to in on at by for with into from is are be it its this that what which who when "
    "how does do did if i you we they happens happen would will can could".split()
)


def content_words(text: str) -> frozenset[str]:
    """The words that carry meaning, crudely stemmed ("dropped" and "drop" both "drop")."""
    out = set()
    for word in re.findall(r"[a-z]+", text.lower()):
        if word in _NOT_CONTENT:
            continue
        for suffix in ("ing", "ed", "es", "s"):
            if word.endswith(suffix) and len(word) - len(suffix) >= 3:
                word = word[: -len(suffix)]
                break
        out.add(word[:4])
    return frozenset(out)


def relation_match(sub: Subgraph, question_vec: np.ndarray, words: frozenset[str] = frozenset()) -> np.ndarray:
    """How well each relation of the graph (forward, then inverse) matches what the question asks:
    the cosine with the question, its anchors projected out, plus LEXICAL_WEIGHT times the share of
    the relation's words the question uses (a relation that shares the question's own words, "rain",
    beats one that is merely near). Both walkers pick the asked relation by it."""
    asked = residual(question_vec, sub.node_vecs[sub.anchors]) if sub.anchors.size else question_vec
    sims = sub.rel_vecs @ np.asarray(asked, np.float32)
    if words:
        shared = np.array([shared_words(words, name) for name in sub.rel_names], np.float32)
        sims = sims + LEXICAL_WEIGHT * np.concatenate([shared, shared])
    return sims


def asked_relations(
    sub: Subgraph, question_vec: np.ndarray, temperature: float, words: frozenset[str] = frozenset()
) -> np.ndarray:
    """How surely each relation of the graph (forward, then the same for the inverses) is the one the
    question asks about, relative to the most likely one (which gets 1): exp((cos - max cos) /
    temperature), the cosine taken against the question with its anchors projected out. Relative, not a softmax, so
    that a wording halfway between two relations ("leave it out in the rain": rain, or out for a
    week?) does not make either look unasked."""
    sims = relation_match(sub, question_vec, words)
    # the kind of action asked, either way round: a relation and its inverse are one kind (MiniLM may
    # put "inverse of when left out in the rain" nearer the question than the relation itself)
    kind = np.maximum(sims[: sub.num_relations], sims[sub.num_relations :])
    asked = np.exp((kind - kind.max()) / temperature)
    return np.concatenate([asked, INVERSE_CREDIT * asked])


INVERSE_CREDIT = 0.5
"""An asked fact walked backwards ends at its cause, not at what happens: half the credit."""


LEXICAL_WEIGHT = 0.1
"""Cosine units added for a relation whose every word the question uses (hybrid dense and lexical
matching, as retrieval does): MiniLM puts "left out in the rain" and "left out for a week" within
0.03 of each other for "what if I leave it out in the rain?"."""


def shared_words(words: frozenset[str], relation: str) -> float:
    """The share of a relation's own words that the question uses."""
    own = content_words(relation)
    return len(own & words) / len(own) if own else 0.0


class Arbiter:
    def __init__(
        self, agreement: float = 0.2, path: float = 0.2, relevance: float = 0.6, relation_temperature: float = 0.05
    ):
        weights = np.array([agreement, path, relevance], np.float64)
        if (weights < 0).any() or weights.sum() <= 0:
            raise ValueError("arbiter weights must be >= 0 and not all 0")
        if relation_temperature <= 0:
            raise ValueError("relation_temperature must be > 0")
        self.weights = weights / weights.sum()
        self.relation_temperature = relation_temperature

    def score(
        self, sub: Subgraph, rollouts: Rollouts, question_vec: np.ndarray, words: frozenset[str] = frozenset()
    ) -> list[AnswerScore]:
        """One AnswerScore per answer reached. Walks that stayed at an anchor, or ended at one, propose nothing."""
        answers = rollouts.answers
        valid = (rollouts.length > 0) & ~np.isin(answers, sub.anchors)
        if not valid.any():
            return []
        idx = np.flatnonzero(valid)
        last_relation = rollouts.relations[idx, rollouts.length[idx] - 1]
        asked = asked_relations(sub, question_vec, self.relation_temperature, words)[last_relation]
        rollout_score = self.weights[1] * np.exp(rollouts.path_score[idx]) + self.weights[2] * asked
        # a walk from a less likely subject (an image's runner-up) counts for less than one from the likeliest
        weight_of = dict(zip(sub.anchors.tolist(), (sub.anchor_weights / sub.anchor_weights.max()).tolist()))
        start_weight = np.array([weight_of.get(int(s), 1.0) for s in rollouts.nodes[idx, 0]])
        rollout_score = rollout_score * start_weight
        out = []
        for answer in np.unique(answers[idx]):
            member = answers[idx] == answer
            # its chain: one that does what was asked, from the likeliest subject that does, the best of those
            kept = np.flatnonzero(member)
            kept = kept[asked[kept] >= asked[kept].max() - 0.1]
            kept = kept[start_weight[kept] >= start_weight[kept].max() - 1e-9]
            best = int(kept[np.argmax(rollout_score[kept])])
            share = float(member.sum() / idx.size)
            support = float(asked[member].sum() / max(asked.sum(), 1e-12))
            out.append(
                AnswerScore(
                    answer=int(answer),
                    score=self.weights[0] * share + float(rollout_score[best]),
                    votes=int(member.sum()),
                    best=int(idx[best]),
                    asked=float(asked[best]),
                    support=support,
                    against=float(sub.is_inverse(rollouts.relations[idx[best], : rollouts.length[idx[best]]]).mean()),
                    starts=tuple(int(s) for s in np.unique(rollouts.nodes[idx[member], 0])),
                )
            )
        return out
