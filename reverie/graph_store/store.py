"""The Graph RAG store: a typed networkx graph, its vectors, and a Qdrant index over them.

State on disk, all under `settings.home`:
- `graph/snapshot.npz`: the source of truth: entities, relations, triples and their vectors, in one
  file written to a temporary name and renamed into place, so a reader sees the old or the new
  graph, never half of one.
- `qdrant/`: the embedded Qdrant index for entity linking (or a Qdrant server by URL). It is
  written after the snapshot; on start-up an index whose point counts disagree with the snapshot
  is rebuilt from it, so a crash between the two writes heals itself.
The embedded Qdrant store takes a file lock, so exactly one process (one Ray actor) owns a store;
the owner notes who it is beside the lock, so a second process is told which one holds it.

Both load on first use, not in the constructor: a snapshot that cannot be read (SnapshotError) or
an index another process holds (StoreInUseError) then fails a call with an error naming the file or
the holder, which reaches the caller of the store's actor, rather than failing the actor's
construction, which reaches callers only as an ActorDiedError. A bad snapshot is never read as an
empty graph.
"""

from __future__ import annotations

import functools
import json
import os
import re
import socket
import sys
import time
import uuid
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx
import numpy as np

from reverie.atomic import atomic_file, atomic_write
from reverie.calibration import GraphQuestion, calibration_questions
from reverie.config import Settings
from reverie.edges import edge_id
from reverie.encoders.text import display, entity_text, relation_texts, text_dim
from reverie.errors import EmptyGraphError, NoMatchError, NotFoundError, ReverieError, SnapshotError, StoreInUseError
from reverie.graph_store.subgraph import Subgraph
from reverie.schemas import Entity, EntityHit, EntityView, Fact, GraphStats, LinkedEntity, Triple

ENTITIES = "entities"
RELATIONS = "relations"
_POINT_NS = uuid.UUID("6f1c1d1e-5d2b-4c8e-9a47-3f1f0e2b7a10")
_WORD = re.compile(r"[^a-z0-9]+")
_MAX_PHRASE_WORDS = 8
OWNER_NOTE = "reverie-owner.json"  # beside the embedded store's lock: which process holds it
# What a damaged snapshot raises while numpy and json read it (a short or bit-flipped zip, a bad member).
_UNREADABLE = (OSError, EOFError, ValueError, KeyError, TypeError, IndexError, zipfile.BadZipFile, zlib.error)


def normalise(text: str) -> str:
    return _WORD.sub(" ", text.lower()).strip()


@dataclass
class IngestPlan:
    """What an ingest adds: computed before anything is written, encoded, then applied."""

    entities: list[Entity] = field(default_factory=list)  # new or changed entities
    relations: list[str] = field(default_factory=list)  # new relations
    triples: list[Triple] = field(default_factory=list)  # new triples
    triples_read: int = 0

    @property
    def entity_texts(self) -> list[str]:
        return [entity_text(e) for e in self.entities]

    @property
    def relation_texts(self) -> list[str]:
        return [t for r in self.relations for t in relation_texts(r)]


def _loaded(method):
    """Load the snapshot before the first call that reads the graph (see the module docstring)."""

    @functools.wraps(method)
    def with_snapshot(self, *args, **kwargs):
        self._ensure_loaded()
        return method(self, *args, **kwargs)

    return with_snapshot


class GraphStore:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.dim = text_dim()
        self.snapshot_path = settings.paths.snapshot
        self._clear()
        self._loaded = False
        self._qdrant = None

    @property
    def qdrant(self):
        """The vector index, opened on first use (see the module docstring)."""
        if self._qdrant is None:
            self._ensure_loaded()
            self._qdrant = self._open_qdrant()
            self._sync_index()
        return self._qdrant

    # ---------- persistence ----------
    def _clear(self) -> None:
        self.graph = nx.MultiDiGraph()
        self._entities: list[Entity] = []
        self._entity_index: dict[str, int] = {}
        self._relations: list[str] = []
        self._relation_index: dict[str, int] = {}
        self._triples: list[Triple] = []
        self._triple_index: set[str] = set()
        self._heads = np.zeros(0, np.int64)
        self._rels = np.zeros(0, np.int64)
        self._tails = np.zeros(0, np.int64)
        self._entity_vecs = np.zeros((0, self.dim), np.float32)
        self._relation_vecs = np.zeros((0, 2, self.dim), np.float32)
        self._csr: tuple[np.ndarray, ...] | None = None
        self._phrases: dict[str, list[int]] | None = None
        self._search_keys: list[str] | None = None  # each entity's normalised name, for search
        self._codebook: np.ndarray | None = (
            None  # image-token centroids, adopted from the tower of the first image ingest
        )

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self._clear()
            self._load_snapshot()
            self._loaded = True

    def _load_snapshot(self) -> None:
        """The graph the snapshot holds (none when there is no snapshot yet); SnapshotError, naming
        the file, when it cannot be read whole or disagrees with itself."""
        if not self.snapshot_path.is_file():
            return
        try:
            with np.load(self.snapshot_path, allow_pickle=False) as data:
                meta = json.loads(bytes(data["meta"]).decode())
                entity_vecs = data["entity_vecs"]
                relation_vecs = data["relation_vecs"]
                codebook = data["codebook"] if "codebook" in data.files else None
            entities = [Entity(**e) for e in meta["entities"]]
            relations = list(meta["relations"])
            triples = [Triple(head=h, relation=r, tail=t, source=s, confidence=c) for h, r, t, s, c in meta["triples"]]
        except _UNREADABLE as exc:
            raise self._snapshot_error(f"{type(exc).__name__}: {exc}") from None
        problem = self._inconsistency(entities, relations, triples, entity_vecs, relation_vecs, codebook)
        if problem:
            raise self._snapshot_error(problem)
        self._add(entities, relations, triples, entity_vecs, relation_vecs)
        self._codebook = codebook if codebook is not None and len(codebook) else None

    def _inconsistency(self, entities, relations, triples, entity_vecs, relation_vecs, codebook) -> str | None:
        """What makes a readable snapshot unusable, or None. Each part is checked against the others,
        so a snapshot is loaded whole or not at all."""
        names = {e.name for e in entities}
        if len(names) != len(entities) or len(set(relations)) != len(relations):
            return "it names an entity or a relation twice"
        if entity_vecs.shape != (len(entities), self.dim) or relation_vecs.shape != (len(relations), 2, self.dim):
            return (
                f"{len(entities)} entities and {len(relations)} relations, but vectors of shape "
                f"{entity_vecs.shape} and {relation_vecs.shape}"
            )
        if codebook is not None and (codebook.ndim != 2 or (len(codebook) and codebook.shape[1] != self.dim)):
            return f"an image codebook of shape {codebook.shape}"
        known_relations = set(relations)
        for triple in triples:
            if triple.head not in names or triple.tail not in names or triple.relation not in known_relations:
                return f"the triple ({triple.head!r}, {triple.relation!r}, {triple.tail!r}) names an entity or relation it does not hold"
        return None

    def _snapshot_error(self, reason: str) -> SnapshotError:
        return SnapshotError(
            f"the graph snapshot {self.snapshot_path} cannot be loaded ({reason}); it is not read as an empty graph: "
            "restore it from a copy, or move it away to start from an empty graph"
        )

    def _write_snapshot(self) -> None:
        meta = {
            "entities": [e.model_dump() for e in self._entities],
            "relations": self._relations,
            "triples": [[t.head, t.relation, t.tail, t.source, t.confidence] for t in self._triples],
        }
        with atomic_file(self.snapshot_path) as handle:
            np.savez(
                handle,
                meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
                entity_vecs=self._entity_vecs,
                relation_vecs=self._relation_vecs,
                codebook=self._codebook if self._codebook is not None else np.zeros((0, self.dim), np.float32),
            )

    def _open_qdrant(self):
        from qdrant_client import QdrantClient

        if self.settings.qdrant_url:
            return QdrantClient(url=self.settings.qdrant_url, api_key=self.settings.qdrant_api_key)
        self.settings.paths.qdrant.mkdir(parents=True, exist_ok=True)
        try:
            client = QdrantClient(path=str(self.settings.paths.qdrant))
        except RuntimeError:  # the embedded store's lock: another process owns it
            raise StoreInUseError(
                f"the vector store at {self.settings.paths.qdrant} is in use by another process{self._holder()}: "
                "stop it (a `reverie serve`, or another Reverie command on this REVERIE_HOME), or point REVERIE_HOME elsewhere"
            ) from None
        # The lock is ours: note who holds it, and clear the temporary snapshots that a process
        # killed while writing left behind (no other process writes this home's snapshot now).
        atomic_write(self.settings.paths.qdrant / OWNER_NOTE, json.dumps(_this_process()).encode())
        for stale in self.settings.paths.graph.glob(f".{self.snapshot_path.name}.*.tmp"):
            stale.unlink(missing_ok=True)
        return client

    def _holder(self) -> str:
        """Who holds the lock, as its owner noted it: ' (pid N, TITLE, on HOST since T)', or ''."""
        try:
            note = json.loads((self.settings.paths.qdrant / OWNER_NOTE).read_text())
            pid, host = int(note["pid"]), str(note["host"])
        except (OSError, ValueError, KeyError, TypeError):
            return ""
        if host == socket.gethostname() and not _alive(pid):
            return ""  # a note left by a process that died; the holder is another one
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(note.get("since", 0))))
        return f" (pid {pid}, {note.get('process') or 'unknown process'}, on {host} since {since})"

    def _sync_index(self) -> None:
        """Make the Qdrant index agree with the snapshot (rebuild after a crash or a lost index)."""
        from qdrant_client import models

        for name, count in ((ENTITIES, len(self._entities)), (RELATIONS, len(self._relations))):
            exists = self.qdrant.collection_exists(name)
            if exists and self.qdrant.count(name, exact=True).count == count:
                continue
            if exists:
                self.qdrant.delete_collection(name)
            self.qdrant.create_collection(
                name, vectors_config=models.VectorParams(size=self.dim, distance=models.Distance.COSINE)
            )
            if name == ENTITIES:
                self._upsert_entities(self._entities, self._entity_vecs)
            else:
                self._upsert_relations(self._relations, self._relation_vecs[:, 0])

    def _upsert_entities(self, entities: list[Entity], vecs: np.ndarray) -> None:
        payloads = [{"name": e.name, "type": e.type, "description": e.description} for e in entities]
        self._upsert(ENTITIES, [e.name for e in entities], vecs, payloads)

    def _upsert_relations(self, relations: list[str], vecs: np.ndarray) -> None:
        self._upsert(RELATIONS, relations, vecs, [{"name": r} for r in relations])

    def _upsert(self, collection: str, names: list[str], vecs: np.ndarray, payloads: list[dict]) -> None:
        from qdrant_client import models

        for start in range(0, len(names), 2048):
            stop = start + 2048
            self.qdrant.upsert(
                collection,
                points=models.Batch(
                    ids=[str(uuid.uuid5(_POINT_NS, n)) for n in names[start:stop]],
                    vectors=vecs[start:stop].tolist(),
                    payloads=payloads[start:stop],
                ),
                wait=True,
            )

    @_loaded
    def open_index(self) -> None:
        """Open (and, if it disagrees with the snapshot, rebuild) the vector index now."""
        _ = self.qdrant

    def close(self) -> None:
        if self._qdrant is not None:
            if not self.settings.qdrant_url:
                note = self.settings.paths.qdrant / OWNER_NOTE
                try:
                    if json.loads(note.read_text()).get("pid") == os.getpid():
                        note.unlink()
                except (OSError, ValueError):
                    pass
            self._qdrant.close()
            self._qdrant = None

    # ---------- ingest ----------
    @_loaded
    def plan(self, triples: list[Triple], entities: list[Entity] | None = None) -> IngestPlan:
        """What these facts add to the graph; re-ingesting the same facts plans nothing."""
        plan = IngestPlan(triples_read=len(triples))
        planned: dict[str, Entity] = {}
        for entity in entities or []:
            known = self._entity_index.get(entity.name)
            if known is None or self._entities[known] != entity:
                planned[entity.name] = entity
        new_relations: dict[str, None] = {}
        seen: set[str] = set()
        for triple in triples:
            key = edge_id(triple.head, triple.relation, triple.tail)
            if key in self._triple_index or key in seen:
                continue
            seen.add(key)
            plan.triples.append(triple)
            for name in (triple.head, triple.tail):
                if name not in self._entity_index and name not in planned:
                    planned[name] = Entity(name=name)
            if triple.relation not in self._relation_index:
                new_relations[triple.relation] = None
        plan.entities = list(planned.values())
        plan.relations = list(new_relations)
        return plan

    @_loaded
    def apply(
        self, plan: IngestPlan, entity_vecs: np.ndarray, relation_vecs: np.ndarray, codebook: np.ndarray | None = None
    ) -> None:
        """Add a plan with its vectors (relation_vecs: forward and inverse text of each relation, interleaved).
        Image entities get their token from the graph's codebook; the first image ingest brings it
        (`codebook`, the image tower's), so tokens keep their meaning when the tower is retrained."""
        entity_vecs = np.asarray(entity_vecs, np.float32).reshape(len(plan.entities), self.dim)
        relation_vecs = np.asarray(relation_vecs, np.float32).reshape(len(plan.relations), 2, self.dim)
        _ = self.qdrant  # open and sync the index against the old snapshot, before the graph changes
        plan = self._with_tokens(plan, entity_vecs, codebook)
        plan, entity_vecs, relation_vecs = self._unapplied(plan, entity_vecs, relation_vecs)
        try:
            self._apply_in_memory(plan, entity_vecs, relation_vecs)
            self._write_snapshot()
        except BaseException:
            # The disk still holds the old graph; make memory agree with it again.
            self._clear()
            self._load_snapshot()
            raise
        # The index follows the snapshot; see the module docstring.
        if plan.entities:
            self._upsert_entities(plan.entities, entity_vecs)
        if plan.relations:
            self._upsert_relations(plan.relations, relation_vecs[:, 0])

    def _with_tokens(self, plan: IngestPlan, entity_vecs: np.ndarray, codebook: np.ndarray | None) -> IngestPlan:
        images = [i for i, e in enumerate(plan.entities) if e.type == "image"]
        if not images:
            return plan
        if self._codebook is None:
            if codebook is None or not len(codebook):
                raise ReverieError(
                    "image entities need a codebook: the image tower has none; retrain it with `reverie train clip`"
                )
            self._codebook = np.asarray(codebook, np.float32).reshape(-1, self.dim)
        tokens = self.image_tokens(entity_vecs[images])
        entities = list(plan.entities)
        for i, token in zip(images, tokens):
            entities[i] = entities[i].model_copy(update={"token": int(token)})
        return IngestPlan(entities, plan.relations, plan.triples, plan.triples_read)

    @_loaded
    def image_tokens(self, vecs: np.ndarray) -> np.ndarray | None:
        """Image tokens by the graph's codebook, or None before any image was ingested."""
        if self._codebook is None:
            return None
        return np.argmax(np.asarray(vecs, np.float32).reshape(-1, self.dim) @ self._codebook.T, axis=1)

    def _unapplied(self, plan: IngestPlan, entity_vecs: np.ndarray, relation_vecs: np.ndarray):
        """The part of a plan the graph still lacks. Another ingest may have applied between this
        one's plan and apply, or a retried apply may find its own work already on disk."""
        keep_e = [i for i, e in enumerate(plan.entities) if self.get_entity(e.name) != e]
        keep_r = [i for i, r in enumerate(plan.relations) if r not in self._relation_index]
        triples = [t for t in plan.triples if edge_id(t.head, t.relation, t.tail) not in self._triple_index]
        fresh = IngestPlan(
            [plan.entities[i] for i in keep_e], [plan.relations[i] for i in keep_r], triples, plan.triples_read
        )
        return fresh, entity_vecs[keep_e], relation_vecs[keep_r]

    def _apply_in_memory(self, plan: IngestPlan, entity_vecs: np.ndarray, relation_vecs: np.ndarray) -> None:
        for entity, vec in zip(plan.entities, entity_vecs):
            idx = self._entity_index.get(entity.name)
            if idx is not None:  # an existing entity with new attributes: update in place
                self._entities[idx] = entity
                self._entity_vecs[idx] = vec
                self.graph.nodes[entity.name].update(entity.model_dump())
        fresh = [(e, v) for e, v in zip(plan.entities, entity_vecs) if e.name not in self._entity_index]
        self._add(
            [e for e, _ in fresh],
            plan.relations,
            plan.triples,
            np.stack([v for _, v in fresh]) if fresh else np.zeros((0, self.dim), np.float32),
            relation_vecs,
        )

    def _add(self, entities, relations, triples, entity_vecs, relation_vecs) -> None:
        for entity in entities:
            self._entity_index[entity.name] = len(self._entities)
            self._entities.append(entity)
            self.graph.add_node(entity.name, **entity.model_dump())
        for relation in relations:
            self._relation_index[relation] = len(self._relations)
            self._relations.append(relation)
        self._entity_vecs = np.concatenate([self._entity_vecs, np.asarray(entity_vecs, np.float32)])
        self._relation_vecs = np.concatenate(
            [self._relation_vecs, np.asarray(relation_vecs, np.float32).reshape(-1, 2, self.dim)]
        )
        heads, rels, tails = [], [], []
        for triple in triples:
            key = edge_id(triple.head, triple.relation, triple.tail)
            self._triple_index.add(key)
            self._triples.append(triple)
            self.graph.add_edge(
                triple.head,
                triple.tail,
                key=key,
                relation=triple.relation,
                source=triple.source,
                confidence=triple.confidence,
            )
            heads.append(self._entity_index[triple.head])
            rels.append(self._relation_index[triple.relation])
            tails.append(self._entity_index[triple.tail])
        self._heads = np.concatenate([self._heads, np.asarray(heads, np.int64)])
        self._rels = np.concatenate([self._rels, np.asarray(rels, np.int64)])
        self._tails = np.concatenate([self._tails, np.asarray(tails, np.int64)])
        self._csr = None
        self._phrases = None
        self._search_keys = None

    # ---------- reading ----------
    @_loaded
    def stats(self) -> GraphStats:
        return GraphStats(entities=len(self._entities), relations=len(self._relations), triples=len(self._triples))

    @_loaded
    def get_entity(self, name: str) -> Entity | None:
        idx = self._entity_index.get(name)
        return None if idx is None else self._entities[idx]

    @_loaded
    def neighbours(self, name: str) -> list[Triple]:
        """Every stored triple that touches an entity, outgoing first."""
        if name not in self._entity_index:
            raise ReverieError(f"no entity named {name!r}")
        out = [self._triple_at(name, v, d) for _, v, d in self.graph.out_edges(name, data=True)]
        inc = [self._triple_at(u, name, d) for u, _, d in self.graph.in_edges(name, data=True)]
        return out + inc

    @_loaded
    def entity_view(self, name: str) -> EntityView:
        """An entity with every stored fact that touches it, each with its edge id."""
        entity = self.get_entity(name)
        if entity is None:
            raise NotFoundError(f"no entity named {name!r} in the graph")
        facts = [
            Fact(**triple.model_dump(), edge_id=edge_id(triple.head, triple.relation, triple.tail))
            for triple in self.neighbours(name)
        ]
        return EntityView(
            entity=entity,
            outgoing=[f for f in facts if f.head == name],
            incoming=[f for f in facts if f.head != name],
        )

    @staticmethod
    def _triple_at(head: str, tail: str, data: dict) -> Triple:
        return Triple(
            head=head, relation=data["relation"], tail=tail, source=data["source"], confidence=data["confidence"]
        )

    def _require_graph(self) -> None:
        if not self._triples:
            raise EmptyGraphError(
                "the knowledge graph is empty: run `reverie ingest --dataset world` (or another dataset) first"
            )

    # ---------- linking ----------
    def _phrase_index(self) -> dict[str, list[int]]:
        if self._phrases is None:
            phrases: dict[str, list[int]] = {}
            for idx, entity in enumerate(self._entities):
                key = normalise(display(entity.name))
                if key and len(key.split()) <= _MAX_PHRASE_WORDS:
                    phrases.setdefault(key, []).append(idx)
            self._phrases = phrases
        return self._phrases

    @_loaded
    def link(self, question: str, question_vec: np.ndarray, top_k: int, min_score: float) -> list[LinkedEntity]:
        """Entities the question mentions: exact phrase matches (longest first), then vector hits."""
        self._require_graph()
        phrases = self._phrase_index()
        words = normalise(question).split()
        taken = [False] * len(words)
        linked: dict[str, LinkedEntity] = {}
        for size in range(min(_MAX_PHRASE_WORDS, len(words)), 0, -1):
            for start in range(len(words) - size + 1):
                if any(taken[start : start + size]):
                    continue
                for idx in phrases.get(" ".join(words[start : start + size]), []):
                    entity = self._entities[idx]
                    linked.setdefault(
                        entity.name, LinkedEntity(name=entity.name, type=entity.type, score=1.0, how="exact")
                    )
                    taken[start : start + size] = [True] * size
        hits = self.qdrant.query_points(
            ENTITIES, query=np.asarray(question_vec, np.float32).tolist(), limit=top_k, with_payload=True
        ).points
        for hit in hits:
            name = hit.payload["name"]
            if hit.score >= min_score and name in self._entity_index and name not in linked:
                linked[name] = LinkedEntity(
                    name=name, type=hit.payload.get("type", "entity"), score=float(hit.score), how="vector"
                )
        if not linked:
            best = f" (closest: {hits[0].payload['name']!r} at {hits[0].score:.2f})" if hits else ""
            raise NoMatchError(f"no entity in the graph matches the question{best}")
        return list(linked.values())

    @_loaded
    def search(self, text: str, text_vec: np.ndarray, limit: int) -> list[EntityHit]:
        """Entities for a person looking for one: names equal to the text, then names starting with
        it, then names containing it, then the nearest by vector; at most `limit`."""
        key = normalise(text)
        if self._search_keys is None:
            self._search_keys = [normalise(display(e.name)) for e in self._entities]
        hits: dict[str, EntityHit] = {}
        if key:
            found = [
                (0 if k == key else 1 if k.startswith(key) else 2, len(k), i)
                for i, k in enumerate(self._search_keys)
                if key in k
            ]
            for rank, _, i in sorted(found)[:limit]:
                entity = self._entities[i]
                hits[entity.name] = EntityHit(
                    name=entity.name, type=entity.type, score=(1.0, 0.9, 0.8)[rank], how="name"
                )
        if len(hits) < limit and self._entities:
            points = self.qdrant.query_points(
                ENTITIES, query=np.asarray(text_vec, np.float32).tolist(), limit=limit, with_payload=True
            ).points
            for point in points:
                name = point.payload["name"]
                if len(hits) < limit and name in self._entity_index and name not in hits:
                    hits[name] = EntityHit(
                        name=name, type=point.payload.get("type", "entity"), score=float(point.score), how="vector"
                    )
        return list(hits.values())

    @_loaded
    def link_image(self, image_vec: np.ndarray, top_k: int, min_score: float):
        """The entities nearest an image's vector (image entities aside: a question's subject is a
        thing, not a picture of it), and the image's token: (links, token)."""
        from qdrant_client import models

        self._require_graph()
        not_images = models.Filter(must_not=[models.FieldCondition(key="type", match=models.MatchValue(value="image"))])
        hits = self.qdrant.query_points(
            ENTITIES,
            query=np.asarray(image_vec, np.float32).tolist(),
            limit=top_k,
            query_filter=not_images,
            with_payload=True,
        ).points
        links = [
            LinkedEntity(
                name=h.payload["name"], type=h.payload.get("type", "entity"), score=float(h.score), how="image"
            )
            for h in hits
            if h.payload["name"] in self._entity_index
        ]
        if not links or links[0].score < min_score:
            best = f" (closest: {links[0].name!r} at {links[0].score:.2f})" if links else ""
            raise NoMatchError(
                f"the image links to no entity of the graph with a similarity of {min_score} or more{best}"
            )
        tokens = self.image_tokens(image_vec)
        return links, None if tokens is None else int(tokens[0])

    # ---------- retrieval ----------
    def _full_csr(self) -> tuple[np.ndarray, ...]:
        """Walkable edges of the whole graph, inverse edges included, sorted by source."""
        if self._csr is None:
            num_rel = len(self._relations)
            num_triples = len(self._triples)
            src = np.concatenate([self._heads, self._tails])
            dst = np.concatenate([self._tails, self._heads])
            rel = np.concatenate([self._rels, self._rels + num_rel])
            ref = np.concatenate([np.arange(num_triples), np.arange(num_triples)])
            order = np.argsort(src, kind="stable")
            indptr = np.zeros(len(self._entities) + 1, np.int64)
            np.cumsum(np.bincount(src, minlength=len(self._entities)), out=indptr[1:])
            self._csr = (indptr, dst[order], rel[order], ref[order])
        return self._csr

    @_loaded
    def neighbourhood(self, anchors: list[str], hops: int, max_nodes: int, sample_seed: int = 0) -> np.ndarray:
        """Global ids of the nodes within `hops` of the anchors, anchors first.

        Breadth-first; a layer that would pass max_nodes is sampled uniformly (seeded), so a hub
        entity yields a fair sample of its neighbourhood rather than its lowest ids."""
        rng = np.random.default_rng(sample_seed)
        indptr, dst, _, _ = self._full_csr()
        seen = np.zeros(len(self._entities), bool)
        frontier = np.asarray([self._entity_index[s] for s in anchors], np.int64)
        seen[frontier] = True
        order = [frontier]
        total = len(frontier)
        for _ in range(hops):
            if total >= max_nodes or frontier.size == 0:
                break
            starts, stops = indptr[frontier], indptr[frontier + 1]
            lengths = stops - starts
            idx = np.repeat(stops - lengths.cumsum(), lengths) + np.arange(lengths.sum())
            nxt = np.unique(dst[idx])
            nxt = nxt[~seen[nxt]]
            if len(nxt) > max_nodes - total:
                nxt = np.sort(rng.choice(nxt, max_nodes - total, replace=False))
            seen[nxt] = True
            order.append(nxt)
            total += len(nxt)
            frontier = nxt
        return np.concatenate(order)

    @_loaded
    def retrieve(self, anchors: list[str], anchor_weights: list[float], hops: int, max_nodes: int) -> Subgraph:
        """The k-hop subgraph around the anchors, as CSR arrays with the vectors the walker needs."""
        self._require_graph()
        unknown = [s for s in anchors if s not in self._entity_index]
        if unknown:
            raise ReverieError(f"unknown seed entities: {unknown}")
        nodes = self.neighbourhood(anchors, hops, max_nodes)
        local = np.full(len(self._entities), -1, np.int64)
        local[nodes] = np.arange(len(nodes))
        indptr, dst, rel, ref = self._full_csr()
        starts, stops = indptr[nodes], indptr[nodes + 1]
        lengths = stops - starts
        idx = np.repeat(stops - lengths.cumsum(), lengths) + np.arange(lengths.sum())
        src_local = np.repeat(np.arange(len(nodes)), lengths)
        keep = local[dst[idx]] >= 0
        idx, src_local = idx[keep], src_local[keep]
        sub_indptr = np.zeros(len(nodes) + 1, np.int64)
        np.cumsum(np.bincount(src_local, minlength=len(nodes)), out=sub_indptr[1:])
        triple_ids, edge_refs = np.unique(ref[idx], return_inverse=True)
        weights = np.asarray(anchor_weights, np.float64)
        return Subgraph(
            node_names=[self._entities[i].name for i in nodes],
            node_types=[self._entities[i].type for i in nodes],
            node_vecs=self._entity_vecs[nodes],
            indptr=sub_indptr,
            targets=local[dst[idx]],
            relations=rel[idx],
            edge_refs=edge_refs.reshape(-1),
            rel_names=list(self._relations),
            rel_vecs=np.concatenate([self._relation_vecs[:, 0], self._relation_vecs[:, 1]]),
            edge_ids=[
                edge_id(self._triples[i].head, self._triples[i].relation, self._triples[i].tail) for i in triple_ids
            ],
            edge_sources=[self._triples[i].source for i in triple_ids],
            anchors=local[[self._entity_index[s] for s in anchors]],
            anchor_weights=weights / weights.sum(),
        )

    @_loaded
    def calibration_questions(self, hops: int, count: int, seed: int = 0) -> list[GraphQuestion]:
        """Questions made from the stored facts, to fit the walker's confidence on (reverie/calibration.py)."""
        return calibration_questions(self._triples, hops, count, np.random.default_rng(seed), display)

    @_loaded
    def random_walks(self, starts: list[str], length: int, seed: int = 0) -> list[list[Triple]]:
        """Uniform random walks over stored edges (forward and inverse), one per start."""
        indptr, dst, rel, ref = self._full_csr()
        rng = np.random.default_rng(seed)
        walks = []
        for start in starts:
            node, walk = self._entity_index[start], []
            for _ in range(length):
                lo, hi = indptr[node], indptr[node + 1]
                if lo == hi:
                    break
                k = rng.integers(lo, hi)
                walk.append(self._triples[ref[k]])
                node = dst[k]
            walks.append(walk)
        return walks


def _this_process() -> dict:
    """The owner note: pid, host, the process's title (a Ray worker's names its actor), and since when."""
    try:
        title = Path("/proc/self/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:  # not Linux
        title = " ".join(sys.argv)
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "process": " ".join(title.split())[:120],
        "since": time.time(),
    }


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's
        pass
    return True
