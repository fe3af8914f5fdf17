"""A learned graph reasoner: query-conditioned message passing over the knowledge graph. No Ray.

The network is a generalised Bellman-Ford iteration, as NBFNet (Zhu et al., NeurIPS 2021): for a
query (head, relation, ?) every node's state starts at zero except the head's, which holds the
query relation's embedding (the boundary condition), and each of `layers` rounds sends along every
edge u -r-> v the message state(u) * w_l(r) (DistMult's composition, one relation table per
round). A node gathers its incoming messages two ways, as a multi-head graph attention network
(a softmax over its incoming edges, per head) and as a plain sum (how many paths agree), adds the
boundary, and updates its state with a residual MLP. After the last round an MLP of (state,
query) scores every node as the answer. A node's state is thus a learned function of every path
from the head to it, so each score has paths as its reason.

Propagation is progressive, as RED-GNN and AdaProp do it: round l sends messages only from nodes
the head reaches within l - 1 hops, and states exist only on the nodes some query of the batch has
reached, so a few hops of a sparse graph (WN18RR) cost what the heads' neighbourhoods cost, not the
whole graph; a dense one (UMLS) gets the full iteration. `max_nodes` adds A*Net's pruning: only that
many reached nodes per query, those of highest learned priority, send in the next round.

A round is cheap on a CPU because states are node-major ([node, query, feature]: one gathered row per
edge serves the whole batch), an edge's attention weight factors into its sender's and its relation's
(GAT's additive logit), and edges that share (relation, target) are summed by one sparse product
before the relation's multiplication: on UMLS 10,432 edges collapse into 1,560 such pairs.

Training is 1-vs-all: a softmax over every entity, the other known answers of the query masked
out (filtered), queries in both directions, and each batch's own facts (and their inverses)
removed from the graph it walks, so the network learns to infer a fact rather than to read it.

Explanations follow NBFNet: the gradient of an answer's score with respect to a per-round weight
on each edge measures the edge's importance, and a beam search over rounds finds the paths from
the head to the answer with the highest mean importance.

Ids follow WalkGraph and the world model: entities and relations sorted by name over every split;
relation r + R is the inverse of r. The checkpoint is one file (weights, names, graph, calibration).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from reverie.atomic import atomic_file
from reverie.edges import edge_id, relation_label
from reverie.models.reasoner_config import HIDE, ReasonerConfig  # noqa: F401  (HIDE: re-exported)
from reverie.ranking import filtered_ranks, fit_temperature, ranking_metrics, softmax
from reverie.schemas import Step

FORMAT_VERSION = 1


# ---------------------------------------------------------------------------------- the network


def _bounded_exp(logits: torch.Tensor) -> torch.Tensor:
    """exp of a logit squashed into [-10, 10]: a softmax needs no per-receiver maximum to stay finite."""
    return torch.exp(10.0 * torch.tanh(nn.functional.leaky_relu(logits, 0.2) / 10.0))


class _Round(nn.Module):
    """One round of message passing: DistMult messages, attention and sum aggregation, residual update.

    States are node-major, [N, B, d] (node, query, feature): an edge gathers its sender's states for every
    query of the batch as one contiguous row, which is what makes a round cheap on a CPU. An edge's
    attention weight factors into its sender's and its relation's (GAT's additive logit, a(u) + a(r)), so the
    softmax over a node's incoming edges is one more sum: numerator and denominator travel together."""

    def __init__(self, dim: int, num_relation_ids: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.relation = nn.Parameter(
            torch.normal(1.0, 0.1, (num_relation_ids, dim))
        )  # messages start as the sender's state
        self.attend_sender = nn.Linear(dim, heads, bias=False)
        self.attend_relation = nn.Parameter(torch.zeros(num_relation_ids, heads))
        self.update = nn.Sequential(nn.Linear(3 * dim, dim), nn.LayerNorm(dim), nn.ReLU())

    def forward(
        self,
        state: torch.Tensor,
        boundary: torch.Tensor,
        edges: torch.Tensor,
        edge_weight: torch.Tensor | None,
        sending: torch.Tensor,
        updated: torch.Tensor,
    ) -> torch.Tensor:
        """state, boundary [N, B, d]; edges [3, E] (source, relation id, target), only those some query sends on;
        sending [N, B] float, 1 where the query's node sends (it is reached); updated [U] flat rows (node * B + query)
        whose state this round changes."""
        n, b, dim = state.shape
        per_head = dim // self.heads
        src, rel, dst = edges
        # edges into one node along one relation share the relation's multiplication: sum their senders first
        pairs, pair_of_edge = torch.unique(rel * n + dst, return_inverse=True)
        values = edge_weight if edge_weight is not None else torch.ones(src.shape[0])
        gather = torch.sparse_coo_tensor(
            torch.stack([pair_of_edge, src]), values, (pairs.shape[0], n), check_invariants=False
        )
        sender_weight = _bounded_exp(self.attend_sender(state)) * sending[:, :, None]  # [N, B, heads]
        weighted = (state.view(n, b, self.heads, per_head) * sender_weight[:, :, :, None]).view(n, b, dim)
        outgoing = torch.cat([state * sending[:, :, None], weighted, sender_weight], dim=2)
        relation_weight = _bounded_exp(self.attend_relation)
        along = torch.cat(
            [self.relation, self.relation * relation_weight.repeat_interleave(per_head, dim=1), relation_weight], dim=1
        )
        message = (
            torch.sparse.mm(gather, outgoing.view(n, -1)).view(pairs.shape[0], b, outgoing.shape[2])
            * along.index_select(0, pairs // n)[:, None, :]
        )
        incoming = torch.zeros_like(outgoing).index_add_(0, pairs % n, message)
        summed = incoming[:, :, :dim] + boundary
        attended = incoming[:, :, dim : 2 * dim] / incoming[:, :, 2 * dim :].clamp_min(1e-20).repeat_interleave(
            per_head, dim=2
        )
        rows = lambda x: x.reshape(n * b, -1)[updated]  # noqa: E731
        delta = self.update(torch.cat([rows(state), rows(attended), rows(summed)], dim=1))
        return state.reshape(n * b, dim).index_add(0, updated, delta).view(n, b, dim)


class GraphReasonerNet(nn.Module):
    def __init__(
        self, num_entities: int, num_relations: int, dim: int, layers: int, heads: int, max_nodes: int | None = None
    ) -> None:
        super().__init__()
        self.num_entities, self.num_relations, self.max_nodes = num_entities, num_relations, max_nodes
        self.query = nn.Embedding(2 * num_relations, dim)
        self.rounds = nn.ModuleList(_Round(dim, 2 * num_relations, heads) for _ in range(layers))
        self.priority = nn.Linear(2 * dim, 1) if max_nodes else None
        self.score = nn.Sequential(nn.Linear(2 * dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, 1))

    def forward(
        self,
        heads: torch.Tensor,
        relations: torch.Tensor,
        edges: torch.Tensor,
        edge_weights: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Scores [B, N] of every entity as the answer of (heads[b], relations[b], ?) over `edges` [3, M]
        (source, relation id, target). edge_weights: one [M] weight per round (for explanations)."""
        n, b = self.num_entities, heads.numel()
        query = self.query(relations)
        columns = torch.arange(b)
        # States live on the nodes some query of the batch reaches so far (`nodes`, sorted global ids): a
        # few hops of a sparse graph (WN18RR) touch a small part of it; a dense one (UMLS) all of it.
        nodes = torch.unique(heads)
        local = torch.full((n,), -1, dtype=torch.long)
        local[nodes] = torch.arange(nodes.numel())
        boundary = torch.zeros(nodes.numel(), b, query.shape[1])
        boundary[local[heads], columns] = query
        state = boundary
        reached = torch.zeros(nodes.numel(), b, dtype=torch.bool)
        reached[local[heads], columns] = True
        sending = reached.float()
        for layer, round_ in enumerate(self.rounds):
            is_sender = torch.zeros(n, dtype=torch.bool)
            is_sender[nodes[sending.any(dim=1)]] = True
            keep = is_sender[edges[0]]  # edges whose sender some query reaches
            part = edges[:, keep]
            grown = torch.unique(torch.cat([nodes, part[2]]))
            if grown.numel() > nodes.numel():
                at = torch.searchsorted(grown, nodes)
                state, boundary, reached, sending = (
                    _grow(x, at, grown.numel()) for x in (state, boundary, reached, sending)
                )
                nodes = grown
                local[nodes] = torch.arange(nodes.numel())
            src, dst = local[part[0]], local[part[2]]
            reached = reached | (torch.zeros(nodes.numel(), b).index_add_(0, dst, sending.index_select(0, src)) > 0)
            weight = edge_weights[layer][keep] if edge_weights is not None else None
            state = round_(
                state,
                boundary,
                torch.stack([src, part[1], dst]),
                weight,
                sending,
                reached.view(-1).nonzero(as_tuple=True)[0],
            )
            sending = self._senders(state, query, reached)
        # a node no query reaches keeps the zero state: its score is the query's own
        unreached = self.score(torch.cat([torch.zeros_like(query), query], dim=1))  # [B, 1]
        features = torch.cat([state, query[None].expand(nodes.numel(), -1, -1)], dim=2)
        return unreached.expand(b, n).index_copy(1, nodes, self.score(features).squeeze(-1).t())

    def _senders(self, state: torch.Tensor, query: torch.Tensor, reached: torch.Tensor) -> torch.Tensor:
        """[N, B] weight of each node's messages next round: 1 where reached; with max_nodes, only the
        max_nodes reached nodes of highest learned priority per query send (A*Net's pruning), weighted by
        sigmoid(priority) so that the priority learns which nodes matter."""
        if self.priority is None:
            return reached.float()
        assert self.max_nodes is not None  # the priority exists only with max_nodes
        if int(reached.sum(dim=0).max()) <= self.max_nodes:
            return reached.float()
        n = state.shape[0]
        logit = self.priority(torch.cat([state, query[None].expand(n, -1, -1)], dim=2)).squeeze(-1)
        top = logit.masked_fill(~reached, -torch.inf).topk(self.max_nodes, dim=0).indices
        chosen = torch.zeros_like(reached).scatter_(0, top, True) & reached
        return torch.sigmoid(logit) * chosen


# ---------------------------------------------------------------------------------- the reasoner


def _grow(rows: torch.Tensor, at: torch.Tensor, count: int) -> torch.Tensor:
    """`rows` [M, ...] placed at positions `at` of a zero tensor [count, ...]."""
    out = torch.zeros((count, *rows.shape[1:]), dtype=rows.dtype)
    out[at] = rows
    return out


def _names(dataset) -> tuple[list[str], list[str]]:
    """Entity and relation names sorted over every split: WalkGraph's and the world model's ids."""
    entities: set[str] = set()
    relations: set[str] = set()
    for split in (dataset.graph, dataset.train, dataset.dev, dataset.test):
        for t in split:
            entities.update((t.head, t.tail))
            relations.add(t.relation)
    return sorted(entities), sorted(relations)


def _answers(triples: np.ndarray, num_relations: int) -> dict[tuple[int, int], set[int]]:
    """(head, relation) -> tails, both directions (inverse relation ids r + R)."""
    out: dict[tuple[int, int], set[int]] = defaultdict(set)
    for h, r, t in triples.tolist():
        out[(h, r)].add(t)
        out[(t, r + num_relations)].add(h)
    return out


@dataclass
class Explanation:
    """One path from the head to an answer as (what, action, result) steps, and its mean edge importance."""

    steps: list[Step]
    importance: float


class GraphReasoner:
    """A trained reasoner with its graph and names; `score_tails` is the world model's contract."""

    def __init__(
        self,
        net: GraphReasonerNet,
        entities: list[str],
        relations: list[str],
        graph: np.ndarray,
        config: ReasonerConfig,
        stats: dict[str, Any] | None = None,
        temperature: float = 1.0,
    ) -> None:
        self.net = net.eval()
        self.entities, self.relations = list(entities), list(relations)
        self.entity2id = {name: i for i, name in enumerate(self.entities)}
        self.relation2id = {name: i for i, name in enumerate(self.relations)}
        self.num_entities, self.num_relations = len(self.entities), len(self.relations)
        self.graph = np.asarray(graph, dtype=np.int64).reshape(-1, 3)
        self.config = config
        self.stats = dict(stats or {})
        self.temperature = float(temperature)
        """Softmax temperature fit on the dev split: softmax(scores / T) is a calibrated probability."""
        self.edges = _edge_tensor(self.graph, self.num_relations)

    def on_graph(self, entities: list[str], facts: np.ndarray) -> GraphReasoner:
        """The same trained reasoner reading another graph over the same relations: `entities` by id and
        `facts` (head, relation, tail) ids. It is entity-inductive (its nodes are the query's own
        states, not learned vectors), so facts and entities added after training are read at once."""
        net = _net(self.config, len(entities), self.num_relations)
        net.load_state_dict(self.net.state_dict())
        return GraphReasoner(net, entities, self.relations, facts, self.config, self.stats, self.temperature)

    # ------------------------------------------------------------------ scoring

    def _check(self, heads: np.ndarray, relations: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        heads, relations = np.atleast_1d(np.asarray(heads, np.int64)), np.atleast_1d(np.asarray(relations, np.int64))
        if heads.shape != relations.shape:
            raise ValueError("heads and relations must have the same length")
        if heads.size and (heads.min() < 0 or heads.max() >= self.num_entities):
            raise IndexError(f"entity ids must be in [0, {self.num_entities})")
        if relations.size and (relations.min() < 0 or relations.max() >= 2 * self.num_relations):
            raise IndexError(f"relation ids must be in [0, {2 * self.num_relations})")
        return torch.from_numpy(heads), torch.from_numpy(relations)

    @torch.no_grad()
    def score_tails(self, heads: np.ndarray, relations: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """float32 [B, E]: every entity's score as the tail of (head, relation); relation ids as WalkGraph's."""
        h, r = self._check(heads, relations)
        step = batch_size or self.config.batch_size
        parts = [self.net(h[i : i + step], r[i : i + step], self.edges) for i in range(0, len(h), step)]
        return torch.cat(parts).float().numpy() if parts else np.zeros((0, self.num_entities), np.float32)

    def probabilities(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated answer probabilities [B, E] from `score_tails` rows."""
        return softmax(np.asarray(scores, np.float64) / self.temperature)

    # ------------------------------------------------------------------ explaining

    def explain(self, head: int, relation: int, answer: int, top: int = 3, beam: int = 10) -> list[Explanation]:
        """The `top` paths that most make `answer` the answer of (head, relation, ?), best first, as steps."""
        return [Explanation(self.steps(path), mean) for mean, path in self.paths(head, relation, answer, top, beam)]

    def paths(
        self, head: int, relation: int, answer: int, top: int = 3, beam: int = 10
    ) -> list[tuple[float, tuple[int, ...]]]:
        """The `top` paths that most make `answer` the answer of (head, relation, ?), best first, as
        (mean importance, edge indices into `self.edges`).

        An edge's importance in round l is the gradient of the answer's score with respect to a weight
        on its message in that round (all weights 1), as NBFNet reads paths. A path of k hops uses k
        increasing rounds (a node's state carries over through the residual); its importance is the
        mean of its edges'. Beam search keeps `beam` partial paths per node and round.
        """
        h, r = self._check(np.array([head]), np.array([relation]))
        if not 0 <= answer < self.num_entities:
            raise IndexError(f"entity ids must be in [0, {self.num_entities})")
        weights = [torch.ones(self.edges.shape[1], requires_grad=True) for _ in self.net.rounds]
        self.net.zero_grad(set_to_none=True)
        with torch.enable_grad():
            score = self.net(h, r, self.edges, weights)[0, answer]
            grads = torch.autograd.grad(score, weights, allow_unused=True)
        src, rel, dst = (x.numpy() for x in self.edges)
        rounds = len(self.net.rounds)
        # near[k]: the nodes within k hops of the answer; a round's edge only matters if it ends there
        near = [np.zeros(self.num_entities, bool)]
        near[0][answer] = True
        for _ in range(rounds):
            step = near[-1].copy()
            step[src[near[-1][dst]]] = True
            near.append(step)
        # beams[node]: list of (sum of importance, edge indices), best first
        beams: dict[int, list[tuple[float, tuple[int, ...]]]] = {int(head): [(0.0, ())]}
        for index, grad in enumerate(grads):
            if grad is None:
                continue
            g = grad.numpy()
            # every edge the round used (a non-zero gradient), even one that lowers the score: an answer the
            # head reaches always gets its best paths, ranked by mean importance
            live = np.flatnonzero((g != 0) & np.isin(src, list(beams)) & near[rounds - 1 - index][dst])
            extended: dict[int, list[tuple[float, tuple[int, ...]]]] = defaultdict(list)
            for node, paths in beams.items():  # the residual carries every path on unchanged
                extended[node].extend(paths)
            for e, s, d, ge in zip(live.tolist(), src[live].tolist(), dst[live].tolist(), g[live].tolist()):
                for total, path in beams[s]:
                    if e in path or len(path) >= rounds:
                        continue
                    extended[d].append((total + ge, path + (e,)))
            beams = {
                node: sorted(set(paths), key=lambda p: -p[0] / max(len(p[1]), 1))[:beam]
                for node, paths in extended.items()
            }
        found = [
            (total / len(path), path)
            for total, path in beams.get(int(answer), [])
            if path and _is_walk(path, src, dst, head)
        ]
        found.sort(key=lambda p: -p[0])
        return [(float(mean), path) for mean, path in found[:top]]

    def steps(self, path: Sequence[int]) -> list[Step]:
        """A path of edge indices as (what, action, result) steps with the stored fact's edge id."""
        src, rel, dst = (x.numpy() for x in self.edges)
        out = []
        for e in path:
            s, r, d = int(src[e]), int(rel[e]), int(dst[e])
            inverse = r >= self.num_relations
            base = self.relations[r - self.num_relations if inverse else r]
            fact = (self.entities[d], base, self.entities[s]) if inverse else (self.entities[s], base, self.entities[d])
            out.append(
                Step(
                    what=self.entities[s],
                    action=relation_label(base, inverse),
                    result=self.entities[d],
                    edge_id=edge_id(*fact),
                    source=self.stats.get("dataset", "graph"),
                    inverse=inverse,
                )
            )
        return out

    # ------------------------------------------------------------------ measuring

    def evaluate(self, dataset, split: str = "test", both_directions: bool = False) -> dict[str, Any]:
        """Filtered ranking of `split`: tail only (MINERVA's protocol), or both directions (NBFNet's)."""
        triples = self.encode(getattr(dataset, split))
        queries = _queries(triples, self.num_relations, both_directions)
        known = _answers(self.encode([*dataset.graph, *dataset.train, *dataset.dev, *dataset.test]), self.num_relations)
        scores = self.score_tails(queries[:, 0], queries[:, 1])
        ranks = filtered_ranks(scores, queries[:, 2], [known.get((h, r), ()) for h, r, _ in queries.tolist()])
        out: dict[str, Any] = ranking_metrics(ranks)
        out["queries"] = len(queries)
        return out

    def encode(self, triples) -> np.ndarray:
        """[N, 3] ids of the triples whose names the reasoner knows."""
        rows = [
            (self.entity2id[t.head], self.relation2id[t.relation], self.entity2id[t.tail])
            for t in triples
            if t.head in self.entity2id and t.tail in self.entity2id and t.relation in self.relation2id
        ]
        return np.asarray(rows, np.int64).reshape(-1, 3)

    # ------------------------------------------------------------------ files

    def save(self, path: str | os.PathLike) -> Path:
        """Write one file atomically."""
        meta = {
            "format": FORMAT_VERSION,
            "config": dataclasses.asdict(self.config),
            "stats": self.stats,
            "entities": self.entities,
            "relations": self.relations,
            "temperature": self.temperature,
        }
        payload = {
            "meta_json": json.dumps(meta),
            "state_dict": self.net.state_dict(),
            "graph": torch.from_numpy(np.ascontiguousarray(self.graph)),
        }
        with atomic_file(path) as handle:
            torch.save(payload, handle)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> GraphReasoner:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no reasoner at {path}: train one with `reverie train reasoner --dataset NAME`")
        payload = torch.load(path, map_location="cpu", weights_only=True)
        meta = json.loads(payload["meta_json"])
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"{path}: unsupported reasoner format {meta.get('format')!r}")
        config = ReasonerConfig(**meta["config"])
        net = _net(config, len(meta["entities"]), len(meta["relations"]))
        net.load_state_dict(payload["state_dict"])
        return cls(
            net,
            meta["entities"],
            meta["relations"],
            payload["graph"].numpy(),
            config,
            meta["stats"],
            meta["temperature"],
        )

    def __repr__(self) -> str:
        c = self.config
        return f"GraphReasoner(dim={c.dim}, layers={c.layers}, heads={c.heads}, entities={self.num_entities}, relations={self.num_relations})"


def _is_walk(path: Sequence[int], src: np.ndarray, dst: np.ndarray, head: int) -> bool:
    node = int(head)
    for e in path:
        if int(src[e]) != node:
            return False
        node = int(dst[e])
    return True


def _edge_tensor(graph: np.ndarray, num_relations: int) -> torch.Tensor:
    """[3, 2M] (source, relation id, target) with every fact and its inverse."""
    h, r, t = graph[:, 0], graph[:, 1], graph[:, 2]
    return torch.from_numpy(
        np.stack([np.concatenate([h, t]), np.concatenate([r, r + num_relations]), np.concatenate([t, h])])
    )


def _queries(triples: np.ndarray, num_relations: int, both_directions: bool) -> np.ndarray:
    if not both_directions:
        return triples
    inverse = np.stack([triples[:, 2], triples[:, 1] + num_relations, triples[:, 0]], axis=1)
    return np.concatenate([triples, inverse])


def _net(config: ReasonerConfig, num_entities: int, num_relations: int) -> GraphReasonerNet:
    return GraphReasonerNet(num_entities, num_relations, config.dim, config.layers, config.heads, config.max_nodes)


# ---------------------------------------------------------------------------------- training


def train_reasoner(
    dataset, config: ReasonerConfig | None = None, progress: Callable[[dict[str, Any]], None] | None = None
) -> GraphReasoner:
    """Train on `dataset` (a KGDataset): its graph is what messages travel; its graph and train facts are
    the training queries, in both directions. The dev split picks the best checkpoint and the temperature."""
    config = config or ReasonerConfig()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    entities, relations = _names(dataset)
    e2i, r2i = {n: i for i, n in enumerate(entities)}, {n: i for i, n in enumerate(relations)}
    encode = lambda ts: np.asarray([(e2i[t.head], r2i[t.relation], e2i[t.tail]) for t in ts], np.int64).reshape(-1, 3)  # noqa: E731
    graph = np.unique(encode(dataset.graph), axis=0)
    facts = np.unique(np.concatenate([graph, encode(dataset.train)]), axis=0)
    if not len(facts):
        raise ValueError(f"dataset {dataset.name!r} has no facts to train on")
    R, N = len(relations), len(entities)
    net = _net(config, N, R)
    reasoner = GraphReasoner(net, entities, relations, graph, config, {"dataset": dataset.name})
    edges = reasoner.edges
    edge_keys = _keys(edges[0], edges[1], edges[2], R, N)
    queries = _queries(facts, R, both_directions=True)
    train_known = _answers(facts, R)
    dev = reasoner.encode(dataset.dev)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    steps_per_epoch = math.ceil(len(queries) / config.batch_size)
    eval_every = min(config.eval_every or steps_per_epoch, steps_per_epoch)
    deadline = time.monotonic() + 60 * config.minutes if config.minutes else math.inf
    started, step, best, best_state, stale, losses = time.monotonic(), 0, -1.0, None, 0, []
    history: list[dict[str, float]] = []
    done = False
    for epoch in range(config.epochs):
        order = rng.permutation(len(queries))
        for first in range(0, len(order), config.batch_size):
            batch = torch.from_numpy(queries[order[first : first + config.batch_size]])
            h, r, t = batch[:, 0], batch[:, 1], batch[:, 2]
            # the batch's facts leave the graph, both directions: infer them, do not read them
            back = _inverse(r, R)
            if config.hide == "fact":
                drop = torch.isin(edge_keys, torch.cat([_keys(h, r, t, R, N), _keys(t, back, h, R, N)]))
            else:  # every edge (h, r, *) and its inverse (*, r^-1, h)
                asked = h * (2 * R) + r
                drop = torch.isin(edges[0] * (2 * R) + edges[1], asked) | torch.isin(
                    edges[2] * (2 * R) + _inverse(edges[1], R), asked
                )
            net.train()
            logits = net(h, r, edges[:, ~drop])
            mask = torch.zeros_like(logits, dtype=torch.bool)
            for i, (hi, ri, ti) in enumerate(batch.tolist()):
                mask[i, list(train_known[(hi, ri)] - {ti})] = True
            loss = nn.functional.cross_entropy(logits.masked_fill(mask, -torch.inf), t)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            step += 1
            out_of_time = time.monotonic() > deadline
            if step % eval_every == 0 or out_of_time:
                net.eval()
                dev_mrr = _dev_mrr(reasoner, dev, dataset) if len(dev) else -float(np.mean(losses[-eval_every:]))
                record = {
                    "epoch": epoch + 1,
                    "step": step,
                    "loss": float(np.mean(losses[-eval_every:])),
                    "dev_mrr": dev_mrr,
                    "seconds": time.monotonic() - started,
                }
                history.append(record)
                if progress is not None:
                    progress(record)
                if dev_mrr > best:
                    best, best_state, stale = dev_mrr, {k: v.clone() for k, v in net.state_dict().items()}, 0
                else:
                    stale += 1
                if out_of_time or (config.patience and stale >= config.patience):
                    done = True
                    break
        if done:
            break
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    reasoner.stats.update(train_seconds=time.monotonic() - started, steps=step, best_dev_mrr=best, history=history)
    if len(dev):
        known = _answers(reasoner.encode([*dataset.graph, *dataset.train, *dataset.dev, *dataset.test]), R)
        reasoner.temperature = fit_temperature(
            reasoner.score_tails(dev[:, 0], dev[:, 1]),
            dev[:, 2],
            [known.get((h, r), set()) - {t} for h, r, t in dev.tolist()],
        )
    return reasoner


def _inverse(relations: torch.Tensor, R: int) -> torch.Tensor:
    return torch.where(relations >= R, relations - R, relations + R)


def _keys(src: torch.Tensor, rel: torch.Tensor, dst: torch.Tensor, R: int, N: int) -> torch.Tensor:
    return (src * (2 * R) + rel) * N + dst


def _dev_mrr(reasoner: GraphReasoner, dev: np.ndarray, dataset) -> float:
    known = _answers(reasoner.encode([*dataset.graph, *dataset.train, *dataset.dev]), reasoner.num_relations)
    scores = reasoner.score_tails(dev[:, 0], dev[:, 1])
    return ranking_metrics(filtered_ranks(scores, dev[:, 2], [known.get((h, r), ()) for h, r, _ in dev.tolist()]))[
        "mrr"
    ]
