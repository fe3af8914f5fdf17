"""Batched rollouts over a Subgraph: many walks advanced together with numpy.

The embedding-guided walker scores each next hop by how close its relation and its target entity
are to the question, samples with Gumbel-max at a temperature, and may stop once it has taken a
step. Every decision's log-probability is kept, so the arbiter can score whole paths.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reverie.graph_store.subgraph import Subgraph


@dataclass
class Rollouts:
    """B walks. nodes[b, :length[b] + 1] is the path; edges[b, k] the local edge taken at hop k."""

    nodes: np.ndarray      # (B, H + 1) int64, -1 after the walk ended
    edges: np.ndarray      # (B, H) int64, -1 after the walk ended
    logp: np.ndarray       # (B,) summed log-probability of every decision, stop included
    decisions: np.ndarray  # (B,) number of decisions made
    length: np.ndarray     # (B,) hops taken
    expert: str = "walker"

    def __len__(self) -> int:
        return int(self.length.shape[0])

    @property
    def answers(self) -> np.ndarray:
        """Local id of the node each walk ended at."""
        return self.nodes[np.arange(len(self)), self.length]

    @property
    def path_score(self) -> np.ndarray:
        """Mean log-probability per decision: comparable across paths of different lengths."""
        return self.logp / np.maximum(self.decisions, 1)

    @staticmethod
    def concat(parts: list["Rollouts"]) -> "Rollouts":
        width = max(p.edges.shape[1] for p in parts)

        def pad(a: np.ndarray, cols: int) -> np.ndarray:
            return np.pad(a, ((0, 0), (0, cols - a.shape[1])), constant_values=-1)

        return Rollouts(
            nodes=np.concatenate([pad(p.nodes, width + 1) for p in parts]),
            edges=np.concatenate([pad(p.edges, width) for p in parts]),
            logp=np.concatenate([p.logp for p in parts]),
            decisions=np.concatenate([p.decisions for p in parts]),
            length=np.concatenate([p.length for p in parts]),
            expert=parts[0].expert,
        )


def residual(question_vec: np.ndarray, seed_vecs: np.ndarray) -> np.ndarray:
    """The question with the linked entities projected out: what it asks *about* them.

    "What happens when you drop a glass cup?" minus "glass cup" leaves "what happens when you
    drop", so hops toward other glass things stop looking relevant just for sharing a word."""
    q = np.asarray(question_vec, np.float64).copy()
    basis, _ = np.linalg.qr(np.asarray(seed_vecs, np.float64).T)
    q -= basis @ (basis.T @ q)
    norm = np.linalg.norm(q)
    return (q / norm if norm > 1e-6 else np.asarray(question_vec, np.float64)).astype(np.float32)


class EmbeddingWalker:
    """Scores a hop by the mean of cosine(question, relation) and cosine(residual question, target).

    Edges walked against their stored direction get `inverse_bias` added: stored facts point the
    way things happen (cup -> material -> property -> result), and a hop back up a fact is a
    sideways move more often than a step of reasoning.
    """

    name = "embedding-walker"

    def __init__(self, temperature: float = 0.1, stop_bias: float = -0.1, inverse_bias: float = -0.3):
        if temperature <= 0:
            raise ValueError("temperature must be > 0")
        self.temperature = temperature
        self.stop_bias = stop_bias
        self.inverse_bias = inverse_bias

    def edge_logits(self, sub: Subgraph, question_vec: np.ndarray) -> np.ndarray:
        q = np.asarray(question_vec, np.float32)
        rel_sim = sub.rel_vecs @ q
        node_sim = sub.node_vecs @ residual(q, sub.node_vecs[sub.seeds])
        score = 0.5 * (rel_sim[sub.relations] + node_sim[sub.targets])
        score = score + self.inverse_bias * sub.is_inverse(sub.relations)
        return (score / self.temperature).astype(np.float64)

    def walk(self, sub: Subgraph, question_vec: np.ndarray, starts: np.ndarray, hops: int, rng: np.random.Generator) -> Rollouts:
        return walk(sub, self.edge_logits(sub, question_vec), self.stop_bias / self.temperature, starts, hops, rng, self.name)


def start_nodes(sub: Subgraph, count: int, rng: np.random.Generator) -> np.ndarray:
    """Spread `count` walks over the seeds in proportion to their link weights."""
    return sub.seeds[rng.choice(len(sub.seeds), size=count, p=sub.seed_weights)]


def walk(
    sub: Subgraph,
    logits: np.ndarray,
    stop_logit: float,
    starts: np.ndarray,
    hops: int,
    rng: np.random.Generator,
    expert: str,
) -> Rollouts:
    """Advance all walks together. A walk never revisits a node; it stops when it chooses to
    (from the second decision on), when it has no unvisited neighbour, or after `hops` hops."""
    batch = len(starts)
    nodes = np.full((batch, hops + 1), -1, np.int64)
    edges = np.full((batch, hops), -1, np.int64)
    nodes[:, 0] = starts
    logp = np.zeros(batch)
    decisions = np.zeros(batch, np.int64)
    length = np.zeros(batch, np.int64)
    alive = np.arange(batch)
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
        edges[moved, t] = picked
        nodes[moved, t + 1] = sub.targets[picked]
        length[moved] += 1
        logp[moved] += logits[picked] - lse[takes_edge]
        logp[alive[stops]] += stop[stops] - lse[stops]
        decisions[alive[has_choice]] += 1
        alive = moved
    return Rollouts(nodes=nodes, edges=edges, logp=logp, decisions=decisions, length=length, expert=expert)


def dream(sub: Subgraph, question_vec: np.ndarray, count: int, hops: int, walker: EmbeddingWalker, seed: int) -> Rollouts:
    """`count` rollouts in one process: the single-process vectorised walker."""
    rng = np.random.default_rng(seed)
    return walker.walk(sub, question_vec, start_nodes(sub, count, rng), hops, rng)
