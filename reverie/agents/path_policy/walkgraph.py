"""The walkable graph of a path policy: integer ids and padded per-entity action tables (numpy only).

Ids follow sorted names, so every component that builds its maps from the same names agrees:
entities 0..E-1, forward relations 0..R-1, their inverses R..2R-1 (relation r + R walks a stored
fact r from its tail back to its head) and NO_OP = 2R, the stop/stay self loop.

`action_relations[e]`, `action_entities[e]` and `action_mask[e]` list the moves out of entity e:
column 0 is always NO_OP back to e itself (always allowed); columns 1.. hold its edges sorted by
(relation id, target id); the rest is padding (NO_OP to e itself, masked out). When e has more
edges than fit in A - 1 columns, a seeded random sample of them is kept.

Imagined edges (`with_imagined`): a world model may propose edges the graph lacks. They sit in
extra columns after the stored edges, with relation id IMAGINED + r (IMAGINED = 2R + 1) for a
proposed edge of relation id r, so a policy embeds them apart from stored facts and provenance
can flag them; `num_relation_ids` becomes 4R + 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from reverie.edges import relation_label
from reverie.schemas import Triple


@dataclass(eq=False)
class WalkGraph:
    """Id maps and action tables. Build it with `from_triples` (or `from_dataset`)."""

    entity2id: dict[str, int]
    relation2id: dict[str, int]
    action_relations: np.ndarray  # (E, A) int64
    action_entities: np.ndarray  # (E, A) int64
    action_mask: np.ndarray  # (E, A) bool
    degree: np.ndarray  # (E,) int64: edges out of each entity before sampling (inverses included)
    edges: np.ndarray  # (n, 3) int64 (source, relation id, target): every distinct walkable edge
    imagined_per_entity: int = 0  # extra columns of world-model proposals (0: none)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_triples(
        cls,
        train_triples: Iterable[Triple],
        max_actions: int = 200,
        seed: int = 0,
        *,
        entities: Iterable[str] = (),
        relations: Iterable[str] = (),
    ) -> "WalkGraph":
        """Build from the walkable triples only (never dev/test).

        `entities` / `relations` add names to the id maps without adding edges (so queries about
        entities that only occur in dev/test can still be encoded); by default the maps hold
        exactly the names occurring in `train_triples`. Duplicate facts give one edge.
        """
        if max_actions < 1:
            raise ValueError(f"max_actions must be >= 1 (column 0 is NO_OP), got {max_actions}")
        heads, rels, tails = [], [], []
        for triple in train_triples:
            heads.append(triple.head)
            rels.append(triple.relation)
            tails.append(triple.tail)
        entity_names = sorted(set(heads) | set(tails) | set(entities))
        relation_names = sorted(set(rels) | set(relations))
        entity2id = {name: i for i, name in enumerate(entity_names)}
        relation2id = {name: i for i, name in enumerate(relation_names)}
        h = np.fromiter((entity2id[x] for x in heads), dtype=np.int64, count=len(heads))
        r = np.fromiter((relation2id[x] for x in rels), dtype=np.int64, count=len(rels))
        t = np.fromiter((entity2id[x] for x in tails), dtype=np.int64, count=len(tails))
        return cls.from_ids(h, r, t, len(entity_names), len(relation_names), entity2id, relation2id, max_actions, seed)

    @classmethod
    def from_dataset(cls, dataset, max_actions: int = 200, seed: int = 0) -> "WalkGraph":
        """Edges from `dataset.graph` (what rollouts may walk); id maps over the names of every split.

        For the bundled datasets (umls, kinships, nations) and the world every dev/test name also
        occurs in the graph, so the maps equal those of `from_triples(dataset.graph)`.
        """
        entities, relations = set(), set()
        for split in (dataset.train, dataset.dev, dataset.test):
            for t in split:
                entities.add(t.head)
                entities.add(t.tail)
                relations.add(t.relation)
        return cls.from_triples(dataset.graph, max_actions, seed, entities=entities, relations=relations)

    @classmethod
    def from_ids(
        cls,
        heads: np.ndarray,
        relations: np.ndarray,
        tails: np.ndarray,
        num_entities: int,
        num_relations: int,
        entity2id: dict[str, int],
        relation2id: dict[str, int],
        max_actions: int = 200,
        seed: int = 0,
    ) -> "WalkGraph":
        """Build from integer (head, relation, tail) arrays with forward relation ids 0..R-1."""
        E, R = int(num_entities), int(num_relations)
        no_op = 2 * R
        h = np.asarray(heads, dtype=np.int64)
        r = np.asarray(relations, dtype=np.int64)
        t = np.asarray(tails, dtype=np.int64)
        src = np.concatenate([h, t])
        rel = np.concatenate([r, r + R])
        dst = np.concatenate([t, h])
        if src.size:
            # Distinct edges, sorted by (source, relation, target): the deterministic column order.
            key = (src * (2 * R + 1) + rel) * max(E, 1) + dst
            key = np.unique(key)
            dst = key % E
            rest = key // E
            rel = rest % (2 * R + 1)
            src = rest // (2 * R + 1)
        edges = np.stack([src, rel, dst], axis=1) if src.size else np.zeros((0, 3), dtype=np.int64)
        degree = np.bincount(src, minlength=E).astype(np.int64)
        width = int(min(max_actions, 1 + (int(degree.max()) if E and src.size else 0)))
        width = max(width, 1)

        starts = np.zeros(E + 1, dtype=np.int64)
        np.cumsum(degree, out=starts[1:])
        keep_src, keep_rel, keep_dst = src, rel, dst
        if src.size and int(degree.max()) > width - 1:
            # Random order inside each source's group; keep the first width - 1 of every group.
            rng = np.random.default_rng(seed)
            order = np.lexsort((rng.random(src.size), src))
            rank = np.arange(src.size) - starts[src[order]]
            kept = np.sort(order[rank < width - 1])  # back to (source, relation, target) order
            keep_src, keep_rel, keep_dst = src[kept], rel[kept], dst[kept]

        kept_degree = np.bincount(keep_src, minlength=E)
        kept_starts = np.zeros(E + 1, dtype=np.int64)
        np.cumsum(kept_degree, out=kept_starts[1:])
        col = 1 + np.arange(keep_src.size) - kept_starts[keep_src]

        action_relations = np.full((E, width), no_op, dtype=np.int64)
        action_entities = np.repeat(np.arange(E, dtype=np.int64)[:, None], width, axis=1)
        action_mask = np.zeros((E, width), dtype=bool)
        action_mask[:, 0] = True
        action_relations[keep_src, col] = keep_rel
        action_entities[keep_src, col] = keep_dst
        action_mask[keep_src, col] = True
        return cls(
            entity2id=entity2id,
            relation2id=relation2id,
            action_relations=action_relations,
            action_entities=action_entities,
            action_mask=action_mask,
            degree=degree,
            edges=edges,
        )

    # ------------------------------------------------------------------ sizes and names
    @property
    def num_entities(self) -> int:
        return len(self.entity2id)

    @property
    def num_relations(self) -> int:
        """R: forward relations only."""
        return len(self.relation2id)

    @property
    def num_relation_ids(self) -> int:
        """2R + 1 (forward, inverse, NO_OP), plus 2R imagined ids when the graph has imagined edges."""
        return (4 if self.imagined_per_entity else 2) * self.num_relations + 1

    @property
    def imagined_offset(self) -> int:
        """IMAGINED: relation id IMAGINED + r is an imagined edge of relation id r (0 <= r < 2R)."""
        return 2 * self.num_relations + 1

    def is_imagined(self, relation_ids):
        """Whether relation ids are imagined edges; ints and numpy arrays."""
        out = np.asarray(relation_ids, dtype=np.int64) >= self.imagined_offset
        return bool(out) if out.ndim == 0 else out

    def stored_relation(self, relation_ids):
        """The relation id an (imagined or stored) relation id stands for."""
        rel = np.asarray(relation_ids, dtype=np.int64)
        out = np.where(rel >= self.imagined_offset, rel - self.imagined_offset, rel)
        return int(out) if out.ndim == 0 else out

    @property
    def no_op(self) -> int:
        return 2 * self.num_relations

    @property
    def max_actions(self) -> int:
        """A: the width of the action tables."""
        return int(self.action_relations.shape[1])

    @property
    def id2entity(self) -> list[str]:
        return list(self.entity2id)

    @property
    def id2relation(self) -> list[str]:
        """Forward relation names by id (0..R-1)."""
        return list(self.relation2id)

    @property
    def relation_names(self) -> list[str]:
        """Labels of every relation id: `name`, `inverse of name`, `NO_OP`, then imagined ones as `name?`."""
        forward = self.id2relation
        names = forward + [relation_label(name, inverse=True) for name in forward] + ["NO_OP"]
        if self.imagined_per_entity:
            names += [f"{name}?" for name in names[:-1]]  # imagined: the world model's guess
        return names

    def with_imagined(self, score_tails, per_entity: int, batch: int = 4096) -> "WalkGraph":
        """A copy with `per_entity` imagined edges out of every entity: the world model's top-scored
        (relation, target) pairs that are not stored edges (nor self loops).

        score_tails(heads, relation_ids) -> [B, E] scores, relation ids 0..2R-1 (e.g.
        WorldModel.score_tails). Costs E x 2R rows of E scores: fine for thousands of entities.
        """
        if per_entity < 1:
            raise ValueError(f"per_entity must be >= 1, got {per_entity}")
        if self.imagined_per_entity:
            raise ValueError("this graph already has imagined edges")
        E, R2 = self.num_entities, 2 * self.num_relations
        heads = np.repeat(np.arange(E, dtype=np.int64), R2)
        rels = np.tile(np.arange(R2, dtype=np.int64), E)
        scores: np.ndarray = np.empty((E * R2, E), dtype=np.float32)
        for start in range(0, len(heads), batch):
            part = slice(start, start + batch)
            scores[part] = np.asarray(score_tails(heads[part], rels[part]), dtype=np.float32)
        scores = scores.reshape(E, R2, E)
        if len(self.edges):  # every stored edge, not only the sampled columns
            scores[self.edges[:, 0], self.edges[:, 1], self.edges[:, 2]] = -np.inf
        scores[np.arange(E), :, np.arange(E)] = -np.inf
        flat = scores.reshape(E, R2 * E)
        k = min(per_entity, R2 * E)
        top = np.argpartition(-flat, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(flat, top, 1), axis=1, kind="stable"), 1)
        ok = np.isfinite(np.take_along_axis(flat, top, 1))
        new_rel = np.where(ok, self.imagined_offset + top // E, self.no_op)
        new_ent = np.where(ok, top % E, np.arange(E)[:, None])
        return WalkGraph(
            entity2id=self.entity2id,
            relation2id=self.relation2id,
            action_relations=np.concatenate([self.action_relations, new_rel], axis=1),
            action_entities=np.concatenate([self.action_entities, new_ent], axis=1),
            action_mask=np.concatenate([self.action_mask, ok], axis=1),
            degree=self.degree,
            edges=self.edges,
            imagined_per_entity=k,
        )

    def inverse_relation(self, relation_ids):
        """r <-> r + R; NO_OP stays NO_OP. Works on ints and numpy arrays."""
        R = self.num_relations
        rel = np.asarray(relation_ids, dtype=np.int64)
        out = np.where(rel == 2 * R, rel, np.where(rel < R, rel + R, rel - R))
        return int(out) if out.ndim == 0 else out

    # ------------------------------------------------------------------ what a policy sees
    def allowed_actions(
        self, current: np.ndarray, source: np.ndarray | None = None, query_relation: np.ndarray | None = None
    ) -> np.ndarray:
        """bool [B, A]: the moves out of `current`. With `source` and `query_relation`, every edge of
        the query relation at the source is hidden too (for a policy trained with
        mask_query_edges="all"; the default training hides only the fact asked, which a test
        query's graph does not hold anyway)."""
        allowed = self.action_mask[current]
        if source is not None and query_relation is not None:
            at_source = (np.asarray(current) == np.asarray(source))[:, None]
            allowed = allowed & ~(at_source & (self.action_relations[current] == np.asarray(query_relation)[:, None]))
        return allowed

    def observation(
        self, source, query_relation, current, step, path_relations, path_entities, action_mask
    ) -> dict[str, np.ndarray]:
        """The observation batch a path policy reads (reverie.agents.path_policy.net.OBS_KEYS), the same for
        the training env, beam search and sampled rollouts. Arrays are copied, so a caller may go
        on changing its own."""
        current = np.asarray(current, np.int64)
        batch = current.shape[0]
        return {
            "source": np.array(source, np.int64).reshape(batch),
            "query_relation": np.array(query_relation, np.int64).reshape(batch),
            "current": current.copy(),
            "step": np.broadcast_to(np.asarray(step, np.int64), (batch,)).copy(),
            "path_relations": np.array(path_relations, np.int64).reshape(batch, -1),
            "path_entities": np.array(path_entities, np.int64).reshape(batch, -1),
            "action_relations": self.action_relations[current],
            "action_entities": self.action_entities[current],
            "action_mask": np.asarray(action_mask).astype(np.int8),
        }

    def columns(self, sources, relations, targets) -> np.ndarray:
        """The action-table column of each move (source, relation id, target); -1 where the table
        lacks it (not an edge, or left out of a high-degree entity's sample)."""
        if getattr(self, "_column_keys", None) is None:
            rows, cols = np.nonzero(self.action_mask[:, 1:])
            cols = cols + 1
            keys = self._move_key(rows, self.action_relations[rows, cols], self.action_entities[rows, cols])
            order = np.argsort(keys)
            self._column_keys, self._column_cols = keys[order], cols[order].astype(np.int64)
        s, r, t = (np.asarray(x, np.int64) for x in (sources, relations, targets))
        keys = self._move_key(s, r, t)
        if not self._column_keys.size:
            return np.full(keys.shape, -1, np.int64)
        pos = np.minimum(np.searchsorted(self._column_keys, keys), self._column_keys.size - 1)
        return np.where(self._column_keys[pos] == keys, self._column_cols[pos], -1)

    def _move_key(self, s, r, t) -> np.ndarray:
        return (np.asarray(s, np.int64) * (self.num_relation_ids + 1) + r) * max(self.num_entities, 1) + t

    # ------------------------------------------------------------------ encoding
    def encode(self, triples: Iterable[Triple], skip_unknown: bool = False) -> np.ndarray:
        """(n, 3) int64 array of (head id, forward relation id, tail id).

        A name missing from the maps raises KeyError, or drops that triple with skip_unknown=True.
        """
        e2i, r2i = self.entity2id, self.relation2id
        rows = []
        for t in triples:
            if t.head in e2i and t.tail in e2i and t.relation in r2i:
                rows.append((e2i[t.head], r2i[t.relation], e2i[t.tail]))
            elif not skip_unknown:
                raise KeyError(f"triple ({t.head!r}, {t.relation!r}, {t.tail!r}) has a name unknown to this graph")
        return np.asarray(rows, dtype=np.int64).reshape(-1, 3)

    def known_answers(self, *split_triples: Sequence[Triple], inverse: bool = True) -> dict[tuple[int, int], set[int]]:
        """{(source id, relation id): {answer ids}} over the given splits, for filtering and rewards.

        With inverse=True (default) every fact (s, r, o) also adds the inverse query (o, r + R) -> s,
        matching the inverse queries walks are trained on. Triples with unknown names are skipped.
        """
        R = self.num_relations
        known: dict[tuple[int, int], set[int]] = {}
        for split in split_triples:
            for s, r, o in self.encode(split, skip_unknown=True).tolist():
                known.setdefault((s, r), set()).add(o)
                if inverse:
                    known.setdefault((o, r + R), set()).add(s)
        return known

    def __repr__(self) -> str:
        return (
            f"WalkGraph(entities={self.num_entities}, relations={self.num_relations}, "
            f"edges={len(self.edges)}, max_actions={self.max_actions}"
            + (f", imagined={self.imagined_per_entity}/entity)" if self.imagined_per_entity else ")")
        )
