"""The rules of one question (reverie/answer.py), without Ray: budgets, anchors, memory, the verdict."""

from __future__ import annotations

import pytest

from reverie import answer
from reverie.config import Settings
from reverie.errors import NoMatchError
from reverie.memory import Turn
from reverie.schemas import Candidate, Chain, ImageCandidate, ImageLink, LinkedEntity, Query, Step


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


def test_the_image_candidates_are_the_subjects_weighted_by_their_link_probability():
    image_links = [
        entity("glass cup", "image", 0.80),
        entity("glass vase", "image", 0.78),
        entity("ice cube", "image", 0.3),
    ]
    link = answer.image_link(image_links, token=3, link_scale=30.0, candidates=3, min_probability=0.05)
    assert link.entity == "glass cup" and link.token == 3 and link.runners_up == image_links[1:]
    # the near look-alike seeds rollouts too; the far one (probability ~ e^-15) does not
    assert [c.name for c in link.candidates] == ["glass cup", "glass vase"]
    assert link.candidates[0].probability > link.candidates[1].probability > 0.3
    assert sum(c.probability for c in link.candidates) == pytest.approx(1.0, abs=1e-3)
    sharper = answer.image_link(image_links, token=3, link_scale=300.0, candidates=3, min_probability=0.05)
    assert [c.name for c in sharper.candidates] == ["glass cup"]  # a sure tower: only the nearest
    assert answer.image_link(image_links, 3, 30.0, candidates=1, min_probability=0.0).candidates[0].name == "glass cup"

    subjects = answer.image_subjects(link)
    assert [(e.name, e.how) for e in subjects] == [("glass cup", "image"), ("glass vase", "image")]
    linked = answer.linked_entities([entity("water", "exact"), entity("glass cup", "vector", 0.4)], subjects, [])
    assert [e.name for e in linked] == ["glass cup", "glass vase", "water"]
    assert answer.anchors(linked) == linked  # the image's candidates and the exact match


def test_a_follow_up_that_names_nothing_continues_from_the_last_subject():
    history = [
        Turn(
            question="What happens when you drop a glass cup?", answer_entity="shatters", linked=["glass cup", "floor"]
        )
    ]
    vague = [entity("hammer", "vector", 0.5)]
    linked = answer.linked_entities(vague, [], history)
    assert [(e.name, e.how) for e in linked] == [("glass cup", "memory"), ("hammer", "vector")]
    assert answer.anchors(linked) == [linked[0]]  # the remembered subject anchors the rollouts, not the vector match
    exact = [entity("iron nail", "exact")]
    assert answer.linked_entities(exact, [], history) == exact  # a question that names its subject starts afresh
    assert answer.linked_entities(vague, [], []) == vague


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


def candidate(answer_: str, confidence: float, subjects: list[str], score: float = 0.4) -> Candidate:
    return Candidate(
        answer=answer_,
        score=score,
        votes=3,
        best_chain=chain(subjects[0], answer_),
        confidence=confidence,
        subjects=subjects,
    )


def ask(settings, candidates, image=None):
    return answer.verdict(
        Query(question="What happens when you drop this?", session_id="s"),
        answer.Budget(64, 3, 0),
        candidates,
        [entity("glass cup", "exact")],
        image,
        "It shatters.",
        "template",
        "embedding-walker",
        {"node": 64},
        {"encode": 1.0},
        None,
        settings,
    )


@pytest.mark.parametrize("confidence,sure", [(0.8, True), (0.5, True), (0.2, False)])
def test_the_verdict_answers_only_when_sure(settings, confidence, sure):
    candidates = [candidate("shatters", confidence, ["glass cup"]), candidate("melts", 0.1, ["glass cup"], 0.2)]
    verdict = ask(settings, candidates)
    assert verdict.sure is sure and verdict.confidence == confidence
    if sure:
        assert verdict.answer_entity == "shatters" and verdict.chain == candidates[0].best_chain
        assert verdict.alternatives == [candidates[1].best_chain]
    else:  # the graph does not say: no answer, the nearest chains offered, none of them as the answer
        assert verdict.answer_entity is None and verdict.chain is None
        assert verdict.alternatives == [c.best_chain for c in candidates]
    assert verdict.rollouts == 64 and verdict.session_id == "s"


def image(*candidates: tuple[str, float]) -> ImageLink:
    return ImageLink(
        entity=candidates[0][0],
        type="object",
        score=0.8,
        candidates=[ImageCandidate(name=n, type="object", score=0.8, probability=p) for n, p in candidates],
    )


def test_a_look_alike_that_answers_nothing_asked_costs_no_confidence(settings):
    # the image is most like a glass vase (0.55), which the graph says nothing about dropping; the
    # glass cup (0.45) answers: the cup's answer, as sure as in words
    vase_chain_answer = candidate("holding flowers", 0.02, ["glass vase"], 0.3)
    cup = candidate("shatters", 0.9, ["glass cup"])
    verdict = ask(settings, [cup, vase_chain_answer], image(("glass vase", 0.55), ("glass cup", 0.45)))
    assert verdict.sure and verdict.answer_entity == "shatters" and verdict.confidence == pytest.approx(0.9)


def test_an_unsure_link_is_less_confident_than_a_sure_one(settings):
    cup, ball = candidate("shatters", 0.9, ["glass cup"]), candidate("bounces", 0.9, ["rubber ball"], 0.35)
    torn = ask(settings, [cup, ball], image(("glass cup", 0.55), ("rubber ball", 0.45)))
    sure = ask(settings, [cup, ball], image(("glass cup", 0.95), ("rubber ball", 0.05)))
    assert torn.confidence == pytest.approx(0.9 * 0.55) and not torn.sure and torn.answer_entity is None
    assert sure.confidence == pytest.approx(0.9 * 0.95) and sure.sure and sure.answer_entity == "shatters"
    # an answer reached from both look-alikes keeps both shares
    both = candidate("shatters", 0.9, ["glass cup", "glass vase"])
    assert ask(settings, [both], image(("glass cup", 0.5), ("glass vase", 0.5))).confidence == pytest.approx(0.9)


def test_the_cli_says_when_the_graph_does_not_say(settings):
    from reverie.cli import verdict_lines
    from reverie.llm import no_fact_sentence

    candidates = [candidate("does not burn", 0.01, ["glass cup"]), candidate("melts", 0.02, ["glass cup"], 0.2)]
    sentence = no_fact_sentence([c.best_chain for c in candidates])
    assert sentence == (
        "The graph has no fact that answers this. The nearest it holds: glass cup when dropped does not burn."
    )
    verdict = answer.verdict(
        Query(question="What happens when you heat a glass cup?"),
        answer.Budget(64, 3, 0),
        candidates,
        [entity("glass cup", "exact")],
        None,
        sentence,
        "template",
        "embedding-walker",
        {},
        {"encode": 1.0},
        None,
        settings,
    )
    printed = "\n".join(verdict_lines(verdict))
    assert f"A: {sentence}" in printed and "not sure: confidence 0.01" in printed
    assert "Nearest chains (none of them an answer):" in printed and "  - melts (confidence 0.02)" in printed
    assert "Chain (by" not in printed
    sure = answer.verdict(
        Query(question="q"),
        answer.Budget(64, 3, 0),
        [candidate("shatters", 0.9, ["glass cup"])],
        [],
        None,
        "It shatters.",
        "template",
        "embedding-walker",
        {},
        {},
        None,
        settings,
    )
    assert "answer: shatters · confidence 0.90" in "\n".join(verdict_lines(sure))
