"""The rules of one question (reverie/answer.py), without Ray: budgets, anchors, memory, the verdict."""

from __future__ import annotations

import pytest

from reverie import answer
from reverie.config import Settings
from reverie.errors import NoMatchError
from reverie.memory import Turn
from reverie.schemas import Candidate, Chain, ImageLink, LinkedEntity, Query, Step


def entity(name: str, how: str, score: float = 0.9) -> LinkedEntity:
    return LinkedEntity(name=name, type="object", score=score, how=how)


def chain(head: str, tail: str) -> Chain:
    return Chain(
        steps=[Step(what=head, action="when dropped", result=tail, edge_id="e1", source="world")],
        answer=tail,
        score=-0.5,
    )


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(home=tmp_path, rollouts=64, hops=3, confidence_threshold=0.5)


def test_the_budget_takes_the_query_values_else_the_settings(settings):
    assert answer.Budget.of(Query(question="q", rollouts=10, hops=2, seed=7), settings) == answer.Budget(10, 2, 7)
    default = answer.Budget.of(Query(question="q"), settings)
    assert (default.rollouts, default.hops) == (64, 3) and 0 <= default.seed < 2**31


def test_rollouts_are_cut_into_batches_that_add_up():
    assert answer.Budget(600, 3, 0).batches(256) == [256, 256, 88]
    assert answer.Budget(256, 3, 0).batches(256) == [256]
    assert answer.Budget(1, 3, 0).batches(256) == [1]


def test_the_image_is_the_subject():
    image_links = [entity("glass cup", "image", 0.8), entity("glass vase", "image", 0.6)]
    linked = answer.linked_entities([entity("water", "exact"), entity("glass cup", "vector", 0.4)], image_links, [])
    assert [e.name for e in linked] == ["glass cup", "water"] and linked[0].how == "image"
    link = answer.image_link(image_links, token=3)
    assert link == ImageLink(entity="glass cup", type="object", score=0.8, token=3, runners_up=[image_links[1]])


def test_a_follow_up_that_names_nothing_continues_from_the_last_subject():
    history = [
        Turn(
            question="What happens when you drop a glass cup?", answer_entity="shatters", linked=["glass cup", "floor"]
        )
    ]
    vague = [entity("hammer", "vector", 0.5)]
    linked = answer.linked_entities(vague, None, history)
    assert [(e.name, e.how) for e in linked] == [("glass cup", "memory"), ("hammer", "vector")]
    assert answer.anchors(linked) == [linked[0]]  # the remembered subject anchors the rollouts, not the vector match
    exact = [entity("iron nail", "exact")]
    assert answer.linked_entities(exact, None, history) == exact  # a question that names its subject starts afresh
    assert answer.linked_entities(vague, None, []) == vague


def test_anchors_are_the_entities_linked_by_name_else_the_nearest():
    by_name = [entity("glass cup", "exact"), entity("glass", "vector")]
    assert answer.anchors(by_name) == by_name[:1]
    only_vectors = [entity("glass", "vector"), entity("cup", "vector")]
    assert answer.anchors(only_vectors) == only_vectors


def test_a_question_with_no_link_goes_on_only_with_an_image_or_a_conversation():
    assert not answer.may_link_nothing([], None)
    assert answer.may_link_nothing([Turn(question="q", answer_entity="a", linked=["x"])], None)
    assert answer.may_link_nothing([], ImageLink(entity="glass cup", type="object", score=0.9))
    error = answer.no_answer([entity("glass cup", "exact")], 3)
    assert isinstance(error, NoMatchError) and "glass cup" in error.message and "3 hops" in error.message


@pytest.mark.parametrize("confidence,sure", [(0.8, True), (0.5, True), (0.2, False), (None, None)])
def test_the_verdict_is_sure_only_above_the_threshold(settings, confidence, sure):
    candidates = [
        Candidate(
            answer="shatters", score=0.4, votes=3, best_chain=chain("glass cup", "shatters"), confidence=confidence
        ),
        Candidate(answer="melts", score=0.2, votes=5, best_chain=chain("glass cup", "melts")),
    ]
    query = Query(question="What happens when you drop a glass cup?", session_id="s")
    verdict = answer.verdict(
        query,
        answer.Budget(64, 3, 0),
        candidates,
        [entity("glass cup", "exact")],
        None,
        "It shatters.",
        "template",
        "embedding-walker",
        {"node": 64},
        {"encode": 1.0},
        None,
        settings,
    )
    assert verdict.sure is sure and verdict.confidence == confidence
    assert verdict.answer_entity == "shatters" and verdict.chain == candidates[0].best_chain
    assert verdict.alternatives == [candidates[1].best_chain] and verdict.rollouts == 64 and verdict.session_id == "s"
