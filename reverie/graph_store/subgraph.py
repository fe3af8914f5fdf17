"""A retrieved neighbourhood as compact arrays (CSR), the form rollouts walk.

It is put in Ray's object store once per question and shared by every rollout task, so it holds
only numpy arrays and flat lists: no networkx, no Qdrant handles. The facts' edge ids and sources
are read lazily (FactIds, FactSources): a chain names a few of them, the subgraph may hold 100,000.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from reverie.edges import edge_id


@dataclass
class Subgraph:
    node_names: list[str]  # local node id -> entity name
    node_types: list[str]
    node_vecs: np.ndarray  # (n, d) unit vectors of the entities
    indptr: np.ndarray  # (n + 1,) CSR offsets of the outgoing walkable edges
    targets: np.ndarray  # (E,) local node id each edge leads to
    relations: np.ndarray  # (E,) relation id; ids >= num_relations are inverses
    edge_refs: np.ndarray  # (E,) index into edge_ids / edge_sources
    rel_names: list[str]  # forward relation names (length R)
    rel_vecs: np.ndarray  # (2R, d): forward then inverse relation vectors
    edge_ids: Sequence[str]  # stored edge ids of the triples in this subgraph (a list, or FactIds)
    edge_sources: Sequence[str]  # (a list, or FactSources)
    anchors: np.ndarray  # local ids of the linked entities the walks start from
    anchor_weights: np.ndarray  # probability of starting at each anchor

    @property
    def num_nodes(self) -> int:
        return len(self.node_names)

    @property
    def num_edges(self) -> int:
        return int(self.targets.shape[0])

    @property
    def num_relations(self) -> int:
        return len(self.rel_names)

    def is_inverse(self, relation_ids: np.ndarray) -> np.ndarray:
        return relation_ids >= self.num_relations

    def without_edges(self, edge_ids: set[str]) -> "Subgraph":
        """The same subgraph with these stored facts (by edge id) taken out, both directions: how a
        question looks to a graph that lacks them (reverie/calibration.py's held-out questions)."""
        dropped = np.array([i for i, e in enumerate(self.edge_ids) if e in edge_ids], np.int64)
        keep = ~np.isin(self.edge_refs, dropped)
        source = np.repeat(np.arange(self.num_nodes), np.diff(self.indptr))
        indptr = np.zeros_like(self.indptr)
        np.cumsum(np.bincount(source[keep], minlength=self.num_nodes), out=indptr[1:])
        return replace(
            self,
            indptr=indptr,
            targets=self.targets[keep],
            relations=self.relations[keep],
            edge_refs=self.edge_refs[keep],
        )


class FactIds(Sequence[str]):
    """The edge ids of a subgraph's facts, each worked out when read: a question reads a handful
    (its chains), and hashing every fact of a large neighbourhood up front cost more than the walks."""

    def __init__(self, names: list[str], relations: list[str], heads: np.ndarray, rels: np.ndarray, tails: np.ndarray):
        self.names, self.relations = names, relations
        self.heads, self.rels, self.tails = heads, rels, tails

    def __len__(self) -> int:
        return len(self.heads)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        i = range(len(self))[index]
        return edge_id(self.names[self.heads[i]], self.relations[self.rels[i]], self.names[self.tails[i]])


class FactSources(Sequence[str]):
    """The sources of a subgraph's facts ("file.tsv:123"), each joined when read."""

    def __init__(self, prefixes: list[str], ids: np.ndarray, lines: np.ndarray):
        self.prefixes, self.ids, self.lines = prefixes, ids, lines

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        i = range(len(self))[index]
        line = int(self.lines[i])
        prefix = self.prefixes[self.ids[i]]
        return prefix if line < 0 else f"{prefix}:{line}"
