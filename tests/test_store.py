"""GraphStore without Ray: ingest, de-duplication, persistence, linking, retrieval as CSR."""

import shutil

import networkx as nx
import numpy as np
import pytest

from reverie.config import Settings
from reverie.errors import EmptyGraphError, NoMatchError, ReverieError
from reverie.graph_store import GraphStore
from reverie.schemas import Entity, Triple

FACTS = [
    ("glass cup", "made of", "glass"),
    ("glass vase", "made of", "glass"),
    ("glass", "is", "brittle"),
    ("brittle", "when dropped on a hard floor", "shatters"),
    ("rubber ball", "made of", "rubber"),
    ("rubber", "is", "elastic"),
    ("elastic", "when dropped on a hard floor", "bounces"),
    ("glass cup", "found in", "kitchen"),
]


def triples(rows=FACTS):
    return [Triple(head=h, relation=r, tail=t, source="test") for h, r, t in rows]


def ingest(store, encoder, rows=FACTS, entities=None):
    plan = store.plan(triples(rows), entities)
    store.apply(plan, encoder.encode(plan.entity_texts), encoder.encode(plan.relation_texts))
    return plan


@pytest.fixture
def settings(tmp_path):
    return Settings(home=tmp_path)


def test_ingest_then_reingest_adds_nothing(settings, encoder):
    store = GraphStore(settings)
    plan = ingest(store, encoder)
    assert (len(plan.triples), len(plan.entities), len(plan.relations)) == (8, 10, 4)
    again = store.plan(triples())
    assert again.triples == [] and again.entities == [] and again.relations == []
    assert store.stats().triples == 8
    assert store.index.count("entities") == 10


def test_typed_entities_update_in_place(settings, encoder):
    store = GraphStore(settings)
    ingest(store, encoder)
    ingest(store, encoder, rows=[], entities=[Entity(name="glass", type="material", description="hard, clear")])
    assert store.get_entity("glass").type == "material"
    assert store.stats().entities == 10
    assert store.graph.nodes["glass"]["description"] == "hard, clear"


def test_store_survives_restart(settings, encoder):
    store = GraphStore(settings)
    ingest(store, encoder)
    before = store.link("what about the glass cup", encoder.encode(["what about the glass cup"])[0], 3, 0.3)
    store.close()
    reopened = GraphStore(settings)
    assert reopened.stats() == store.stats()
    after = reopened.link("what about the glass cup", encoder.encode(["what about the glass cup"])[0], 3, 0.3)
    assert [(e.name, e.how, round(e.score, 5)) for e in after] == [(e.name, e.how, round(e.score, 5)) for e in before]
    assert sorted(reopened.graph.edges(keys=False)) == sorted(store.graph.edges(keys=False))


def test_lost_index_is_rebuilt_from_the_snapshot(settings, encoder):
    """A crash after the snapshot but before the index write: the index heals on the next start."""
    store = GraphStore(settings)
    ingest(store, encoder)
    store.close()
    shutil.rmtree(settings.paths.qdrant)
    reopened = GraphStore(settings)
    assert reopened.index.count("entities") == 10
    hits = reopened.link("something rubbery", encoder.encode(["rubber"])[0], 1, 0.5)
    assert hits[0].name == "rubber"


def test_snapshot_write_is_atomic(settings, encoder, monkeypatch):
    """A failure while writing leaves the previous snapshot whole and no temporary file behind."""
    store = GraphStore(settings)
    ingest(store, encoder, rows=FACTS[:2])
    before = settings.paths.graph.joinpath("snapshot.npz").read_bytes()

    def broken_savez(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError):
        ingest(store, encoder, rows=FACTS[2:])
    monkeypatch.undo()
    assert store.stats().triples == 2  # memory rolled back to what the disk holds
    assert settings.paths.graph.joinpath("snapshot.npz").read_bytes() == before
    assert [p.name for p in settings.paths.graph.iterdir()] == ["snapshot.npz"]
    store.close()
    assert GraphStore(settings).stats().triples == 2


def test_link_prefers_exact_longest_phrases(settings, encoder):
    store = GraphStore(settings)
    ingest(store, encoder)
    question = "What happens when you drop a glass cup?"
    linked = store.link(question, encoder.encode([question])[0], top_k=5, min_score=0.45)
    assert linked[0].name == "glass cup" and linked[0].how == "exact"
    # "glass" is inside "glass cup", so it is not a second exact link
    assert all(e.how == "vector" for e in linked[1:])


def test_facts_about_counts_the_facts_each_entity_heads_and_follows_ingest(settings, encoder):
    store = GraphStore(settings)
    ingest(store, encoder)
    assert store.facts_about(["glass cup", "shatters", "glass", "nowhere"]) == [2, 0, 1, 0]
    ingest(store, encoder, [("shatters", "leaves", "shards")])
    assert store.facts_about(["shatters", "shards"]) == [1, 0]


def test_search_finds_whole_names_then_prefixes_then_parts_then_vectors(settings, encoder):
    store = GraphStore(settings)
    assert store.search("glass", encoder.encode(["glass"])[0], 5) == []  # an empty graph finds nothing
    ingest(store, encoder, FACTS + [("stained glass", "made of", "glass")])
    hits = store.search("Glass", encoder.encode(["Glass"])[0], 20)
    names = [h.name for h in hits]
    assert names[0] == "glass" and hits[0].score == 1.0
    assert set(names[1:3]) == {"glass cup", "glass vase"} and {h.score for h in hits[1:3]} == {0.9}
    assert names[3] == "stained glass" and hits[3].score == 0.8
    assert all(h.how == "name" for h in hits[:4]) and all(h.how == "vector" for h in hits[4:])
    assert len(names) == len(set(names)) == min(20, store.stats().entities)
    # a description matches no name: the nearest by vector, best first
    text = "a thing that breaks into pieces"
    by_meaning = store.search(text, encoder.encode([text])[0], 3)
    assert (
        len(by_meaning) == 3
        and all(h.how == "vector" for h in by_meaning)
        and "shatters" in [h.name for h in by_meaning]
    )
    assert [h.score for h in by_meaning] == sorted((h.score for h in by_meaning), reverse=True)
    assert len(store.search("glass", encoder.encode(["glass"])[0], 2)) == 2


def test_link_without_any_match_is_an_error(settings, encoder):
    store = GraphStore(settings)
    with pytest.raises(EmptyGraphError):
        store.link("anything", encoder.encode(["anything"])[0], 5, 0.45)
    ingest(store, encoder)
    question = "How do I configure a mortgage refinance?"
    with pytest.raises(NoMatchError, match="no entity in the graph matches"):
        store.link(question, encoder.encode([question])[0], 5, 0.45)


def test_retrieve_matches_networkx_neighbourhood(settings, encoder):
    store = GraphStore(settings)
    ingest(store, encoder)
    sub = store.retrieve(["glass cup"], [1.0], hops=2, max_nodes=100)
    undirected = nx.Graph(store.graph)
    expected = set(nx.single_source_shortest_path_length(undirected, "glass cup", cutoff=2))
    assert set(sub.node_names) == expected
    assert sub.node_names[sub.anchors[0]] == "glass cup"
    # every CSR edge is a stored fact, forward or inverse
    stored = {(h, r, t) for h, r, t in FACTS}
    for u in range(sub.num_nodes):
        for e in range(sub.indptr[u], sub.indptr[u + 1]):
            v, rel = sub.node_names[sub.targets[e]], int(sub.relations[e])
            name = sub.rel_names[rel % sub.num_relations]
            fact = (v, name, sub.node_names[u]) if sub.is_inverse(np.array(rel)) else (sub.node_names[u], name, v)
            assert fact in stored
    # both directions of every fact among the kept nodes, but out of the nodes 2 hops away (a walk
    # of 2 hops stops there)
    last = {n for n, d in nx.single_source_shortest_path_length(undirected, "glass cup", cutoff=2).items() if d == 2}
    inside = [f for f in FACTS if f[0] in expected and f[2] in expected]
    assert sub.num_edges == sum((h not in last) + (t not in last) for h, _, t in inside)
    assert all(sub.indptr[sub.node_names.index(n)] == sub.indptr[sub.node_names.index(n) + 1] for n in last)


def test_retrieve_caps_nodes_by_sampling(settings, encoder):
    rows = [("hub", "links", f"leaf {i}") for i in range(50)]
    store = GraphStore(settings)
    ingest(store, encoder, rows=rows)
    sub = store.retrieve(["hub"], [1.0], hops=1, max_nodes=11)
    assert sub.num_nodes == 11 and sub.node_names[0] == "hub"
    assert sub.num_edges == 10  # hub -> leaf; a walk of one hop never leaves a leaf
    assert sorted(sub.node_names[1:]) != [f"leaf {i}" for i in range(10)]  # a sample, not the first ids


def test_random_walks_follow_stored_edges(settings, encoder):
    store = GraphStore(settings)
    ingest(store, encoder)
    for walk in store.random_walks(["glass cup", "rubber"], length=3, seed=1):
        assert walk, "every start has neighbours"
        for triple in walk:
            assert (triple.head, triple.relation, triple.tail) in set(FACTS)


def test_a_store_owned_by_another_process_is_a_clear_error(settings, encoder):
    owner = GraphStore(settings)
    ingest(owner, encoder)
    second = GraphStore(settings)  # constructing is free; the first use needs the index
    with pytest.raises(ReverieError, match="in use by another process"):
        second.link("glass cup", encoder.encode(["glass cup"])[0], 3, 0.4)
    owner.close()
    assert second.link("glass cup", encoder.encode(["glass cup"])[0], 3, 0.4)[0].name == "glass cup"


def test_a_snapshot_of_the_first_format_loads_and_is_rewritten_as_columns(settings, encoder):
    """Homes written before the columnar snapshot (entities and triples as JSON objects) still open."""
    import json

    from reverie.encoders.text import text_dim

    names = ["glass cup", "glass", "brittle"]
    meta = {
        "entities": [{"name": n, "type": "material" if n == "glass" else "entity", "description": ""} for n in names],
        "relations": ["made of", "is"],
        "triples": [["glass cup", "made of", "glass", "facts.tsv:3", 0.9], ["glass", "is", "brittle", "user", 1.0]],
    }
    settings.paths.graph.mkdir(parents=True)
    with open(settings.paths.snapshot, "wb") as out:
        np.savez(
            out,
            meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
            entity_vecs=encoder.encode(names),
            relation_vecs=encoder.encode(["made of", "inverse of made of", "is", "inverse of is"]).reshape(2, 2, -1),
            codebook=np.zeros((0, text_dim()), np.float32),
        )
    store = GraphStore(settings)
    assert store.stats().triples == 2 and store.get_entity("glass").type == "material"
    made_of = store.neighbours("glass cup")[0]
    assert (made_of.source, made_of.confidence) == ("facts.tsv:3", 0.9)
    assert store.link("a glass cup", encoder.encode(["a glass cup"])[0], 3, 0.4)[0].name == "glass cup"
    ingest(store, encoder, rows=[("glass", "found in", "kitchen")])
    store.close()
    with np.load(settings.paths.snapshot) as data:
        assert json.loads(bytes(data["meta"]))["format"] == 2 and len(data["heads"]) == 3
    reopened = GraphStore(settings)
    assert reopened.stats() == store.stats() and reopened.neighbours("glass cup")[0] == made_of


def test_facts_travel_as_columns_and_read_back_whole():
    import pickle

    from reverie.graph_store.triples import TripleTable

    rows = [
        Triple(head="a", relation="r", tail="b", source="facts.tsv:12", confidence=0.9),
        Triple(head="b", relation="r", tail="c", source="facts.tsv:007"),  # not a plain line number: kept whole
        Triple(head="a", relation="s", tail="c", source="user"),
        Triple(head="c", relation="s", tail="a", source="x:0"),
    ]
    table = TripleTable.of(rows)
    assert table == rows and list(table) == rows and table[1] == rows[1] and table[-1] == rows[-1]
    assert table.sources == ["facts.tsv", "facts.tsv:007", "user", "x"] and table.line.tolist() == [12, -1, -1, 0]
    assert table[1:3] == rows[1:3] and TripleTable.of(table) is table and TripleTable.empty() == []
    many = TripleTable.of(
        Triple(head=f"h{i % 100}", relation="r", tail=f"t{i}", source=f"f:{i + 1}") for i in range(5000)
    )
    assert len(pickle.dumps(many)) < len(pickle.dumps(list(many))) / 2


def test_plan_keeps_the_first_of_repeated_facts_and_orders_new_names_as_met(settings, encoder):
    store = GraphStore(settings)
    ingest(store, encoder, rows=FACTS[:2])
    plan = store.plan(triples([FACTS[1], FACTS[2], FACTS[2], ("x", "is", "glass"), FACTS[0]]))
    assert [(t.head, t.relation, t.tail) for t in plan.triples] == [FACTS[2], ("x", "is", "glass")]
    assert [e.name for e in plan.entities] == ["brittle", "x"] and plan.relations == ["is"]
