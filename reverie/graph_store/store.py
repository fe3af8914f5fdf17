"""The Graph RAG store: a typed graph (arrays; networkx on request), its vectors, and a Qdrant index over them.

State on disk, all under `settings.home`:
- `graph/snapshot.npz`: the source of truth: entities, relations, triples and their vectors, in one
  file written to a temporary name and renamed into place, so a reader sees the old or the new
  graph, never half of one. Snapshots of the first format (facts as JSON objects) still load.
- `qdrant/`: the vector index for entity linking (reverie/graph_store/vectors.py: Qdrant Edge by
  default, qdrant-client's embedded store, or a Qdrant server by URL). It is written after the
  snapshot; on start-up an index whose point counts disagree with the snapshot is rebuilt from it,
  so a crash between the two writes heals itself.
The embedded indexes take a file lock, so exactly one process (one Ray actor) owns a store;
the owner notes who it is beside the lock, so a second process is told which one holds it.

In memory the facts are arrays of ids (heads, relations, tails, sources), the entities columns of
names and attributes, so a graph of a million facts loads in seconds and costs a few hundred bytes
a fact, most of it the entities' vectors (bench/results/scale.md). The snapshot holds the same
arrays. `graph`, a networkx MultiDiGraph, is built from them only when someone asks for it.

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
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx
import numpy as np

from reverie.atomic import atomic_file, atomic_write
from reverie.calibration import TEMPLATES, GraphQuestion, calibration_questions
from reverie.config import Settings
from reverie.edges import edge_id
from reverie.encoders.text import display, entity_text, relation_texts, text_dim
from reverie.errors import EmptyGraphError, NoMatchError, NotFoundError, ReverieError, SnapshotError, StoreInUseError
from reverie.graph_store.subgraph import FactIds, FactSources, Subgraph
from reverie.graph_store.triples import TripleTable, join_source
from reverie.graph_store.vectors import IndexInUseError, VectorIndex, open_vector_index
from reverie.schemas import Entity, EntityHit, EntityView, Fact, GraphStats, LinkedEntity, Triple

ENTITIES = "entities"
RELATIONS = "relations"
EXACT_CHAIN_WALKS = 1e8
"""Above this many forward walks of `hops` hops, calibration questions come from sampled subjects."""
SNAPSHOT_FORMAT = 2  # 1 (no "format" key): entities and triples as JSON objects
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
    triples: TripleTable = field(default_factory=TripleTable.empty)  # new triples (a sequence of Triple)
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


def _pair_keys(heads: np.ndarray, tails: np.ndarray) -> np.ndarray:
    """One sortable key per (head, tail) pair of entity ids."""
    return (np.asarray(heads, np.uint64) << np.uint64(32)) | np.asarray(tails, np.uint64)


def _spans(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """The indices of every [start, stop) span, concatenated in order."""
    lengths = stops - starts
    return np.repeat(stops - lengths.cumsum(), lengths) + np.arange(lengths.sum())


def _first_occurrences(heads: np.ndarray, rels: np.ndarray, tails: np.ndarray) -> np.ndarray:
    """A mask of the rows that are the first of their (head, relation, tail)."""
    n = len(heads)
    keys = _pair_keys(heads, tails)
    order = np.lexsort((np.arange(n), rels, keys))
    ks, rs = keys[order], rels[order]
    repeat = np.zeros(n, bool)
    repeat[1:] = (ks[1:] == ks[:-1]) & (rs[1:] == rs[:-1])
    first = np.ones(n, bool)
    first[order[repeat]] = False
    return first


class GraphStore:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.dim = text_dim()
        self.snapshot_path = settings.paths.snapshot
        self._clear()
        self._loaded = False
        self._index: VectorIndex | None = None

    @property
    def index(self) -> VectorIndex:
        """The vector index (reverie/graph_store/vectors.py), opened on first use (see the module docstring)."""
        if self._index is None:
            self._ensure_loaded()
            self._index = self._open_index()
            self._sync_index()
        return self._index

    # ---------- persistence ----------
    def _clear(self) -> None:
        self._names: list[str] = []  # entity id -> name
        self._entity_index: dict[str, int] = {}
        self._types: list[str] = []
        self._descriptions: dict[int, str] = {}  # only the entities that have one
        self._images: dict[int, str] = {}
        self._tokens: dict[int, int] = {}
        self._relations: list[str] = []
        self._relation_index: dict[str, int] = {}
        self._sources: list[str] = []  # source prefixes (reverie/graph_store/triples.py)
        self._source_index: dict[str, int] = {}
        # the facts, one row each: entity, relation and source ids, the source's line, the confidence
        self._heads = np.zeros(0, np.int32)
        self._rels = np.zeros(0, np.int32)
        self._tails = np.zeros(0, np.int32)
        self._source = np.zeros(0, np.int32)
        self._line = np.zeros(0, np.int32)
        self._confidence = np.zeros(0, np.float64)
        self._entity_vecs = np.zeros((0, self.dim), np.float32)
        self._relation_vecs = np.zeros((0, 2, self.dim), np.float32)
        # image-token centroids, adopted from the tower of the first image ingest
        self._codebook: np.ndarray | None = None
        self._invalidate()

    def _invalidate(self) -> None:
        """Forget what is derived from the facts; each is rebuilt when next needed."""
        self._csr: tuple[np.ndarray, ...] | None = None
        self._pairs: tuple[np.ndarray, np.ndarray] | None = None  # sorted (head, tail) keys and their relations
        self._phrases: dict[str, list[int]] | None = None
        self._search_keys: list[str] | None = None  # each entity's normalised name, for search
        self._graph: nx.MultiDiGraph | None = None
        self._columns_by_id: tuple[np.ndarray, np.ndarray] | None = None  # names and types as object arrays
        self._head_counts: np.ndarray | None = None  # facts per head entity (facts_about)

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
                arrays = {name: data[name] for name in data.files if name != "meta"}
            parts: dict | str
            if meta.get("format") == SNAPSHOT_FORMAT:
                parts = self._columns(meta, arrays)
            else:
                parts = self._columns_of_first_format(meta, arrays)
        except _UNREADABLE as exc:
            raise self._snapshot_error(f"{type(exc).__name__}: {exc}") from None
        if isinstance(parts, str):
            raise self._snapshot_error(parts)
        problem = self._inconsistency(parts)
        if problem:
            raise self._snapshot_error(problem)
        self._adopt(parts)

    def _columns(self, meta: dict, arrays: dict[str, np.ndarray]) -> dict:
        """The parts of a snapshot in this format: lists from its JSON, arrays as they are."""
        type_names = [sys.intern(str(t)) for t in meta["type_names"]]
        type_ids = arrays["entity_types"]
        if type_ids.size and (type_ids.min() < 0 or type_ids.max() >= len(type_names)):
            raise ValueError("an entity type id out of range")
        return {
            "names": [str(n) for n in meta["entities"]],
            "types": [type_names[i] for i in type_ids.tolist()],
            "descriptions": {int(k): str(v) for k, v in meta["descriptions"].items()},
            "images": {int(k): str(v) for k, v in meta["images"].items()},
            "tokens": {int(k): int(v) for k, v in meta["tokens"].items()},
            "relations": [str(r) for r in meta["relations"]],
            "sources": [str(s) for s in meta["sources"]],
            **{k: arrays[k] for k in ("heads", "rels", "tails", "source", "line", "confidence")},
            "entity_vecs": arrays["entity_vecs"],
            "relation_vecs": arrays["relation_vecs"],
            "codebook": arrays.get("codebook"),
        }

    def _columns_of_first_format(self, meta: dict, arrays: dict[str, np.ndarray]) -> dict | str:
        """The parts of a snapshot written before the columnar format (entities and triples as JSON
        objects), or what makes it unusable."""
        entities = [Entity(**e) for e in meta["entities"]]
        names = [e.name for e in entities]
        index = {n: i for i, n in enumerate(names)}
        relations = list(meta["relations"])
        relation_index = {r: i for i, r in enumerate(relations)}
        rows = [Triple(head=h, relation=r, tail=t, source=s, confidence=c) for h, r, t, s, c in meta["triples"]]
        for triple in rows:
            if triple.head not in index or triple.tail not in index or triple.relation not in relation_index:
                return f"the triple ({triple.head!r}, {triple.relation!r}, {triple.tail!r}) names an entity or relation it does not hold"
        table = TripleTable.of(rows)
        name_ids = np.array([index[n] for n in table.names], np.int32)
        rel_ids = np.array([relation_index[r] for r in table.relations], np.int32)
        return {
            "names": names,
            "types": [sys.intern(e.type) for e in entities],
            "descriptions": {i: e.description for i, e in enumerate(entities) if e.description},
            "images": {i: e.image for i, e in enumerate(entities) if e.image is not None},
            "tokens": {i: e.token for i, e in enumerate(entities) if e.token is not None},
            "relations": relations,
            "sources": table.sources,
            "heads": name_ids[table.head],
            "rels": rel_ids[table.rel],
            "tails": name_ids[table.tail],
            "source": table.source,
            "line": table.line,
            "confidence": table.confidence,
            "entity_vecs": arrays["entity_vecs"],
            "relation_vecs": arrays["relation_vecs"],
            "codebook": arrays.get("codebook"),
        }

    def _inconsistency(self, parts: dict) -> str | None:
        """What makes a readable snapshot unusable, or None. Each part is checked against the others,
        so a snapshot is loaded whole or not at all."""
        names, relations = parts["names"], parts["relations"]
        entity_vecs, relation_vecs, codebook = parts["entity_vecs"], parts["relation_vecs"], parts["codebook"]
        if len(set(names)) != len(names) or len(set(relations)) != len(relations):
            return "it names an entity or a relation twice"
        if entity_vecs.shape != (len(names), self.dim) or relation_vecs.shape != (len(relations), 2, self.dim):
            return (
                f"{len(names)} entities and {len(relations)} relations, but vectors of shape "
                f"{entity_vecs.shape} and {relation_vecs.shape}"
            )
        if codebook is not None and (codebook.ndim != 2 or (len(codebook) and codebook.shape[1] != self.dim)):
            return f"an image codebook of shape {codebook.shape}"
        if len(parts["types"]) != len(names):
            return f"{len(names)} entities but {len(parts['types'])} entity types"
        rows = len(parts["heads"])
        if any(len(parts[k]) != rows for k in ("rels", "tails", "source", "line", "confidence")):
            return "its fact columns differ in length"
        for column, limit, what in (
            ("heads", len(names), "an entity"),
            ("tails", len(names), "an entity"),
            ("rels", len(relations), "a relation"),
            ("source", len(parts["sources"]), "a source"),
        ):
            ids = parts[column]
            bad = np.flatnonzero((ids < 0) | (ids >= limit))
            if bad.size:
                return f"fact {int(bad[0])} names {what} it does not hold"
        if any(not 0 <= i < len(names) for key in ("descriptions", "images", "tokens") for i in parts[key]):
            return "an entity attribute names an entity it does not hold"
        return None

    def _adopt(self, parts: dict) -> None:
        """Take a checked snapshot's parts as the graph (the store is empty)."""
        self._names = parts["names"]
        self._entity_index = {n: i for i, n in enumerate(self._names)}
        self._types = parts["types"]
        self._descriptions, self._images, self._tokens = parts["descriptions"], parts["images"], parts["tokens"]
        self._relations = parts["relations"]
        self._relation_index = {r: i for i, r in enumerate(self._relations)}
        self._sources = parts["sources"]
        self._source_index = {s: i for i, s in enumerate(self._sources)}
        self._heads = np.asarray(parts["heads"], np.int32)
        self._rels = np.asarray(parts["rels"], np.int32)
        self._tails = np.asarray(parts["tails"], np.int32)
        self._source = np.asarray(parts["source"], np.int32)
        self._line = np.asarray(parts["line"], np.int32)
        self._confidence = np.asarray(parts["confidence"], np.float64)
        self._entity_vecs = np.asarray(parts["entity_vecs"], np.float32)
        self._relation_vecs = np.asarray(parts["relation_vecs"], np.float32)
        codebook = parts["codebook"]
        self._codebook = codebook if codebook is not None and len(codebook) else None
        self._invalidate()

    def _snapshot_error(self, reason: str) -> SnapshotError:
        return SnapshotError(
            f"the graph snapshot {self.snapshot_path} cannot be loaded ({reason}); it is not read as an empty graph: "
            "restore it from a copy, or move it away to start from an empty graph"
        )

    def _write_snapshot(self) -> None:
        type_names = list(dict.fromkeys(self._types))
        type_ids = {t: i for i, t in enumerate(type_names)}
        meta = {
            "format": SNAPSHOT_FORMAT,
            "entities": self._names,
            "type_names": type_names,
            "descriptions": self._descriptions,
            "images": self._images,
            "tokens": self._tokens,
            "relations": self._relations,
            "sources": self._sources,
        }
        with atomic_file(self.snapshot_path) as handle:
            np.savez(
                handle,
                meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
                entity_types=np.fromiter((type_ids[t] for t in self._types), np.int32, len(self._types)),
                heads=self._heads,
                rels=self._rels,
                tails=self._tails,
                source=self._source,
                line=self._line,
                confidence=self._confidence,
                entity_vecs=self._entity_vecs,
                relation_vecs=self._relation_vecs,
                codebook=self._codebook if self._codebook is not None else np.zeros((0, self.dim), np.float32),
            )

    def _open_index(self) -> VectorIndex:
        s = self.settings
        if s.qdrant_url:
            return open_vector_index(s.vector_index, s.paths.qdrant, s.qdrant_url, s.qdrant_api_key)
        try:
            index = open_vector_index(s.vector_index, s.paths.qdrant)
        except IndexInUseError:  # the index's lock: another process owns it
            raise StoreInUseError(
                f"the vector store at {s.paths.qdrant} is in use by another process{self._holder()}: "
                "stop it (a `reverie serve`, or another Reverie command on this REVERIE_HOME), or point REVERIE_HOME elsewhere"
            ) from None
        # The lock is ours: note who holds it, and clear the temporary snapshots that a process
        # killed while writing left behind (no other process writes this home's snapshot now).
        atomic_write(s.paths.qdrant / OWNER_NOTE, json.dumps(_this_process()).encode())
        for stale in s.paths.graph.glob(f".{self.snapshot_path.name}.*.tmp"):
            stale.unlink(missing_ok=True)
        return index

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
        """Make the vector index agree with the snapshot (rebuild after a crash or a lost index)."""
        index = self.index
        for name, count in ((ENTITIES, len(self._names)), (RELATIONS, len(self._relations))):
            if index.count(name) == count:
                continue
            index.reset(name, self.dim)
            if name == ENTITIES:
                self._upsert_entities(range(len(self._names)), self._entity_vecs)
            else:
                self._upsert_relations(self._relations, self._relation_vecs[:, 0])

    def _upsert_entities(self, ids, vecs: np.ndarray) -> None:
        ids = list(ids)
        names = [self._names[i] for i in ids]
        payloads = [
            {"name": self._names[i], "type": self._types[i], "description": self._descriptions.get(i, "")} for i in ids
        ]
        self.index.upsert(ENTITIES, names, vecs, payloads)

    def _upsert_relations(self, relations: list[str], vecs: np.ndarray) -> None:
        self.index.upsert(RELATIONS, relations, vecs, [{"name": r, "type": "relation"} for r in relations])

    @_loaded
    def open_index(self) -> None:
        """Open (and, if it disagrees with the snapshot, rebuild) the vector index now, and build
        what the first question would otherwise wait for."""
        _ = self.index
        self._phrase_index()
        self._full_csr()

    def close(self) -> None:
        if self._index is not None:
            if not self.settings.qdrant_url:
                note = self.settings.paths.qdrant / OWNER_NOTE
                try:
                    if json.loads(note.read_text()).get("pid") == os.getpid():
                        note.unlink()
                except (OSError, ValueError):
                    pass
            self._index.close()
            self._index = None

    # ---------- ingest ----------
    def _ids(self, table: TripleTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The table's rows as (head, relation, tail) ids of this store, -1 for a name it lacks."""
        entity, relation = self._entity_index, self._relation_index
        name_ids = np.fromiter((entity.get(n, -1) for n in table.names), np.int64, len(table.names))
        rel_ids = np.fromiter((relation.get(r, -1) for r in table.relations), np.int64, len(table.relations))
        return name_ids[table.head], rel_ids[table.rel], name_ids[table.tail]

    def _stored(self, heads: np.ndarray, rels: np.ndarray, tails: np.ndarray) -> np.ndarray:
        """Which (head, relation, tail) id rows the graph holds (-1 ids: not held)."""
        held = np.zeros(len(heads), bool)
        known = np.flatnonzero((heads >= 0) & (rels >= 0) & (tails >= 0))
        if not known.size or not len(self._heads):
            return held
        if self._pairs is None:
            keys = _pair_keys(self._heads, self._tails)
            order = np.lexsort((self._rels, keys))
            self._pairs = (keys[order], self._rels[order])
        keys, key_rels = self._pairs
        query = _pair_keys(heads[known], tails[known])
        lo, hi = np.searchsorted(keys, query, "left"), np.searchsorted(keys, query, "right")
        one = hi - lo == 1
        held[known[one]] = key_rels[np.minimum(lo[one], len(keys) - 1)] == rels[known[one]]
        for j in np.flatnonzero(hi - lo > 1):  # a pair joined by several relations
            held[known[j]] = rels[known[j]] in key_rels[lo[j] : hi[j]]
        return held

    @_loaded
    def plan(self, triples: Sequence[Triple], entities: list[Entity] | None = None) -> IngestPlan:
        """What these facts add to the graph; re-ingesting the same facts plans nothing. `triples`:
        a list of Triple or, cheaper to send between processes, a TripleTable."""
        table = TripleTable.of(triples)
        plan = IngestPlan(triples_read=len(table))
        planned: dict[str, Entity] = {}
        for entity in entities or []:
            if self.get_entity(entity.name) != entity:
                planned[entity.name] = entity
        # Number the names and relations the graph lacks after those it holds, so that every row
        # has ids; a row is new unless the graph holds it or an earlier row repeats it.
        heads, rels, tails = self._ids(table)
        fresh_names = np.flatnonzero(np.fromiter((n not in self._entity_index for n in table.names), bool))
        fresh_rels = np.flatnonzero(np.fromiter((r not in self._relation_index for r in table.relations), bool))
        name_ids = np.full(len(table.names), -1, np.int64)
        name_ids[fresh_names] = len(self._names) + np.arange(fresh_names.size)
        rel_ids = np.full(len(table.relations), -1, np.int64)
        rel_ids[fresh_rels] = len(self._relations) + np.arange(fresh_rels.size)
        heads = np.where(heads >= 0, heads, name_ids[table.head])
        rels = np.where(rels >= 0, rels, rel_ids[table.rel])
        tails = np.where(tails >= 0, tails, name_ids[table.tail])
        new = _first_occurrences(heads, rels, tails) & ~self._stored(heads, rels, tails)
        rows = np.flatnonzero(new)
        plan.triples = table.take(rows)
        # New entities and relations in the order the new facts name them (head, then tail)
        both = np.stack([table.head[rows], table.tail[rows]], axis=1).reshape(-1)
        unknown = both[name_ids[both] >= 0]
        _, first = np.unique(unknown, return_index=True)
        for i in unknown[np.sort(first)].tolist():
            name = table.names[i]
            if name not in planned:
                planned[name] = Entity(name=name)
        plan.entities = list(planned.values())
        unknown_rels = table.rel[rows][rel_ids[table.rel[rows]] >= 0]
        _, first = np.unique(unknown_rels, return_index=True)
        plan.relations = [table.relations[i] for i in unknown_rels[np.sort(first)].tolist()]
        return plan

    @_loaded
    def apply(
        self, plan: IngestPlan, entity_vecs: np.ndarray, relation_vecs: np.ndarray, codebook: np.ndarray | None = None
    ) -> dict[str, float]:
        """Add a plan with its vectors (relation_vecs: forward and inverse text of each relation, interleaved).
        Image entities get their token from the graph's codebook; the first image ingest brings it
        (`codebook`, the image tower's), so tokens keep their meaning when the tower is retrained.
        Returns the seconds each part took: the graph in memory, the snapshot, the vector index."""
        entity_vecs = np.asarray(entity_vecs, np.float32).reshape(len(plan.entities), self.dim)
        relation_vecs = np.asarray(relation_vecs, np.float32).reshape(len(plan.relations), 2, self.dim)
        _ = self.index  # open and sync the index against the old snapshot, before the graph changes
        plan = self._with_tokens(plan, entity_vecs, codebook)
        plan, entity_vecs, relation_vecs = self._unapplied(plan, entity_vecs, relation_vecs)
        start = time.perf_counter()
        try:
            self._apply_in_memory(plan, entity_vecs, relation_vecs)
            applied = time.perf_counter()
            self._write_snapshot()
        except BaseException:
            # The disk still holds the old graph; make memory agree with it again.
            self._clear()
            self._load_snapshot()
            raise
        written = time.perf_counter()
        # The index follows the snapshot; see the module docstring.
        if plan.entities:
            self._upsert_entities([self._entity_index[e.name] for e in plan.entities], entity_vecs)
        if plan.relations:
            self._upsert_relations(plan.relations, relation_vecs[:, 0])
        indexed = time.perf_counter()
        return {"graph": applied - start, "snapshot": written - applied, "vectors": indexed - written}

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
        table = TripleTable.of(plan.triples)
        triples = table.take(np.flatnonzero(~self._stored(*self._ids(table))))
        fresh = IngestPlan(
            [plan.entities[i] for i in keep_e], [plan.relations[i] for i in keep_r], triples, plan.triples_read
        )
        return fresh, entity_vecs[keep_e], relation_vecs[keep_r]

    def _apply_in_memory(self, plan: IngestPlan, entity_vecs: np.ndarray, relation_vecs: np.ndarray) -> None:
        fresh = []
        for k, entity in enumerate(plan.entities):
            idx = self._entity_index.get(entity.name)
            if idx is None:
                fresh.append(k)
            else:  # an existing entity with new attributes: update in place
                self._set_attributes(idx, entity)
                self._entity_vecs[idx] = entity_vecs[k]
        self._add([plan.entities[k] for k in fresh], plan.relations, plan.triples, entity_vecs[fresh], relation_vecs)

    def _set_attributes(self, idx: int, entity: Entity) -> None:
        self._types[idx] = sys.intern(entity.type)
        if entity.description:
            self._descriptions[idx] = entity.description
        else:
            self._descriptions.pop(idx, None)
        if entity.image is not None:
            self._images[idx] = entity.image
        else:
            self._images.pop(idx, None)
        if entity.token is not None:
            self._tokens[idx] = entity.token
        else:
            self._tokens.pop(idx, None)
        self._invalidate()

    def _add(self, entities: list[Entity], relations: list[str], triples, entity_vecs, relation_vecs) -> None:
        for entity in entities:
            idx = len(self._names)
            self._entity_index[entity.name] = idx
            self._names.append(entity.name)
            self._types.append("")
            self._set_attributes(idx, entity)
        for relation in relations:
            self._relation_index[relation] = len(self._relations)
            self._relations.append(relation)
        self._entity_vecs = np.concatenate([self._entity_vecs, np.asarray(entity_vecs, np.float32)])
        self._relation_vecs = np.concatenate(
            [self._relation_vecs, np.asarray(relation_vecs, np.float32).reshape(-1, 2, self.dim)]
        )
        table = TripleTable.of(triples)
        heads, rels, tails = self._ids(table)
        if (heads < 0).any() or (rels < 0).any() or (tails < 0).any():
            raise ReverieError("a fact names an entity or relation the graph lacks")
        source_ids = np.array([self._source_index.setdefault(s, len(self._source_index)) for s in table.sources])
        self._sources = list(self._source_index)
        self._heads = np.concatenate([self._heads, heads.astype(np.int32)])
        self._rels = np.concatenate([self._rels, rels.astype(np.int32)])
        self._tails = np.concatenate([self._tails, tails.astype(np.int32)])
        self._source = np.concatenate([self._source, source_ids[table.source].astype(np.int32)])
        self._line = np.concatenate([self._line, table.line])
        self._confidence = np.concatenate([self._confidence, table.confidence])
        self._invalidate()

    # ---------- reading ----------
    @_loaded
    def stats(self) -> GraphStats:
        return GraphStats(entities=len(self._names), relations=len(self._relations), triples=len(self._heads))

    def _entity(self, idx: int) -> Entity:
        return Entity.model_construct(
            name=self._names[idx],
            type=self._types[idx],
            description=self._descriptions.get(idx, ""),
            image=self._images.get(idx),
            token=self._tokens.get(idx),
        )

    def _triple(self, row: int) -> Triple:
        return Triple.model_construct(
            head=self._names[self._heads[row]],
            relation=self._relations[self._rels[row]],
            tail=self._names[self._tails[row]],
            source=join_source(self._sources[self._source[row]], int(self._line[row])),
            confidence=float(self._confidence[row]),
        )

    @_loaded
    def get_entity(self, name: str) -> Entity | None:
        idx = self._entity_index.get(name)
        return None if idx is None else self._entity(idx)

    @property
    def graph(self) -> nx.MultiDiGraph:
        """The graph as a networkx MultiDiGraph (typed nodes, edges keyed by edge id), built when
        first asked for: the store itself keeps its facts as arrays."""
        self._ensure_loaded()
        if self._graph is None:
            graph = nx.MultiDiGraph()
            graph.add_nodes_from((name, self._entity(i).model_dump()) for i, name in enumerate(self._names))
            for row in range(len(self._heads)):
                t = self._triple(row)
                graph.add_edge(
                    t.head,
                    t.tail,
                    key=edge_id(t.head, t.relation, t.tail),
                    relation=t.relation,
                    source=t.source,
                    confidence=t.confidence,
                )
            self._graph = graph
        return self._graph

    @_loaded
    def neighbours(self, name: str) -> list[Triple]:
        """Every stored triple that touches an entity, outgoing first."""
        idx = self._entity_index.get(name)
        if idx is None:
            raise ReverieError(f"no entity named {name!r}")
        indptr, _, rel, ref = self._full_csr()
        rels, refs = rel[indptr[idx] : indptr[idx + 1]], ref[indptr[idx] : indptr[idx + 1]]
        inverse = rels >= len(self._relations)
        return [self._triple(r) for r in refs[~inverse].tolist()] + [self._triple(r) for r in refs[inverse].tolist()]

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

    def _require_graph(self) -> None:
        if not len(self._heads):
            raise EmptyGraphError(
                "the knowledge graph is empty: run `reverie ingest --dataset world` (or another dataset) first"
            )

    # ---------- linking ----------
    def _phrase_index(self) -> dict[str, list[int]]:
        if self._phrases is None:
            phrases: dict[str, list[int]] = {}
            for idx, name in enumerate(self._names):
                key = normalise(display(name))
                if key and key.count(" ") < _MAX_PHRASE_WORDS:
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
                    name = self._names[idx]
                    linked.setdefault(name, LinkedEntity(name=name, type=self._types[idx], score=1.0, how="exact"))
                    taken[start : start + size] = [True] * size
        hits = self.index.search(ENTITIES, question_vec, top_k)
        for hit in hits:
            name = hit.payload["name"]
            if hit.score >= min_score and name in self._entity_index and name not in linked:
                linked[name] = LinkedEntity(
                    name=name, type=hit.payload.get("type", "entity"), score=hit.score, how="vector"
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
            self._search_keys = [normalise(display(n)) for n in self._names]
        hits: dict[str, EntityHit] = {}
        if key:
            found = [
                (0 if k == key else 1 if k.startswith(key) else 2, len(k), i)
                for i, k in enumerate(self._search_keys)
                if key in k
            ]
            for rank, _, i in sorted(found)[:limit]:
                name = self._names[i]
                hits[name] = EntityHit(name=name, type=self._types[i], score=(1.0, 0.9, 0.8)[rank], how="name")
        if len(hits) < limit and self._names:
            for point in self.index.search(ENTITIES, text_vec, limit):
                name = point.payload["name"]
                if len(hits) < limit and name in self._entity_index and name not in hits:
                    hits[name] = EntityHit(
                        name=name, type=point.payload.get("type", "entity"), score=point.score, how="vector"
                    )
        return list(hits.values())

    @_loaded
    def link_image(self, image_vec: np.ndarray, top_k: int, min_score: float):
        """The entities nearest an image's vector (image entities aside: a question's subject is a
        thing, not a picture of it), and the image's token: (links, token)."""
        self._require_graph()
        hits = self.index.search(ENTITIES, image_vec, top_k, skip_type="image")
        links = [
            LinkedEntity(name=h.payload["name"], type=h.payload.get("type", "entity"), score=h.score, how="image")
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
            num_triples = len(self._heads)
            src = np.concatenate([self._heads, self._tails])
            dst = np.concatenate([self._tails, self._heads])
            rel = np.concatenate([self._rels, self._rels + num_rel])
            ref = np.concatenate([np.arange(num_triples, dtype=np.int32), np.arange(num_triples, dtype=np.int32)])
            order = np.argsort(src, kind="stable")
            indptr = np.zeros(len(self._names) + 1, np.int64)
            np.cumsum(np.bincount(src, minlength=len(self._names)), out=indptr[1:])
            self._csr = (indptr, dst[order], rel[order], ref[order])
        return self._csr

    @_loaded
    def neighbourhood(self, anchors: list[str], hops: int, max_nodes: int, sample_seed: int = 0) -> np.ndarray:
        """Global ids of the nodes within `hops` of the anchors, anchors first."""
        return np.concatenate(self._layers(anchors, hops, max_nodes, sample_seed))

    def _layers(self, anchors: list[str], hops: int, max_nodes: int, sample_seed: int = 0) -> list[np.ndarray]:
        """The nodes within `hops` of the anchors, layer by layer (layer k: k hops away), anchors first.

        Breadth-first; a layer that would pass max_nodes is sampled uniformly (seeded), so a hub
        entity yields a fair sample of its neighbourhood rather than its lowest ids."""
        rng = np.random.default_rng(sample_seed)
        indptr, dst, _, _ = self._full_csr()
        seen = np.zeros(len(self._names), bool)
        frontier = np.asarray([self._entity_index[s] for s in anchors], np.int64)
        seen[frontier] = True
        layers = [frontier]
        total = len(frontier)
        for _ in range(hops):
            if total >= max_nodes or frontier.size == 0:
                break
            idx = _spans(indptr[frontier], indptr[frontier + 1])
            reached = np.zeros(len(self._names), bool)  # a mask, not np.unique: no sort of a hub's edges
            reached[dst[idx]] = True
            nxt = np.flatnonzero(reached & ~seen)
            if len(nxt) > max_nodes - total:
                nxt = np.sort(rng.choice(nxt, max_nodes - total, replace=False))
            seen[nxt] = True
            layers.append(nxt)
            total += len(nxt)
            frontier = nxt
        return layers

    @_loaded
    def retrieve(self, anchors: list[str], anchor_weights: list[float], hops: int, max_nodes: int) -> Subgraph:
        """The subgraph walks of at most `hops` hops from the anchors can take, as CSR arrays with the
        vectors the walker needs: the nodes within `hops` (at most max_nodes), and every edge among
        them but those out of the nodes `hops` hops away, where a walk has to stop."""
        self._require_graph()
        unknown = [s for s in anchors if s not in self._entity_index]
        if unknown:
            raise ReverieError(f"unknown seed entities: {unknown}")
        layers = self._layers(anchors, hops, max_nodes)
        nodes = np.concatenate(layers)
        walkable = len(nodes) - (len(layers[-1]) if len(layers) == hops + 1 else 0)
        local = np.full(len(self._names), -1, np.int64)
        local[nodes] = np.arange(len(nodes))
        indptr, dst, rel, ref = self._full_csr()
        starts, stops = indptr[nodes[:walkable]], indptr[nodes[:walkable] + 1]
        idx = _spans(starts, stops)
        src_local = np.repeat(np.arange(walkable), stops - starts)
        keep = local[dst[idx]] >= 0
        idx, src_local = idx[keep], src_local[keep]
        sub_indptr = np.zeros(len(nodes) + 1, np.int64)
        np.cumsum(np.bincount(src_local, minlength=len(nodes)), out=sub_indptr[1:])
        # the facts' own numbering in the subgraph, in the graph's order (np.unique without its sort)
        refs = ref[idx]
        present = np.zeros(len(self._heads), bool)
        present[refs] = True
        triple_ids = np.flatnonzero(present)
        renumber = np.empty(len(self._heads), np.int64)
        renumber[triple_ids] = np.arange(len(triple_ids))
        weights = np.asarray(anchor_weights, np.float64)
        if self._columns_by_id is None:  # a list gathered by an index array: no Python loop per node
            self._columns_by_id = (np.array(self._names, dtype=object), np.array(self._types, dtype=object))
        names_by_id, types_by_id = self._columns_by_id
        node_names = names_by_id[nodes].tolist()
        source_ids, fact_sources = np.unique(self._source[triple_ids], return_inverse=True)
        return Subgraph(
            node_names=node_names,
            node_types=types_by_id[nodes].tolist(),
            node_vecs=self._entity_vecs[nodes],
            indptr=sub_indptr,
            targets=local[dst[idx]],
            relations=rel[idx].astype(np.int64),
            edge_refs=renumber[refs],
            rel_names=list(self._relations),
            rel_vecs=np.concatenate([self._relation_vecs[:, 0], self._relation_vecs[:, 1]]),
            edge_ids=FactIds(
                node_names,
                self._relations,
                local[self._heads[triple_ids]],
                self._rels[triple_ids],
                local[self._tails[triple_ids]],
            ),
            edge_sources=FactSources(
                [self._sources[i] for i in source_ids.tolist()], fact_sources.reshape(-1), self._line[triple_ids]
            ),
            anchors=local[[self._entity_index[s] for s in anchors]],
            anchor_weights=weights / weights.sum(),
        )

    @_loaded
    def facts_about(self, names: list[str]) -> list[int]:
        """How many facts each entity is the head of (0 for a name the graph does not hold): what
        the conversational memory weighs a candidate subject by."""
        if self._head_counts is None:
            self._head_counts = np.bincount(self._heads, minlength=len(self._names))
        return [int(self._head_counts[i]) if (i := self._entity_index.get(n)) is not None else 0 for n in names]

    @_loaded
    def calibration_questions(self, hops: int, count: int, seed: int = 0) -> list[GraphQuestion]:
        """Questions made from the stored facts, to fit the walker's confidence on (reverie/calibration.py).

        reverie/calibration.py enumerates every forward chain of the graph; on a graph with hubs
        their number grows as the degrees cubed (two hundred million 3-hop walks at 100,000
        synthetic facts). Past EXACT_CHAIN_WALKS the questions come from sampled subjects instead,
        each subject's answers found breadth-first (_sampled_questions)."""
        rng = np.random.default_rng(seed)
        if self._forward_walks(hops) <= EXACT_CHAIN_WALKS:
            facts = [self._triple(r) for r in range(len(self._heads))]
            return calibration_questions(facts, hops, count, rng, display)
        return self._sampled_questions(hops, count, rng)

    def _forward_walks(self, hops: int) -> float:
        """How many forward walks of 1 to `hops` hops the graph holds (what chain enumeration visits)."""
        heads, tails = self._heads.astype(np.int64), self._tails.astype(np.int64)
        walks: np.ndarray = np.ones(len(self._names))
        total = 0.0
        for _ in range(hops):
            walks = np.bincount(heads, weights=walks[tails], minlength=len(self._names))
            total += float(walks.sum())
        return total

    def _sampled_questions(self, hops: int, count: int, rng: np.random.Generator) -> list[GraphQuestion]:
        """calibration_questions' three kinds, a third each, from subjects drawn at random: a
        subject's answers to a relation are the tails of that relation's facts out of the entities
        it reaches forward in fewer than `hops` hops (the subject itself is never an answer)."""
        order = np.argsort(self._heads, kind="stable")
        indptr = np.zeros(len(self._names) + 1, np.int64)
        np.cumsum(np.bincount(self._heads, minlength=len(self._names)), out=indptr[1:])
        subjects = np.flatnonzero(np.diff(indptr))
        if not subjects.size or len(self._relations) < 2:
            return []
        per_kind = max(1, count // 3)
        roots = rng.choice(subjects, size=min(len(subjects), 3 * per_kind), replace=False)

        def found(root: int) -> dict[int, np.ndarray]:
            """relation id -> fact rows that answer it, for one subject."""
            seen = np.zeros(len(self._names), bool)
            seen[root] = True
            frontier, inner = np.array([root]), [np.array([root])]
            for _ in range(hops - 1):
                lo, hi = indptr[frontier], indptr[frontier + 1]
                rows = order[np.concatenate([np.arange(a, b) for a, b in zip(lo, hi)])] if len(frontier) else []
                nxt = np.unique(self._tails[rows])
                frontier = nxt[~seen[nxt]]
                seen[frontier] = True
                inner.append(frontier)
            nodes = np.concatenate(inner)
            rows = order[np.concatenate([np.arange(indptr[v], indptr[v + 1]) for v in nodes.tolist()])]
            rows = rows[self._tails[rows] != root]
            by_relation = np.argsort(self._rels[rows], kind="stable")
            rels, starts = np.unique(self._rels[rows][by_relation], return_index=True)
            return dict(zip(rels.tolist(), np.split(rows[by_relation], starts[1:])))

        answers = {int(root): found(int(root)) for root in roots.tolist()}
        answerable = [(root, rel) for root, by_rel in answers.items() for rel in by_rel]

        def text(root: int, rel: int) -> str:
            template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
            return template.format(subject=display(self._names[root]), relation=self._relations[rel])

        def fact(row: int) -> tuple[str, str, str]:
            return (self._names[self._heads[row]], self._relations[self._rels[row]], self._names[self._tails[row]])

        questions = []
        for i in rng.permutation(len(answerable))[:per_kind].tolist():
            root, rel = answerable[i]
            tails = {self._names[t] for t in self._tails[answers[root][rel]].tolist()}
            questions.append(GraphQuestion(self._names[root], self._relations[rel], text(root, rel), frozenset(tails)))
        for i in rng.permutation(len(answerable))[:per_kind].tolist():
            root, rel = answerable[i]
            held = frozenset(fact(row) for row in answers[root][rel].tolist())
            questions.append(
                GraphQuestion(self._names[root], self._relations[rel], text(root, rel), frozenset(), held, "held out")
            )
        picked: set[tuple[int, int]] = set()
        for _ in range(20 * per_kind):
            if len(picked) >= per_kind:
                break
            root = int(roots[int(rng.integers(len(roots)))])
            rel = int(rng.integers(len(self._relations)))
            if rel not in answers[root] and (root, rel) not in picked:
                picked.add((root, rel))
                questions.append(
                    GraphQuestion(
                        self._names[root], self._relations[rel], text(root, rel), frozenset(), kind="unanswerable"
                    )
                )
        return questions

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
                walk.append(self._triple(int(ref[k])))
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
