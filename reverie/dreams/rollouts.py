"""What every walker produces and how a walk becomes a chain: one Rollouts type, one chain builder.

A walker (reverie/dreams/walkers.py) walks a graph whose nodes and relations have ids: nodes
0..N-1, stored relations 0..R-1 and their inverses R..2R-1 (relation R + r walks a stored fact r
from its tail back to its head). A walk is the nodes it passed and the relation of each hop; an
imagined hop (proposed by a world model, not stored) is flagged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from reverie.edges import WORLD_MODEL_SOURCE, edge_id, relation_label
from reverie.schemas import Chain, RolloutTree, Step, TreeNode


@dataclass
class WalkQuery:
    """A question as a walker takes it: where its walks start and what they look for."""

    question_vec: np.ndarray  # (d,) the question's embedding
    starts: np.ndarray  # node ids (in the walker's graph) a walk may start from
    start_weights: np.ndarray  # probability of starting at each
    hops: int  # the most hops a walk takes
    relation: int | None = None  # the query relation id, for walkers that are asked one (the path policy)
    words: frozenset[str] = frozenset()  # the question's own words, its subjects' aside (arbiter.content_words)

    def sample_starts(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """`count` start nodes, drawn by the start weights."""
        return self.starts[rng.choice(len(self.starts), size=count, p=self.start_weights)]


@dataclass
class Rollouts:
    """B walks. nodes[b, :length[b] + 1] is walk b's path; relations[b, k] the relation of hop k."""

    nodes: np.ndarray  # (B, H + 1) int64, -1 after the walk ended
    relations: np.ndarray  # (B, H) int64 relation ids (inverse ids >= R), -1 after the walk ended
    edge_refs: np.ndarray  # (B, H) int64 the stored fact of each hop in the walker's graph, -1 when it has none
    imagined: np.ndarray  # (B, H) bool: the hop was proposed by a world model
    logp: np.ndarray  # (B,) summed log-probability of every decision, stop included
    decisions: np.ndarray  # (B,) decisions made
    length: np.ndarray  # (B,) hops taken
    expert: np.ndarray  # (B,) int64 which of the walker's experts made the walk

    def __len__(self) -> int:
        return int(self.length.shape[0])

    @property
    def answers(self) -> np.ndarray:
        """The node each walk ended at."""
        return self.nodes[np.arange(len(self)), self.length]

    @property
    def path_score(self) -> np.ndarray:
        """Mean log-probability per decision: comparable across paths of different lengths."""
        return self.logp / np.maximum(self.decisions, 1)

    @staticmethod
    def concat(parts: Sequence["Rollouts"]) -> "Rollouts":
        width = max(p.relations.shape[1] for p in parts)

        def pad(a: np.ndarray, cols: int, fill) -> np.ndarray:
            return np.pad(a, ((0, 0), (0, cols - a.shape[1])), constant_values=fill)

        return Rollouts(
            nodes=np.concatenate([pad(p.nodes, width + 1, -1) for p in parts]),
            relations=np.concatenate([pad(p.relations, width, -1) for p in parts]),
            edge_refs=np.concatenate([pad(p.edge_refs, width, -1) for p in parts]),
            imagined=np.concatenate([pad(p.imagined, width, False) for p in parts]),
            logp=np.concatenate([p.logp for p in parts]),
            decisions=np.concatenate([p.decisions for p in parts]),
            length=np.concatenate([p.length for p in parts]),
            expert=np.concatenate([p.expert for p in parts]),
        )


FactLookup = Callable[[int, str, str, str], tuple[str, str]]
"""(edge ref, head, relation, tail) of a stored hop -> (edge id, source) of the fact."""


def build_chain(
    rollouts: Rollouts, index: int, names: Sequence[str], relation_names: Sequence[str], fact: FactLookup, expert: str
) -> Chain:
    """Walk `index` as (what, action, result) steps with provenance.

    names: node names by id; relation_names: the R stored relation names; fact: the stored fact of
    a hop. An imagined hop names the fact the world model proposed, with source "world-model".
    """
    R = len(relation_names)
    steps = []
    for hop in range(int(rollouts.length[index])):
        rel = int(rollouts.relations[index, hop])
        inverse = rel >= R
        name = relation_names[rel - R if inverse else rel]
        what, result = names[rollouts.nodes[index, hop]], names[rollouts.nodes[index, hop + 1]]
        head, tail = (result, what) if inverse else (what, result)
        imagined = bool(rollouts.imagined[index, hop])
        if imagined:
            fact_id, source = edge_id(head, name, tail), WORLD_MODEL_SOURCE
        else:
            fact_id, source = fact(int(rollouts.edge_refs[index, hop]), head, name, tail)
        steps.append(
            Step(
                what=what,
                action=relation_label(name, inverse),
                result=result,
                edge_id=fact_id,
                source=source,
                inverse=inverse,
                imagined=imagined,
            )
        )
    return Chain(
        steps=steps, answer=names[rollouts.answers[index]], score=float(rollouts.path_score[index]), expert=expert
    )


def rollout_tree(rollouts: Rollouts, chain_of: Callable[[int], Chain], max_walks: int) -> RolloutTree:
    """The rollouts as a tree of branches: the `max_walks` most frequent distinct walks (ties by
    first occurrence), each turned into a chain by `chain_of(index)` and merged by common prefix.
    A node counts the rollouts that passed through it and those that stopped there (its votes)."""
    walk_keys = np.concatenate([rollouts.nodes, rollouts.relations, rollouts.imagined.astype(np.int64)], axis=1)
    _, first, counts = np.unique(walk_keys, axis=0, return_index=True, return_counts=True)
    chosen = sorted(range(len(first)), key=lambda u: (-counts[u], first[u]))[:max_walks]
    nodes: list[TreeNode] = []
    by_prefix: dict[tuple, int] = {}

    def reach(prefix: tuple, parent: int | None, entity: str, step: Step | None, count: int) -> int:
        if prefix not in by_prefix:
            by_prefix[prefix] = len(nodes)
            nodes.append(TreeNode(id=len(nodes), parent=parent, entity=entity, step=step, rollouts=0, ends=0))
        node = nodes[by_prefix[prefix]]
        node.rollouts += count
        return node.id

    for u in chosen:
        count = int(counts[u])
        chain = chain_of(int(first[u]))
        start = chain.steps[0].what if chain.steps else chain.answer
        prefix: tuple = (start,)
        at = reach(prefix, None, start, None, count)
        for step in chain.steps:
            prefix = (*prefix, step.edge_id, step.inverse, step.imagined)
            at = reach(prefix, at, step.result, step, count)
        nodes[at].ends += count
    return RolloutTree(rollouts=len(rollouts), shown=int(sum(int(counts[u]) for u in chosen)), nodes=nodes)
