"""The vector index behind entity linking: one small interface, three homes for it, picked by name.

- "edge" (the default): Qdrant Edge (`qdrant-edge-py`), the Qdrant engine itself inside this
  process: segments on disk (memory-mapped), a write-ahead log, and an HNSW graph built once a
  segment is large enough. One shard per collection under `REVERIE_HOME/qdrant/edge/`.
- "embedded": qdrant-client's local mode (`QdrantClient(path=...)`), as Reverie used before: exact
  search over numpy arrays, every point kept in SQLite and read back whole on start-up.
- a Qdrant server, when `REVERIE_QDRANT_URL` is set (whatever `REVERIE_VECTOR_INDEX` says), through
  qdrant-client.

`REVERIE_VECTOR_INDEX` picks between the first two (reverie/config.py); bench/results/scale.md
has the figures the default was chosen by. Points are keyed by uuid5 of their name and carry a
payload with at least "name" and "type", so the store needs nothing else to read a hit. A home is
held by one process: opening an index another process holds raises IndexInUseError.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

log = logging.getLogger(__name__)
POINT_NAMESPACE = uuid.UUID("6f1c1d1e-5d2b-4c8e-9a47-3f1f0e2b7a10")
BATCH = 2048


class IndexInUseError(RuntimeError):
    """Another process holds this index (its lock)."""


@dataclass(frozen=True)
class Hit:
    payload: dict
    score: float


def point_id(name: str) -> str:
    return str(uuid.uuid5(POINT_NAMESPACE, name))


class VectorIndex(Protocol):
    """What the graph store asks of a vector index (tests/test_vector_index.py is its contract)."""

    kind: str
    location: str  # where it lives, for messages

    def count(self, collection: str) -> int:
        """Points in the collection; 0 when it does not exist."""
        ...

    def reset(self, collection: str, dim: int) -> None:
        """Make the collection exist and hold nothing."""
        ...

    def upsert(self, collection: str, names: list[str], vecs: np.ndarray, payloads: list[dict]) -> None:
        """Add or replace points by name (a missing collection is made, of the vectors' width),
        durably once it returns."""
        ...

    def search(self, collection: str, vec: np.ndarray, limit: int, skip_type: str | None = None) -> list[Hit]:
        """The `limit` points nearest `vec` by cosine, best first; points whose payload "type" is
        `skip_type` are passed over."""
        ...

    def close(self) -> None: ...


class QdrantClientIndex:
    """qdrant-client: its local mode (path=) or a Qdrant server (url=)."""

    def __init__(self, client, kind: str, location: str):
        self.client, self.kind, self.location = client, kind, location

    @classmethod
    def embedded(cls, folder: Path) -> "QdrantClientIndex":
        from qdrant_client import QdrantClient

        folder.mkdir(parents=True, exist_ok=True)
        try:
            client = QdrantClient(path=str(folder))
        except RuntimeError as exc:  # its lock: another process owns the folder
            raise IndexInUseError(str(exc)) from None
        return cls(client, "embedded", str(folder))

    @classmethod
    def server(cls, url: str, api_key: str | None = None) -> "QdrantClientIndex":
        from qdrant_client import QdrantClient

        return cls(QdrantClient(url=url, api_key=api_key), "server", url)

    def count(self, collection: str) -> int:
        if not self.client.collection_exists(collection):
            return 0
        return int(self.client.count(collection, exact=True).count)

    def reset(self, collection: str, dim: int) -> None:
        from qdrant_client import models

        if self.client.collection_exists(collection):
            self.client.delete_collection(collection)
        self.client.create_collection(
            collection, vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE)
        )

    def upsert(self, collection: str, names: list[str], vecs: np.ndarray, payloads: list[dict]) -> None:
        from qdrant_client import models

        vecs = np.asarray(vecs, np.float32).reshape(len(names), -1)
        if not names:
            return
        if not self.client.collection_exists(collection):
            self.reset(collection, vecs.shape[1])
        for start in range(0, len(names), BATCH):
            stop = start + BATCH
            self.client.upsert(
                collection,
                points=models.Batch(
                    ids=[point_id(n) for n in names[start:stop]],
                    vectors=vecs[start:stop].tolist(),
                    payloads=payloads[start:stop],
                ),
                wait=True,
            )

    def search(self, collection: str, vec: np.ndarray, limit: int, skip_type: str | None = None) -> list[Hit]:
        from qdrant_client import models

        where = None
        if skip_type is not None:
            where = models.Filter(
                must_not=[models.FieldCondition(key="type", match=models.MatchValue(value=skip_type))]
            )
        points = self.client.query_points(
            collection,
            query=np.asarray(vec, np.float32).tolist(),
            limit=limit,
            query_filter=where,
            with_payload=True,
        ).points
        return [Hit(p.payload or {}, float(p.score)) for p in points]

    def close(self) -> None:
        self.client.close()


class EdgeIndex:
    """Qdrant Edge: one shard per collection under `folder`, held by this process (a file lock).

    After each upsert the shard's optimizers run in this process: a segment past Qdrant's indexing
    threshold (about 6,500 vectors of 384 floats) gets its HNSW graph, so a search stays a few
    milliseconds however large the graph grows; a smaller one is searched exactly."""

    kind = "edge"

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.location = str(folder)
        self._lock = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock)
            raise IndexInUseError(f"{folder} is locked by another process") from None
        self._shards: dict[str, Any] = {}  # collection -> qdrant_edge.EdgeShard

    def _shard(self, collection: str, create_dim: int | None = None):
        from qdrant_edge import Distance, EdgeConfig, EdgeShard, EdgeVectorParams

        shard = self._shards.get(collection)
        if shard is None:
            path = self.folder / collection
            if (path / "edge_config.json").is_file():
                try:
                    shard = EdgeShard.load(str(path))
                except Exception as exc:  # the engine raises plain Exceptions
                    # A shard that cannot be opened is rebuilt: the index is derived from the graph
                    # snapshot, and this process holds the folder's lock, so no one else is using it.
                    log.warning("rebuilding the vector index %s, which cannot be opened: %s", path, exc)
                    shutil.rmtree(path, ignore_errors=True)
            if shard is None and create_dim is not None:
                shutil.rmtree(path, ignore_errors=True)
                config = EdgeConfig(vectors=EdgeVectorParams(size=create_dim, distance=Distance.Cosine))
                shard = EdgeShard.create(str(path), config)
            if shard is None:
                return None
            self._shards[collection] = shard
        return shard

    def count(self, collection: str) -> int:
        from qdrant_edge import CountRequest

        shard = self._shard(collection)
        return 0 if shard is None else int(shard.count(CountRequest(exact=True)))

    def reset(self, collection: str, dim: int) -> None:
        shard = self._shards.pop(collection, None)
        if shard is not None:
            shard.close()
        shutil.rmtree(self.folder / collection, ignore_errors=True)
        self._shard(collection, create_dim=dim)

    def upsert(self, collection: str, names: list[str], vecs: np.ndarray, payloads: list[dict]) -> None:
        from qdrant_edge import Point, UpdateOperation

        vecs = np.asarray(vecs, np.float32).reshape(len(names), -1)
        if not names:
            return
        shard = self._shard(collection, create_dim=vecs.shape[1])
        for start in range(0, len(names), BATCH):
            rows = vecs[start : start + BATCH].tolist()
            points = [
                Point(point_id(n), row, p)
                for n, row, p in zip(names[start : start + BATCH], rows, payloads[start : start + BATCH])
            ]
            shard.update(UpdateOperation.upsert_points(points))
        shard.flush()
        shard.optimize()

    def search(self, collection: str, vec: np.ndarray, limit: int, skip_type: str | None = None) -> list[Hit]:
        from qdrant_edge import FieldCondition, Filter, MatchValue, Query, QueryRequest

        shard = self._shard(collection)
        if shard is None:
            return []
        where = None
        if skip_type is not None:
            where = Filter(must_not=[FieldCondition(key="type", match=MatchValue(skip_type))])
        points = shard.query(
            QueryRequest(
                limit=limit,
                query=Query.Nearest(np.asarray(vec, np.float32).tolist()),
                filter=where,
                with_payload=True,
            )
        )
        return [Hit(dict(p.payload or {}), float(p.score)) for p in points]

    def close(self) -> None:
        for shard in self._shards.values():
            shard.close()
        self._shards = {}
        if self._lock >= 0:
            os.close(self._lock)  # closing the descriptor lets go of the lock
            self._lock = -1


VECTOR_INDEXES: dict[str, Callable[[Path], VectorIndex]] = {
    "edge": lambda folder: EdgeIndex(folder / "edge"),
    "embedded": QdrantClientIndex.embedded,
}
"""REVERIE_VECTOR_INDEX -> how to open it in a home's `qdrant/` folder."""


def open_vector_index(kind: str, folder: Path, url: str | None = None, api_key: str | None = None) -> VectorIndex:
    """The index a home uses: a Qdrant server when `url` is given, else `kind` in `folder`."""
    if url:
        return QdrantClientIndex.server(url, api_key)
    try:
        opener = VECTOR_INDEXES[kind]
    except KeyError:
        raise ValueError(f"unknown vector index {kind!r}: use one of {', '.join(VECTOR_INDEXES)}") from None
    return opener(folder)
