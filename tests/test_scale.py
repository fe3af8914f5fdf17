"""A 100,000-fact synthetic home ingests and answers on the session's local Ray, and opens again in
another store. Few entities (2,000) keep the encoding short; the facts, the graph arrays, the
snapshot, the index and the calibration questions are at full size. bench/scale.py measures the
same at a million facts."""

import random

import numpy as np
import pytest

from reverie.config import Settings
from reverie.data import load_dataset
from reverie.data.synthetic import synthetic_kg, synthetic_triples
from reverie.encoders.text import display
from reverie.graph_store import GraphStore
from reverie.schemas import Query

TRIPLES, ENTITIES = 100_000, 2_000


def test_the_generator_is_seeded_heavy_tailed_and_named():
    names, types, relations, ids = synthetic_triples(20_000, seed=3)
    again = synthetic_triples(20_000, seed=3)
    assert names == again[0] and np.array_equal(ids, again[3])
    assert len(np.unique(ids, axis=0)) == 20_000 and not (ids[:, 0] == ids[:, 2]).any()
    degree = np.bincount(ids[:, [0, 2]].ravel(), minlength=len(names))
    assert degree.max() > 30 * np.median(degree[degree > 0])  # hubs, as in real graphs
    assert 20 <= len(relations) <= 200 and len(set(names)) == len(names) and len(set(types)) > 1
    data = load_dataset("synthetic-500-100")
    assert data.name == "synthetic-500-100" and len(data.graph) == 500
    assert len({n for t in data.graph for n in (t.head, t.tail)}) <= 100


@pytest.mark.ray
def test_a_100k_fact_home_ingests_answers_and_reopens(ray_cluster, tmp_path):
    from reverie.pipeline import Pipeline

    data = synthetic_kg(TRIPLES, entities=ENTITIES)
    settings = Settings(home=tmp_path, calibration_questions=60)
    pipeline = Pipeline(settings)
    report = pipeline.ingest_dataset(data)
    stats = pipeline.stats()
    assert report.triples_added == stats.triples == TRIPLES and report.entities_added == stats.entities <= ENTITIES
    assert {"plan", "encode", "write_graph", "write_snapshot", "write_vectors", "calibrate"} <= set(report.timings_s)

    tails: dict[tuple[str, str], set[str]] = {}
    for t in data.graph:
        tails.setdefault((t.head, t.relation), set()).add(t.tail)
    asked = random.Random(0).sample(sorted(tails), 5)
    verdicts = [
        pipeline.answer(Query(question=f"What is {display(h)} {display(r)}?", seed=i, verbalize=False))
        for i, (h, r) in enumerate(asked)
    ]
    for (head, _), verdict in zip(asked, verdicts):
        assert verdict.linked[0].name == head and verdict.linked[0].how == "exact"
        steps = verdict.candidates[0].best_chain.steps  # the best chain, sure or not
        assert steps and all(s.edge_id and s.source.startswith(f"{data.name}:") for s in steps)
        assert {"link", "retrieve", "dream", "arbitrate"} <= set(verdict.timings_ms)
    assert pipeline.ingest_dataset(data).triples_added == 0

    import ray

    ray.get(pipeline.services.store.close.remote())
    pipeline.services.stop()
    reopened = GraphStore(settings)
    try:
        assert reopened.stats() == stats
        head, relation = asked[0]
        view = reopened.entity_view(head)
        assert tails[head, relation] <= {f.tail for f in view.outgoing if f.relation == relation}
        assert all(f.source.startswith(f"{data.name}:") for f in view.outgoing + view.incoming)
        questions = reopened.calibration_questions(hops=3, count=60, seed=0)
        assert {q.kind for q in questions} == {"answerable", "held out", "unanswerable"}
        for q in questions:  # sampled from subjects at this size (GraphStore.calibration_questions)
            if q.kind == "answerable":
                answer = sorted(q.answers)[0]
                assert any(f.relation == q.relation and f.tail == answer for f in reopened.neighbours(answer))
            if q.kind == "held out":
                assert q.held_out and all(relation == q.relation for _, relation, _ in q.held_out)
    finally:
        reopened.close()
