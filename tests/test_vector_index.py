"""The vector index contract (reverie/graph_store/vectors.py): every implementation passes the same
tests, and the graph store links alike over each. No Ray.

A Qdrant server joins the implementations when REVERIE_TEST_QDRANT_URL names one."""

import os

import numpy as np
import pytest

from reverie.config import Settings
from reverie.graph_store import GraphStore
from reverie.graph_store.vectors import VECTOR_INDEXES, IndexInUseError, open_vector_index
from reverie.schemas import Triple

DIM = 16
SERVER = os.environ.get("REVERIE_TEST_QDRANT_URL")
KINDS = [*VECTOR_INDEXES, *(["server"] if SERVER else [])]


def unit_rows(count: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((count, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def open_kind(kind: str, folder):
    if kind == "server":
        return open_vector_index("edge", folder, url=SERVER)
    return open_vector_index(kind, folder)


@pytest.fixture(params=KINDS)
def kind(request):
    return request.param


@pytest.fixture
def index(kind, tmp_path):
    opened = open_kind(kind, tmp_path)
    opened.reset("things", DIM)
    yield opened
    opened.close()


def payloads(names, kind="thing"):
    return [{"name": n, "type": kind} for n in names]


def test_upsert_counts_and_finds_each_point_nearest_itself(index):
    names = [f"thing {i}" for i in range(2100)]  # more than one upsert batch
    vecs = unit_rows(len(names))
    assert index.count("things") == 0
    index.upsert("things", names, vecs, payloads(names))
    assert index.count("things") == 2100
    for i in (0, 1234, 2099):
        hits = index.search("things", vecs[i], 3)
        assert hits[0].payload["name"] == names[i] and hits[0].score == pytest.approx(1.0, abs=1e-4)
        assert len(hits) == 3 and [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_upsert_by_name_replaces_the_point(index):
    names = ["a", "b", "c"]
    vecs = unit_rows(3)
    index.upsert("things", names, vecs, payloads(names))
    index.upsert("things", ["a"], vecs[2:3], [{"name": "a", "type": "changed"}])
    assert index.count("things") == 3
    hits = index.search("things", vecs[2], 2)
    assert {h.payload["name"] for h in hits} == {"a", "c"} and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert next(h for h in hits if h.payload["name"] == "a").payload["type"] == "changed"


def test_search_can_pass_over_a_type(index):
    names = ["photo", "cup", "glass"]
    vecs = unit_rows(3)
    index.upsert("things", names, vecs, [{"name": "photo", "type": "image"}, *payloads(["cup", "glass"])])
    hits = index.search("things", vecs[0], 3, skip_type="image")
    assert [h.payload["name"] for h in hits] and "photo" not in {h.payload["name"] for h in hits}
    assert index.search("things", vecs[0], 1)[0].payload["name"] == "photo"


def test_reset_empties_and_upsert_makes_a_missing_collection(index):
    index.upsert("things", ["a"], unit_rows(1), payloads(["a"]))
    index.reset("things", DIM)
    assert index.count("things") == 0
    assert index.count("others") == 0
    index.upsert("others", ["b", "c"], unit_rows(2), payloads(["b", "c"]))
    assert index.count("others") == 2


def test_points_outlive_the_process_that_wrote_them(kind, tmp_path):
    if kind == "server":
        pytest.skip("a server keeps its own data")
    vecs = unit_rows(50)
    names = [f"n{i}" for i in range(50)]
    first = open_kind(kind, tmp_path)
    first.upsert("things", names, vecs, payloads(names))
    first.close()
    again = open_kind(kind, tmp_path)
    try:
        assert again.count("things") == 50
        assert again.search("things", vecs[7], 1)[0].payload["name"] == "n7"
    finally:
        again.close()


def test_one_process_holds_a_folder(kind, tmp_path):
    if kind == "server":
        pytest.skip("a server takes many clients")
    holder = open_kind(kind, tmp_path)
    with pytest.raises(IndexInUseError):
        open_kind(kind, tmp_path)
    holder.close()
    open_kind(kind, tmp_path).close()


def test_an_unknown_kind_names_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match="edge, embedded"):
        open_vector_index("faiss", tmp_path)


def test_the_store_links_alike_over_every_index(tmp_path, encoder):
    facts = [("glass cup", "made of", "glass"), ("rubber ball", "made of", "rubber"), ("glass", "is", "brittle")]
    question = "what is a drinking vessel made of?"
    found = {}
    for kind in VECTOR_INDEXES:
        store = GraphStore(Settings(home=tmp_path / kind, vector_index=kind))
        plan = store.plan([Triple(head=h, relation=r, tail=t) for h, r, t in facts])
        store.apply(plan, encoder.encode(plan.entity_texts), encoder.encode(plan.relation_texts))
        linked = store.link(question, encoder.encode([question])[0], top_k=3, min_score=0.0)
        found[kind] = [(e.name, round(e.score, 4)) for e in linked]
        store.close()
        assert (tmp_path / kind / "qdrant").is_dir()
    assert len(set(map(tuple, found.values()))) == 1, found


def test_a_damaged_edge_index_is_rebuilt_from_the_snapshot(tmp_path, encoder):
    settings = Settings(home=tmp_path, vector_index="edge")
    store = GraphStore(settings)
    plan = store.plan([Triple(head="glass cup", relation="made of", tail="glass")])
    store.apply(plan, encoder.encode(plan.entity_texts), encoder.encode(plan.relation_texts))
    store.close()
    (settings.paths.qdrant / "edge" / "entities" / "edge_config.json").write_text("{not json")
    reopened = GraphStore(settings)
    try:
        assert reopened.index.count("entities") == 2
        assert reopened.link("a cup", encoder.encode(["glass cup"])[0], 1, 0.5)[0].name == "glass cup"
    finally:
        reopened.close()
