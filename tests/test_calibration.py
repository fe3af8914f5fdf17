"""The embedding walker's confidence (reverie/calibration.py), without Ray: questions made from a
graph, the calibrator fit on them, and what it then says of questions in a person's words, over the
built-in world held by a real GraphStore with real MiniLM vectors."""

from __future__ import annotations

import numpy as np
import pytest

from reverie.calibration import AnswerCalibrator, calibration_questions, chain_answers
from reverie.config import Settings
from reverie.dreams.embedding_walker import EmbeddingWalker
from reverie.edges import edge_id
from reverie.graph_store import GraphStore
from reverie.schemas import LinkedEntity, Triple

TOY = [
    ("glass cup", "made of", "glass"),
    ("glass", "is", "brittle"),
    ("brittle", "when dropped", "shatters"),
    ("glass cup", "found in", "kitchen"),
    ("rubber ball", "made of", "rubber"),
    ("rubber", "is", "elastic"),
    ("elastic", "when dropped", "bounces"),
    ("rubber", "is", "flammable"),
    ("flammable", "when set on fire", "burns"),
]


def toy() -> list[Triple]:
    return [Triple(head=h, relation=r, tail=t, source="toy") for h, r, t in TOY]


def test_chain_answers_are_the_tails_of_chains_ending_in_the_relation():
    found = chain_answers(toy(), hops=3)
    assert found["glass cup", "when dropped"] == {"shatters": {("brittle", "when dropped", "shatters")}}
    assert found["rubber ball", "when set on fire"] == {"burns": {("flammable", "when set on fire", "burns")}}
    assert ("glass cup", "when set on fire") not in found  # glass is not flammable here
    assert ("glass cup", "when dropped") not in chain_answers(toy(), hops=2)  # three hops away


def test_questions_of_three_kinds_from_the_graph():
    questions = calibration_questions(toy(), 3, 30, np.random.default_rng(0))
    found = chain_answers(toy(), 3)
    kinds = {q.kind for q in questions}
    assert kinds == {"answerable", "held out", "unanswerable"}
    for q in questions:
        assert q.subject in q.text and q.relation in q.text
        if q.kind == "answerable":
            assert q.answers == frozenset(found[q.subject, q.relation]) and not q.held_out
        elif q.kind == "held out":  # the facts that answer it are the ones held out
            assert not q.answers and q.held_out == {f for fs in found[q.subject, q.relation].values() for f in fs}
        else:
            assert not q.answers and (q.subject, q.relation) not in found
    assert calibration_questions(toy()[:1], 3, 30, np.random.default_rng(0)) == []  # one relation: nothing to ask


def test_a_subgraph_without_the_held_out_facts(tmp_path, encoder):
    store = GraphStore(Settings(home=tmp_path))
    plan = store.plan(toy())
    store.apply(plan, encoder.encode(plan.entity_texts), encoder.encode(plan.relation_texts))
    sub = store.retrieve(["glass cup"], [1.0], hops=3, max_nodes=100)
    store.close()
    gone = edge_id("glass", "is", "brittle")
    cut = sub.without_edges({gone})
    kept = {sub.edge_ids[r] for r in cut.edge_refs}
    assert gone not in kept and kept == {sub.edge_ids[r] for r in sub.edge_refs} - {gone}
    assert cut.num_edges == sub.num_edges - 2  # the fact, both ways
    for node in range(cut.num_nodes):  # each node's edges are still its own
        assert set(cut.targets[cut.indptr[node] : cut.indptr[node + 1]]) <= set(
            sub.targets[sub.indptr[node] : sub.indptr[node + 1]]
        )


def test_the_calibrator_fits_probabilities_and_keeps_them(tmp_path):
    rng = np.random.default_rng(0)
    features = rng.uniform(0, 1, (600, 4))
    truth = 1 / (1 + np.exp(-(8 * features[:, 0] - 4)))
    correct = rng.uniform(size=600) < truth
    calibrator = AnswerCalibrator.fit(features, correct)
    assert calibrator.weights[0] > 4 and abs(calibrator.weights[1]) < 2 and calibrator.ece < 0.1
    low, high = calibrator.confidence(np.array([[0.1, 0.5, 0.5, 0.0], [0.9, 0.5, 0.5, 0.0]]))
    assert low < 0.2 < 0.8 < high
    calibrator.save(tmp_path / "calibration.json")
    assert AnswerCalibrator.load(tmp_path / "calibration.json") == calibrator
    (tmp_path / "other.json").write_text('{"weights": [1], "bias": 0, "features": ["votes"]}')
    with pytest.raises(ValueError, match="ingest again"):
        AnswerCalibrator.load(tmp_path / "other.json")
    with pytest.raises(ValueError):
        AnswerCalibrator.fit(features[:, :3], correct)


@pytest.fixture(scope="module")
def world(tmp_path_factory, encoder):
    from reverie.data.kg import load_dataset

    store = GraphStore(Settings(home=tmp_path_factory.mktemp("calibrated-world")))
    dataset = load_dataset("world")
    plan = store.plan(dataset.graph, dataset.entities)
    store.apply(plan, encoder.encode(plan.entity_texts), encoder.encode(plan.relation_texts))
    questions = store.calibration_questions(hops=3, count=150, seed=0)
    subgraphs = [store.retrieve([q.subject], [1.0], 3, 20000) for q in questions]
    walker = EmbeddingWalker()
    walker.calibrator = walker.calibrate(questions, encoder.encode([q.text for q in questions]), subgraphs, 3, 64)
    yield store, walker
    store.close()


def best_answer(world, encoder, subject: str, question: str):
    store, walker = world
    sub = store.retrieve([subject], [1.0], 3, 20000)
    posed = walker.pose(
        sub, encoder.encode([question])[0], [LinkedEntity(name=subject, type="object", score=1.0, how="exact")], 3
    )
    return walker.rank(sub, posed, walker.walk(sub, posed, 64, np.random.default_rng(0)), 3)[0]


@pytest.mark.parametrize(
    "subject,question,answer",
    [
        ("glass cup", "What happens when you drop a glass cup?", "shatters"),
        ("rubber ball", "What would happen if I drop this?", "bounces"),
        ("rubber ball", "What happens when you put this in water?", "floats"),
        ("ice cube", "If you heat an ice cube, what happens?", "melts"),
    ],
)
def test_a_question_the_graph_answers_is_answered_surely(world, encoder, subject, question, answer):
    best = best_answer(world, encoder, subject, question)
    assert best.answer == answer and best.confidence > 0.5 and best.subjects == [subject]


@pytest.mark.parametrize(
    "subject,question",
    [
        ("glass cup", "What happens when you heat a glass cup?"),
        ("chocolate bar", "What happens when you drop a chocolate bar?"),
        ("iron nail", "What would happen if I drop this?"),
        ("rubber ball", "What happens when you set this on fire?"),
        ("copper wire", "What happens when you heat a copper wire?"),
    ],
)
def test_a_question_the_graph_does_not_answer_is_not_sure(world, encoder, subject, question):
    assert best_answer(world, encoder, subject, question).confidence < 0.2


def test_the_fit_is_reported(world):
    _, walker = world
    calibrator = walker.calibrator
    assert calibrator.questions > 100 and calibrator.weights[0] > 1  # the asked relation carries it
    assert 0.5 < calibrator.accuracy <= 1 and calibrator.ece < 0.15


def test_a_wrong_but_close_image_link_with_a_confident_second_candidate_still_answers_right(world, encoder, tmp_path):
    """The image looks most like a chocolate bar (which the world says nothing about dropping), a
    little less like a glass cup: rollouts start from both, by their link probability, and the cup's
    chain answers, as surely as the question in words."""
    from reverie import answer
    from reverie.schemas import ImageCandidate, ImageLink, Query

    store, walker = world
    image = ImageLink(
        entity="chocolate bar",
        type="object",
        score=0.61,
        candidates=[
            ImageCandidate(name="chocolate bar", type="object", score=0.61, probability=0.55),
            ImageCandidate(name="glass cup", type="object", score=0.60, probability=0.45),
        ],
    )
    subjects = answer.image_subjects(image)
    sub = store.retrieve([e.name for e in subjects], [e.score for e in subjects], 3, 20000)
    settings = Settings(home=tmp_path, confidence_threshold=0.5)

    def ask(question: str):
        posed = walker.pose(sub, encoder.encode([question])[0], subjects, 3, question)
        candidates = walker.rank(sub, posed, walker.walk(sub, posed, 128, np.random.default_rng(0)), 4)
        budget = answer.Budget(128, 3, 0)
        return answer.verdict(
            Query(question=question), budget, candidates, subjects, image, "", "", "w", {}, {}, None, settings
        )

    verdict = ask("What happens if I drop this?")
    assert verdict.answer_entity == "shatters" and verdict.sure
    assert verdict.chain.steps[0].what == "glass cup"
    # the same image asked what only the chocolate bar answers: its chain, as sure (the cup says nothing of heat)
    melts = ask("What happens if I heat this?")
    assert melts.candidates[0].answer == "melts" and melts.candidates[0].subjects == ["chocolate bar"]
    assert melts.sure and melts.confidence == pytest.approx(melts.candidates[0].confidence, abs=1e-4)


def test_a_small_ingest_keeps_the_fit_and_a_growing_graph_refits(tmp_path):
    from dataclasses import replace

    from reverie.calibration import DEFAULT_CALIBRATOR, needs_refit

    path = tmp_path / "calibration.json"
    assert needs_refit(path, 10)  # none yet
    replace(DEFAULT_CALIBRATOR, facts=1000).save(path)
    assert not needs_refit(path, 1000) and not needs_refit(path, 1049)  # a few more facts: the fit stands
    assert needs_refit(path, 1050) and needs_refit(path, 999)  # 5% more, or a graph that is not the one it saw
